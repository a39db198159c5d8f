"""scripts/pair_head_probe.py: pair heads fitted on a frozen decoder's features (finding 14 of
docs/tokenizer_training.md): its pair-geometry input, its copy of the spec's head and whole runs on a small dataset.
The fits and figures it shares with calibration are tested in tests/unit/test_calibrate_tokenizer.py."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from openesm3.layers.structure_heads import PairwiseHead
from openesm3.training.data import write_dataset
from openesm3.training.tokenizer import losses as L
from openesm3.training.tokenizer.calibrate import DecodedChain
from tests.script_testing import load_script
from tests.unit.test_tokenizer_model import _record


def _module() -> ModuleType:
    return load_script("pair_head_probe")


def _backbone(name: str = "1igd.pdb.gz") -> torch.Tensor:
    record = _record(name)
    keep = record.atom37_mask[:, :3].all(-1)
    return torch.from_numpy(record.atom37[keep, :3]).float()


def test_pair_geometry_reads_distances_and_directions_of_a_real_chain() -> None:
    module = _module()
    bb = _backbone()
    g = module.pair_geometry(bb)
    n = bb.shape[0]
    assert g.shape == (n, n, 22)
    # the radial features peak at the centre nearest to the C-beta distance
    cb = L.virtual_cb(bb)
    d = torch.cdist(cb, cb)
    centres = module.RBF_CENTRES
    inside = (d > centres[0]) & (d < centres[-1])
    nearest = (d[..., None] - centres).abs().argmin(-1)
    assert torch.equal(g[..., :16].argmax(-1)[inside], nearest[inside])
    # the six dot products: (0, 0), (1, 1), (2, 2) of a residue with itself are 1, and they lie on the target's bins
    diagonal = g[torch.arange(n), torch.arange(n), 16:19]
    torch.testing.assert_close(diagonal, torch.ones(n, 3), atol=1e-5, rtol=0)
    bins = ((g[..., 16:] + 1.0) * 8.0).floor().long().clamp(0, 15)
    agree = (bins == L.direction_targets(bb[None])[0]).float().mean()
    assert agree > 0.999  # equal up to float rounding at bin edges
    # invariant under a rigid motion of the structure
    rot, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    rot = (rot * torch.sign(torch.det(rot))).float()
    moved = bb @ rot.T + torch.tensor([5.0, -3.0, 7.0])
    torch.testing.assert_close(module.pair_geometry(moved), g, atol=2e-4, rtol=0)


def test_probe_head_copy_of_the_spec_head_gives_its_logits() -> None:
    module = _module()
    torch.manual_seed(0)
    spec = PairwiseHead(48, 16)
    for p in spec.parameters():  # away from the initial LayerNorm weights, so a wrong copy shows
        torch.nn.init.normal_(p, std=0.3)
    probe = module.ProbeHead.from_spec(spec, 48)
    x = torch.randn(12, 48)
    bb = _backbone()[:12]
    torch.testing.assert_close(probe(x, bb), spec(x[None])[0])
    assert module.ProbeHead(48, 16, bias=True).linear2.bias is not None
    assert module.ProbeHead(48, 16, geometry=True).geometry is not None


def test_a_geometry_head_learns_distances_a_plain_head_cannot_see() -> None:
    """Features that carry nothing (zeros): only the decoded structure can tell pairs apart, so a fitted
    geometry head must beat the best a plain head can do (the marginal) at chain neighbours."""
    module = _module()
    bb = _backbone()
    n = bb.shape[0]
    d = DecodedChain("1igd", "", torch.zeros(n, 32), bb, bb, torch.ones(n, dtype=torch.bool))
    scores = {}
    for geometry in (False, True):
        torch.manual_seed(0)
        head = module.ProbeHead(32, 8, bias=True, geometry=geometry)
        curve = module.fit(head, [d], steps=150, lr=2e-2, crop_size=40, batch=1, seed=0)
        assert curve[-1][1] < curve[0][1]
        [row] = module.score_chains(head, [d])
        scores[geometry] = row["by_separation"]["distogram"][0]
    assert scores[True] < 1.0 < scores[False]


def test_probe_runs_on_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [_record("1igd.pdb.gz"), _record("structures/1PIN.pdb.gz")]
    records = [
        dataclasses.replace(base[0], name="t0", cluster="x", split="train"),
        dataclasses.replace(base[1], name="t1", cluster="y", split="train"),
        dataclasses.replace(base[0], name="v0", cluster="p", split="valid"),
        dataclasses.replace(base[1], name="v1", cluster="q", split="valid"),
        dataclasses.replace(base[1], name="v2", cluster="q", split="valid"),
    ]
    write_dataset(records, tmp_path / "ds")
    module = _module()
    out = tmp_path / "probe.json"
    common = ["--data", str(tmp_path / "ds"), "--steps", "2", "--crop", "32", "--threads", "1"]
    assert module.main([*common, "--heads", "shipped,spec,geometry", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["train_chains"] == 2 and result["scored_chains"] == 3 and result["cross_fit"] == 0
    assert set(result["heads"]) == {"shipped", "spec", "geometry"}
    assert result["chains"] == ["v0", "v1", "v2"] and len(result["true_tm"]) == 3
    for head in result["heads"].values():
        assert -1.0 <= head["ptm_vs_tm_r"] <= 1.0 and 0.0 < head["mean_ptm"] < 1.0
        assert all(math.isfinite(v) and v > 0 for v in head["mean_ce"].values())
        assert len(head["by_separation"]["pae"]) == len(module.SEPARATION_BINS)
        assert len(head["ptm"]) == 3 and np.mean(head["ptm"]) == pytest.approx(head["mean_ptm"])
    assert "r_minus_shipped" not in result["heads"]["shipped"] and "r_minus_shipped" in result["heads"]["spec"]
    assert result["heads"]["shipped"]["curve"] == [] and len(result["heads"]["spec"]["curve"]) == 2
    # cross-fit: no training chains decoded; one fitted head per fold
    assert module.main([*common, "--heads", "spec_init", "--cross-fit", "2", "--plddt", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["plddt"]) == {"shipped", "refit"}
    for figures in result["plddt"].values():
        assert 0.0 < figures["mean_plddt"] < 1.0 and 0.0 <= figures["mean_lddt_ca"] <= 1.0
        assert -1.0 <= figures["r_per_residue"] <= 1.0 and len(figures["mean_plddt_per_chain"]) == 3
    assert "difference" in result["plddt"]["refit"]["r_per_protein_minus_shipped"]
    assert result["train_chains"] == 0 and result["cross_fit"] == 2
    assert len(result["heads"]["spec_init"]["curve"]) == 2
    assert np.isfinite(result["heads"]["spec_init"]["mean_ce"]["pae"])
    with pytest.raises(SystemExit, match="only 2 clusters"):
        module.main([*common, "--cross-fit", "3"])
    with pytest.raises(SystemExit, match="unknown wide"):
        module.main([*common, "--heads", "spec,wide"])
    with pytest.raises(SystemExit, match="split 'test' has 0 chains"):
        module.main([*common, "--split", "test"])
    capsys.readouterr()
