"""Module-level parity of the shared layers with the official implementation (random weights, fp32)."""

from __future__ import annotations

import math

import pytest
import torch

from openesm3.checkpoints.official import BLOCK_KEY_MAP
from openesm3.constants import ffn_hidden_dim
from openesm3.geometry.rigid import Rigid
from openesm3.layers.block import BlockConfig, TransformerBlock


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1.0 / math.sqrt(p.shape[-1])))
            if p.ndim == 1:
                p.add_(1.0 if p.shape[0] > 0 else 0.0)


def _load_from_reference(ours: TransformerBlock, ref: torch.nn.Module) -> None:
    ref_sd = ref.state_dict()
    ours_keys = set(ours.state_dict())
    mapped = {k: BLOCK_KEY_MAP[k] for k in ours_keys}
    assert set(mapped.values()) == set(ref_sd), set(ref_sd) ^ set(mapped.values())
    ours.load_state_dict({k: ref_sd[v] for k, v in mapped.items()}, strict=True)


def _backbone(b: int, length: int, g: torch.Generator) -> torch.Tensor:
    # A random walk CA trace with plausible N/C offsets (real structures are tested at the model level).
    ca = torch.cumsum(torch.randn(b, length, 3, generator=g) * 2.2, dim=1)
    n = ca + torch.randn(b, length, 3, generator=g) * 0.8
    c = ca + torch.randn(b, length, 3, generator=g) * 0.8
    return torch.stack([n, ca, c], dim=2)


@pytest.mark.parametrize(
    ("d_model", "n_heads", "v_heads", "n_layers", "geometric", "bias", "length"),
    [
        (192, 3, 16, 4, True, False, 37),
        (128, 2, 8, 48, True, False, 64),
        (96, 4, 0, 2, False, False, 20),
        (64, 1, 8, 1, True, True, 50),
    ],
)
def test_block_matches_reference(
    esm_reference,
    d_model: int,
    n_heads: int,
    v_heads: int,
    n_layers: int,
    geometric: bool,
    bias: bool,
    length: int,
) -> None:
    from esm.layers.blocks import UnifiedTransformerBlock
    from esm.utils.structure.affine3d import build_affine3d_from_coordinates

    scale = math.sqrt(n_layers / 36)
    ref = UnifiedTransformerBlock(
        d_model,
        n_heads,
        use_geom_attn=geometric,
        v_heads=v_heads or None,
        bias=bias,
        expansion_ratio=8 / 3,
        residue_scaling_factor=scale,
        mask_and_zero_frameless=True,
        qk_layernorm=True,
    ).eval()
    ours = TransformerBlock(
        BlockConfig(
            d_model=d_model,
            n_heads=n_heads,
            ffn_dim=ffn_hidden_dim(d_model),
            v_heads=v_heads,
            bias=bias,
            geometric_bias=bias,
            residual_scale=scale,
        )
    ).eval()
    _randomize(ref, seed=d_model)
    _load_from_reference(ours, ref)

    g = torch.Generator().manual_seed(1)
    b = 2
    x = torch.randn(b, length, d_model, generator=g)
    coords = _backbone(b, length, g)
    coords[0, 3] = float("nan")  # a residue without coordinates
    coords[1, -5:] = float("inf")
    sequence_id = torch.zeros(b, length, dtype=torch.long)
    sequence_id[1, length // 2 :] = 1  # two packed sequences in the second row
    chain_id = torch.zeros(b, length, dtype=torch.long)
    chain_id[0, length // 3 :] = 1

    ref_frames, ref_mask = build_affine3d_from_coordinates(coords)
    frames, frame_mask = Rigid.from_backbone(coords[:, :, 0], coords[:, :, 1], coords[:, :, 2])
    assert torch.equal(frame_mask, ref_mask)
    attn_mask = (sequence_id[:, :, None] == sequence_id[:, None, :])[:, None]
    with torch.no_grad():
        expected = ref(x, sequence_id, ref_frames, ref_mask, chain_id)
        got = ours(x, attn_mask, frames, frame_mask, sequence_id, chain_id)
    assert got.shape == expected.shape
    err = (got - expected).abs().max().item()
    assert err < 2e-5, err
    # the comparison can fail: a different chain layout changes the output
    if geometric:
        with torch.no_grad():
            other = ours(x, attn_mask, frames, frame_mask, sequence_id, torch.zeros_like(chain_id))
        assert (other - expected).abs().max().item() > 1e-3
