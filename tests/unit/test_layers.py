"""Unit tests of the shared layers: invariances (with negatives), rotary algebra, masking, dtypes."""

from __future__ import annotations

import math

import torch

from openesm3.geometry.rigid import Rigid
from openesm3.layers.attention import MultiHeadAttention
from openesm3.layers.feed_forward import SwiGLU
from openesm3.layers.geometric_attention import GeometricAttention
from openesm3.layers.rotary import RotaryEmbedding


def _random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] *= -1
    return q.float()


def _geom(d: int = 32, v: int = 4) -> GeometricAttention:
    m = GeometricAttention(d, v)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m.eval()


def _coords(length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ca = torch.cumsum(torch.randn(length, 3, generator=g) * 2.0, 0)
    return torch.stack([ca + torch.randn(length, 3, generator=g), ca, ca + torch.randn(length, 3, generator=g)], 1)


def _run(m: GeometricAttention, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    frames, mask = Rigid.from_backbone(coords[None, :, 0], coords[None, :, 1], coords[None, :, 2])
    with torch.no_grad():
        return m(x, frames, mask)


def test_geometric_attention_is_se3_invariant_and_sensitive_to_one_residue() -> None:
    m = _geom()
    x = torch.randn(1, 20, 32)
    coords = _coords(20)
    base = _run(m, x, coords)
    rot, shift = _random_rotation(3), torch.tensor([10.0, -4.0, 2.5])
    moved = _run(m, x, coords @ rot.T + shift)
    assert (moved - base).abs().max() < 1e-4
    # Negative: moving a single residue must change the output.
    perturbed = coords.clone()
    perturbed[7] += torch.tensor([3.0, 0.0, 0.0])
    assert (_run(m, x, perturbed) - base).abs().max() > 1e-2


def test_geometric_attention_masks_frameless_residues() -> None:
    m = _geom()
    x = torch.randn(1, 12, 32)
    coords = _coords(12)
    coords_missing = coords.clone()
    coords_missing[4] = float("nan")
    out = _run(m, x, coords_missing)
    assert torch.isfinite(out).all()
    # a frameless query is zeroed before the output projection: its row equals out_proj's bias-free zero
    assert out[0, 4].abs().max() == 0
    # a frameless key is ignored: changing its features does not change any other row
    x2 = x.clone()
    x2[0, 4] += 2.0 * torch.randn(32)  # not a constant shift: LayerNorm would remove it
    out2 = _run(m, x2, coords_missing)
    assert torch.allclose(out2[0, torch.arange(12) != 4], out[0, torch.arange(12) != 4], atol=1e-6)
    # ... whereas with coordinates present, it does
    assert not torch.allclose(_run(m, x2, coords)[0, 0], _run(m, x, coords)[0, 0], atol=1e-4)


def test_geometric_attention_chain_mask_blocks_cross_chain_information() -> None:
    m = _geom()
    x = torch.randn(1, 10, 32)
    coords = _coords(10)
    frames, mask = Rigid.from_backbone(coords[None, :, 0], coords[None, :, 1], coords[None, :, 2])
    chain = torch.tensor([[0] * 5 + [1] * 5])
    x2 = x.clone()
    x2[0, 7] += 2.0 * torch.randn(32)
    with torch.no_grad():
        a = m(x, frames, mask, chain_id=chain)
        b = m(x2, frames, mask, chain_id=chain)
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6)
    assert not torch.allclose(a[0, 5:], b[0, 5:], atol=1e-4)


def test_geometric_attention_keeps_fp32_under_bf16_autocast() -> None:
    m = _geom()
    x = torch.randn(1, 16, 32)
    coords = _coords(16)
    ref = _run(m, x, coords)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = _run(m, x, coords)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 5e-2 * ref.abs().max()


def test_rotary_scores_depend_only_on_relative_position() -> None:
    rope = RotaryEmbedding(16)
    q = torch.randn(1, 1, 1, 16).expand(1, 30, 1, 16)
    k = torch.randn(1, 1, 1, 16).expand(1, 30, 1, 16)
    rq, rk = rope(q, k)
    scores = torch.einsum("bihd,bjhd->ij", rq, rk)
    # every diagonal (fixed offset i - j) is constant
    for offset in (-5, 0, 3, 11):
        diag = torch.diagonal(scores, offset)
        assert (diag - diag[0]).abs().max() < 1e-4
    assert (torch.diagonal(scores, 0)[0] - torch.diagonal(scores, 3)[0]).abs() > 1e-3
    # rotation preserves norms
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))


def test_rotary_layout_is_half_split_not_interleaved() -> None:
    rope = RotaryEmbedding(4)
    x = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 4).repeat(1, 2, 1, 1)
    rx, _ = rope(x, x)
    # position 1, frequency 0 (inv_freq 1): x1' = cos(1), x2' (dim 2) = sin(1)
    torch.testing.assert_close(rx[0, 1, 0], torch.tensor([math.cos(1.0), 0.0, math.sin(1.0), 0.0]))


def test_attention_mask_hides_masked_keys() -> None:
    attn = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 6:] = False
    mask = keep[:, None, None, :]
    with torch.no_grad():
        full = attn(x, mask)
        short = attn(x[1:, :6], None)
        x2 = x.clone()
        x2[1, 6:] = torch.randn(3, 32)
        changed = attn(x2, mask)
    torch.testing.assert_close(full[1, :6], short[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(changed[1, :6], full[1, :6])
    assert not torch.allclose(attn(x2, None)[1, :6], full[1, :6], atol=1e-4)


def test_swiglu_computes_the_same_with_and_without_grad() -> None:
    # SwiGLU has two code paths: an out-of-place one under autograd (training) and an in-place one at inference.
    # Both must be W2 (SiLU(a) * b) with a the first half of W1 LN(x); a swap in one path would otherwise only show
    # as a train/inference mismatch.
    torch.manual_seed(0)
    ffn = SwiGLU(16, 24)
    x = torch.randn(2, 5, 16)
    a, b = ffn.w_in(ffn.norm(x)).chunk(2, dim=-1)
    expected = ffn.w_out(torch.nn.functional.silu(a) * b).detach()
    trained = ffn(x)
    assert trained.requires_grad
    with torch.no_grad():
        inferred = ffn(x)
    torch.testing.assert_close(trained.detach(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(inferred, expected, rtol=0, atol=1e-6)
