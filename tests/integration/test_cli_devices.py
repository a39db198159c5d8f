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
