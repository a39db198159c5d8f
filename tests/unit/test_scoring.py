"""Variant parsing (sequence and author numbering), DMS tables, Spearman, and PLL / masked-marginal /
wild-type-marginal scores checked against a hand-rolled loop."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.generation.encoding import encode_protein
from openesm3.generation.protein_tensor import ProteinTensor, model_inputs, stack
from openesm3.generation.scoring import (
    masked_marginal_scores,
    pseudo_log_likelihood,
    scorable_positions,
    sequence_log_probs,
    wt_marginal_scores,
)
from openesm3.generation.variants import (
    AuthorNumbering,
    Mutation,
    parse_variant,
    rankdata,
    read_dms_csv,
    resolve_variant,
    spearman,
)
from openesm3.protein import Protein
from tests.conftest import TEST_DATA, shared_data
from tests.protein_testing import tiny_esm3

SEQ = "MNLTELKNTPVSELITLGENMGLENLARMRKQDIIFAILKQHAKSGEDIFGDGVLEILQ"  # 1a62 residues 1-60


# ---- variants ----------------------------------------------------------------------------------------------
def test_parse_variants() -> None:
    v = parse_variant(" a42g:L50P ")
    assert v.mutations == (Mutation("A", 42, "G"), Mutation("L", 50, "P")) and str(v) == "a42g:L50P"
    assert parse_variant("WT").mutations == () and parse_variant("_wt").mutations == ()
    for bad in ("A42", "42G", "AG", "A42G:", "A4.2G"):
        with pytest.raises(InputError, match="variant"):
            parse_variant(bad)


def test_a_stop_codon_is_refused_saying_why() -> None:
    # Nonsense variants (A42*) are common in scans; the generic message said only "expected ... mutant letter".
    for text in ("A42*", "W7A:a42*"):
        with pytest.raises(InputError, match=r"mutation '[aA]42\*': a stop codon \('\*'\) has no amino-acid token"):
            parse_variant(text)
    with pytest.raises(InputError, match=r"mutation 'A42\*\*': expected wild-type letter"):
        parse_variant("A42**")


def test_resolve_variant_checks_the_wild_type_and_names_the_mutation() -> None:
    (m,) = resolve_variant(parse_variant("N2A"), SEQ)
    assert (m.index, m.wild_type_id, m.mutant_id) == (1, C.SEQUENCE_VOCAB.index("N"), C.SEQUENCE_VOCAB.index("A"))
    (m,) = resolve_variant(parse_variant("N102A"), SEQ, offset=100)
    assert m.index == 1
    assert [m.index for m in resolve_variant(parse_variant("M1A:L3G"), SEQ)] == [0, 2]
    with pytest.raises(InputError, match=r"variant 'M1A:K3G': mutation K3G: the sequence has 'L' at position 3"):
        resolve_variant(parse_variant("M1A:K3G"), SEQ)
    with pytest.raises(InputError, match=r"mutation A3G: the sequence has 'L' at position 3, not 'A'"):
        resolve_variant(parse_variant("A3G"), SEQ)
    with pytest.raises(InputError, match=r"mutation M60A: position 60 is outside the sequence \(positions 1\.\.59"):
        resolve_variant(parse_variant("M60A"), SEQ)
    with pytest.raises(InputError, match=r"position 1 is mutated twice"):
        resolve_variant(parse_variant("M1A:M1G"), SEQ)
    with pytest.raises(InputError, match=r"'J' is not an amino-acid letter"):
        resolve_variant(parse_variant("M1J"), SEQ)


@pytest.mark.parametrize("mutant", ["X", "B", "Z", "x"])
def test_ambiguous_mutant_letters_are_refused(mutant: str) -> None:
    # X (also a stop in some scans), B and Z name no single residue: a score for them would be silently meaningless.
    with pytest.raises(InputError, match=rf"mutation M1{mutant.upper()}: mutant '{mutant.upper()}' is an ambiguity"):
        resolve_variant(parse_variant(f"M1{mutant}"), SEQ)
    # A wild type may still be one (the sequence holds it), and U / O are residues.
    (m,) = resolve_variant(parse_variant("X2A"), "MXL")
    assert m.index == 1
    assert [r.index for r in resolve_variant(parse_variant("M1U:L3O"), "MXL")] == [0, 2]


def test_spearman_and_ranks() -> None:
    from scipy import stats  # noqa: PLC0415 - independent reference (installed with the test extras)

    assert rankdata(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [2.0, 3.5, 3.5, 1.0]
    rho, n = spearman([1, 2, 3, 4], [10, 20, 30, 40])
    assert rho == pytest.approx(1.0) and n == 4
    assert spearman([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=300).round(1)  # many ties
    y = x + rng.normal(size=300)
    y[::17] = np.nan
    rho, n = spearman(x, y)
    keep = np.isfinite(y)
    assert n == keep.sum()
    assert rho == pytest.approx(stats.spearmanr(x[keep], y[keep]).statistic, abs=1e-12)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])[0]) and math.isnan(spearman([1], [2])[0])


def test_read_dms_csv(tmp_path: Path) -> None:
    pabp = shared_data("dms", "deepsequence", "PABP_YEAST_Fields2013-singles.csv")
    rows, column = read_dms_csv(pabp, score_column="log")
    assert column == "log" and len(rows) == 1188 and rows[0].mutant == "G126A"
    assert rows[0].score == pytest.approx(-0.490571226) and rows[0].line == 2
    rows, column = read_dms_csv(pabp)
    assert column is None and math.isnan(rows[0].score)  # no DMS_score column: no measurements
    with pytest.raises(InputError, match=r"no column 'fitness' \(columns: mutant, linear, log\)"):
        read_dms_csv(pabp, score_column="fitness")
    # A byte-order mark and an unnamed index column, as in the ESM repository's copy of the BLAT scan.
    bom = shared_data("dms", "esm_BLAT_ECOLX_Ranganathan2015_with_DeepSequence_preds.csv")
    rows, _ = read_dms_csv(bom, score_column="2500")
    assert rows[0].mutant == "H24C" and len(rows) == 4996
    tsv = tmp_path / "x.tsv"
    tsv.write_text("variant\tDMS_score\nM1A\t0.5\nM1G\t\n")
    rows, column = read_dms_csv(tsv, mutant_column="variant")
    assert column == "DMS_score" and rows[0].score == 0.5 and math.isnan(rows[1].score)
    packed = tmp_path / "x.csv.gz"  # gzip-compressed, as scans are often shipped
    packed.write_bytes(gzip.compress(b"mutant,DMS_score\nM1A,0.5\n"))
    assert read_dms_csv(packed)[0][0].score == 0.5
    with pytest.raises(InputError, match="x.xlsx: not a text file"):
        (tmp_path / "x.xlsx").write_bytes(b"PK\x03\x04\xff\xfe")
        read_dms_csv(tmp_path / "x.xlsx")


def test_read_dms_csv_gzip_compressed_tsv(tmp_path: Path) -> None:
    # The delimiter is named by the suffix before .gz: scan.tsv.gz was read as a CSV ("no column 'mutant'").
    for name in ("scan.tsv.gz", "scan.TAB.gz"):
        packed = tmp_path / name
        packed.write_bytes(gzip.compress(b"mutant\tDMS_score\nM1A\t0.5\nK2G,K3A\t-1\n"))
        rows, column = read_dms_csv(packed)
        assert column == "DMS_score" and [(r.mutant, r.score) for r in rows] == [("M1A", 0.5), ("K2G,K3A", -1.0)]
    packed = tmp_path / "scan.csv.gz"
    packed.write_bytes(gzip.compress(b"mutant,DMS_score\nM1A,0.5\n"))
    assert read_dms_csv(packed)[0][0].score == 0.5


def test_read_dms_csv_refuses_a_row_running_over_lines(tmp_path: Path) -> None:
    # An unclosed quote made the csv reader swallow every later row into one field: 1 row read of 3, no error.
    for body in ('M1A,"0.5\nK2G,0.3\nT3A,0.1\n', 'M1A,0.5,"x\nK2G,0.3,y\nT3A,0.1,z\n'):
        scan = tmp_path / "scan.csv"
        scan.write_text("mutant,DMS_score" + (",note" if body.count(",") > 3 else "") + "\n" + body)
        with pytest.raises(InputError, match=r"scan.csv:2: a quoted field runs on to line 4 \(a quote not closed\?\)"):
            read_dms_csv(scan)
    # Line numbers count blank lines and CRLF endings as lines.
    scan.write_bytes(b"mutant,DMS_score\r\nM1A,0.5\r\n\r\nK2G,0.3\r\n")
    assert [(r.mutant, r.line) for r in read_dms_csv(scan)[0]] == [("M1A", 2), ("K2G", 4)]


def test_read_dms_csv_refuses_an_ambiguous_column(tmp_path: Path) -> None:
    # Two columns of one name: the first was used without a word, whichever the user meant.
    scan = tmp_path / "scan.csv"
    scan.write_text("mutant,DMS_score,mutant\nM1A,0.5,K2G\n")
    with pytest.raises(InputError, match=r"scan.csv: the header names column 'mutant' more than once \(columns 1"):
        read_dms_csv(scan)
    scan.write_text("mutant,DMS_score,DMS_score\nM1A,0.5,0.7\n")
    with pytest.raises(InputError, match=r"column 'DMS_score' more than once \(columns 2 and 3\)"):
        read_dms_csv(scan)
    scan.write_text("mutant,fitness,fitness,DMS_score\nM1A,1,2,0.5\n")  # duplicates not used are fine
    assert read_dms_csv(scan)[0][0].score == 0.5


def test_read_dms_csv_refuses_a_score_that_is_not_a_number(tmp_path: Path) -> None:
    # A typo, a Unicode minus or a decimal comma became NaN and left the Spearman without a word.
    scan = tmp_path / "scan.csv"
    for bad in ("\u22120.5", '"0,5"', "0.5x"):
        scan.write_text(f"mutant,fitness\nM1A,0.1\nK2G,{bad}\n")
        with pytest.raises(InputError, match=r"scan.csv:3: column 'fitness': '.+' is not a number \(an empty cell"):
            read_dms_csv(scan, score_column="fitness")
    # Missing-value markers (pandas' defaults) mean not measured.
    scan.write_text("mutant,fitness\nM1A,\nK2G,NA\nT3A,n/a\nA4G, NaN \nY5A,null\nI6A,-1.5e-1\n")
    scores = [r.score for r in read_dms_csv(scan, score_column="fitness")[0]]
    assert all(math.isnan(x) for x in scores[:5]) and scores[5] == -0.15


# ---- scores against the model, computed by hand -----------------------------------------------------------
@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_esm3(seed=1)


def _hand_log_probs(model: torch.nn.Module, tensor: ProteinTensor, masked: list[int]) -> torch.Tensor:
    """One plain forward of one masked copy: log_softmax(ESM3(...).sequence_logits)[0]."""
    seq = tensor.sequence.clone()
    seq[masked] = C.SEQUENCE_MASK
    copy = ProteinTensor(sequence=seq, coordinates=tensor.coordinates)
    with torch.no_grad():
        batch = stack([copy])
        has = bool(torch.isfinite(batch.coordinates).any())
        out = model(**model_inputs(batch, condition_on_coordinates=has))
    return torch.log_softmax(out.sequence_logits[0].double(), -1)


def test_pll_matches_a_hand_rolled_loop(model: torch.nn.Module) -> None:
    tensor = encode_protein(Protein(sequence=SEQ[:10] + "_" + SEQ[11:20] + "|" + SEQ[20:28]))
    result = pseudo_log_likelihood(model, tensor, batch_size=7)
    expected = np.full(tensor.n_residues, np.nan)
    for i in range(1, tensor.n_residues + 1):
        token = int(tensor.sequence[i])
        if token in (C.SEQUENCE_MASK, C.SEQUENCE_CHAINBREAK):
            continue
        expected[i - 1] = float(_hand_log_probs(model, tensor, [i])[i, token])
    np.testing.assert_allclose(result.per_position, expected, atol=1e-5)
    assert np.isnan(result.per_position[[10, 20]]).all() and result.n_scored == 27
    assert result.total == pytest.approx(np.nansum(expected), abs=1e-4)
    assert result.mean == pytest.approx(result.total / result.n_scored)
    assert len(scorable_positions(tensor)) == result.n_scored


def test_pll_batching_and_determinism(model: torch.nn.Module) -> None:
    tensor = encode_protein(Protein(sequence=SEQ[:24]))
    calls: list[int] = []
    one = pseudo_log_likelihood(model, tensor, batch_size=1, progress=calls.append)
    many = pseudo_log_likelihood(model, tensor, batch_size=16)
    again = pseudo_log_likelihood(model, tensor, batch_size=16)
    np.testing.assert_allclose(one.per_position, many.per_position, atol=1e-5)
    np.testing.assert_array_equal(many.per_position, again.per_position)
    assert sum(calls) == 24 and len(calls) == 24


def test_fast_sequence_head_path_equals_forward(model: torch.nn.Module) -> None:
    tensors = [encode_protein(Protein(sequence=SEQ)), encode_protein(Protein(sequence=SEQ[:20]))]
    fast = sequence_log_probs(model, tensors)
    with torch.no_grad():
        plain = torch.log_softmax(
            model(**model_inputs(stack(tensors), condition_on_coordinates=False)).sequence_logits, -1
        )
    torch.testing.assert_close(fast, plain.float(), rtol=0, atol=0)


def test_bf16_model_scores_from_fp32_logits(model: torch.nn.Module) -> None:
    """A bf16 model's logits were bf16 (3 significant digits): half of BLAT's 4,997 scores were ties. The trunk
    still runs in bf16; its last state goes through the final norm and sequence head in fp32."""
    import copy  # noqa: PLC0415

    half = copy.deepcopy(model).to(torch.bfloat16)
    tensors = [encode_protein(Protein(sequence=SEQ))]
    fast = sequence_log_probs(half, tensors)
    inputs = model_inputs(stack(tensors), condition_on_coordinates=False)
    with torch.no_grad():
        hidden = half.embed(layer=-1, **inputs).per_residue
        head, norm = copy.deepcopy(half.sequence_head).double(), copy.deepcopy(half.norm).double()  # bf16 weights
        exact = torch.log_softmax(head(norm(hidden.double())), -1)
        rounded = torch.log_softmax(half(**inputs).sequence_logits.float(), -1)
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast.double(), exact, rtol=0, atol=1e-5)  # fp32 head of the same bf16 state
    assert (rounded.double() - exact).abs().max() > 1e-3  # what bf16 logits would have given
    assert fast.unique().numel() > rounded.unique().numel()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"offset": True}, r"offset must be an int, got True"),
        ({"offset": 2.0}, r"offset must be an int, got 2\.0"),
        ({"variants": ["N2A", 42]}, r"variants\[1\]: expected a Variant or its text .*got 42"),
        ({"variants": [("N", 2, "A")]}, r"variants\[0\]: expected a Variant"),
        (
            {"numbering": "author"},
            r"numbering must be an AuthorNumbering \(AuthorNumbering\.from_protein\), got 'author'",
        ),
    ],
)
def test_masked_marginal_arguments_are_checked(model: torch.nn.Module, kwargs: dict, message: str) -> None:
    """``offset=True`` scored with offset 1 and a non-text variant failed with an AttributeError inside parsing."""
    args = {"variants": ["N2A"], **kwargs}
    with pytest.raises(InputError, match=message):
        masked_marginal_scores(model, encode_protein(Protein(sequence=SEQ)), **args)


def test_masked_marginals_match_a_hand_computation(model: torch.nn.Module) -> None:
    tensor = encode_protein(Protein(sequence=SEQ))
    texts = ["N2A", "N2W", "N2A:L3G", "L3G:N2A", "WT", "A3G", "T4K"]
    variants = [parse_variant(t) for t in texts if t != "A3G"] + [parse_variant("A3G")]
    scores = masked_marginal_scores(model, tensor, variants, batch_size=2)

    def hand(muts: list[tuple[int, str, str]]) -> float:
        lp = _hand_log_probs(model, tensor, [i for i, _, _ in muts])
        voc = C.SEQUENCE_VOCAB
        return sum(float(lp[i, voc.index(mt)] - lp[i, voc.index(wt)]) for i, wt, mt in muts)

    by_text = {str(s.variant): s for s in scores}
    assert by_text["N2A"].score == pytest.approx(hand([(2, "N", "A")]), abs=1e-5)
    assert by_text["N2W"].score == pytest.approx(hand([(2, "N", "W")]), abs=1e-5)
    double = hand([(2, "N", "A"), (3, "L", "G")])
    assert by_text["N2A:L3G"].score == pytest.approx(double, abs=1e-5)
    assert by_text["L3G:N2A"].score == pytest.approx(double, abs=1e-5)
    assert by_text["T4K"].score == pytest.approx(hand([(4, "T", "K")]), abs=1e-5)
    assert by_text["WT"].score == 0.0
    assert by_text["A3G"].score is None and "mutation A3G" in str(by_text["A3G"].error)
    assert all(s.error is None for t, s in by_text.items() if t != "A3G")
    one_by_one = masked_marginal_scores(model, tensor, variants, batch_size=1)
    for a, b in zip(scores, one_by_one):
        assert (a.score is None and b.score is None) or a.score == pytest.approx(b.score, abs=1e-5)


class CountingPasses(torch.nn.Module):
    """``model``'s forward path, recording the number of rows of each pass in ``calls``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.calls: list[int] = []

    def forward(self, **kwargs: torch.Tensor):  # noqa: ANN202
        self.calls.append(kwargs["sequence_tokens"].shape[0])
        return self.inner(**kwargs)


