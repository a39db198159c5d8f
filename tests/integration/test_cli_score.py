"""``openesm3 score`` end to end with a tiny random trunk saved in our format: PLL tables, variant lists, a real
deep mutational scan (PABP_YEAST, Spearman against the measurements), per-item errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from openesm3.checkpoints.loading import load_model
from openesm3.cli.main import main
from openesm3.generation.encoding import encode_protein
from openesm3.generation.scoring import masked_marginal_scores, pseudo_log_likelihood
from openesm3.generation.variants import parse_variant
from openesm3.protein import Protein
from tests.conftest import TEST_DATA, shared_data
from tests.protein_testing import save_tiny_weights
from tests.task_testing import save_tiny_bundle

SEQ = "MNLTELKNTPVSELITLGENMGLENLARMRKQ"


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights"), seed=4)


@pytest.fixture(scope="module")
def model(weights: Path):  # noqa: ANN201
    return load_model(weights, "esm3")[0]


def _table(path: Path, delimiter: str = "\t") -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(), delimiter=delimiter))


def test_pll_of_every_record(weights: Path, model, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">one\n{SEQ}\n>two\nGGSSAK|MK_TA\n>bad\nMKXJ\n")
    out = tmp_path / "pll.tsv"
    assert main(["score", str(fasta), "-o", str(out), "--weights", str(weights), "--batch-size", "5"]) == 1
    assert "record 'bad': sequence position 4: invalid character 'J'" in capsys.readouterr().err
    rows = {r["id"]: r for r in _table(out)}
    assert set(rows) == {"one", "two"}
    expected = pseudo_log_likelihood(model, encode_protein(Protein(sequence=SEQ)))
    assert float(rows["one"]["pll"]) == pytest.approx(expected.total, rel=1e-5)
    assert int(rows["one"]["n_scored"]) == len(SEQ) and int(rows["two"]["n_scored"]) == 10
    assert float(rows["one"]["perplexity"]) == pytest.approx(math.exp(-expected.mean), rel=1e-5)
    assert main(["score", str(fasta), "--weights", str(weights), "--quiet"]) == 1  # table on stdout
    assert capsys.readouterr().out.startswith("id\tlength\tn_scored\tpll")


def test_variant_list_with_a_mismatch(weights: Path, model, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(f">wt\n{SEQ}\n")
    muts = tmp_path / "muts.txt"
    muts.write_text("# variants\nN2A\nN2A:L3G  # double\nA3G\nWT\nX\n")
    out = tmp_path / "v.csv"
    code = main(["score", str(fasta), "--mutations-file", str(muts), "-o", str(out), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 1
    assert "mutation A3G: the sequence has 'L' at position 3, not 'A'" in err
    assert "variant 'X'" in err and "3 of 5 variant(s) of 'wt' scored" in err
    rows = {r["mutant"]: r for r in _table(out, ",")}
    muts_bin = tmp_path / "muts.bin"
    muts_bin.write_bytes(b"\x00\xff N2A")
    assert main(["score", str(fasta), "--mutations-file", str(muts_bin), "--weights", str(weights)]) == 2
    assert "muts.bin: not a text file" in capsys.readouterr().err
    expected = masked_marginal_scores(model, encode_protein(Protein(sequence=SEQ)), [parse_variant("N2A:L3G")])
    assert float(rows["N2A:L3G"]["score"]) == pytest.approx(expected[0].score, rel=1e-5, abs=1e-6)
    assert rows["WT"]["score"] == "0.0" and rows["A3G"]["score"] == "" and "not 'A'" in rows["A3G"]["error"]
    out_json = tmp_path / "v.json"
    assert main(["score", str(fasta), "--mutations", "N12A,N92A", "--offset", "90", "-o", str(out_json),
                 "--weights", str(weights)]) == 1  # fmt: skip
    data = json.loads(out_json.read_text())
    assert data[0]["mutant"] == "N12A" and data[0]["score"] is None and "position 12" in data[0]["error"]
    assert data[1]["error"] == "" and isinstance(data[1]["score"], float)


def test_dms_scan_reports_spearman(weights: Path, model, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    # PABP_YEAST (Melamed 2013 / Fields lab): wild type from ProteinGym's reference table, numbering offset 0
    # (../shared/data/dms/SOURCE.txt). Random weights: the correlation is ~0; this checks the pipeline.
    dms = shared_data("dms", "deepsequence", "PABP_YEAST_Fields2013-singles.csv")
    table = shared_data("dms", "proteingym_reference", "DMS_substitutions.csv")
    wild_type = next(r["target_seq"] for r in csv.DictReader(table.open()) if r["DMS_id"] == "PABP_YEAST_Melamed_2013")
    fasta = tmp_path / "pabp.fasta"
    fasta.write_text(f">PABP_YEAST\n{wild_type}\n")
    out = tmp_path / "pabp.tsv"
    args = ["score", str(fasta), "--dms", str(dms), "--score-column", "log", "-o", str(out), "--weights", str(weights),
            "--batch-size", "16"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "1188 of 1188 variant(s) of 'PABP_YEAST' scored; Spearman rho = " in err
    assert "over 1188 variant(s) with a measured 'log'" in err
    rho = float(err.split("Spearman rho = ")[1].split()[0])
    assert -1.0 <= rho <= 1.0
    rows = _table(out)
    assert len(rows) == 1188 and rows[0]["mutant"] == "G126A"
    assert rows[0]["measured"] == "-0.490571226"  # as written in the scan, not rounded
    assert all(r["error"] == "" for r in rows)
    # Spot-check against the library.
    expected = masked_marginal_scores(model, encode_protein(Protein(sequence=wild_type)), [parse_variant("G126A")])
    assert float(rows[0]["score"]) == pytest.approx(expected[0].score, rel=1e-4, abs=1e-5)


def test_usage_errors(weights: Path, tmp_path: Path, capsys) -> None:
    fasta = tmp_path / "two.fasta"
    fasta.write_text(">a\nMKT\n>b\nGGS\n")
    assert main(["score", str(fasta), "--mutations", "M1A", "--weights", str(weights)]) == 2
    assert "exactly one wild-type protein" in capsys.readouterr().err
    dms = tmp_path / "d.csv"
    dms.write_text("variant,fitness\nM1A,0.5\n")
    one = tmp_path / "one.fasta"
    one.write_text(">a\nMKT\n")
    assert main(["score", str(one), "--dms", str(dms), "--weights", str(weights)]) == 2
    assert "no column 'mutant' (columns: variant, fitness); use --mutant-column" in capsys.readouterr().err
    assert main(["score", str(one), "--weights", str(tmp_path / "none")]) == 2
    assert "esm3_sm_open_v1.pth" in capsys.readouterr().err


def test_variant_options_without_variants_are_an_error_not_a_pll_table(weights: Path, tmp_path: Path, capsys) -> None:
    one = tmp_path / "one.fasta"
    one.write_text(">a\nMKTAYIAK\n")
    variants = tmp_path / "variants.txt"
    variants.write_text("# to do\n\n")
    out = tmp_path / "scores.csv"
    common = [str(one), "-o", str(out), "--weights", str(weights), "--quiet"]
    assert main(["score", *common, "--mutations-file", str(variants)]) == 2
    assert f"--mutations-file {variants}: no variants to score" in capsys.readouterr().err
    assert main(["score", *common, "--mutations", " , "]) == 2
    assert "--mutations: no variants to score" in capsys.readouterr().err
    assert not out.exists()
    # Comma-separated variants may carry spaces; the table names them without.
    assert main(["score", *common, "--mutations", "M1A, K2G"]) == 0
    assert [r["mutant"] for r in _table(out, ",")] == ["M1A", "K2G"]


def test_variant_errors_from_files_name_the_file_and_line(weights: Path, tmp_path: Path, capsys) -> None:
    # A scan of thousands of rows (one variant may be listed twice): the error says where the bad row is.
    one = tmp_path / "one.fasta"
    one.write_text(">a\nMKTAYIAK\n")
    muts = tmp_path / "muts.txt"
    muts.write_text("# header\nM1A\n\nA2G  # wrong wild type\n")
    common = [str(one), "--weights", str(weights), "--quiet"]
    assert main(["score", *common, "--mutations-file", str(muts)]) == 1
    err = capsys.readouterr().err
    assert f"error: {muts}:4: variant 'A2G': mutation A2G: the sequence has 'K' at position 2" in err
    dms = tmp_path / "scan.csv"
    dms.write_text('mutant,DMS_score\nM1A,0.5\n"K2G:T3",0.1\n\nM1A,0.5\nK9A,1\n')
    assert main(["score", *common, "--dms", str(dms)]) == 1
    err = capsys.readouterr().err
    assert f"error: {dms}:3: variant 'K2G:T3': mutation 'T3'" in err
    assert f"error: {dms}:6: variant 'K9A': mutation K9A: position 9 is outside the sequence" in err
    assert main(["score", *common, "--mutations", "A2G"]) == 2  # given on the command line: named by itself
    assert "error: variant 'A2G': mutation A2G" in capsys.readouterr().err


# ---- author numbering, wild-type marginals ----------------------------------------------------------------
ORC = TEST_DATA / "structures" / "1orc.pdb.gz"  # chain A numbered 3-61, insertion codes 56A-56E
ZIPPER = TEST_DATA / "structures" / "2ZTA.pdb.gz"  # chains A, B numbered 1-31


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trunk and structure encoder: a structure file as INPUT conditions on its coordinates."""
    return save_tiny_bundle(tmp_path_factory.mktemp("bundle"), seed=4, function=False)


