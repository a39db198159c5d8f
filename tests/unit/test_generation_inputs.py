"""Malformed arguments to ``generate`` get a one-line InputError naming the problem (not a traceback, not a silent
wrong answer)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from openesm3.config import GenerationConfig
from openesm3.errors import InputError
from openesm3.generation.iterative import generate
from openesm3.generation.protein_tensor import ProteinTensor
from tests.generation_testing import FakeESM3, masked_prompt


@pytest.fixture(scope="module")
def model() -> FakeESM3:
    return FakeESM3(seed=0).eval()


def test_a_single_prompt_not_in_a_list_is_named(model: FakeESM3) -> None:
    prompt = masked_prompt(6, seed=1)
    with pytest.raises(InputError, match="list"):
        generate(model, prompt, GenerationConfig(track="sequence", num_steps=2), seed=0)  # type: ignore[arg-type]
    assert generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2), seed=0)[0].ok


@pytest.mark.parametrize(
    ("track", "tokens", "message"),
    [
        ("sequence", [32, 32, 32, 32, 32], "position 0"),  # no BOS/EOS frame: ends would never be generated
        ("sequence", [0, 5, 32, 5, 6], "position 4"),  # no EOS
        ("sequence", [0, 5, 1, 32, 2], "position 2"),  # <pad> inside: the trunk would hide it as padding
        ("sequence", [0, 5, 0, 32, 2], "position 2"),
        ("structure", [4096, 7, 4096, 8, 4097], "position 0"),
        ("structure", [4098, 7, 4099, 4096, 4097], "position 2"),
    ],
)
def test_prompt_tracks_must_be_framed_by_bos_and_eos(model: FakeESM3, track: str, tokens: list[int],
                                                     message: str) -> None:  # fmt: skip
    prompt = ProteinTensor(**{track: torch.tensor(tokens)})
    other = masked_prompt(5, seed=2, track=track)
    result = generate(model, [prompt, other], GenerationConfig(track=track, num_steps=2), seed=0)
    assert not result[0].ok
    assert f"track {track!r}" in str(result[0].error) and message in str(result[0].error)
    assert result[1].ok


def test_framed_prompts_with_chain_breaks_are_accepted(model: FakeESM3) -> None:
    prompt = ProteinTensor(sequence=torch.tensor([0, 5, 32, 31, 32, 6, 2]),
                           structure=torch.tensor([4098, 7, 4096, 4100, 4096, 9, 4097]))  # fmt: skip
    for track in ("sequence", "structure"):
        assert generate(model, [prompt], GenerationConfig(track=track, num_steps=2), seed=0)[0].ok


def test_sequence_ids_outside_the_vocabulary_are_rejected(model: FakeESM3) -> None:
    # 33..63 are rows of the embedding table but no token of the sequence vocabulary.
    prompt = ProteinTensor(sequence=torch.tensor([0, 40, 32, 2]))
    result = generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2), seed=0)[0]
    assert not result.ok and "'sequence'" in str(result.error) and "40" in str(result.error)


def test_invalid_ids_outside_the_track_are_named_not_ignored(model: FakeESM3) -> None:
    prompt = masked_prompt(6, seed=1)
    config = GenerationConfig(track="sequence", num_steps=2, invalid_ids=(5, 4096))  # a structure id, say
    result = generate(model, [prompt, prompt], [config, config.replace(invalid_ids=(5,))], seed=0)
    assert not result[0].ok and "4096" in str(result[0].error) and "'sequence'" in str(result[0].error)
    assert result[1].ok


@pytest.mark.parametrize("seed", [2**64, 2**70])
def test_seeds_beyond_64_bits_are_rejected_up_front(model: FakeESM3, seed: int) -> None:
    prompt = masked_prompt(6, seed=1)
    with pytest.raises(InputError, match="seed"):
        GenerationConfig(track="sequence", seed=seed)
    with pytest.raises(InputError, match="seed"):
        generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2), seed=seed, sequential=True)
    with pytest.raises(InputError, match="seed"):
        GenerationConfig(track="sequence", seed=True)  # type: ignore[arg-type]
    assert generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2, seed=2**64 - 1))[0].ok


def test_structure_tokens_of_an_empty_based_prompt_reach_the_model() -> None:
    # The reference's ESMProteinTensor.empty has no coordinates. Ours had +inf ones, so with the default
    # condition_on_coordinates_only the structure tokens set on it were silently dropped.
    model = FakeESM3(seed=0)
    prompt = ProteinTensor.empty(6)
    assert prompt.coordinates is None
    prompt.structure = torch.tensor([4098, 5, 6, 7, 8, 9, 10, 4097])
    assert generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2), seed=0)[0].ok
    assert model.seen[-1]["structure"][0].tolist() == prompt.structure.tolist()


def test_coordinates_without_the_bos_eos_rows_are_named(model: FakeESM3) -> None:
    # L residues of coordinates given as the whole prompt: BOS/EOS would silently sit on the first/last residue.
    xyz = torch.randn(6, 37, 3)
    result = generate(model, [ProteinTensor(coordinates=xyz)], GenerationConfig(track="sequence", num_steps=2))[0]
    assert not result.ok and "coordinates" in str(result.error) and "position 0" in str(result.error)
    framed = torch.cat([torch.full((1, 37, 3), float("inf")), xyz, torch.full((1, 37, 3), float("inf"))])
    assert generate(model, [ProteinTensor(coordinates=framed)], GenerationConfig(track="sequence", num_steps=2))[0].ok


def test_function_invalid_ids_that_leave_nothing_are_named(model: FakeESM3) -> None:
    # Every annotation id and <none> excluded: the argmax fell on <pad> (= mask) and the prompt came back "ok"
    # with its function track still masked. The reference ignores invalid_ids on this track (docs #3).
    prompt = masked_prompt(6, seed=1, track="function")
    config = GenerationConfig(track="function", num_steps=2, invalid_ids=tuple(range(3, 260)))
    result = generate(model, [prompt], config, seed=0)[0]
    assert not result.ok and "leave no token" in str(result.error)
    assert generate(model, [prompt], config, seed=0, reference_compat=True)[0].ok
    assert generate(model, [prompt], config.replace(invalid_ids=tuple(range(4, 260))), seed=0)[0].ok  # <none> left


@pytest.mark.parametrize("field", ["temperature", "top_p"])
def test_a_bool_temperature_or_top_p_is_refused_not_read_as_a_number(field: str) -> None:
    # True passed the number checks as 1 (so temperature=True sampled at T = 1, top_p=True disabled nucleus sampling).
    with pytest.raises(InputError, match=f"GenerationConfig.{field}.*True"):
        GenerationConfig(track="sequence", **{field: True})


@pytest.mark.parametrize(("track", "limit"), [("sequence", 33), ("structure", 4101), ("secondary_structure", 11),
                                              ("sasa", 19)])  # fmt: skip
def test_a_token_id_equal_to_the_vocabulary_size_is_rejected(model: FakeESM3, track: str, limit: int) -> None:
    # Ids run 0 .. size - 1: the size itself is the first id outside (a silent embedding row, or an index error).
    prompt = masked_prompt(6, seed=3, track="sequence")
    value = getattr(prompt, track).clone()
    value[2] = limit
    setattr(prompt, track, value)
    result = generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2), seed=0)[0]
    assert not result.ok and f"track {track!r}: token id {limit}" in str(result.error)
    value[2] = limit - 1 if track != "structure" else 7  # the last id (structure: 4100 is chain break, inner ok)
    assert generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2), seed=0)[0].ok


def test_a_prompt_of_exactly_the_models_maximum_length_is_accepted() -> None:
    model = FakeESM3(seed=0)
    model.config = SimpleNamespace(max_length=10)  # type: ignore[assignment]
    config = GenerationConfig(track="sequence", num_steps=2)
    assert generate(model, [masked_prompt(8, seed=1)], config, seed=0)[0].ok  # 10 tokens with BOS/EOS
    result = generate(model, [masked_prompt(9, seed=1)], config, seed=0)[0]
    assert not result.ok and "11 tokens" in str(result.error) and "maximum of 10" in str(result.error)


def test_atoms_at_the_bos_row_are_named_even_when_only_the_backbone_is_there() -> None:
    # A real residue has N, CA, C (and maybe more) and NaN elsewhere: one such row at BOS is a shifted prompt.
    prompt = masked_prompt(6, seed=4, track="sequence", with_coordinates=True)
    xyz = prompt.coordinates.clone()
    xyz[0] = float("nan")
    xyz[0, :3] = torch.randn(3, 3)
    prompt.coordinates = xyz
    result = generate(FakeESM3(seed=0), [prompt], GenerationConfig(track="sequence", num_steps=2), seed=0)[0]
    assert not result.ok and "position 0 (BOS/EOS) holds atoms" in str(result.error)


def test_invalid_ids_equal_to_the_track_width_are_named(model: FakeESM3) -> None:
    prompt = masked_prompt(6, seed=1)
    config = GenerationConfig(track="secondary_structure", num_steps=2, invalid_ids=(11,))
    result = generate(model, [masked_prompt(6, seed=1, track="secondary_structure")], config, seed=0)[0]
    assert not result.ok and "[11]" in str(result.error) and "0..10" in str(result.error)
    assert generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2, invalid_ids=(63,)), seed=0)[0].ok