def test_variants_sharing_positions_share_a_pass(model: torch.nn.Module) -> None:
    tensor = encode_protein(Protein(sequence=SEQ))
    variants = [parse_variant(f"N2{aa}") for aa in "ACDEFG"] + [parse_variant(t) for t in ("L3G", "N2A:L3G", "L3G:N2A")]
    counting = CountingPasses(model)
    masked_marginal_scores(counting, tensor, variants, batch_size=8)
    assert counting.calls == [3]  # masked sets {2}, {3}, {2, 3}: a multi-mutant's, whatever its mutations' order


def test_coordinates_condition_the_scores(model: torch.nn.Module) -> None:
    protein = Protein.from_structure(TEST_DATA / "structures" / "1a62.pdb.gz")
    with_coords = encode_protein(protein)
    without = encode_protein(protein.replace(coordinates=None))
    variants = [parse_variant("N2A"), parse_variant("E5K")]
    a = masked_marginal_scores(model, with_coords, variants)
    b = masked_marginal_scores(model, without, variants)
    assert all(x.score is not None for x in a)
    assert max(abs(x.score - y.score) for x, y in zip(a, b)) > 1e-4  # geometric attention sees the structure


def test_variants_given_as_text_and_a_lone_protein_list(model: torch.nn.Module) -> None:
    wild_type = encode_protein(Protein(sequence="MKTAYIAK"))
    parsed = masked_marginal_scores(model, wild_type, [parse_variant("K2A:T3G")])[0]
    text = masked_marginal_scores(model, wild_type, ["K2A:T3G", "K2", "WT"])
    assert text[0].score == parsed.score and text[0].variant == parsed.variant
    assert text[1].score is None and "K2" in str(text[1].error)
    assert text[2].score == 0.0
    with pytest.raises(InputError, match="one ProteinTensor"):
        pseudo_log_likelihood(model, [wild_type])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="one ProteinTensor"):
        masked_marginal_scores(model, [wild_type], ["K2A"])  # type: ignore[arg-type]


