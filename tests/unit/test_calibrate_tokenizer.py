"""Calibration of a tokenizer's confidence heads on held-out chains (openesm3.training.tokenizer.calibrate and
``openesm3 calibrate-tokenizer``): only the heads change, masked residues stay out of every target, the cross-fit
keeps clusters whole, the output loads as a tokenizer, and bad input is refused with a clear message."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.checkpoints.vqvae_weights import load_vqvae_network
from openesm3.cli.main import main
from openesm3.errors import InputError
from openesm3.generation.structure_tokens import encode_structure
from openesm3.layers.structure_heads import PairwiseHead
from openesm3.training.config import ConfigError, DataConfig, SplitConfig
from openesm3.training.data import ProteinDataset, ProteinRecord, write_dataset
from openesm3.training.pipeline import split_positions
from openesm3.training.tokenizer.calibrate import (
    CalibrationConfig,
    calibrate,
    cluster_folds,
    decode_chain,
    decode_records,
    fit_pae_output,
    fit_pair_head,
    fit_plddt_head,
    fit_ptm_scale,
    pair_losses,
    plddt_targets,
    r_difference,
    score_ptm,
    summarize_plddt,
    summary_lines,
    write_calibrated,
)
from openesm3.training.tokenizer.evaluate import record_to_chain
from openesm3.utils import provenance
from tests.conftest import TEST_DATA
from tests.unit.test_tokenizer_model import _record

FILES = ("1igd.pdb.gz", "structures/1PIN.pdb.gz", "structures/1fxd.pdb.gz", "structures/1a62.pdb.gz")


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    return load_structure_tokenizer(None)


@pytest.fixture(scope="module")
def records() -> list[ProteinRecord]:
    return [
        dataclasses.replace(_record(f), name=Path(f).name.split(".")[0], cluster=f"c{i}") for i, f in enumerate(FILES)
    ]


@torch.no_grad()
def _plddt_ce(head: torch.nn.Module, chains: list) -> float:  # noqa: ANN001
    total = 0.0
    for c in chains:
        target = plddt_targets(c.pred[None], c.true[None], c.mask[None])[1][0]
        total += float(F.cross_entropy(head(c.features)[c.mask], target[c.mask]))
    return total / len(chains)


def test_calibration_refits_the_heads_and_nothing_else(tokenizer, records) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    encoder, decoder = tokenizer
    chains, skipped = decode_records(encoder, decoder, records, progress=False)
    assert skipped == [] and [c.cluster for c in chains] == ["c0", "c1", "c2", "c3"]
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    result = calibrate(decoder, chains, CalibrationConfig(steps=40, cross_fit=2), progress=False)
    # the input decoder is untouched; the output differs only in the two heads
    for k, v in decoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = {k.split(".")[0] for k, v in result.decoder.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"plddt_head", "pairwise_head"}
    # the decoded geometry is the same, the confidences are not
    tokens = torch.from_numpy(encode_structure(record_to_chain(records[0]), encoder, max_length=None).tokens)[None]
    with torch.no_grad():
        a, b = decoder(tokens), result.decoder(tokens)
    assert torch.equal(a.backbone, b.backbone)
    assert not torch.allclose(a.plddt, b.plddt) and not torch.allclose(a.ptm, b.ptm)
    # fitted on these chains, the pLDDT head's cross-entropy falls
    assert _plddt_ce(result.decoder.plddt_head, chains) < _plddt_ce(decoder.plddt_head, chains) - 0.05
    report = result.report
    assert report["chains"] == ["1igd", "1PIN", "1fxd", "1a62"] and report["clusters"] == ["c0", "c1", "c2", "c3"]
    assert report["cross_fit"]["folds"] == [0, 1, 0, 1]
    for part in ("before", "cross_fit", "fitted"):
        p, t = report[part]["plddt"], report[part]["ptm"]
        assert 0 < p["mean_plddt"] < 1 and -1 <= p["r_per_residue"] <= 1 and 0 < t["mean_ptm"] < 1
        assert len(t["ptm_per_chain"]) == 4 and p["mean_lddt_ca"] == pytest.approx(np.mean(report["lddt_ca"]))
    assert report["fitted"]["plddt"]["mean_plddt"] != report["before"]["plddt"]["mean_plddt"]
    assert set(report["cross_fit"]["ptm_r_gain"]) == {"difference", "low", "high"}
    # only one head when asked
    one = calibrate(decoder, chains, CalibrationConfig(heads=("plddt",), steps=2, cross_fit=0), progress=False)
    assert "cross_fit" not in one.report
    assert torch.equal(one.decoder.pairwise_head.linear2.weight, decoder.pairwise_head.linear2.weight)


@torch.no_grad()
def _pae_ce(head: torch.nn.Module, chains: list) -> float:  # noqa: ANN001
    return float(np.mean([pair_losses(head(c.features[None])[0], c)["pae"][c.pair_mask].mean() for c in chains]))


def _three_chains(tokenizer, records):  # noqa: ANN001, ANN202
    """(decoder, its decodings of the first three records, its pairwise head's state before any fit)."""
    torch.set_num_threads(1)
    encoder, decoder = tokenizer
    chains, _ = decode_records(encoder, decoder, records[:3], progress=False)
    return decoder, chains, decoder.pairwise_head.state_dict()


def _assert_only_the_pae_rows_moved(new: dict, original: dict) -> None:
    """The pairwise head's trunk and distogram/direction outputs are untouched; its PAE rows moved."""
    rows = PairwiseHead.pae_slice()
    for k, v in original.items():
        if k != "linear2.weight":
            assert torch.equal(new[k], v), k
    assert torch.equal(new["linear2.weight"][: rows.start], original["linear2.weight"][: rows.start])
    assert not torch.equal(new["linear2.weight"][rows], original["linear2.weight"][rows])


def test_restricted_pair_fits_change_only_the_pae_outputs(tokenizer, records) -> None:  # noqa: ANN001
    decoder, chains, original = _three_chains(tokenizer, records)
    rows = PairwiseHead.pae_slice()
    for mode in ("pae", "temperature"):
        head = copy.deepcopy(decoder.pairwise_head)
        curve = fit_pae_output(head, chains, mode=mode, steps=30, lr=1e-2, crop_length=64, batch=2, seed=0)
        assert len(curve) == 2 and all(np.isfinite(loss) for _, loss in curve)
        new = head.state_dict()
        _assert_only_the_pae_rows_moved(new, original)
        assert _pae_ce(head, chains) < _pae_ce(decoder.pairwise_head, chains), mode
        if mode == "temperature":  # one scale of the original rows
            ratio = new["linear2.weight"][rows] / original["linear2.weight"][rows]
            assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-5)
    # through calibrate(): only the pairwise head's PAE rows differ
    result = calibrate(
        decoder, chains, CalibrationConfig(heads=("pae",), pair_fit="temperature", steps=5, cross_fit=0), progress=False
    )
    changed = [k for k, v in result.decoder.state_dict().items() if not torch.equal(v, decoder.state_dict()[k])]
    assert changed == ["pairwise_head.linear2.weight"]
    with pytest.raises(ConfigError, match="pair_fit: unknown 'rows'"):
        CalibrationConfig(pair_fit="rows")


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True])
def test_a_seed_the_api_would_refuse_is_a_config_error(seed: object) -> None:
    # Before, a negative seed reached np.random.default_rng in the fits: a bare "expected non-negative integer".
    with pytest.raises(ConfigError, match=r"seed must be an int in \[0, 2\*\*64\)"):
        CalibrationConfig(seed=seed)  # type: ignore[arg-type]


