import pytest
import torch

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.generation.protein_tensor import ProteinTensor, model_inputs, stack


def test_empty_matches_official_defaults() -> None:
    p = ProteinTensor.empty(3)
    assert p.sequence.tolist() == [0, 32, 32, 32, 2]
    assert p.structure.tolist() == [4098, 4096, 4096, 4096, 4097]
    assert p.function.shape == (5, 8) and int(p.function.abs().sum()) == 0
    assert p.residue_annotations.shape == (5, 16)
    assert p.coordinates is None  # as the reference's ESMProteinTensor.empty
    assert torch.isinf(p.filled().coordinates).all()
    assert p.n_residues == 3


def test_track_length_and_shape_errors_name_the_track() -> None:
    with pytest.raises(InputError, match="sequence=5.*sasa=4|sasa=4.*sequence=5"):
        ProteinTensor(sequence=torch.zeros(5, dtype=torch.long), sasa=torch.zeros(4, dtype=torch.long))
    with pytest.raises(InputError, match="'function'"):
        ProteinTensor(function=torch.zeros(5, 3, dtype=torch.long))
    with pytest.raises(InputError, match="'sequence'.*int64"):
        ProteinTensor(sequence=torch.zeros(5))
    with pytest.raises(InputError, match="coordinates"):
        ProteinTensor(coordinates=torch.zeros(5, 14, 3))


def test_stack_pads_each_track_with_its_pad_id_and_unstacks() -> None:
    a = ProteinTensor(sequence=torch.tensor([0, 20, 15, 2]))
    b = ProteinTensor(sequence=torch.tensor([0, 5, 2]), sasa=torch.tensor([0, 7, 0]))
    batch = stack([a, b])
    assert batch.sequence.tolist() == [[0, 20, 15, 2], [0, 5, 2, C.SEQUENCE_PAD]]
    assert batch.structure[1].tolist() == [4098, 4096, 4097, C.STRUCTURE_PAD]
    assert batch.sasa[1].tolist() == [0, 7, 0, 0]
    assert batch.padding.tolist() == [[False] * 4, [False, False, False, True]]
    assert torch.isinf(batch.coordinates[1, 3]).all()
    back = batch.unstack()
    assert back[1].sequence.tolist() == [0, 5, 2] and back[1].sasa.tolist() == [0, 7, 0]
    inputs = model_inputs(batch)
    assert inputs["per_res_plddt"].sum() == 0  # no coordinates anywhere: default pLDDT conditioning
    coords = torch.full((4, 37, 3), float("nan"))
    coords[1, :3] = torch.randn(3, 3)
    batch2 = stack([ProteinTensor(sequence=torch.tensor([0, 20, 15, 2]), coordinates=coords), b])
    assert model_inputs(batch2)["per_res_plddt"][0].tolist() == [0.0, 1.0, 0.0, 0.0]