def test_read_dms_csv_skips_rows_of_empty_fields(tmp_path: Path) -> None:
    # Spreadsheets export trailing rows of bare separators; read as a row, the empty mutant would be the wild type.
    scan = tmp_path / "scan.csv"
    scan.write_text("mutant,DMS_score\nM1A,0.5\n,\n , \nK2G,0.3\n,\n")
    assert [(r.mutant, r.line) for r in read_dms_csv(scan)[0]] == [("M1A", 2), ("K2G", 5)]


# ---- author numbering --------------------------------------------------------------------------------------
# 1orc: chain A numbered 3-61 with insertion codes 56A-56E (KDGEVK at 56, 56A..56E); 2ZTA: chains A, B, each 1-31.
ORC = TEST_DATA / "structures" / "1orc.pdb.gz"
ZIPPER = TEST_DATA / "structures" / "2ZTA.pdb.gz"


def test_parse_author_numbered_mutations() -> None:
    # The last letter is the mutant; a letter between the number and it is the insertion code; a chain ends in '/'.
    assert parse_variant("D56aG").mutations == (Mutation("D", 56, "G", "A"),)
    assert parse_variant("L/H52G:L/Y52AW").mutations == (
        Mutation("H", 52, "G", "", "L"),
        Mutation("Y", 52, "W", "A", "L"),
    )
    assert str(parse_variant("L/H52AG").mutations[0]) == "L/H52AG" and parse_variant("K-3A").mutations[0].position == -3
    for bad in ("H52ABG", "/H52G", "A:/H52G", "L/", "L/H52"):
        with pytest.raises(InputError, match="variant"):
            parse_variant(bad)
    with pytest.raises(InputError, match=r"a stop codon"):
        parse_variant("L/H52A*")