def _scores(path: Path, delimiter: str = "\t") -> dict[str, str]:
    return {r["mutant"]: r["score"] for r in _table(path, delimiter)}


@pytest.mark.parametrize("method", ["masked-marginal", "wt-marginal"])
def test_variants_in_a_structure_files_own_numbering(bundle: Path, tmp_path: Path, capsys, method: str) -> None:  # noqa: ANN001
    # 1orc's residue 56A is sequence position 55 (numbering starts at 3; 56A-56E follow 56): a user's list written
    # in the file's numbering had to be renumbered by hand, which --offset cannot do past an insertion code.
    muts = tmp_path / "muts.txt"
    muts.write_text("d56ag\nK56EG:P57A\nQ3A\nWT\nD56FG\nA56AG\n")
    common = [str(ORC), "--weights", str(bundle), "--quiet", "--method", method]
    author, plain = tmp_path / "author.tsv", tmp_path / "plain.tsv"
    assert main(["score", *common, "--numbering", "author", "--mutations-file", str(muts), "-o", str(author)]) == 1
    err = capsys.readouterr().err
    assert f"error: {muts}:5: variant 'D56FG': mutation D56FG: residue 56F is not in chain A of {ORC}; chain A has " \
           "residues 3-61; insertion codes: 56A, 56B, 56C, 56D, 56E" in err  # fmt: skip
    assert f"error: {muts}:6: variant 'A56AG': mutation A56AG: {ORC} has 'D' at chain A residue 56A, not 'A'" in err
    assert main(["score", *common, "--mutations", "D55G", "K59G:P60A", "Q1A", "WT", "-o", str(plain)]) == 0
    scores, expected = _scores(author), _scores(plain)
    assert list(scores) == ["d56ag", "K56EG:P57A", "Q3A", "WT", "D56FG", "A56AG"]  # as the user wrote them
    assert [scores[k] for k in ("d56ag", "K56EG:P57A", "Q3A", "WT")] == list(expected.values())
    assert scores["D56FG"] == scores["A56AG"] == ""


