"""Function tokenizer (spec §3.3) on a small vocabulary, checked against a dense computation of the spec formula,
and the decoding post-processing (spec §8)."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation as FA
from openesm3.errors import InputError, TokenizationError, VocabularyError
from openesm3.tokenizers import FunctionPredictions, FunctionTokenizer, FunctionVocabulary, decode_function_tokens
from openesm3.tokenizers.function_decoding import annotations_from_predictions, merge_annotations, merge_ranges
from openesm3.tokenizers.vocabulary import InterProEntry

N_KEYWORDS = 40


@pytest.fixture(scope="module")
def vocab() -> FunctionVocabulary:
    rng = np.random.default_rng(7)
    keywords = tuple(f"kw{i:02d}" for i in range(N_KEYWORDS))
    entries = tuple(InterProEntry(f"IPR{i:06d}", "Domain", f"Entry {i}") for i in range(1, 9))
    interpro_keywords: dict[str, tuple[str, ...]] = {}
    for e in entries[:-1]:
        interpro_keywords[e.id] = tuple(keywords[int(j)] for j in rng.integers(0, N_KEYWORDS, size=rng.integers(1, 9)))
    interpro_keywords[entries[-1].id] = ()  # an entry without keywords, like IPR006563
    idf = rng.uniform(4.5, 10.8, size=N_KEYWORDS)
    planes = rng.standard_normal((8, 8, N_KEYWORDS)).astype(np.float32)
    return FunctionVocabulary(keywords, idf, entries, interpro_keywords, planes)


@pytest.fixture(scope="module")
def tok(vocab: FunctionVocabulary) -> FunctionTokenizer:
    return FunctionTokenizer(vocab)


def _dense_tfidf(vocab: FunctionVocabulary, terms: list[str]) -> np.ndarray:
    v = np.zeros(vocab.n_keywords)
    for t in set(terms):
        i = vocab.keyword_index[t]
        v[i] = (1 + math.log(terms.count(t))) * vocab.idf[i]
    n = np.linalg.norm(v)
    return v / n if n else v


def _dense_reference(vocab: FunctionVocabulary, anns: list[FA], length: int) -> np.ndarray:
    """Spec §3.3 written the slow, obvious way: one dense vector per residue."""
    out = np.zeros((length + 2, 8), dtype=np.int64)
    if not anns:
        return out
    for r in range(1, length + 1):
        labels = {a.label for a in anns if a.start <= r <= a.end}
        if not labels:
            out[r] = 3
            continue
        words = sorted(lab for lab in labels if lab in vocab.keyword_index)
        v = _dense_tfidf(vocab, words)
        for lab in labels:
            ipr = next((i for i in vocab.interpro_index if i in lab), None)
            if ipr is not None:
                v = np.maximum(v, _dense_tfidf(vocab, list(vocab.interpro_keywords[ipr])))
        if not v.any():
            out[r] = 2
            continue
        assert vocab.hyperplanes is not None
        bits = (np.einsum("dbk,k->db", vocab.hyperplanes.astype(np.float64), v) >= 0).astype(np.int64)
        out[r] = 4 + (bits * (2 ** np.arange(8))).sum(axis=1)
    return out


def test_tfidf_is_sublinear_and_l2_normalised(tok: FunctionTokenizer, vocab: FunctionVocabulary) -> None:
    idx, val = tok.tfidf(["kw03", "kw03", "kw03", "kw10", "not a keyword"])
    raw = np.array([(1 + math.log(3)) * vocab.idf[3], vocab.idf[10]])
    assert idx.tolist() == [3, 10]
    np.testing.assert_allclose(val, raw / np.linalg.norm(raw), rtol=1e-15)
    assert tok.tfidf([])[0].size == 0


def test_lsh_bit_order_least_significant_first(tok: FunctionTokenizer, vocab: FunctionVocabulary) -> None:
    idx, val = np.array([5]), np.array([1.0])
    assert vocab.hyperplanes is not None
    bits = vocab.hyperplanes[:, :, 5] >= 0  # [depth, bit]
    expected = [4 + sum(int(bits[d, b]) << b for b in range(8)) for d in range(8)]
    assert tok.lsh_tokens((idx, val)).tolist() == expected
    assert tok.lsh_tokens((np.array([5]), np.array([0.0]))).tolist() == [C.FUNCTION_UNK] * 8


def test_lsh_bit_is_set_on_the_hyperplane_itself(vocab: FunctionVocabulary) -> None:
    # bit = [h . v >= 0]: a projection of exactly 0 sets the bit (here h[0, 3] is 0 along keyword 5).
    assert vocab.hyperplanes is not None
    planes = vocab.hyperplanes.copy()
    planes[0, 3, 5] = 0.0
    tok = FunctionTokenizer(dataclasses.replace(vocab, hyperplanes=planes))
    bits = planes[:, :, 5] >= 0
    assert bits[0, 3]
    expected = [4 + sum(int(bits[d, b]) << b for b in range(8)) for d in range(8)]
    assert tok.lsh_tokens((np.array([5]), np.array([1.0]))).tolist() == expected


def test_encode_matches_dense_spec_computation(tok: FunctionTokenizer, vocab: FunctionVocabulary) -> None:
    rng = random.Random(0)
    labels = list(vocab.keywords) + list(vocab.interpro_ids) + ["Entry 3 (IPR000003)"]
    for _ in range(60):
        length = rng.randint(1, 50)
        anns = []
        for _ in range(rng.randint(0, 7)):
            start = rng.randint(1, length)
            anns.append(FA(rng.choice(labels), start, rng.randint(start, length)))
        np.testing.assert_array_equal(tok.encode(anns, length), _dense_reference(vocab, anns, length), str(anns))


def test_special_rows(tok: FunctionTokenizer) -> None:
    assert not tok.encode([], 4).any()  # no annotation at all: <pad> everywhere
    out = tok.encode([FA("kw01", 2, 3), FA("IPR000008", 4, 4)], 5)
    assert out.shape == (7, 8)
    assert (out[0] == 0).all() and (out[-1] == 0).all()  # BOS / EOS
    assert (out[1] == C.FUNCTION_NONE).all() and (out[5] == C.FUNCTION_NONE).all()
    assert (out[2:4] >= C.FUNCTION_LSH_OFFSET).all()
    assert (out[4] == C.FUNCTION_UNK).all()  # an entry without keywords: zero vector
    assert tok.encode([FA("kw01", 1, 1)], 1, add_special_tokens=False).shape == (1, 8)


def test_label_routing_and_errors(tok: FunctionTokenizer) -> None:
    a = tok.encode([FA("IPR000002", 1, 3)], 3)
    np.testing.assert_array_equal(tok.encode([FA("Zinc thing (IPR000002)", 1, 3)], 3), a)
    with pytest.raises(TokenizationError, match="annotation 1: unknown label 'IPR999999': IPR999999 is not one of"):
        tok.encode([FA("kw01", 1, 1), FA("IPR999999", 1, 2)], 3)
    with pytest.raises(TokenizationError, match="did you mean 'kw01'"):
        tok.encode([FA("KW01", 1, 1)], 3)
    # the first IPR match decides, as in the reference: an unknown first id is unknown
    with pytest.raises(TokenizationError, match="IPR999999"):
        tok.encode([FA("IPR999999 or IPR000002", 1, 1)], 3)
    with pytest.raises(InputError, match=r"annotation 0 .*range 2\.\.5 is not within 1\.\.3"):
        tok.encode([FA("kw01", 2, 5)], 3)
    with pytest.raises(InputError, match="range 0..1"):
        tok.encode([FA("kw01", 0, 1)], 3)


def test_each_distinct_label_set_is_hashed_once(tok: FunctionTokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long protein: the work scales with the number of distinct label sets, not with the length."""
    calls = []
    original = tok.lsh_tokens
    monkeypatch.setattr(tok, "lsh_tokens", lambda v: calls.append(1) or original(v))
    anns = [FA("IPR000001", 1, 5000), FA("kw02", 100, 2000), FA("IPR000004", 1500, 4000), FA("kw05", 4500, 4600)]
    out = tok.encode(anns, 6000)
    # label sets along the protein: {1}, {1,kw02}, {1,kw02,4}, {1,4}, {1}, {1,kw05}, {1}, {} -> 5 distinct
    assert len(calls) == 5
    assert len({tuple(r) for r in out[1:-1].tolist()}) == 6  # five label sets + <none>
    np.testing.assert_array_equal(out[1:-1:97], _dense_reference(tok.vocabulary, anns, 6000)[1:-1:97])