def test_sequence_numbering_refuses_chains_and_insertion_codes() -> None:
    # 'H52AG' was "expected wild-type letter, position, mutant letter": now it says which numbering reads it.
    with pytest.raises(InputError, match=r"mutation N2AA: names an insertion code \(2A\), which only author numbering"):
        resolve_variant(parse_variant("N2AA"), SEQ)
    with pytest.raises(InputError, match=r"mutation B/N2A: names a chain \(B/\)"):
        resolve_variant(parse_variant("B/N2A"), SEQ)


def test_author_numbering_finds_residues_and_names_what_is_missing() -> None:
    protein = Protein.from_structure(ORC)
    numbering = AuthorNumbering.from_protein(protein, source="1orc.pdb")
    sequence = protein.sequence
    index = {f"{n}{c}": i for i, (n, c) in enumerate(zip(protein.residue_index, protein.insertion_code))}
    for text, residue in [("Q3A", "3"), ("K56G", "56"), ("D56AG", "56A"), ("K56EG", "56E"), ("P57A", "57")]:
        (m,) = resolve_variant(parse_variant(text), sequence, numbering=numbering)
        assert m.index == index[residue] and sequence[m.index] == text[0]
    assert index["56A"] == 54 and index["57"] == 59  # the insertion codes shift every later residue
    missing = (
        r"mutation D56FG: residue 56F is not in chain A of 1orc\.pdb; chain A has residues 3-61; insertion codes: "
    )
    with pytest.raises(InputError, match=rf"variant 'D56FG': {missing}56A, 56B, 56C, 56D, 56E$"):
        resolve_variant(parse_variant("D56FG"), sequence, numbering=numbering)
    with pytest.raises(InputError, match=r"mutation A56AG: 1orc\.pdb has 'D' at chain A residue 56A, not 'A'"):
        resolve_variant(parse_variant("A56AG"), sequence, numbering=numbering)
    with pytest.raises(InputError, match=r"mutation K56EA: chain A residue 56E is mutated twice"):
        resolve_variant(parse_variant("K56EG:K56EA"), sequence, numbering=numbering)
    with pytest.raises(InputError, match=r"1orc\.pdb has no chain 'B' \(chains: A\)"):
        resolve_variant(parse_variant("B/K56G"), sequence, numbering=numbering)
    assert resolve_variant(parse_variant("A/K56G"), sequence, numbering=numbering)[0].index == index["56"]
    with pytest.raises(InputError, match="author numbering takes no offset"):
        resolve_variant(parse_variant("K56G"), sequence, offset=2, numbering=numbering)


