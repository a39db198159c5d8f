"""EMA codebook: nearest-code lookup, straight-through gradients, commitment loss, EMA update, dead-code restart."""

from __future__ import annotations

import pytest
import torch

from openesm3.layers.codebook import EMACodebook


def _codebook(n_codes: int = 8, dim: int = 4, **kwargs: float) -> EMACodebook:
    torch.manual_seed(0)
    return EMACodebook(n_codes, dim, **kwargs)


def test_nearest_is_the_euclidean_argmin() -> None:
    cb = _codebook(64, 16)
    z = torch.randn(3, 50, 16)
    expected = torch.cdist(z.reshape(-1, 16).double(), cb.embeddings.double()).argmin(-1).view(3, 50)
    assert torch.equal(cb.nearest(z), expected)
    assert torch.equal(cb.lookup(expected), cb.embeddings[expected])


def test_nearest_uses_the_expanded_fp32_formula() -> None:
    # |z|^2 - 2 z.e + |e|^2 in fp32 (spec §13.13). Around 4096 the expansion loses the fractional part, so the
    # exactly nearest code (index 1, 0.05 away) is not the one the formula picks; the reference follows the formula.
    cb = _codebook(2, 1)
    cb.embeddings.copy_(torch.tensor([[4096.0], [4096.5]]))
    z = torch.tensor([[4096.45]])
    assert int(torch.cdist(z.double(), cb.embeddings.double()).argmin()) == 1
    zf, e = z.float(), cb.embeddings.float()
    formula = zf.pow(2).sum(-1, keepdim=True) - 2 * zf @ e.t() + e.pow(2).sum(-1)[None]
    assert int(formula.argmin(-1)) == 0
    assert int(cb.nearest(z)) == 0


def test_nearest_stays_fp32_under_bf16_autocast() -> None:
    # Autocast would run the z.e product in bf16 and move near-ties: 0.7 % of these vectors change code.
    cb = _codebook(512, 64)
    z = torch.randn(2000, 64) + 3.0
    expected = cb.nearest(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = cb.nearest(z)
    assert torch.equal(got, expected)


def test_straight_through_gradient_and_commitment_loss() -> None:
    cb = _codebook(16, 4, commitment_weight=0.25)
    z = torch.randn(2, 5, 4, requires_grad=True)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    out = cb(z, mask)
    codes = cb.embeddings[out.indices]
    assert torch.allclose(out.z_q, codes, atol=1e-6)
    (out.z_q * torch.arange(4.0)).sum().backward()
    assert torch.equal(z.grad, torch.arange(4.0).expand(2, 5, 4))  # identity gradient
    sq = (z.detach() - codes).pow(2).mean(-1)
    expected = 0.25 * sq[mask].mean()
    assert torch.allclose(out.commitment_loss, expected)
    z2 = z.detach().clone().requires_grad_(True)
    cb(z2, mask).commitment_loss.backward()
    assert z2.grad is not None and torch.equal(z2.grad[1, 3:], torch.zeros(2, 4))  # masked rows get no gradient
    assert cb.embeddings.grad is None  # the codebook learns by EMA, not by gradient


def test_ema_update_by_hand() -> None:
    cb = _codebook(3, 2, decay=0.5, epsilon=0.0)
    cb.embeddings.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    cb.reset_statistics()
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0]])
    idx = cb.nearest(z)
    assert idx.tolist() == [0, 0, 1]
    cb.ema_update(z, idx)
    n = torch.tensor([0.5 * 1 + 0.5 * 2, 0.5 * 1 + 0.5 * 1, 0.5 * 1 + 0.5 * 0])
    z_avg = torch.tensor([[0.5 * 0 + 0.5 * 1, 0.5 * 0 + 0.5 * 1], [0.5 * 10 + 0.5 * 9, 0.5 * 1], [0.0, 5.0]])
    assert torch.allclose(cb.N, n) and torch.allclose(cb.z_avg, z_avg)
    assert torch.allclose(cb.embeddings, z_avg / n[:, None])  # epsilon 0: no smoothing


def test_laplace_smoothing_and_mask() -> None:
    cb = _codebook(4, 3, decay=0.9, epsilon=1e-2)
    z = torch.randn(10, 3)
    idx = cb.nearest(z)
    mask = torch.arange(10) < 6
    cb.ema_update(z, idx, mask)
    counts = torch.bincount(idx[:6], minlength=4).float()
    n = 0.9 * 1 + 0.1 * counts
    total = n.sum()
    smoothed = (n + 1e-2) / (total + 4 * 1e-2) * total
    assert torch.allclose(cb.N, n)
    assert torch.allclose(cb.embeddings, cb.z_avg / smoothed[:, None])


def test_ema_converges_to_cluster_means() -> None:
    torch.manual_seed(1)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    cb = EMACodebook(3, 2, decay=0.8)
    cb.embeddings.copy_(centres + 1.5)  # start off-centre, each code nearest to its own cluster
    cb.reset_statistics()
    for _ in range(200):
        z = centres.repeat(50, 1) + 0.1 * torch.randn(150, 2)
        cb.ema_update(z, cb.nearest(z))
    assert torch.allclose(cb.embeddings, centres, atol=0.05)


def test_official_zero_statistics_are_restarted_not_divided_by() -> None:
    cb = _codebook(8, 4)
    cb.N.zero_()  # as shipped in the official file
    codes = cb.embeddings.clone()
    z = codes[:2] + 0.01
    cb.ema_update(z, cb.nearest(z))
    assert torch.isfinite(cb.embeddings).all()
    assert (cb.embeddings - codes).abs().max() < 0.1


def test_dead_code_restart() -> None:
    cb = _codebook(6, 3, dead_code_threshold=0.5)
    cb.N.copy_(torch.tensor([1.0, 0.1, 2.0, 0.0, 0.7, 0.2]))
    before = cb.embeddings.clone()
    z = torch.randn(4, 5, 3)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[0] = True
    n = cb.restart_dead_codes(z, mask, generator=torch.Generator().manual_seed(0))
    dead = torch.tensor([False, True, False, True, False, True])
    assert n == 3
    assert torch.equal(cb.embeddings[~dead], before[~dead])
    candidates = z[0]  # only the unmasked row may seed codes
    for c in dead.nonzero().squeeze(-1):
        assert (candidates - cb.embeddings[c]).abs().sum(-1).min() == 0
    assert torch.equal(cb.z_avg[dead], cb.embeddings[dead]) and torch.equal(cb.N[dead], torch.ones(3))
    assert cb.restart_dead_codes(z, mask) == 0  # nothing dead any more


def test_restart_with_fewer_outputs_than_dead_codes() -> None:
    cb = _codebook(6, 3)
    cb.N.zero_()
    z = torch.randn(2, 3)
    assert cb.restart_dead_codes(z) == 6
    for c in range(6):
        assert (z - cb.embeddings[c]).abs().sum(-1).min() == 0


def test_invalid_decay() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMACodebook(4, 2, decay=1.0)
