"""Helpers for the ESM3 trunk parity tests: the official model with random weights, saved in the official
format (real proteins for the inputs come from ``tests/esm3_testing.py``)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

OUTPUT_FIELDS = (
    "sequence_logits", "structure_logits", "secondary_structure_logits", "sasa_logits", "function_logits",
    "residue_logits", "embeddings",
)  # fmt: skip


def build_reference(esm, *, d_model: int, n_heads: int, v_heads: int, n_layers: int, seed: int) -> nn.Module:
    """The official ESM3 with EVERY parameter random (LayerNorm weights and biases and the geometric scales
    included, which its own init leaves constant). Built on the meta device, then filled, to skip its init."""
    from esm.models.esm3 import ESM3
    from esm.tokenization import get_esm3_model_tokenizers

    with torch.device("meta"):
        ref = ESM3(
            d_model=d_model, n_heads=n_heads, v_heads=v_heads, n_layers=n_layers, structure_encoder_fn=None,
            structure_decoder_fn=None, function_decoder_fn=None, tokenizers=get_esm3_model_tokenizers(),
        )  # fmt: skip
    ref = ref.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in ref.modules():
            for p in module.parameters(recurse=False):
                p.normal_(generator=g)  # in place: no temporary copy of a 1.4B-parameter model
                if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
                    continue
                if p.ndim == 1:  # LayerNorm weights/biases, head biases, geometric scales: around 1, spread
                    p.mul_(0.5).add_(1.0)
                else:
                    p.mul_(1.0 / math.sqrt(p.shape[-1]))
            if type(module).__name__ == "RotaryEmbedding":
                module.reset_parameters()  # its non-persistent inv_freq was left empty by to_empty
    leftover = [n for n, _ in ref.named_buffers() if not n.endswith("inv_freq")]
    assert not leftover, f"buffers not randomised: {leftover}"
    return ref.eval()


def save_official(ref: nn.Module, path: Path) -> Path:
    torch.save(ref.state_dict(), path)
    return path


def max_abs_diffs(ours, ref) -> dict[str, float]:
    out = {}
    for field in OUTPUT_FIELDS:
        a, b = getattr(ours, field), getattr(ref, field)
        assert a.shape == b.shape, (field, a.shape, b.shape)
        assert torch.isfinite(a).all(), field
        out[field] = (a.float() - b.float()).abs().max().item()
    return out