def test_ptm_fit_scales_the_pae_rows_to_match_chain_ptm_to_a_target(tokenizer, records) -> None:  # noqa: ANN001
    decoder, chains, original = _three_chains(tokenizer, records)
    rows = PairwiseHead.pae_slice()
    before = np.array(score_ptm(decoder.pairwise_head, chains))
    for shift in (-0.15, +0.1):  # targets the head over- or understates by a known amount
        target = (before + shift).tolist()
        head = copy.deepcopy(decoder.pairwise_head)
        curve = fit_ptm_scale(head, chains, target, steps=50)
        assert curve[-1][1] < curve[0][1] / 10 and curve[0][1] == pytest.approx(shift**2, rel=1e-2)
        after = np.array(score_ptm(head, chains))
        assert np.abs(after - target).max() < 0.04, (shift, after, target)
        new = head.state_dict()
        _assert_only_the_pae_rows_moved(new, original)
        # every PAE row is its original times one factor, whose log is linear in the bin
        ratio = new["linear2.weight"][rows] / original["linear2.weight"][rows]
        factor = ratio.median(dim=1).values
        assert torch.allclose(ratio, factor[:, None].expand_as(ratio), rtol=1e-4)
        log_factor = factor.log().double()
        line = torch.linspace(0, 1, len(factor), dtype=torch.float64)
        fitted = log_factor[0] + (log_factor[-1] - log_factor[0]) * line
        assert torch.allclose(log_factor, fitted, atol=1e-4) and not torch.allclose(factor, torch.ones_like(factor))
    # without the tilt: one factor for every row (a temperature), still moving pTM toward the target
    head = copy.deepcopy(decoder.pairwise_head)
    target = (before - 0.1).tolist()
    fit_ptm_scale(head, chains, target, steps=50, tilt=False)
    ratio = head.linear2.weight[rows] / original["linear2.weight"][rows]
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4) and float(ratio.flatten()[0]) != 1.0
    after = np.array(score_ptm(head, chains))
    assert np.abs(after - target).mean() < np.abs(before - target).mean() / 2
    with pytest.raises(ValueError, match="3 chains but 2 TM-scores"):
        fit_ptm_scale(copy.deepcopy(decoder.pairwise_head), chains, [0.5, 0.5], steps=1)
    # through calibrate(): the chains' own TM-scores; in-sample the squared error cannot grow
    result = calibrate(
        decoder, chains, CalibrationConfig(heads=("pae",), pair_fit="ptm", steps=20, cross_fit=0), progress=False
    )
    changed = [k for k, v in result.decoder.state_dict().items() if not torch.equal(v, decoder.state_dict()[k])]
    assert changed == ["pairwise_head.linear2.weight"]
    tm = np.array(result.report["tm_score"])
    error = lambda part: float(np.mean((np.array(result.report[part]["ptm"]["ptm_per_chain"]) - tm) ** 2))  # noqa: E731
    assert error("fitted") < error("before")


