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


def test_round_trip_of_a_complex_reads_every_chain_at_its_place_in_the_row() -> None:
    """A complex is encoded as one row with chain breaks; the evaluation compares every residue of every chain, at
    the row positions the user-facing decoding assigns them (decode_structure / decode_all_atom: same pLDDT, pTM
    and backbone), and a record made from a complex goes back to the same complex."""
    from openesm3.checkpoints.bundled import load_structure_tokenizer  # noqa: PLC0415
    from openesm3.generation.all_atom_decoding import decode_all_atom  # noqa: PLC0415
    from openesm3.generation.structure_tokens import decode_structure, encode_structure  # noqa: PLC0415
    from openesm3.geometry.alignment import kabsch  # noqa: PLC0415
    from openesm3.structure import load_structure  # noqa: PLC0415
    from openesm3.training.tokenizer.evaluate import record_to_structure, structure_to_record  # noqa: PLC0415
    from tests.conftest import TEST_DATA  # noqa: PLC0415

    cx = load_structure(TEST_DATA / "structures" / "1AM7.pdb.gz", chains=["C", "A"])
    record = structure_to_record(cx)
    assert record.chain_ids == ("C", "A") and record.sequence == cx.chains[0].sequence + cx.chains[1].sequence
    back = record_to_structure(record)
    assert [c.chain_id for c in back.chains] == ["C", "A"]  # type: ignore[union-attr]
    for a, b in zip(back.chains, cx.chains):  # type: ignore[union-attr]
        assert a.sequence == b.sequence and np.array_equal(a.residue_index, b.residue_index)
        assert np.array_equal(np.nan_to_num(a.atom37), np.nan_to_num(np.where(b.atom37_mask[..., None], b.atom37, 0)))

    encoder, decoder = load_structure_tokenizer()
    tokens = encode_structure(cx, encoder)
    for with_sequence in (False, True):
        result = round_trip(encoder, decoder, record, with_sequence=with_sequence)
        decoded = decode_all_atom(tokens, decoder)[0] if with_sequence else decode_structure(tokens, decoder)
        assert result is not None and result.length == len(record.sequence) == len(decoded.plddt)
        assert np.allclose(result.plddt, decoded.plddt, atol=1e-5) and result.ptm == pytest.approx(
            decoded.ptm, abs=1e-5
        )
        pred = np.concatenate([np.asarray(c.atom37)[:, :3] for c in decoded.structure.chains])
        fit = kabsch(
            torch.from_numpy(pred).reshape(-1, 3).float(), torch.from_numpy(record.atom37[:, :3]).reshape(-1, 3)
        )
        assert float(fit.rmsd) == pytest.approx(result.backbone_rmsd, abs=1e-3)
        assert (result.all_atom_rmsd is not None) == with_sequence