def test_chains_whose_ids_hold_a_slash_or_colon_are_named_by_variant_chain(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # mmCIF chain ids may hold '/' or ':'; a mutation cannot name them ('/' ends the chain, ':' joins mutations). The
    # refusal of a mutation naming no chain suggested 'A/1/K3G', itself refused as a malformed mutation.
    import dataclasses  # noqa: PLC0415

    from openesm3.structure import load_structure  # noqa: PLC0415
    from openesm3.structure.complex import ProteinComplex  # noqa: PLC0415
    from openesm3.structure.io import write_structure  # noqa: PLC0415

    zipper = load_structure(ZIPPER)
    odd = tmp_path / "odd.cif"
    chains = tuple(dataclasses.replace(c, chain_id=n) for c, n in zip(zipper.chains, ("A/1", "B:2"), strict=True))
    write_structure(ProteinComplex(chains, "odd"), odd)
    common = [str(odd), "--weights", str(bundle), "--quiet", "--numbering", "author"]
    assert main(["score", *common, "--mutations", "K3G"]) == 2
    assert f"{odd} has chains A/1, B:2 and variant 'K3G' names none: give --variant-chain" in capsys.readouterr().err
    assert main(["score", *common, "--mutations", "A/1/K3G", "-o", str(tmp_path / "bad.csv")]) == 2  # none scored
    assert "mutation 'A/1/K3G': more than one '/'; a chain id holding '/' or ':'" in capsys.readouterr().err
    out = tmp_path / "b.csv"
    assert main(["score", *common, "--variant-chain", "B:2", "--mutations", "K3G", "M2A:K3G", "-o", str(out)]) == 0
    assert all(value != "" for value in _scores(out, ",").values())


def test_variants_of_a_complex_name_their_chain(bundle: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    common = [str(ZIPPER), "--weights", str(bundle), "--quiet", "--numbering", "author"]
    out, plain = tmp_path / "a.csv", tmp_path / "p.csv"
    assert main(["score", *common, "--mutations", "B/K3G", "A/K3G:B/M2A", "-o", str(out)]) == 0
    assert main(["score", *common, "--variant-chain", "B", "--mutations", "K3G", "A/K3G:M2A", "-o", str(plain)]) == 0
    assert list(_scores(out, ",").values()) == list(_scores(plain, ",").values())
    assert main(["score", *common, "--mutations", "B/K3G", "K3G"]) == 2  # refused before the model is loaded
    assert f"{ZIPPER} has chains A, B and variant 'K3G' names none: write the chain before a '/' (A/K3G), or give " \
           "--variant-chain for mutations naming none" in capsys.readouterr().err  # fmt: skip
    assert main(["score", *common, "--variant-chain", "C", "--mutations", "K3G"]) == 2
    assert f"{ZIPPER}: no chain 'C' (chains: A, B)" in capsys.readouterr().err
    # A later mutation naming no chain is refused up front too; a variant that does not parse is only reported.
    assert main(["score", *common, "--mutations", "B/K3G:M2A"]) == 2
    assert "variant 'B/K3G:M2A' names none: write the chain before a '/' (A/M2A)" in capsys.readouterr().err
    assert main(["score", *common, "--mutations", "B/K3G", "K3", "-o", str(tmp_path / "bad.csv")]) == 1
    assert "score: error: variant 'K3': mutation 'K3': expected wild-type letter" in capsys.readouterr().err
    assert list(_scores(tmp_path / "bad.csv", ",").values()) == [_scores(out, ",")["B/K3G"], ""]


def test_without_batch_size_the_default_is_used(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--batch-size is None when not given (so that wt-marginal can refuse it when given); the PLL and
    masked-marginal scores then batch by the default of every command."""
    import openesm3.generation.scoring as scoring  # noqa: PLC0415
    from openesm3.cli.common import DEFAULT_BATCH_SIZE  # noqa: PLC0415

    seen: list[tuple[str, int]] = []

    def spy(name: str, real: Any) -> Any:
        def scores(*args: Any, **kwargs: Any) -> Any:
            seen.append((name, kwargs["batch_size"]))
            return real(*args, **kwargs)

        return scores

    for name in ("pseudo_log_likelihood", "masked_marginal_scores"):
        monkeypatch.setattr(scoring, name, spy(name, getattr(scoring, name)))
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(f">wt\n{SEQ}\n")
    assert main(["score", str(fasta), "--weights", str(weights), "--quiet"]) == 0
    assert main(["score", str(fasta), "--mutations", "N2A", "--weights", str(weights), "--quiet"]) == 0
    capsys.readouterr()
    assert dict(seen) == {"pseudo_log_likelihood": DEFAULT_BATCH_SIZE, "masked_marginal_scores": DEFAULT_BATCH_SIZE}


def test_the_record_shows_no_batch_size_for_wt_marginal(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """wt-marginal batches nothing: its record showed the default batch size, filled in after the check that
    refuses --batch-size; the batched methods show the batch size they used."""
    from openesm3.cli.common import DEFAULT_BATCH_SIZE  # noqa: PLC0415

    fasta = tmp_path / "wt.fasta"
    fasta.write_text(f">wt\n{SEQ}\n")
    common = [str(fasta), "--weights", str(weights), "--quiet", "--mutations", "N2A"]
    batch_sizes = {}
    for method in ("wt-marginal", "masked-marginal"):
        record = tmp_path / f"{method}.json"
        assert main(["score", *common, "--method", method, "--record", str(record)]) == 0
        batch_sizes[method] = json.loads(record.read_text())["options"]["batch_size"]
    capsys.readouterr()
    assert batch_sizes == {"wt-marginal": None, "masked-marginal": DEFAULT_BATCH_SIZE}


def test_numbering_and_method_usage_errors(bundle: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(f">wt\n{SEQ}\n")
    common = ["--weights", str(bundle), "--quiet"]
    cases = [
        ([str(fasta), "--numbering", "author", "--mutations", "N2A"],
         f"--numbering author needs the residue numbers of a structure file (PDB / mmCIF); {fasta} is a FASTA file"),
        ([str(ORC), "--numbering", "author", "--offset", "2", "--mutations", "K56G"],
         "--offset shifts sequence numbering; with --numbering author the positions are the structure file's own"),
        ([str(ORC), "--variant-chain", "A", "--mutations", "K58G"], "--variant-chain names the chain of author-num"),
        ([str(fasta), "--method", "wt-marginal"], "--method: for variant scores only"),
        ([str(fasta), "--numbering", "sequence", "--offset", "3"], "--numbering, --offset: for variant scores only"),
        ([str(fasta), "--variant-chain", "A"], "--variant-chain: for variant scores only (--mutations, "),
        ([str(fasta), "--offset", "0"], "--offset: for variant scores only"),  # the default value, still refused
        ([str(fasta), "--mutations", "N2A", "--method", "wt-marginal", "--batch-size", "8"],  # the default value
         "--batch-size: --method wt-marginal reads every variant off one forward pass of the wild type, so there is "
         "nothing to batch: drop --batch-size"),  # it was silently ignored
        ([str(fasta), "--mutations", "N2AA"], "variant 'N2AA': mutation N2AA: names an insertion code (2A), which only "
         "author numbering reads (--numbering author"),
    ]  # fmt: skip
    for args, message in cases:
        assert main(["score", *args, *common]) in (1, 2), args
        assert message in capsys.readouterr().err, args


def test_wt_marginal_scan_of_a_dms(bundle: Path, model, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from openesm3.generation.scoring import wt_marginal_scores  # noqa: PLC0415

    fasta = tmp_path / "wt.fasta"
    fasta.write_text(f">wt\n{SEQ}\n")
    dms = tmp_path / "scan.csv"
    dms.write_text("mutant,DMS_score\nN2A,0.5\nN2A:L3G,0.1\nA3G,1\nWT,0\nT4K,-1\n")
    out = tmp_path / "wt.tsv"
    args = ["score", str(fasta), "--dms", str(dms), "--method", "wt-marginal", "-o", str(out), "--weights", str(bundle)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{dms}:4: variant 'A3G'" in err and "4 of 5 variant(s) of 'wt' scored; Spearman rho = " in err
    rows = _table(out)
    expected = wt_marginal_scores(model, encode_protein(Protein(sequence=SEQ)), [r["mutant"] for r in rows])
    for row, score in zip(rows, expected):
        assert (row["score"] == "" and score.score is None) or float(row["score"]) == pytest.approx(
            score.score, abs=1e-5
        )
    assert rows[0]["measured"] == "0.5" and rows[3]["score"] == "0.0"