def test_residues_without_a_backbone_stay_out_of_the_targets(tokenizer) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    encoder, decoder = tokenizer
    record = _record("1igd.pdb.gz")
    mask37 = record.atom37_mask.copy()
    mask37[10:14, 0] = False  # no N for four residues
    atom37 = record.atom37.copy()
    atom37[10:14, 0] = np.nan  # and garbage where the mask says nothing
    chain = decode_chain(encoder, decoder, dataclasses.replace(record, atom37=atom37, atom37_mask=mask37))
    assert chain.mask.sum() == record.length - 4 and not chain.mask[10:14].any()
    assert torch.isfinite(chain.true).all()
    terms = pair_losses(decoder.pairwise_head(chain.features[None])[0], chain)
    assert all(torch.isfinite(t[chain.pair_mask]).all() for t in terms.values())
    head = copy.deepcopy(decoder.pairwise_head)
    curve = fit_pair_head(head, [chain], steps=3, lr=1e-3, crop_length=32, batch=1, seed=0)
    plddt = copy.deepcopy(decoder.plddt_head)
    curve += fit_plddt_head(plddt, [chain], steps=3, lr=1e-3, batch=1, seed=0)
    assert all(np.isfinite(loss) for _, loss in curve)
    # a chain too short to calibrate on, and a complex, are left out with the reason
    short = dataclasses.replace(record, atom37_mask=np.zeros_like(mask37), name="empty")
    pair = dataclasses.replace(record, chain_ids=("A", "B"), name="complex")
    chains, skipped = decode_records(encoder, decoder, [short, pair, record], progress=False)
    assert len(chains) == 1 and [s["name"] for s in skipped] == ["empty", "complex"]
    assert "fewer than 8 residues" in skipped[0]["problem"] and "complex of 2 chains" in skipped[1]["problem"]


