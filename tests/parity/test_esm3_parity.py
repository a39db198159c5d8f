"""ESM3 trunk parity with the official implementation: random weights saved in the official format and loaded
through our loader; all seven outputs compared in fp32.

Fast suite: tiny configs over several widths, depths and lengths, with geometric attention on real backbones.
Slow: the full 1.4B config at L = 128 (three cases sharing one reference model; needs ~12 GB RAM).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from openesm3 import constants as C
from openesm3.checkpoints.loading import load_model
from openesm3.config import ESM3_SM_OPEN_V1, ESM3Config
from tests.conftest import shared_data
from tests.esm3_testing import protein_batch, random_tracks, real_proteins
from tests.parity.esm3_oracle import build_reference, max_abs_diffs, save_official

TOL = 1e-4


@pytest.fixture(scope="module")
def proteins():
    """Four real chains of >= 160 residues from the dev set, with backbones (N, CA, C)."""
    return real_proteins(shared_data("dev"), n=4, min_len=160)


def _padded_packed_batch(proteins, length: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Two rows, right-padded: row 0 is one protein of ``length`` tokens; row 1 packs two shorter proteins
    (sequence_id 0 and 1) and then padding (own sequence_id 2, sequence <pad>, coordinates +inf)."""
    seq0, xyz0 = protein_batch(proteins[0], length, nan_residues=(3, 10))
    la, lb = length // 3, length // 4
    seq_a, xyz_a = protein_batch(proteins[1], la)
    seq_b, xyz_b = protein_batch(proteins[2], lb, nan_residues=(1,))
    pad = length - la - lb
    seq1 = torch.cat([seq_a, seq_b, torch.full((1, pad), C.SEQUENCE_PAD)], dim=1)
    xyz1 = torch.cat([xyz_a, xyz_b, torch.full((1, pad, 3, 3), float("inf"))], dim=1)
    sequence_id = torch.zeros(2, length, dtype=torch.long)
    sequence_id[1, la : la + lb] = 1
    sequence_id[1, la + lb :] = 2
    tracks = random_tracks(2, length, g)
    tracks["structure_tokens"][0, 5] = -1  # -1 means mask
    return {
        "sequence_tokens": torch.cat([seq0, seq1]),
        "structure_coords": torch.cat([xyz0, xyz1]),
        "sequence_id": sequence_id,
        **tracks,
    }


def _cases(proteins, length: int, g: torch.Generator) -> dict[str, dict[str, torch.Tensor]]:
    seq, xyz = protein_batch(proteins[3], length, nan_residues=(0, 7, length // 2))
    return {
        "sequence_only": {"sequence_tokens": seq},
        "all_tracks": {"sequence_tokens": seq, "structure_coords": xyz, **random_tracks(1, length, g)},
        "padded_with_sequence_id": _padded_packed_batch(proteins, length, g),
    }


def _run_both(ref, ours, inputs, **ours_kwargs):
    with torch.no_grad():
        expected = ref(**inputs)
        got = ours(**inputs, **ours_kwargs)
    return max_abs_diffs(got, expected)


# (d_model, n_heads, v_heads, n_layers, length): widths 64..256, depths 1..6, lengths 24..160.
TINY = [(64, 4, 4, 1, 24), (128, 2, 16, 3, 77), (96, 3, 8, 2, 160), (256, 4, 32, 6, 50)]


@pytest.mark.parametrize(("d_model", "n_heads", "v_heads", "n_layers", "length"), TINY)
def test_tiny_trunk_matches_reference(esm_reference, proteins, tmp_path, d_model, n_heads, v_heads, n_layers, length):
    ref = build_reference(esm_reference, d_model=d_model, n_heads=n_heads, v_heads=v_heads, n_layers=n_layers,
                          seed=d_model + n_layers)  # fmt: skip
    config = ESM3Config(d_model=d_model, n_heads=n_heads, v_heads=v_heads, n_layers=n_layers)
    ours, _ = load_model(save_official(ref, tmp_path / "esm3_sm_open_v1.pth"), "esm3", config=config)
    g = torch.Generator().manual_seed(length)
    for name, inputs in _cases(proteins, length, g).items():
        diffs = _run_both(ref, ours, inputs)
        assert max(diffs.values()) <= TOL, (name, diffs)

    # Block 0's geometric attention really reads the backbone: dropping the coordinates changes the outputs.
    inputs = _cases(proteins, length, g)["all_tracks"]
    with torch.no_grad():
        with_coords = ours(**inputs).embeddings
        without = ours(**{k: v for k, v in inputs.items() if k != "structure_coords"}).embeddings
    assert (with_coords - without).abs().max().item() > 1e-3


def test_attend_to_padding_reproduces_reference_without_sequence_id(esm_reference, proteins, tmp_path):
    """Without sequence_id the reference attends to pads; our switch reproduces it, our default does not."""
    ref = build_reference(esm_reference, d_model=64, n_heads=2, v_heads=8, n_layers=2, seed=3)
    config = ESM3Config(d_model=64, n_heads=2, v_heads=8, n_layers=2)
    ours, _ = load_model(save_official(ref, tmp_path / "x.pth"), "esm3", config=config)
    inputs = _padded_packed_batch(proteins, 60, torch.Generator().manual_seed(0))
    del inputs["sequence_id"]
    diffs = _run_both(ref, ours, inputs, attend_to_padding=True)
    assert max(diffs.values()) <= TOL, diffs
    default = _run_both(ref, ours, inputs)
    assert default["sequence_logits"] > 1e-3  # the rows with padding now differ from the reference


# ---------------------------------------------------------------------------------------------------------
# Full size (1.4B), fp32, L = 128.
# ---------------------------------------------------------------------------------------------------------


def _scratch_dir(tmp_path_factory) -> Path:
    """RAM-backed /dev/shm when it has room for the 5.6 GB file (writing it to disk dominates the test's
    time otherwise; our loader memory-maps the same pages, so RAM use is unchanged), else a temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 8e9:
        return Path(tempfile.mkdtemp(prefix="openesm3-parity-", dir=shm))
    return tmp_path_factory.mktemp("official")


@pytest.fixture(scope="module")
def full_size(esm_reference, tmp_path_factory):
    cfg = ESM3_SM_OPEN_V1
    ref = build_reference(esm_reference, d_model=cfg.d_model, n_heads=cfg.n_heads, v_heads=cfg.v_heads,
                          n_layers=cfg.n_layers, seed=1234)  # fmt: skip
    scratch = _scratch_dir(tmp_path_factory)
    try:
        path = save_official(ref, scratch / "esm3_sm_open_v1.pth")
        ours, config = load_model(path, "esm3")  # the release preset and the official file name
        assert config == ESM3_SM_OPEN_V1
        yield ref, ours
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sequence_only", "all_tracks", "padded_with_sequence_id"])
def test_full_size_trunk_matches_reference(full_size, proteins, case):
    ref, ours = full_size
    length = 128
    inputs = _cases(proteins, length, torch.Generator().manual_seed(7))[case]
    diffs = _run_both(ref, ours, inputs)
    print(case, {k: f"{v:.2e}" for k, v in diffs.items()})
    assert max(diffs.values()) <= TOL, (case, diffs)
