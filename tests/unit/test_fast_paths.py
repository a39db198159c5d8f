"""Fast paths behind one seam, each equal to the plain path (STYLE.md 10): the fused SDPA attention with padding
and sequence-id masks against a plain masked softmax, and the optional ``torch.compile`` of the blocks."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from openesm3 import constants as C
from openesm3.config import ESM3_TINY, FUNCTION_DECODER_TINY
from openesm3.layers.attention import attention
from openesm3.layers.compile import compile_blocks
from openesm3.models.esm3 import ESM3, attention_mask
from openesm3.models.function_decoder import FunctionDecoder
from tests.unit.test_esm3_model import FIELDS, randomized, tokens


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Textbook softmax attention in fp32: scores / sqrt(Dh), masked keys set to -inf, softmax, weighted sum."""
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v.float()


def _padded_masks(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(padding [3, 12], sequence_id [3, 12]): rows with 0, 4 and 9 pad positions, and packed proteins."""
    padding = torch.zeros(3, 12, dtype=torch.bool)
    padding[1, 8:] = True
    padding[2, 3:] = True
    sequence_id = torch.randint(0, 3, (3, 12), generator=g).sort(dim=1).values
    return padding, sequence_id


@pytest.mark.parametrize("with_sequence_id", [False, True])
def test_sdpa_with_padding_masks_equals_plain_masked_softmax(with_sequence_id: bool) -> None:
    g = torch.Generator().manual_seed(0)
    padding, sequence_id = _padded_masks(g)
    mask = attention_mask(sequence_id if with_sequence_id else None, padding)  # [3, 1, 12, 12]
    assert mask is not None
    q, k, v = (torch.randn(3, 4, 12, 16, generator=g) * 2 for _ in range(3))
    got = attention(q, k, v, mask)
    expected = plain_attention(q, k, v, mask)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-5)
    # The masks act: changing a padded key/value changes nothing for the real queries, but changes the
    # result when the mask is dropped (so the comparison above can fail).
    k2, v2 = k.clone(), v.clone()
    k2[2, :, 5:], v2[2, :, 5:] = torch.randn(4, 7, 16, generator=g), torch.randn(4, 7, 16, generator=g)
    real = ~padding[2]
    torch.testing.assert_close(attention(q, k2, v2, mask)[2, :, real], got[2, :, real])
    assert not torch.allclose(attention(q, k2, v2, None)[2, :, real], got[2, :, real], atol=1e-3)


def test_sdpa_in_bf16_stays_within_bf16_rounding_of_the_fp32_plain_path() -> None:
    g = torch.Generator().manual_seed(1)
    padding, sequence_id = _padded_masks(g)
    mask = attention_mask(sequence_id, padding)
    q, k, v = (torch.randn(3, 4, 12, 16, generator=g) for _ in range(3))
    got = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask).float()
    expected = plain_attention(q, k, v, mask)
    err = (got - expected).abs().max().item()
    assert err < 0.05, err  # bf16 has 8 significant bits: inputs alone carry ~0.4% relative error
    assert torch.isfinite(got).all()


def _inductor_unavailable() -> str | None:
    """Why inductor cannot compile on this machine's CPU, or None. It needs a C++ compiler for CPU kernels."""
    if torch.cuda.is_available():
        return None
    if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        return "torch.compile's inductor backend needs a C++ compiler for CPU kernels; none is installed"
    return None


@pytest.mark.slow
def test_compiled_blocks_equal_plain_blocks_on_a_padded_batch_with_coordinates() -> None:
    reason = _inductor_unavailable()
    if reason:
        pytest.skip(reason)
    torch._dynamo.reset()
    model = randomized(ESM3_TINY, seed=5)
    g = torch.Generator().manual_seed(5)
    seq = tokens(2, 16, g)
    seq[1, 11:] = C.SEQUENCE_PAD
    coords = torch.randn(2, 16, 3, 3, generator=g) * 5
    keys_before = list(model.state_dict())
    with torch.no_grad():
        plain = model(sequence_tokens=seq, structure_coords=coords)
        plain_seq_only = model(sequence_tokens=seq)
        compile_blocks(model)
        compiled = model(sequence_tokens=seq, structure_coords=coords)
        compiled_seq_only = model(sequence_tokens=seq)  # block 0 without geometry: its branches are compiled too
    assert list(model.state_dict()) == keys_before  # in place: checkpoints load unchanged
    attn0 = model.blocks[0].attn
    assert attn0 is not None and attn0._compiled_call_impl is not None  # the compiled path really ran
    for name in FIELDS:
        torch.testing.assert_close(getattr(compiled, name), getattr(plain, name), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(getattr(compiled_seq_only, name), getattr(plain_seq_only, name), atol=2e-5,
                                   rtol=1e-5)  # fmt: skip
    # The comparison can fail: a different input gives different logits through the same compiled model.
    with torch.no_grad():
        other = model(sequence_tokens=tokens(2, 16, g), structure_coords=coords)
    assert (other.sequence_logits - plain.sequence_logits).abs().max() > 1e-3


def test_compile_blocks_needs_blocks_and_covers_every_network() -> None:
    with pytest.raises(ValueError, match="no TransformerBlock"):
        compile_blocks(torch.nn.Linear(2, 2))
    # The eager backend traces without generating code: a cheap check that every block branch gets wrapped.
    decoder = compile_blocks(FunctionDecoder(FUNCTION_DECODER_TINY), backend="eager")
    assert all(block.ffn._compiled_call_impl is not None for block in decoder.blocks)  # type: ignore[union-attr]
    trunk = compile_blocks(ESM3(ESM3_TINY), backend="eager")
    assert all(block.geom_attn is None or block.geom_attn._compiled_call_impl is None for block in trunk.blocks)  # type: ignore[union-attr]