def test_written_tokenizer_loads_and_nothing_is_overwritten(tmp_path: Path, tokenizer, records) -> None:  # noqa: ANN001
    encoder, decoder = tokenizer
    chains, _ = decode_records(encoder, decoder, records[:2], progress=False)
    result = calibrate(decoder, chains, CalibrationConfig(steps=2, cross_fit=0), progress=False)
    with provenance.running(provenance.Run("calibrate-tokenizer", hash_outputs=True)) as run:
        out = write_calibrated(encoder, result.decoder, tmp_path / "cal", result.report)
    # Written beside OUT and renamed into place: the run record listed the vanished staging paths, so no output.
    assert sorted(run.outputs) == sorted(p for p in out.rglob("*") if p.is_file())
    loaded, _ = load_vqvae_network(out, "structure_decoder")
    for k, v in result.decoder.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.float()), k
    assert json.loads((out / "calibration.json").read_text())["chains"] == ["1igd", "1PIN"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal"]  # no temporary left beside it
    with pytest.raises(InputError, match="exists and is not an empty directory"):
        write_calibrated(encoder, result.decoder, out, result.report)
    (tmp_path / "empty").mkdir()
    write_calibrated(encoder, result.decoder, tmp_path / "empty", result.report)  # an empty directory is fine


def test_a_failed_write_leaves_no_staged_file_in_the_run_record(tmp_path: Path, tokenizer, monkeypatch) -> None:  # noqa: ANN001
    """The networks are staged beside OUT before the report: a failure writing it (disk full) removes the staging
    folder, and the networks' staged files with it from the run's outputs (a record would list files never kept)."""
    import openesm3.training.tokenizer.calibrate as calibrate_module  # noqa: PLC0415

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(calibrate_module, "atomic_write_json", disk_full)
    encoder, decoder = tokenizer
    with provenance.running(provenance.Run("calibrate-tokenizer", hash_outputs=True)) as run:
        with pytest.raises(OSError, match="No space left on device"):
            write_calibrated(encoder, decoder, tmp_path / "cal", {})
    assert run.outputs == {} and not list(tmp_path.iterdir())


def test_bad_settings_and_too_little_data(tokenizer, records) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="unknown wide"):
        CalibrationConfig(heads=("plddt", "wide"))
    with pytest.raises(ConfigError, match="cross_fit must be 0"):
        CalibrationConfig(cross_fit=1)
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        CalibrationConfig(steps=0)
    encoder, decoder = tokenizer
    chains, _ = decode_records(encoder, decoder, records[:2], progress=False)
    with pytest.raises(InputError, match="at least 2 chains"):
        calibrate(decoder, chains[:1], CalibrationConfig(steps=1), progress=False)
    with pytest.raises(InputError, match="3 folds needs as many clusters"):
        calibrate(decoder, chains, CalibrationConfig(steps=1, cross_fit=3), progress=False)


def test_r_difference_is_zero_for_the_same_predictions_and_positive_for_better_ones() -> None:
    rng = np.random.default_rng(0)
    tm = rng.random(60)
    good, poor = tm + 0.1 * rng.normal(size=60), tm + 1.0 * rng.normal(size=60)
    same = r_difference(list(good), list(good), list(tm), n_boot=200)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    better = r_difference(list(good), list(poor), list(tm), n_boot=200)
    assert 0.0 < better["low"] <= better["difference"] <= better["high"]


def test_an_r_of_too_few_chains_is_null_in_the_report_and_has_no_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On 2 chains r is undefined: calibration.json held bare ``NaN`` (not JSON: strict readers such as jq or a
    browser refuse the file) and the summary printed a gain of '+nan (+0.00 .. +0.00)', an interval of nothing."""
    gain = r_difference([0.2, 0.4], [0.3, 0.1], [0.5, 0.6], n_boot=50)
    assert np.isnan(gain["difference"]) and np.isnan(gain["low"]) and np.isnan(gain["high"])
    files = [str(TEST_DATA / f) for f in FILES[:2]]
    out = tmp_path / "cal"
    assert main(["calibrate-tokenizer", *files, "--out", str(out), "--steps", "1", "--threads", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2 chains in" in printed and "0.00 .. +0.00" not in printed, printed
    assert "gain in pLDDT r per protein undefined (r needs 3 or more chains" in printed, printed
    assert "nan" not in printed and "undefined per protein" in printed, printed  # the r itself was printed as nan

    def refuse(token: str) -> None:
        raise AssertionError(f"calibration.json holds {token}, which is not JSON")

    report = json.loads((out / "calibration.json").read_text(), parse_constant=refuse)
    assert report["before"]["plddt"]["r_per_protein"] is None
    assert report["cross_fit"]["plddt_r_per_protein_gain"] == {"difference": None, "low": None, "high": None}
    assert report["before"]["plddt"]["mean_plddt"] > 0  # defined figures stay numbers


def test_cli_names_a_chain_too_short_to_calibrate_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1IR3's 6-residue chain B was dropped at ingestion (min_length 10) without a word, though the docs say chains
    with fewer than 8 residues with a backbone are named; chains of 8 and 9 residues were lost alike."""
    files = [str(TEST_DATA / "structures" / "1IR3.pdb.gz"), str(TEST_DATA / FILES[2]), str(TEST_DATA / FILES[0])]
    out = tmp_path / "cal"
    args = [*files, "--out", str(out), "--steps", "1", "--threads", "1", "--quiet", "--cross-fit", "0"]
    assert main(["calibrate-tokenizer", *args]) == 0
    err = capsys.readouterr().err
    assert "left out 1IR3_B: fewer than 8 residues with N, CA and C" in err, err
    report = json.loads((out / "calibration.json").read_text())
    assert report["skipped"] == [{"name": "1IR3_B", "problem": "fewer than 8 residues with N, CA and C"}]
    assert sorted(report["chains"]) == ["1IR3_A", "1fxd_A", "1igd_A"]