def test_author_numbering_of_gaps_and_complexes() -> None:
    gapped = Protein(sequence="MKTAYIAK|GGS", residue_index=np.array([3, 4, 5, 9, 10, 11, 20, 21, -1, 1, 2, 3]),
                     chain_ids=("H", "L"))  # fmt: skip
    numbering = AuthorNumbering.from_protein(gapped, source="ab.pdb")
    assert numbering.describe("H") == "chain H has residues 3-21 with gaps at 6-8, 12-19"
    with pytest.raises(InputError, match=r"ab\.pdb has chains H, L: name the chain \(H/K4G\) or give a default chain"):
        resolve_variant(parse_variant("K4G"), gapped.sequence, numbering=numbering)
    assert [m.index for m in resolve_variant(parse_variant("H/K4G:L/G2A"), gapped.sequence, numbering=numbering)] == [
        1,
        10,
    ]
    default_l = AuthorNumbering.from_protein(gapped, chain="L")
    assert resolve_variant(parse_variant("G2A:H/T5G"), gapped.sequence, numbering=default_l)[0].index == 10
    with pytest.raises(
        InputError, match=r"residue 7 is not in chain H of ab\.pdb; chain H has residues 3-21 with gaps"
    ):
        resolve_variant(parse_variant("H/A7G"), gapped.sequence, numbering=numbering)
    with pytest.raises(InputError, match=r"no chain 'C' \(chains: H, L\)"):
        AuthorNumbering.from_protein(gapped, chain="C")
    with pytest.raises(InputError, match=r"x: author numbering needs the residue numbers of a structure file"):
        AuthorNumbering.from_protein(Protein(sequence="MKT", name="x"))
    negative = Protein(sequence="MKTAYI", residue_index=np.array([-3, -2, -1, 0, 4, 5]))
    assert AuthorNumbering.from_protein(negative).describe("A") == "chain A has residues -3 to 5 with a gap at 1-3"
    assert (
        resolve_variant(parse_variant("K-2G"), "MKTAYI", numbering=AuthorNumbering.from_protein(negative))[0].index == 1
    )
    twice = Protein(sequence="MKT", residue_index=np.array([1, 2, 2]))
    with pytest.raises(InputError, match=r"residue 2 appears more than once in chain A"):
        resolve_variant(parse_variant("K2G"), "MKT", numbering=AuthorNumbering.from_protein(twice))


