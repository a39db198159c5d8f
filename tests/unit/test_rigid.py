import math

import torch

from openesm3.geometry.rigid import Rigid, gram_schmidt


def _random_rotation(n: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    q[torch.det(q) < 0, :, 0] *= -1
    return q.float()


def test_gram_schmidt_is_a_proper_rotation_with_x_along_first_vector() -> None:
    x, y = torch.randn(10, 3), torch.randn(10, 3)
    rot = gram_schmidt(x, y)
    eye = torch.eye(3).expand(10, 3, 3)
    torch.testing.assert_close(rot.transpose(-1, -2) @ rot, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.det(rot), torch.ones(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(rot[..., 0], x / x.norm(dim=-1, keepdim=True), atol=1e-6, rtol=0)
    # y lies in the xy-plane: its z component in the local frame is zero
    local_y = (rot.transpose(-1, -2) @ y[..., None])[..., 0]
    assert local_y[:, 2].abs().max() < 1e-5


def test_backbone_frame_convention_and_local_coordinates() -> None:
    # Ideal backbone: CA at origin, C on the negative x-axis, N in the xy-plane (paper A.1.6.1).
    n = torch.tensor([0.5256, 1.3612, 0.0])
    ca = torch.zeros(3)
    c = torch.tensor([-1.5251, 0.0, 0.0])
    rot_true = _random_rotation(1)[0]
    t_true = torch.tensor([3.0, -2.0, 7.5])
    place = lambda p: rot_true @ p + t_true
    frames, valid = Rigid.from_backbone(place(n), place(ca), place(c))
    assert bool(valid)
    torch.testing.assert_close(frames.rot, rot_true, atol=1e-5, rtol=0)
    torch.testing.assert_close(frames.trans, t_true)
    torch.testing.assert_close(frames.invert_apply(place(n)), n, atol=1e-5, rtol=0)


def test_invalid_residues_get_identity_and_are_flagged() -> None:
    coords = torch.randn(6, 3, 3)
    coords[1, 0, 0] = float("nan")
    coords[2, 2, 1] = float("inf")
    coords[3, 1, 2] = 2e6  # above the validity bound
    coords[4, 1, 2] = -2e6  # the bound is one-sided, as in the reference
    coords[5, 0, 1] = 1e6  # the bound itself is out: a coordinate must be < 1e6 (spec §4.3)
    frames, valid = Rigid.from_backbone(coords[:, 0], coords[:, 1], coords[:, 2])
    assert valid.tolist() == [True, False, False, False, True, False]
    for i in (1, 2, 3):
        torch.testing.assert_close(frames.rot[i], torch.eye(3))
        torch.testing.assert_close(frames.trans[i], torch.zeros(3))
    assert torch.isfinite(frames.rot).all() and torch.isfinite(frames.trans).all()


def test_compose_invert_apply_roundtrip() -> None:
    a = Rigid(_random_rotation(4), torch.randn(4, 3))
    b = Rigid(_random_rotation(4), torch.randn(4, 3))
    p = torch.randn(4, 3)
    torch.testing.assert_close(a.compose(b).apply(p), a.apply(b.apply(p)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.invert().apply(a.apply(p)), p, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.invert_apply(a.apply(p)), p, atol=1e-5, rtol=1e-5)
    ident = a.compose(a.invert())
    torch.testing.assert_close(ident.rot, torch.eye(3).expand(4, 3, 3), atol=1e-5, rtol=0)
    # a different transform must give a different result (the test can fail)
    assert not torch.allclose(a.apply(p), b.apply(p))


def test_tensor12_roundtrip_and_indexing() -> None:
    r = Rigid(_random_rotation(6).view(2, 3, 3, 3), torch.randn(2, 3, 3))
    back = Rigid.from_tensor_12(r.to_tensor_12())
    torch.testing.assert_close(back.rot, r.rot)
    assert r[..., 1].shape == (2,)
    assert r[0].shape == (3,)
    assert r.unsqueeze(-1).shape == (2, 3, 1)
    assert math.isclose(float(r[..., 1].trans[0, 0]), float(r.trans[0, 1, 0]))


def test_cumulative_compose_equals_sequential_composition() -> None:
    torch.manual_seed(3)
    frames = Rigid(_random_rotation(2 * 11).view(2, 11, 3, 3), torch.randn(2, 11, 3))
    scanned = frames.cumulative_compose()
    for b in range(2):
        acc = frames[b, 0]
        for i in range(11):
            if i:
                acc = acc.compose(frames[b, i])
            torch.testing.assert_close(scanned.rot[b, i], acc.rot, atol=1e-5, rtol=0)
            torch.testing.assert_close(scanned.trans[b, i], acc.trans, atol=1e-5, rtol=0)
    single = Rigid(frames.rot[:, :1], frames.trans[:, :1])
    assert torch.equal(single.cumulative_compose().trans, single.trans)  # nothing to compose