def test_plddt_summary_correlates_residues_and_proteins() -> None:
    rows = [
        {"plddt": np.array([0.9, 0.8, 0.5]), "true": np.array([0.8, 0.7, 1.0]), "scored": np.array([True, True, False]),
         "lddt_ca": 0.75},
        {"plddt": np.array([0.2, 0.4]), "true": np.array([0.3, 0.5]), "scored": np.array([True, True]),
         "lddt_ca": 0.4},
        {"plddt": np.array([0.6]), "true": np.array([0.6]), "scored": np.array([True]), "lddt_ca": 0.5},
    ]  # fmt: skip
    s = summarize_plddt(rows)
    # unscored residues (the 0.5 / 1.0 one) are left out of the per-residue figure
    pred, true = [0.9, 0.8, 0.2, 0.4, 0.6], [0.8, 0.7, 0.3, 0.5, 0.6]
    assert s["r_per_residue"] == pytest.approx(np.corrcoef(pred, true)[0, 1])
    means = [np.mean([0.9, 0.8, 0.5]), 0.3, 0.6]
    assert s["r_per_protein"] == pytest.approx(np.corrcoef(means, [0.75, 0.4, 0.5])[0, 1])
    assert s["mean_plddt"] == pytest.approx(np.mean(means)) and s["mean_lddt_ca"] == pytest.approx(0.55)


def test_summary_advises_keeping_a_head_that_refitting_made_worse() -> None:
    fig = {
        "plddt": {"r_per_residue": 0.6, "r_per_protein": 0.7, "mean_plddt": 0.6, "mean_lddt_ca": 0.4},
        "ptm": {"ptm_vs_tm_r": 0.6, "mean_ptm": 0.5, "mean_tm": 0.4},
    }

    def report(plddt_gain: tuple[float, float, float], ptm_gain: tuple[float, float, float]) -> dict:
        gain = lambda d, lo, hi: {"difference": d, "low": lo, "high": hi}  # noqa: E731
        cross = dict(fig, plddt_r_per_protein_gain=gain(*plddt_gain), ptm_r_gain=gain(*ptm_gain))
        return {"config": {"heads": ["plddt", "pae"], "cross_fit": 3}, "before": fig, "cross_fit": cross, "fitted": fig}

    text = "\n".join(summary_lines(report((0.1, 0.02, 0.2), (-0.2, -0.35, -0.05))))
    assert "the pTM head ranks these chains worse than before" in text and "(--heads plddt)" in text
    text = "\n".join(summary_lines(report((-0.1, -0.2, -0.01), (-0.2, -0.35, -0.05))))
    assert "the pLDDT and pTM heads rank" in text and "keep the original heads" in text
    assert "note:" not in "\n".join(summary_lines(report((0.1, 0.02, 0.2), (-0.05, -0.2, 0.1))))  # not clear: no note
    only_plddt = report((0.1, 0.02, 0.2), (0.0, 0.0, 0.0))
    only_plddt["config"]["heads"] = ["plddt"]
    text = "\n".join(summary_lines(only_plddt))
    assert "gain in pLDDT r per protein +0.10 (+0.02 .. +0.20) (95 %" in text and "pTM r +" not in text


def test_cluster_folds_keep_clusters_whole() -> None:
    clusters = ["b", "a", "c", "a", "d", "b", "e"]
    folds = cluster_folds(clusters, 2)
    assert folds == [1, 0, 0, 0, 1, 1, 0]  # sorted clusters a, b, c, d, e dealt to folds 0, 1, 0, 1, 0
    for c in set(clusters):
        assert len({f for f, k in zip(folds, clusters, strict=True) if k == c}) == 1


