"""Malformed arguments to ``generate`` get a one-line InputError naming the problem (not a traceback, not a silent
wrong answer)."""

from __future__ import annotations

import pytest

from openesm3.config import GenerationConfig
from openesm3.errors import InputError
from openesm3.generation.iterative import generate
from tests.generation_testing import FakeESM3, masked_prompt


@pytest.fixture(scope="module")
def model() -> FakeESM3:
    return FakeESM3(seed=0).eval()


def test_a_single_prompt_not_in_a_list_is_named(model: FakeESM3) -> None:
    prompt = masked_prompt(6, seed=1)
    with pytest.raises(InputError, match="list"):
        generate(model, prompt, GenerationConfig(track="sequence", num_steps=2), seed=0)  # type: ignore[arg-type]
    assert generate(model, [prompt], GenerationConfig(track="sequence", num_steps=2), seed=0)[0].ok
