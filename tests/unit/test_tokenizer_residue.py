"""Residue-annotation tokenizer (spec §3.4) and the routing of annotations to the two annotation tracks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation as FA
from openesm3.errors import InputError, TokenizationError, VocabularyError
from openesm3.tokenizers import (
    FunctionTokenizer,
    FunctionVocabulary,
    ResidueAnnotationTokenizer,
    ResidueAnnotationVocabulary,
    encode_annotation_tracks,
)
from openesm3.tokenizers.vocabulary import InterProEntry

CSV = """label,label_clean,count
Zinc binding,zinc binding,600
zinc-binding,zinc binding,500
Active site,Active site,900
ATP binding,ATP binding,1100
Heme,Heme,1100
disulfide,Disulfide bond,300
"""


@pytest.fixture
def tok(tmp_path: Path) -> ResidueAnnotationTokenizer:
    (tmp_path / C.RESIDUE_ANNOTATION_VOCAB_FILE).write_text(CSV)
    return ResidueAnnotationTokenizer.from_directory(tmp_path)


def test_labels_sorted_by_summed_count_ties_alphabetical(tok: ResidueAnnotationTokenizer) -> None:
    # zinc binding: 600 + 500 = 1100, tied with ATP binding and Heme -> alphabetical among the three
    assert tok.vocabulary.labels == ("ATP binding", "Heme", "zinc binding", "Active site", "Disulfide bond")
    assert tok.vocabulary.label_index["ATP binding"] == 4
    assert tok.vocabulary.vocab_size == 9
    assert [tok.vocabulary.token_string(i) for i in range(5)] == ["<pad>", "<motif>", "<unk>", "<none>", "ATP binding"]


def test_encode_rows_none_pad_and_raw_label_lookup(tok: ResidueAnnotationTokenizer) -> None:
    assert not tok.encode([], 3).any()
    out = tok.encode([FA("Heme", 1, 2), FA("Zinc binding", 2, 3), FA("zinc binding", 3, 3)], 4)
    assert out.shape == (6, 16)
    assert not out[0].any() and not out[-1].any()
    assert out[1].tolist() == [5] + [0] * 15
    assert sorted(out[2][:2].tolist()) == [5, 6] and not out[2][2:].any()
    assert out[3].tolist() == [6] + [0] * 15  # raw and clean spellings of one label give one id
    assert out[4].tolist() == [C.RESIDUE_NONE] + [0] * 15


def test_reference_lookup_reproduces_the_label_clean_quirk(tok: ResidueAnnotationTokenizer) -> None:
    # "Disulfide bond" is a label_clean that never appears as a raw label: the reference gives <unk>
    anns = [FA("Disulfide bond", 1, 1), FA("Heme", 2, 2)]
    assert tok.encode(anns, 2, lookup="reference")[1:3, 0].tolist() == [C.RESIDUE_UNK, 5]
    assert tok.encode(anns, 2)[1:3, 0].tolist() == [8, 5]
    assert not tok.accepts("disulfide", "reference") and tok.accepts("disulfide")
    with pytest.raises(TokenizationError, match="residue annotation 0: unknown label 'nope'"):
        tok.encode([FA("nope", 1, 1)], 2)


def test_at_most_16_labels_per_residue(tmp_path: Path) -> None:
    rows = "".join(f"site {i},site {i},{2000 - i}\n" for i in range(30))
    (tmp_path / C.RESIDUE_ANNOTATION_VOCAB_FILE).write_text("label,label_clean,count\n" + rows)
    tok = ResidueAnnotationTokenizer.from_directory(tmp_path)
    out = tok.encode([FA(f"site {i}", 1, 1) for i in range(30)], 1)
    assert (out[1] >= 4).all() and len(set(out[1].tolist())) == 16


def test_decode_merges_and_drops_short_ranges(tok: ResidueAnnotationTokenizer) -> None:
    tokens = np.zeros((22, 16), dtype=np.int64)
    tokens[1:6, 0] = 4  # ATP binding 1..5
    tokens[9:12, 1] = 4  # 9..11: merges with 1..5 (gap of 3 residues)
    tokens[14:18, 0] = 5  # Heme 14..17: 4 residues, dropped
    tokens[2:4, 3] = C.RESIDUE_NONE
    tokens[3, 4] = C.RESIDUE_UNK
    assert tok.decode(tokens) == [FA("ATP binding", 1, 11)]
    assert tok.decode(tokens, min_length=None, gap_merge=None) == [
        FA("ATP binding", 1, 5), FA("ATP binding", 9, 11), FA("Heme", 14, 17),
    ]  # fmt: skip
    tokens[18, 0] = 5  # Heme 14..18: 5 residues, exactly the minimum length, kept
    assert tok.decode(tokens) == [FA("ATP binding", 1, 11), FA("Heme", 14, 18)]


def test_malformed_csv_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / C.RESIDUE_ANNOTATION_VOCAB_FILE
    path.write_text("label,clean,count\na,a,1\n")
    with pytest.raises(VocabularyError, match=r"line 1: expected the header label,label_clean,count"):
        ResidueAnnotationVocabulary.from_csv(path)
    path.write_text("label,label_clean,count\na,a,1\nb,b,many\n")
    with pytest.raises(VocabularyError, match=r"line 3: count 'many' is not an integer"):
        ResidueAnnotationVocabulary.from_csv(path)


def test_annotations_are_routed_to_both_tracks(tok: ResidueAnnotationTokenizer) -> None:
    rng = np.random.default_rng(0)
    keywords = ("heme", "zinc")
    entries = (InterProEntry("IPR000001", "Domain", "Kringle"),)
    vocab = FunctionVocabulary(
        keywords, np.array([5.0, 6.0]), entries, {"IPR000001": ("zinc",)},
        rng.standard_normal((8, 8, 2)).astype(np.float32),
    )  # fmt: skip
    func = FunctionTokenizer(vocab)
    anns = [FA("IPR000001", 1, 2), FA("Heme", 2, 3), FA("heme", 3, 3)]
    f, r = encode_annotation_tracks(anns, 4, func, tok)
    assert f.shape == (6, 8) and r.shape == (6, 16)
    assert (f[1:4] >= 4).all() and (f[4] == C.FUNCTION_NONE).all()
    assert r[1, 0] == C.RESIDUE_NONE and r[2, 0] == r[3, 0] == tok.vocabulary.label_index["Heme"]
    f2, r2 = encode_annotation_tracks(anns[:1], 4, func)  # no residue vocabulary: residue track all <pad>
    np.testing.assert_array_equal(f2[:3], f[:3])
    assert not r2.any()
    with pytest.raises(TokenizationError, match="unknown label 'Heme'.*no residue-annotation vocabulary"):
        encode_annotation_tracks(anns, 4, func)
    with pytest.raises(TokenizationError, match="annotation 0: unknown label 'kringle'"):
        encode_annotation_tracks([FA("kringle", 1, 1)], 4, func, tok)


def test_token_string_outside_the_vocabulary_is_named(tok: ResidueAnnotationTokenizer) -> None:
    """token_string(-1) used to return '<none>' (negative index) and a too-large id raised a bare IndexError."""
    size = tok.vocabulary.vocab_size
    assert tok.vocabulary.token_string(3) == "<none>"
    for bad in (-1, size):
        with pytest.raises(InputError, match=f"residue annotation id {bad} is outside 0..{size - 1}"):
            tok.vocabulary.token_string(bad)