def test_tensor_output_and_missing_hyperplanes(vocab: FunctionVocabulary) -> None:
    out = FunctionTokenizer(vocab).encode([FA("kw01", 1, 1)], 2, as_tensor=True)
    assert tuple(out.shape) == (4, 8) and str(out.dtype) == "torch.int64"
    no_planes = FunctionVocabulary(vocab.keywords, vocab.idf, vocab.entries, vocab.interpro_keywords, None)
    with pytest.raises(VocabularyError, match="hyperplanes"):
        FunctionTokenizer(no_planes)


# --------------------------------------------------------------------------------------------------------------
# decoding post-processing (spec §8)
# --------------------------------------------------------------------------------------------------------------


def test_merge_ranges_gap_rule() -> None:
    assert merge_ranges([(9, 13), (1, 5)]) == [(1, 13)]  # 5 + 1 + 3 >= 9
    assert merge_ranges([(1, 5), (10, 13)]) == [(1, 5), (10, 13)]  # 5 + 1 + 3 < 10
    assert merge_ranges([(1, 5), (7, 8)], gap_merge=None) == [(1, 5), (7, 8)]
    assert merge_ranges([(1, 5), (6, 8), (2, 3)], gap_merge=None) == [(1, 8)]
    merged = merge_annotations([FA("b", 10, 10), FA("a", 1, 1), FA("b", 1, 2), FA("a", 3, 3)])
    assert merged == [FA("b", 1, 2), FA("b", 10, 10), FA("a", 1, 3)]  # labels in order of first appearance


