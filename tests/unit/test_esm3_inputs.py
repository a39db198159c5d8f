"""ESM3 input checks: every bad input gives an InputError naming the track and the problem."""

from __future__ import annotations

import pytest
import torch

from openesm3.config import ESM3_TINY
from openesm3.errors import InputError
from openesm3.models.esm3 import ESM3


@pytest.fixture(scope="module")
def model() -> ESM3:
    torch.manual_seed(0)
    return ESM3(ESM3_TINY.replace(max_length=32)).eval()


def seq(b: int = 2, length: int = 10) -> torch.Tensor:
    return torch.randint(4, 24, (b, length))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sequence_tokens": torch.tensor([[0, 5, 64, 2]])}, r"sequence_tokens: value 64 at index \[0, 2\] .*0\.\.63"),
        ({"sequence_tokens": torch.tensor([[0, -3, 2]])}, r"sequence_tokens: value -3 at index \[0, 1\]"),
        ({"structure_tokens": torch.tensor([[4101, 5]])}, r"structure_tokens: value 4101 .*-1\.\.4100"),
        ({"structure_tokens": torch.tensor([[-2, 5]])}, r"structure_tokens: value -2"),
        ({"ss8_tokens": torch.full((1, 4), 11)}, r"ss8_tokens: value 11 at index \[0, 0\] .*0\.\.10.*4 invalid"),
        ({"sasa_tokens": torch.tensor([[3, 19]])}, r"sasa_tokens: value 19 at index \[0, 1\] .*0\.\.18"),
        ({"function_tokens": torch.tensor([[[0] * 7 + [260]]])}, r"function_tokens: value 260 at index \[0, 0, 7\]"),
        ({"residue_annotation_tokens": torch.tensor([[[1478]]])}, r"residue_annotation_tokens: value 1478"),
        ({"sequence_tokens": seq(), "per_res_plddt": torch.full((2, 10), float("nan"))}, r"per_res_plddt: .*finite"),
        ({"sequence_tokens": seq(), "average_plddt": torch.tensor(float("inf"))}, r"average_plddt: .*finite"),
    ],
)
def test_out_of_range_values_name_track_value_and_position(model, kwargs, pattern) -> None:
    with pytest.raises(InputError, match=pattern):
        model(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sequence_tokens": torch.zeros(10, dtype=torch.long)}, r"sequence_tokens: expected a batch \[B, L"),
        ({"sequence_tokens": seq(2, 10), "ss8_tokens": seq(2, 9)}, r"ss8_tokens: expected shape \[B, L\] with L=10"),
        ({"sequence_tokens": seq(2, 10), "sasa_tokens": seq(3, 10)}, r"sasa_tokens: batch size 3 does not match"),
        ({"sequence_tokens": seq(), "function_tokens": torch.zeros(2, 10, 7, dtype=torch.long)}, r"\[B, L, 8\]"),
        (
            {"sequence_tokens": seq(), "residue_annotation_tokens": torch.zeros(2, 10, 17, dtype=torch.long)},
            r"residue_annotation_tokens: expected shape \[B, L, N\] with 1 <= N <= 16",
        ),
        ({"sequence_tokens": seq(), "structure_coords": torch.zeros(2, 10, 2, 3)}, r"structure_coords: .*A >= 3"),
        ({"sequence_tokens": seq(), "structure_coords": torch.zeros(2, 10, 37, 2)}, r"structure_coords: expected"),
        ({"sequence_tokens": seq().float()}, r"sequence_tokens: expected an integer tensor .*float32"),
        (
            {"sequence_tokens": seq(), "structure_coords": torch.zeros(2, 10, 3, 3, dtype=torch.long)},
            r"structure_coords: expected a floating-point tensor",
        ),
        ({"sequence_tokens": seq(), "per_res_plddt": torch.ones(2, 10, dtype=torch.long)}, r"per_res_plddt: .*float"),
        ({"sequence_tokens": seq(), "average_plddt": torch.ones(2, 3)}, r"average_plddt: expected a scalar, \[B\]"),
        ({"sequence_tokens": seq(), "sequence_id": torch.zeros(2, 10)}, r"sequence_id: expected an integer or bool"),
        ({"sequence_tokens": seq(1, 33)}, r"sequence_tokens: length 33 exceeds the model's maximum of 32"),
        ({"sequence_tokens": seq(1, 0)}, r"length is 0"),
        ({}, r"no track given"),
        ({"sequence_tokens": [[0, 5, 2]]}, r"sequence_tokens: expected a torch.Tensor, got list"),
        ({"sequence_tokens": seq(), "taxonomy_tokens": torch.ones(2, 3, dtype=torch.long)}, r"no taxonomy track"),
        ({"sequence_tokens": seq().to("meta")}, r"is on meta, the model is on cpu"),
    ],
)
def test_bad_shapes_dtypes_lengths_name_the_track(model, kwargs, pattern) -> None:
    with pytest.raises(InputError, match=pattern):
        model(**kwargs)


def test_taxonomy_ids_checked_and_validation_can_be_skipped() -> None:
    model = ESM3(ESM3_TINY.replace(n_taxonomy_terms=5, taxonomy_embed_dim=8)).eval()
    with pytest.raises(InputError, match=r"taxonomy_tokens: value 6 at index \[0, 1\] .*0\.\.5"):
        model(sequence_tokens=seq(1), taxonomy_tokens=torch.tensor([[1, 6]]))
    good = seq(1)
    with torch.no_grad():
        checked = model(sequence_tokens=good)
        unchecked = model(sequence_tokens=good, validate=False)
    assert torch.equal(checked.sequence_logits, unchecked.sequence_logits)
    assert isinstance(InputError("x"), ValueError)  # callers catching ValueError keep working
