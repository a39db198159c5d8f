"""A --device this machine lacks, or a misspelt one, is a one-line user error (exit 2) naming the device, given
before any work, in the structure-token commands as in the model commands (``resolve_device``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import openesm3.checkpoints.vqvae_weights as vqvae_weights
from openesm3.cli.main import main
from openesm3.generation.structure_tokens import ChainTokens, StructureTokens, tokens_to_json
from tests.conftest import TEST_DATA


@pytest.fixture(autouse=True)
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command loaded weights before checking its device")

    monkeypatch.setattr(vqvae_weights, "load_vqvae_network", load)


@pytest.mark.parametrize("device", ["cuda:99", "foo"])  # cuda:99: absent on a CPU machine and on a GPU one alike
@pytest.mark.parametrize("command", ["tokenize-structure", "detokenize"])
def test_an_unusable_device_is_a_one_line_error(
    command: str, device: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if command == "tokenize-structure":
        argv = [command, str(TEST_DATA / "structures" / "2HPR.pdb.gz"), "--out", str(tmp_path / "t.json")]
    else:
        n = 3
        chain = ChainTokens("A", np.arange(n), np.arange(1, n + 1), np.full(n, ""), "MKT", np.ones(n, dtype=bool))
        tokens = tmp_path / "tokens.json"
        tokens.write_text(json.dumps(tokens_to_json([StructureTokens((chain,), "t")])))
        argv = [command, str(tokens), "--out", str(tmp_path / "x.pdb")]
    assert main([*argv, "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"openesm3 {command}: error: device '{device}'") and err.count("\n") == 1, err
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "x.pdb").exists()


@pytest.mark.parametrize(
    ("device", "cuda_count", "mps", "expected"),
    [
        ("cuda", 0, False, "CUDA is not available on this machine"),
        ("cuda:7", 2, False, "this machine has 2 CUDA device(s), numbered 0..1"),
        ("mps", 0, False, "MPS is not available on this machine"),
        ("gpu", 2, True, "is not a device this package runs on (use cpu, cuda, cuda:N, mps or auto)"),
        # torch.device parses these, but nothing here runs on them: meta would fail far from the option
        ("meta", 2, True, "is not a device this package runs on"),
        ("xla", 2, True, "is not a device this package runs on"),
        ("cpu:3", 2, True, "there is one CPU device (use cpu)"),
        # the first index past the end, and the first index past the only CPU / MPS device
        ("cuda:2", 2, False, "this machine has 2 CUDA device(s), numbered 0..1"),
        ("cpu:1", 2, True, "there is one CPU device (use cpu)"),
        ("mps:1", 0, True, "there is one MPS device (use mps)"),
    ],
)
def test_a_model_command_names_an_unusable_device_in_one_line(
    device: str,
    cuda_count: int,
    mps: bool,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What a first ``--device`` try on a machine without that device (or with fewer GPUs) shows: one line naming the
    device, before the weights are looked for (``--weights`` here does not exist) and nothing written."""
    import torch  # noqa: PLC0415

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda_count)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAK\n")
    out = tmp_path / "out.npz"
    argv = ["embed", str(fasta), "-o", str(out), "--weights", str(tmp_path / "no-weights"), "--device", device]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"openesm3 embed: error: device '{device}'") and err.count("\n") == 1, err
    assert expected in err and "Expected one of" not in err, err
    assert not out.exists()