class _Fixed:
    def __init__(self, interpro: np.ndarray, keywords: np.ndarray) -> None:
        self.out = FunctionPredictions(interpro, keywords)
        self.seen: list[np.ndarray] = []

    def predict(self, tokens: np.ndarray) -> FunctionPredictions:
        self.seen.append(tokens)
        return self.out


def test_decode_function_tokens_thresholds_positions_and_names(vocab: FunctionVocabulary) -> None:
    length = 30
    tokens = np.full((length + 2, 8), 100)
    tokens[0] = tokens[-1] = 0
    tokens[15, 3] = C.FUNCTION_NONE  # not decoded
    rows = np.flatnonzero(~np.isin(tokens, (0, 2, 3)).any(axis=1))
    assert rows.tolist() == [i for i in range(1, length + 1) if i != 15]
    interpro = np.zeros((rows.size, vocab.n_interpro))
    keywords = np.zeros((rows.size, vocab.n_keywords))
    pos = {p: i for i, p in enumerate(rows.tolist())}
    for p in range(10, 21):  # residue 15 is undecodable, the gap of 1 merges
        if p in pos:
            interpro[pos[p], 2] = 0.1  # exactly at the InterPro threshold: kept
            keywords[pos[p], 4] = 0.49  # below the keyword threshold: dropped
    for p in range(1, 5):
        keywords[pos[p], 6] = 0.9  # 4 residues: too short
    for p in range(25, 31):
        keywords[pos[p], 6] = 0.9
    fixed = _Fixed(interpro, keywords)
    out = decode_function_tokens(tokens, fixed, vocab)
    np.testing.assert_array_equal(fixed.seen[0], tokens[rows])
    assert out == [FA("kw06", 25, 30), FA("Entry 3 (IPR000003)", 10, 20)]
    raw = annotations_from_predictions(rows, fixed.out, vocab, name_interpro=False, min_length=None)
    assert raw == [FA("kw06", 1, 4), FA("kw06", 25, 30), FA("IPR000003", 10, 20)]
    with pytest.raises(InputError, match="interpro probabilities have shape"):
        annotations_from_predictions(rows[:3], fixed.out, vocab)