def test_author_numbered_scores_equal_sequence_numbered_ones(model: torch.nn.Module) -> None:
    protein = Protein.from_structure(ZIPPER)  # chains A, B (1-31 each), with coordinates
    tensor = encode_protein(protein)
    numbering = AuthorNumbering.from_protein(protein)
    by_author = ["A/K3G", "B/K3G", "B/K3G:A/M2A", "WT", "B/Q5A"]
    by_sequence = ["K3G", "K35G", "K35G:M2A", "WT", "Q37A"]  # B's residue n is string position 32 + n
    for method in (masked_marginal_scores, wt_marginal_scores):
        author = method(model, tensor, by_author, numbering=numbering)
        plain = method(model, tensor, by_sequence)
        assert [s.score for s in author[:4]] == [s.score for s in plain[:4]] and author[1].score != author[0].score
        assert author[4].score is None and "has 'L' at chain B residue 5, not 'Q'" in str(author[4].error)
        assert [str(s.variant) for s in author] == by_author  # kept as written
        with pytest.raises(InputError, match="author numbering takes no offset"):
            method(model, tensor, by_author, numbering=numbering, offset=1)
        with pytest.raises(InputError, match="whose sequence is not the wild type's"):
            method(model, encode_protein(Protein(sequence=SEQ)), by_author, numbering=numbering)


