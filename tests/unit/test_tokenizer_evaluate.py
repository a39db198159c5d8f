"""Round-trip evaluation figures (``training.tokenizer.evaluate``): the summary's medians, codebook usage and the
mirror-image count, on hand-made per-protein results; the mirror RMSD of a round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openesm3.config import StructureDecoderConfig, StructureEncoderConfig
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.training.tokenizer.evaluate import ProteinResult, bootstrap_mean, round_trip, summarize
from tests.unit.test_tokenizer_model import _record


def _result(name: str, rmsd: float, mirror: float, lddt: float, tokens: list[int], length: int = 0) -> ProteinResult:
    n = len(tokens)
    return ProteinResult(
        name=name, length=length or n, backbone_rmsd=rmsd, lddt_ca=lddt, tm_score=0.5, ptm=0.4, mean_plddt=0.6,
        tokens=np.array(tokens), plddt=np.full(n, 0.6), true_lddt=np.full(n, lddt), mirror_rmsd=mirror,
    )  # fmt: skip


def test_summary_figures() -> None:
    results = [
        _result("a", 2.0, 9.0, 0.9, [0, 1, 1, 1]),
        _result("b", 10.0, 3.0, 0.3, [1, 2, 2, 2]),  # fits better mirrored
        _result("c", 4.0, 8.0, 0.5, [3, 3, 3, 3]),
    ]
    s = summarize(results, n_codes=8)
    assert s.n_proteins == 3 and s.n_residues == 12
    assert s.backbone_rmsd_median == 4.0 and s.backbone_rmsd_mean == pytest.approx(16 / 3)
    assert s.lddt_ca_median == 0.5 and s.lddt_ca_mean == pytest.approx(1.7 / 3)
    assert s.plddt_mean == pytest.approx(0.6) and s.ptm_mean == pytest.approx(0.4) and s.tm_score_mean == 0.5
    assert s.mirrored_fraction == pytest.approx(1 / 3)
    assert s.codes_used_fraction == 4 / 8
    counts = np.array([1, 4, 3, 4]) / 12
    assert s.codebook_perplexity == pytest.approx(math.exp(-(counts * np.log(counts)).sum()))
    assert s.by_length == {"1-100": {"n_proteins": 3, "backbone_rmsd_median": 4.0, "lddt_ca_median": 0.5,
                                     "mirrored_fraction": pytest.approx(1 / 3)}}  # fmt: skip
    with pytest.raises(ValueError):
        summarize([], n_codes=8)


def test_summary_by_chain_length() -> None:
    results = [
        _result("a", 2.0, 9.0, 0.9, [0], length=100),  # bins are (lo, hi]
        _result("b", 10.0, 3.0, 0.3, [1], length=101),
        _result("c", 4.0, 8.0, 0.5, [2], length=150),
        _result("d", 20.0, 8.0, 0.1, [3], length=301),
    ]
    bins = summarize(results, n_codes=8).by_length
    assert list(bins) == ["1-100", "101-200", ">300"]  # empty bins are left out
    assert bins["1-100"] == {"n_proteins": 1, "backbone_rmsd_median": 2.0, "lddt_ca_median": 0.9,
                             "mirrored_fraction": 0.0}  # fmt: skip
    assert bins["101-200"]["n_proteins"] == 2 and bins["101-200"]["backbone_rmsd_median"] == 7.0
    assert bins["101-200"]["mirrored_fraction"] == 0.5 and bins[">300"]["lddt_ca_median"] == 0.1


def test_round_trip_reports_the_mirror_fit() -> None:
    torch.manual_seed(0)
    encoder = StructureEncoder(StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=8, n_codes=16)).eval()
    decoder = StructureDecoder(StructureDecoderConfig(d_model=32, n_heads=2, n_layers=1, pairwise_dim=8)).eval()
    result = round_trip(encoder, decoder, _record("1igd.pdb.gz"))
    assert result is not None
    assert math.isfinite(result.mirror_rmsd) and result.mirror_rmsd > 0
    assert result.mirror_rmsd != pytest.approx(result.backbone_rmsd, abs=1e-6)


def test_bootstrap_mean_of_paired_differences() -> None:
    d = np.array([0.1, 0.3, -0.2, 0.4, 0.0, 0.2])
    r = bootstrap_mean(d, np.random.default_rng(0), n_boot=2000)
    assert r["mean_difference"] == pytest.approx(0.8 / 6)
    assert d.min() < r["ci95_low"] < r["mean_difference"] < r["ci95_high"] < d.max()
    assert r == bootstrap_mean(d, np.random.default_rng(0), n_boot=2000)  # the draws come from the given generator
    same = bootstrap_mean(np.full(5, 0.25), np.random.default_rng(1))
    assert same == {"mean_difference": 0.25, "ci95_low": 0.25, "ci95_high": 0.25}  # no spread, no interval