def test_a_label_naming_a_known_interpro_id_is_not_also_a_keyword() -> None:
    """The official tokenizer routes a label to InterPro if it names a known id, *else* to the keywords. A custom
    vocabulary whose keyword list also holds such a label used to get both vectors (element-wise max)."""
    rng = np.random.default_rng(3)
    keywords = ("alpha", "beta", "IPR000001")
    entries = (InterProEntry("IPR000001", "Domain", "Pair"),)
    planes = rng.standard_normal((8, 8, 3)).astype(np.float32)
    vocab = FunctionVocabulary(keywords, np.array([1.0, 2.0, 9.0]), entries, {"IPR000001": ("alpha", "beta")}, planes)
    tok = FunctionTokenizer(vocab)
    as_interpro = tok.lsh_tokens(tok.residue_vector([], ["IPR000001"]))
    assert not np.array_equal(as_interpro, tok.lsh_tokens(tok.residue_vector(["IPR000001"], ["IPR000001"])))
    for label in ("IPR000001", "Pair (IPR000001)"):
        np.testing.assert_array_equal(tok.encode([FA(label, 1, 2)], 2)[1:3], [as_interpro, as_interpro])


def test_decoded_labels_of_a_custom_vocabulary_go_back_in_as_prompts() -> None:
    """The decoder labels an entry "{name} ({id})". With a built vocabulary's non-IPR term ids (MY:0002) such a
    label used to be an unknown label, so predict-function's output could not be given back as a prompt."""
    rng = np.random.default_rng(5)
    entries = (InterProEntry("IPR000001", "Domain", "Kringle"), InterProEntry("MY:0002", "Family", "Zinc finger, C2H2"))
    planes = rng.standard_normal((8, 8, 3)).astype(np.float32)
    vocab = FunctionVocabulary(("zinc", "finger", "kringle"), np.ones(3), entries,
                               {"IPR000001": ("kringle",), "MY:0002": ("zinc", "finger")}, planes)  # fmt: skip
    tok = FunctionTokenizer(vocab)
    predictions = FunctionPredictions(interpro=np.ones((6, 2)), keywords=np.zeros((6, 3)))
    decoded = annotations_from_predictions(np.arange(1, 7), predictions, vocab)
    assert decoded == [FA("Kringle (IPR000001)", 1, 6), FA("Zinc finger, C2H2 (MY:0002)", 1, 6)]
    for annotation, term in zip(decoded, ("IPR000001", "MY:0002")):
        assert tok.interpro_id(annotation.label) == term
        np.testing.assert_array_equal(tok.encode([annotation], 6), tok.encode([FA(term, 1, 6)], 6))
    for label in ("Zinc finger (MY:0003)", "Zinc finger (MY:0002) domain", "MY:0002)"):
        assert tok.interpro_id(label) is None


def test_annotation_positions_may_be_numpy_integers(tok: FunctionTokenizer) -> None:
    """Positions computed with numpy (np.int64) used to be refused ("start must be an int, got int64"); they are
    integers, stored as plain ints. Floats and bools are still refused."""
    ann = FA("kw01", np.int64(2), np.int32(3))
    assert (ann.start, ann.end) == (2, 3) and type(ann.start) is int and type(ann.end) is int
    np.testing.assert_array_equal(tok.encode([ann], 4), tok.encode([FA("kw01", 2, 3)], 4))
    with pytest.raises(InputError, match="start must be an int, got float"):
        tok.encode([FA("kw01", 2.0, 3)], 4)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="end must be an int, got bool"):
        tok.encode([FA("kw01", 1, True)], 4)