# ---- wild-type marginals -----------------------------------------------------------------------------------
def test_wt_marginals_match_a_hand_computation(model: torch.nn.Module) -> None:
    tensor = encode_protein(Protein(sequence=SEQ))
    texts = ["N2A", "N2W", "N2A:L3G", "WT", "A3G", "T4K", "N2"]
    scores = wt_marginal_scores(model, tensor, texts)
    lp = _hand_log_probs(model, tensor, [])  # one plain forward of the unmasked wild type

    def hand(muts: list[tuple[int, str, str]]) -> float:
        voc = C.SEQUENCE_VOCAB
        return sum(float(lp[i, voc.index(mt)] - lp[i, voc.index(wt)]) for i, wt, mt in muts)

    by_text = {str(s.variant): s for s in scores}
    assert by_text["N2A"].score == pytest.approx(hand([(2, "N", "A")]), abs=1e-5)
    assert by_text["N2W"].score == pytest.approx(hand([(2, "N", "W")]), abs=1e-5)
    assert by_text["T4K"].score == pytest.approx(hand([(4, "T", "K")]), abs=1e-5)
    # A multi-mutant is the sum of its single mutants' wild-type marginals (one pass: nothing is masked).
    assert by_text["N2A:L3G"].score == pytest.approx(hand([(2, "N", "A"), (3, "L", "G")]), abs=1e-5)
    assert by_text["WT"].score == 0.0
    assert by_text["A3G"].score is None and "the sequence has 'L' at position 3" in str(by_text["A3G"].error)
    assert by_text["N2"].score is None and "N2" in str(by_text["N2"].error)
    masked = masked_marginal_scores(model, tensor, ["N2A"])[0].score
    assert abs(masked - by_text["N2A"].score) > 1e-4  # a different score: the wild type is seen, not a mask


def test_wt_marginals_take_one_pass_for_a_whole_scan(model: torch.nn.Module) -> None:
    counting = CountingPasses(model)
    tensor = encode_protein(Protein(sequence=SEQ))
    scan = [f"{wt}{i + 1}{aa}" for i, wt in enumerate(SEQ) for aa in "ACDEFGHIKLMNPQRSTVWY" if aa != wt]
    done: list[int] = []
    batches: list[list[int]] = []
    scores = wt_marginal_scores(counting, tensor, ["WT", *scan, "N2A:L3G"], progress=done.append,
                                on_batch=lambda pairs: batches.append([n for n, _ in pairs]))  # fmt: skip
    assert counting.calls == [1] and len(scores) == len(scan) + 2 and all(s.score is not None for s in scores)
    assert sum(done) == len(scores) and batches == [[0], list(range(1, len(scores)))]  # the wild type needs no pass
    counting.calls.clear()
    assert wt_marginal_scores(counting, tensor, ["WT", "A3G"])[0].score == 0.0  # nothing to pass
    assert counting.calls == []


def test_author_numbering_reads_chain_ids_of_several_characters_and_keeps_their_case() -> None:
    # mmCIF chain ids may be longer than one character, and 'a' and 'A' are two chains of one file.
    protein = Protein(sequence="MKT|GGS|AYI", residue_index=np.array([1, 2, 3, -1, 1, 2, 3, -1, 1, 2, 3]),
                      chain_ids=("A", "a", "AB1"))  # fmt: skip
    numbering = AuthorNumbering.from_protein(protein, source="big.cif")
    resolved = resolve_variant(parse_variant("a/G1A:AB1/Y2G:A/K2G"), protein.sequence, numbering=numbering)
    assert [m.index for m in resolved] == [4, 9, 1]
    with pytest.raises(InputError, match=r"big\.cif has no chain 'b' \(chains: A, a, AB1\)"):
        resolve_variant(parse_variant("b/G1A"), protein.sequence, numbering=numbering)