def test_cli_on_structure_files_and_on_a_dataset(tmp_path: Path, records, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    files = [str(TEST_DATA / f) for f in FILES[:3]]
    out = tmp_path / "cal"
    common = ["--steps", "2", "--threads", "1"]
    assert main(["calibrate-tokenizer", *files, "--out", str(out), *common]) == 0
    printed = capsys.readouterr().out
    assert "3 chains in" in printed and "2-fold cross-fit" in printed and f"--weights {out}" in printed
    report = json.loads((out / "calibration.json").read_text())
    assert report["source"] == "3 structure files" and report["skipped"] == [] and len(report["chains"]) == 3
    assert main(["round-trip", files[0], "--weights", str(out), "--no-sequence"]) == 0
    assert "decoder confidence" in capsys.readouterr().out
    # an ingested dataset, by split label; the trainer's synonyms count alike (cal = calibration)
    labels = ["train", "cal", "calibration", "valid"]
    labelled = [dataclasses.replace(r, split=s) for r, s in zip(records, labels, strict=True)]
    write_dataset(labelled, tmp_path / "ds")
    argv = ["calibrate-tokenizer", str(tmp_path / "ds"), "--split", "calibration", "--out", str(tmp_path / "c2")]
    assert main([*argv, "--pair-fit", "temperature", *common]) == 0
    report = json.loads((tmp_path / "c2" / "calibration.json").read_text())
    assert report["chains"] == ["1PIN", "1fxd"] and report["config"]["pair_fit"] == "temperature"
    # the split a training run with data.split.calibration_fraction draws, instead of the labels
    clustered = [dataclasses.replace(r, split="train") for r in records]
    write_dataset(clustered, tmp_path / "ds_train")
    draw = DataConfig(split=SplitConfig(method="column", calibration_fraction=0.5, seed=1))
    held = [records[int(i)].name for i in split_positions(ProteinDataset(tmp_path / "ds_train"), draw, "calibration")]
    assert held == ["1fxd", "1a62"]  # seed 0 would draw 1PIN and 1a62
    argv = [str(tmp_path / "ds_train"), "--split", "calibration", "--calibration-fraction", "0.5", "--split-seed", "1"]
    assert main(["calibrate-tokenizer", *argv, "--pair-fit", "ptm", "--heads", "pae", "--cross-fit", "0",
                 "--out", str(tmp_path / "c4"), *common]) == 0  # fmt: skip
    report = json.loads((tmp_path / "c4" / "calibration.json").read_text())
    assert report["chains"] == held and "calibration_fraction 0.5, seed 1" in report["source"]
    capsys.readouterr()
    split_seed_minus_one = ["--split", "calibration", "--calibration-fraction", "0.1", "--split-seed", "-1"]
    # refusals, one line each
    for argv, message in (
        ([*files, "--out", str(out)], "exists and is not an empty directory"),
        ([str(tmp_path / "ds"), "--split", "test", "--out", str(tmp_path / "c3")], "no records with split 'test'"),
        ([*files, "--split", "cal", "--out", str(tmp_path / "c3")], "--split and --calibration-fraction select"),
        (
            [*files, "--calibration-fraction", "0.1", "--out", str(tmp_path / "c3")],
            "--split and --calibration-fraction",
        ),
        (
            [str(tmp_path / "ds"), "--calibration-fraction", "0.1", "--out", str(tmp_path / "c3")],
            "give --split calibration",
        ),
        (
            [str(tmp_path / "ds"), "--split", "test", "--calibration-fraction", "0.1", "--out", str(tmp_path / "c3")],
            "unknown split 'test'",
        ),  # fmt: skip
        (
            [str(tmp_path / "ds"), "--split", "valid", "--calibration-fraction", "1.5", "--out", str(tmp_path / "c3")],
            "calibration_fraction must lie in [0, 1)",
        ),  # fmt: skip
        (  # was "<ds>: seed must be ...": the dataset blamed, and --seed named where --split-seed was wrong
            [str(tmp_path / "ds"), *split_seed_minus_one, "--out", str(tmp_path / "c3")],
            "error: --split-seed must be an int in [0, 2**64), got -1",
        ),
        (["--out", str(tmp_path / "c3")], "give the held-out chains"),
        ([*files, "--heads", "plddt,wide", "--out", str(tmp_path / "c3")], "unknown wide"),
        ([files[0], "--out", str(tmp_path / "c3")], "at least 2 chains"),
        ([*files, "--run", str(tmp_path), "--out", str(tmp_path / "c3")], "--run gives the weights and the chains"),
    ):
        assert main(["calibrate-tokenizer", *argv, *common]) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "c3").exists()


