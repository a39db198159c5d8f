"""Sequence, structure, SS8 and SASA tokenizers and the track-length check (spec §1-3.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openesm3 import constants as C
from openesm3.errors import InputError, TokenizationError
from openesm3.tokenizers import (
    SASATokenizer,
    SequenceTokenizer,
    SS8Tokenizer,
    StructureTokenizer,
    apply_sequence_specials,
    check_track_lengths,
    dssp_to_ss8,
)
from openesm3.tokenizers.tracks import as_int_array

# --------------------------------------------------------------------------------------------------------------
# sequence
# --------------------------------------------------------------------------------------------------------------


def test_sequence_vocabulary_ids_from_the_spec_table() -> None:
    tok = SequenceTokenizer()
    assert tok.encode("LAGVSERTIDPKQNFYMHWCXBUZO.-|_", add_special_tokens=False).tolist() == list(range(4, 33))
    assert tok.encode("MK_T|A").tolist() == [0, 20, 15, 32, 11, 31, 5, 2]  # spec §1 example
    assert tok.encode("").tolist() == [0, 2]


def test_sequence_input_is_case_insensitive_but_reference_mode_is_not() -> None:
    tok = SequenceTokenizer()
    assert tok.encode("mkt").tolist() == [0, 20, 15, 11, 2]
    assert tok.encode_reference("mkt").tolist() == [0, 3, 3, 3, 2]  # measured reference behaviour
    assert tok.encode_reference("M<mask>K_").tolist() == [0, 20, 32, 15, 32, 2]
    assert tok.encode_reference("<MASK>").tolist() == [0, 3, 20, 5, 8, 15, 3, 2]


@pytest.mark.parametrize(
    ("text", "position", "char"),
    [("MK T", 3, "' '"), ("MKé", 3, "'é'"), ("ßMK", 1, "'ß'"), ("M<mask>", 2, "'<'"), ("MKT\n", 4, "'\\\\n'")],
)
def test_sequence_invalid_character_names_its_position(text: str, position: int, char: str) -> None:
    with pytest.raises(TokenizationError, match=rf"position {position}: invalid character {char}"):
        SequenceTokenizer().encode(text)


def test_sequence_decode_inverts_encode_and_rejects_non_residues() -> None:
    tok = SequenceTokenizer()
    for text in ("MKT_A|GX", "", "_" * 5):
        assert tok.decode(tok.encode(text)) == text.upper()
    assert tok.decode(tok.encode("mkt")) == "MKT"
    with pytest.raises(TokenizationError, match="<unk>.*index 2"):
        tok.decode([0, 20, 3, 2])
    with pytest.raises(TokenizationError, match="start with <cls>"):
        tok.decode([20, 15, 2])
    with pytest.raises(InputError, match="outside 0..32"):
        tok.decode([0, 40, 2])
    assert tok.decode_reference([0, 3, 1, 32, 4, 31, 5, 2]) == "<unk><pad>_L|A"


def test_sequence_tensor_output() -> None:
    out = SequenceTokenizer().encode("MK", as_tensor=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64 and out.tolist() == [0, 20, 15, 2]
    assert SequenceTokenizer().decode(out) == "MK"


# --------------------------------------------------------------------------------------------------------------
# structure tokens
# --------------------------------------------------------------------------------------------------------------


def test_structure_framing_and_decode() -> None:
    tok = StructureTokenizer()
    ids = tok.encode([5, -1, 4095, C.STRUCTURE_CHAINBREAK])
    assert ids.tolist() == [4098, 5, 4096, 4095, 4100, 4097]
    assert tok.decode(ids).tolist() == [5, -1, 4095, -1]
    with pytest.raises(TokenizationError, match="residue 2"):
        tok.encode([1, 5000])
    with pytest.raises(TokenizationError, match="BOS/EOS/PAD"):
        tok.decode([4098, 1, 4099, 4097])


def test_structure_specials_are_overwritten_from_the_sequence_in_order() -> None:
    seq = np.array([[0, 20, 32, 31, 15, 2, 1]])
    struct = np.array([[7, -1, 9, 11, -1, 12, 13]])
    expected = [[4098, 4096, 9, 4100, 4096, 4097, 4099]]
    assert apply_sequence_specials(struct, seq).tolist() == expected
    assert apply_sequence_specials(torch.from_numpy(struct), torch.from_numpy(seq)).tolist() == expected
    with pytest.raises(TokenizationError, match="same shape"):
        apply_sequence_specials(struct[:, :3], seq)


# --------------------------------------------------------------------------------------------------------------
# SS8
# --------------------------------------------------------------------------------------------------------------


def test_ss8_ids_masks_and_inverse() -> None:
    tok = SS8Tokenizer()
    assert tok.encode("GHITEBSC_").tolist() == [0, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0]
    assert tok.encode("hhe").tolist() == [0, 4, 4, 7, 0]
    assert tok.decode(tok.encode("HHH__EEC")) == "HHH__EEC"
    with pytest.raises(TokenizationError, match="<motif> at index 2"):
        tok.decode([0, 4, 1, 0])


@pytest.mark.parametrize(("text", "pos"), [("HHPE", 3), ("H-E", 2), ("HH E", 3), ("X", 1), ("HHé", 3)])
def test_ss8_letter_outside_alphabet_is_an_error_naming_the_position(text: str, pos: int) -> None:
    with pytest.raises(TokenizationError, match=rf"position {pos}: invalid SS8 letter"):
        SS8Tokenizer().encode(text)


def test_dssp_coil_aliases_become_c() -> None:
    assert dssp_to_ss8("HH P-E _") == "HHCCCEC_"
    assert SS8Tokenizer().encode(dssp_to_ss8(" P-")).tolist() == [0, 10, 10, 10, 0]


# --------------------------------------------------------------------------------------------------------------
# SASA
# --------------------------------------------------------------------------------------------------------------


def test_sasa_bin_edges_are_closed_on_the_right() -> None:
    tok = SASATokenizer()
    values = [0.0, 0.8, 0.81, 151.4, 151.41, 200.0, float("inf")]
    assert tok.encode(values)[1:-1].tolist() == [3, 3, 4, 17, 18, 18, 18]
    edges = list(C.SASA_BOUNDARIES)
    assert tok.encode(edges)[1:-1].tolist() == list(range(3, 18))
    assert tok.encode([b + 1e-3 for b in edges])[1:-1].tolist() == list(range(4, 19))
    # float32 comparison, like the reference: float32(0.8) stays in the bin closed at 0.8
    assert tok.encode(np.array([0.8], dtype=np.float32))[1].item() == 3


def test_sasa_none_and_nan_are_masked_negative_is_an_error() -> None:
    tok = SASATokenizer()
    assert tok.encode([None, float("nan"), 5.0, -0.0]).tolist() == [0, 0, 0, 5, 3, 0]
    with pytest.raises(TokenizationError, match="residue 2 is negative"):
        tok.encode([1.0, -0.5])
    with pytest.raises(TokenizationError, match=r"residue 1 is negative \(-inf Å²\)"):  # not np.float64(-inf)
        tok.encode(np.array([-np.inf]))
    with pytest.raises(TokenizationError, match="residue 2: expected a number"):
        tok.encode([1.0, "12"])  # type: ignore[list-item]


def test_sasa_decodes_to_bin_midpoints() -> None:
    tok = SASATokenizer()
    mids = tok.decode(np.arange(C.SASA_VOCAB_SIZE), has_special_tokens=False)
    assert np.isnan(mids[:3]).all()
    np.testing.assert_allclose(mids[3:6], [0.4, 2.4, 6.8])
    assert mids[-1] == pytest.approx(227.1)
    # every value lands in the bin whose midpoint it decodes to
    values = np.array([0.1, 3.0, 50.0, 140.0, 500.0])
    assert tok.encode(tok.decode(tok.encode(values))).tolist() == tok.encode(values).tolist()
    assert tok.decode_list([0, 0, 3, 0]) == [None, pytest.approx(0.4)]


# --------------------------------------------------------------------------------------------------------------
# track lengths
# --------------------------------------------------------------------------------------------------------------


def test_check_track_lengths_names_the_disagreeing_tracks() -> None:
    assert check_track_lengths(sequence="MKT", secondary_structure="HHE", sasa=[1.0, 2.0, None], structure=None) == 3
    assert check_track_lengths(coordinates=np.zeros((4, 37, 3)), function=torch.zeros(4, 8)) == 4
    with pytest.raises(InputError, match="sequence has 3 residues, sasa has 4 residues"):
        check_track_lengths(sequence="MKT", sasa=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(InputError, match="no track"):
        check_track_lengths(sequence=None)


@pytest.mark.parametrize("value", [3.0, None, 7])
def test_sasa_that_is_not_a_list_is_named(value: object) -> None:
    """A single number (or None) instead of one value per residue used to raise a bare TypeError (no len())."""
    with pytest.raises(TokenizationError, match="SASA must be one value per residue"):
        SASATokenizer().encode(value)  # type: ignore[arg-type]


def test_sequence_reference_mode_refuses_non_strings() -> None:
    """encode_reference(None) used to raise AttributeError ('NoneType' object has no attribute 'replace')."""
    with pytest.raises(TokenizationError, match="sequence must be a str, got NoneType"):
        SequenceTokenizer().encode_reference(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("tokens", [[0], []])
def test_ss8_and_sasa_token_rows_shorter_than_bos_eos_are_refused(tokens: list[int]) -> None:
    # One id cannot hold both BOS and EOS: decoding it as an empty protein would hide a truncated row.
    with pytest.raises(TokenizationError, match="SASA tokens must include the BOS and EOS"):
        SASATokenizer().decode(tokens)
    with pytest.raises(TokenizationError, match="secondary structure tokens must include the BOS and EOS"):
        SS8Tokenizer().decode(tokens)
    assert SASATokenizer().decode([0, 0]).size == 0 and SS8Tokenizer().decode([0, 0]) == ""


def test_sequence_decode_requires_the_eos_at_the_end() -> None:
    # Without the check the last residue of a row that lost its <eos> was dropped as if it were the EOS.
    tok = SequenceTokenizer()
    with pytest.raises(TokenizationError, match=r"end with <eos> \(2\); got \[0\] \.\.\. \[6\]"):
        tok.decode([0, 5, 6])
    assert tok.decode([0, 5, 6, 2]) == "AG"


@pytest.mark.parametrize(
    ("decode", "track"),
    [
        (SequenceTokenizer().decode, "sequence"),
        (StructureTokenizer().decode, "structure"),
        (SS8Tokenizer().decode, "secondary structure"),
        (SASATokenizer().decode, "SASA"),
    ],
)
def test_token_ids_that_are_no_regular_array_are_named(decode, track: str) -> None:  # noqa: ANN001
    """A ragged list of ids raised numpy's own ValueError ('setting an array element with a sequence'), naming
    neither the track nor the problem as the other bad token inputs do."""
    with pytest.raises(InputError, match=rf"^{track} tokens: not a regular array of ids \(.+\)$"):  # numpy's reason
        decode([0, [5, 6], 2])
    with pytest.raises(InputError, match=f"^{track} tokens: expected integer ids, got dtype float"):
        decode(torch.tensor([0.0, 5.0, 2.0]))
    with pytest.raises(InputError, match=f"^{track} tokens: expected integer ids, got dtype float"):
        decode(torch.tensor([0.0, 5.0, 2.0], requires_grad=True))  # numpy refuses to convert it: detached first
    with pytest.raises(InputError, match=rf"^{track} tokens: expected 1 dimension\(s\), got shape \(1, 3\)"):
        decode(np.array([[0, 5, 2]]))


def test_token_ids_of_any_integer_dtype_are_int64() -> None:
    assert as_int_array(np.array([0, 5, 2], dtype=np.int32), track="sequence", ndim=1).dtype == np.int64
    assert as_int_array(torch.tensor([0, 5, 2], dtype=torch.int16), track="sequence", ndim=1).dtype == np.int64