def test_a_chain_id_holding_a_slash_or_colon_is_refused_in_a_mutation_and_can_be_the_default() -> None:
    """mmCIF chain ids may hold '/' or ':', which the mutation syntax uses ('L/H52G', 'A42G:L50P'): naming such a
    chain was refused as a malformed mutation ("expected wild-type letter, position, mutant letter"), and the error
    for a mutation naming no chain suggested writing 'A/1/K2G', which is refused too. No spelling resolves to another
    chain: the refusals now say what to do (make it the default chain), which works."""
    protein = Protein(sequence="MKT|GGS|AYI", residue_index=np.array([1, 2, 3, -1, 1, 2, 3, -1, 1, 2, 3]),
                      chain_ids=("A/1", "B:2", "A"))  # fmt: skip
    numbering = AuthorNumbering.from_protein(protein, source="odd.cif")
    for text in ("A/1/K2G", "G1A:A/1/K2G"):
        with pytest.raises(InputError, match=r"more than one '/'; a chain id holding '/' or ':' cannot be written"):
            parse_variant(text)
    with pytest.raises(InputError, match=r"if 'B:2' is a chain id, a chain id holding '/' or ':' cannot be written"):
        parse_variant("B:2/G1A")
    with pytest.raises(
        InputError, match=r"odd\.cif has chains A/1, B:2, A: name the chain \(A/K2G\) or give a default"
    ):
        resolve_variant(parse_variant("K2G"), protein.sequence, numbering=numbering)
    only_odd = Protein(sequence="MKT|GGS", residue_index=np.array([1, 2, 3, -1, 1, 2, 3]), chain_ids=("A/1", "B:2"))
    with pytest.raises(InputError, match=r"has chains A/1, B:2: give a default chain \(--variant-chain\)$"):
        resolve_variant(parse_variant("K2G"), only_odd.sequence, numbering=AuthorNumbering.from_protein(only_odd))
    assert [m.index for m in resolve_variant(parse_variant("A/Y2G"), protein.sequence, numbering=numbering)] == [9]
    for chain, text, index in (("A/1", "K2G", 1), ("B:2", "S3A", 6)):
        default = AuthorNumbering.from_protein(protein, source="odd.cif", chain=chain)
        assert [m.index for m in resolve_variant(parse_variant(text), protein.sequence, numbering=default)] == [index]


def test_author_numbering_matches_insertion_codes_whatever_their_case() -> None:
    # A file's lowercase insertion code and the user's uppercase one (or the reverse) name the same residue.
    protein = Protein(
        sequence="MKTA", residue_index=np.array([51, 52, 52, 53]), insertion_code=np.array(["", "", "a", ""])
    )
    numbering = AuthorNumbering.from_protein(protein, source="ab.pdb")
    for text in ("T52AG", "T52aG"):
        assert resolve_variant(parse_variant(text), "MKTA", numbering=numbering)[0].index == 2
    assert "insertion codes: 52A" in numbering.describe("A")


def test_describing_a_chain_numbered_out_of_order_or_only_with_insertion_codes() -> None:
    # What a missing residue's error offers to name: file order kept for a chain not numbered upwards, a
    # one-residue gap written as one number, a chain whose every residue has an insertion code.
    protein = Protein(sequence="MKTAY|GS|KTA", residue_index=np.array([5, 6, 7, 1, 2, -1, 1, 1, -1, 1, 2, 4]),
                      insertion_code=np.array(["", "", "", "", "", "", "A", "B", "", "", "", ""]),
                      chain_ids=("A", "B", "C"))  # fmt: skip
    numbering = AuthorNumbering.from_protein(protein, chain="A")
    assert numbering.describe("A") == "chain A has residues 5-7, 1-2 (in file order)"
    assert numbering.describe("B") == "chain B has no residue without an insertion code; insertion codes: 1A, 1B"
    assert numbering.describe("C") == "chain C has residues 1-4 with a gap at 3"


def test_resolve_variant_refuses_the_numbering_of_another_protein() -> None:
    # resolve_variant (public) with the numbering of a longer protein failed with a bare IndexError.
    numbering = AuthorNumbering.from_protein(Protein(sequence="MKTAYI", residue_index=np.arange(1, 7)), source="x.pdb")
    for sequence in ("MK", "MKTAYG"):
        with pytest.raises(InputError, match=r"numbering: built from x\.pdb, whose sequence is not the one given"):
            resolve_variant(parse_variant("Y5G"), sequence, numbering=numbering)
    assert resolve_variant(parse_variant("Y5G"), "MKTAYI", numbering=numbering)[0].index == 4


def test_a_malformed_mutation_gets_the_chain_id_hint_only_before_a_chain_named_mutation() -> None:
    """The hint about chain ids holding ':' is for 'A:1/K2A' (split at its ':'): a malformed mutation followed by one
    naming no chain, or by nothing, is refused with the plain message alone, and one '/' is no chain id holding '/'."""
    expected = "expected wild-type letter, position, mutant letter (e.g. A42G)"
    for text, part in (("L50:A42G", "L50"), ("A42G:L50", "L50"), ("H52", "H52"), ("B/L50", "B/L50")):
        with pytest.raises(InputError) as caught:
            parse_variant(text)
        assert str(caught.value) == f"variant {text!r}: mutation {part!r}: {expected}"