def test_the_sweep_script_names_a_bad_split_seed_as_the_command_does(
    records: list[ProteinRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/calibration_sweep.py --split-seed -1 said "<dataset>: seed must be ...": the dataset blamed, and no
    option named; it is refused before any work with calibrate-tokenizer's message."""
    from tests.script_testing import load_script  # noqa: PLC0415

    write_dataset([dataclasses.replace(r, split="train") for r in records], tmp_path / "ds")
    out = tmp_path / "sweep.json"
    argv = ["--data", str(tmp_path / "ds"), "--calibration-fraction", "0.5", "--split-seed", "-1", "--out", str(out)]
    assert load_script("calibration_sweep").main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "calibration_sweep.py: error: --split-seed must be an int in [0, 2**64), got -1"
    assert not out.exists()


def test_an_existing_output_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out naming a non-empty directory used to be refused only after decoding and every fit (minutes at the
    default 1,000 steps)."""
    import openesm3.training.tokenizer.calibrate as calibrate_module  # noqa: PLC0415

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded before checking --out")

    monkeypatch.setattr(calibrate_module, "decode_records", no_work)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["calibrate-tokenizer", str(TEST_DATA / "1igd.pdb.gz"), "--out", str(out), "--steps", "1"])
    assert code == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    # a file on the way to --out was found only when the result was written, after every fit: "notes.txt: File
    # exists"
    (tmp_path / "notes.txt").write_text("mine")
    under_a_file = tmp_path / "notes.txt" / "cal"
    code = main(["calibrate-tokenizer", str(TEST_DATA / "1igd.pdb.gz"), "--out", str(under_a_file), "--steps", "1"])
    assert code == 2
    assert f"--out {under_a_file}: {tmp_path / 'notes.txt'} is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give the held-out chains: structure files, an ingested dataset, or --run DIR"),
        (
            ["{file}", "--run", "{tmp}"],
            "--run gives the weights and the chains: leave out INPUT, --weights and --split",
        ),
        (["{file}", "--split", "calibration"], "--split and --calibration-fraction select records of an ingested"),
        (["{tmp}/empty.pdb"], "no readable protein chains in {tmp}/empty.pdb"),
        (["--run", "{tmp}"], "{tmp}: no complete training checkpoint"),
    ],
)
def test_cli_inputs_it_cannot_use_are_named_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "empty.pdb").write_text("")
    fill = {"file": str(TEST_DATA / FILES[0]), "tmp": str(tmp_path)}
    out = tmp_path / "cal"
    code = main(["calibrate-tokenizer", *(a.format(**fill) for a in extra), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.format(**fill) in err, err
    assert not out.exists()


def test_cli_names_a_missing_or_empty_input_file_and_goes_on_with_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # as tokenize-structure does: a missing file used to stop the run while an empty one was left out
    (tmp_path / "empty.pdb").write_text("")
    bad = [str(tmp_path / "missing.pdb"), str(tmp_path / "empty.pdb")]
    files = [str(TEST_DATA / f) for f in FILES[:3]]
    out = tmp_path / "cal"
    args = [*files, *bad, bad[0], "--out", str(out), "--steps", "2", "--threads", "1", "--quiet"]  # one named twice
    code = main(["calibrate-tokenizer", *args])
    err = capsys.readouterr().err
    assert code == 1, err  # some inputs failed, the others were used
    assert f"could not read {bad[0]}: no such file or directory" in err and f"could not read {bad[1]}: " in err
    assert err.count(f"could not read {bad[0]}") == 1, err  # a file is one file however often it is named
    assert "2 input(s) could not be read and were left out" in err
    assert len(json.loads((out / "calibration.json").read_text())["chains"]) == 3
    code = main(["calibrate-tokenizer", *bad, "--out", str(tmp_path / "none"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"could not read {bad[0]}: no such file or directory" in err, err
    assert f"no readable protein chains in {bad[0]}, {bad[1]}" in err and not (tmp_path / "none").exists()


def test_cli_names_an_unreadable_list_file_and_an_empty_directory_and_goes_on_with_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A list file that is not text and a directory without structure files stopped the whole run (exit 2) while a
    missing or unreadable structure file was named and left out: now all are."""
    binary = tmp_path / "held_out.lst"
    binary.write_bytes(b"\x00\xff\xfe binary")
    empty = tmp_path / "no_structures"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here\n")
    files = [str(TEST_DATA / f) for f in FILES[:3]]
    out = tmp_path / "cal"
    args = [*files, str(binary), str(empty), "--out", str(out), "--steps", "2", "--threads", "1", "--quiet"]
    code = main(["calibrate-tokenizer", *args])
    err = capsys.readouterr().err
    assert code == 1, err  # named, left out, the others used
    assert f"could not read {binary}: not a text file (byte 1 is not UTF-8)" in err, err
    assert f"could not read {empty}: no structure files (.pdb, .cif, .bcif, optionally .gz) in this directory" in err
    assert "2 input(s) could not be read and were left out" in err
    assert len(json.loads((out / "calibration.json").read_text())["chains"]) == 3
    code = main(["calibrate-tokenizer", str(binary), str(empty), "--out", str(tmp_path / "none"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"could not read {binary}: " in err and f"could not read {empty}: " in err, err
    assert f"no readable protein chains in {binary}, {empty}" in err and not (tmp_path / "none").exists()


def test_cli_names_a_missing_file_of_a_list_file_with_its_line_and_goes_on_with_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A list file (a text file of paths) naming a missing file used to stop the run ("listed file ... does not
    exist", exit 2) while the same file given on the command line was named and left out."""
    listing = tmp_path / "held_out.txt"
    listed = [str(TEST_DATA / f) for f in FILES[:3]]
    listing.write_text(f"# held-out chains\n{listed[0]}\nmissing.pdb\n{listed[1]}\n{listed[2]}\n")
    out = tmp_path / "cal"
    code = main(["calibrate-tokenizer", str(listing), "--out", str(out), "--steps", "2", "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err  # as for a missing file given directly: named, left out, the others used
    assert f"could not read {tmp_path / 'missing.pdb'}: no such file (listed in {listing}, line 3)" in err, err
    assert "1 input(s) could not be read and were left out" in err
    assert len(json.loads((out / "calibration.json").read_text())["chains"]) == 3
    # nothing readable: exit 2, the missing files named, nothing written
    listing.write_text("gone.pdb\n")
    code = main(["calibrate-tokenizer", str(listing), str(tmp_path / "lost.pdb"), "--out", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"could not read {tmp_path / 'gone.pdb'}: no such file (listed in {listing}, line 1)" in err, err
    assert f"could not read {tmp_path / 'lost.pdb'}: no such file or directory" in err, err
    assert "no readable protein chains" in err and not (tmp_path / "none").exists()


def test_cli_refuses_an_ingested_dataset_given_with_other_inputs(
    records: list[ProteinRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given with other inputs, an ingested dataset was searched for structure files, named as a directory without
    any and left out: the tokenizer was calibrated on the other chains alone (exit 1), without the dataset's."""
    dataset = tmp_path / "held_out"
    write_dataset(records[:2], dataset)
    out = tmp_path / "cal"
    files = [str(TEST_DATA / f) for f in FILES[2:]]
    args = [*files, str(dataset), "--out", str(out), "--steps", "2", "--threads", "1", "--quiet"]
    code = main(["calibrate-tokenizer", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{dataset}: an ingested dataset is given alone (its records are the chains), not with other inputs" in err
    assert not out.exists()


def test_a_run_from_before_identical_sequence_clusters_is_calibrated_on_the_chains_it_held_out(tmp_path) -> None:
    """calibrate-tokenizer --run re-draws the chains a run held out from its saved config. Records without a cluster
    label now share a cluster when their sequences are identical, so for a run saved before that (no
    data.split.identical_sequences in its config) the re-draw gave other chains than the run held out: some it had
    trained on. It draws them as that run did, each unlabelled record its own cluster."""
    from openesm3.cli.calibrate_tokenizer import run_inputs  # noqa: PLC0415
    from openesm3.training.config import config_to_dict  # noqa: PLC0415
    from openesm3.training.pipeline import calibration_dataset  # noqa: PLC0415
    from openesm3.training.tokenizer.config import TokenizerTrainConfig  # noqa: PLC0415
    from tests.training_fixtures import synthetic_records  # noqa: PLC0415

    records = synthetic_records(30)
    for i, r in enumerate(records):
        object.__setattr__(r, "cluster", "")
        if i % 3:  # two copies of every third record: clusters of three identical chains
            for field in ("sequence", "atom37", "atom37_mask", "residue_index", "chain_index", "chain_ids"):
                object.__setattr__(r, field, getattr(records[i - i % 3], field))
    write_dataset(records, tmp_path / "ds")
    ds = ProteinDataset(tmp_path / "ds")

    def held(identical: bool, seed: int) -> list[str]:
        split = SplitConfig(method="cluster", calibration_fraction=0.3, seed=seed, identical_sequences=identical)
        found = calibration_dataset(ds, DataConfig(path=str(tmp_path / "ds"), split=split))
        return [e["name"] for e in found.entries] if found is not None else []

    seed = next(s for s in range(100) if held(False, s) and held(False, s) != held(True, s))
    run = tmp_path / "run"
    (run / "export" / "structure_encoder").mkdir(parents=True)
    config = config_to_dict(TokenizerTrainConfig())
    config["data"]["path"] = str(tmp_path / "ds")
    config["data"]["split"].update(method="cluster", calibration_fraction=0.3, seed=seed)
    del config["data"]["split"]["identical_sequences"]  # as the run wrote it
    (run / "trainer_state.json").write_text(json.dumps({"config": config}))
    assert [r.name for r in run_inputs(str(run))[1]] == held(False, seed)
    config["data"]["split"]["identical_sequences"] = True  # a run of this code: grouped, as it held them out
    (run / "trainer_state.json").write_text(json.dumps({"config": config}))
    assert [r.name for r in run_inputs(str(run))[1]] == held(True, seed)
