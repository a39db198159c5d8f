"""Structure encoder (tiny config): neighbourhoods, the vectorised forward against a plain per-block evaluation,
invariance (with a negative), padding/batching, missing coordinates. Real proteins from tests/data or ../shared."""

from __future__ import annotations

import gzip
import math

import biotite.structure as bs
import numpy as np
import pytest
import torch
from biotite.structure.io.pdb import PDBFile

from openesm3 import constants as C
from openesm3.config import STRUCTURE_ENCODER_TINY
from openesm3.errors import InputError
from openesm3.geometry.rigid import Rigid
from openesm3.layers.block import set_block_dropout
from openesm3.models.structure_encoder import StructureEncoder, find_neighbourhoods, knn_cost
from tests.conftest import TEST_DATA, shared_data


def backbone(name: str, chain: str | None = None) -> torch.Tensor:
    """[L, 3, 3] N, CA, C of one chain of a real PDB file (NaN where an atom is missing)."""
    path = TEST_DATA / "structures" / name
    if not path.exists():
        path = shared_data("dev", "top240", name)
    with gzip.open(path, "rt") as handle:
        atoms = PDBFile.read(handle).get_structure(model=1)
    atoms = atoms[bs.filter_amino_acids(atoms) & ~atoms.hetero]
    chain = chain or atoms.chain_id[0]
    atoms = atoms[atoms.chain_id == chain]
    starts = bs.get_residue_starts(atoms, add_exclusive_stop=True)
    out = np.full((len(starts) - 1, 3, 3), np.nan, dtype=np.float32)
    for r, (s, e) in enumerate(zip(starts[:-1], starts[1:])):
        for a, name_ in enumerate(("N", "CA", "C")):
            hit = np.nonzero(atoms.atom_name[s:e] == name_)[0]
            if hit.size:
                out[r, a] = atoms.coord[s + hit[0]]
    return torch.from_numpy(out)


def randomized_encoder(seed: int = 0) -> StructureEncoder:
    torch.manual_seed(seed)
    model = StructureEncoder(STRUCTURE_ENCODER_TINY).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1 / math.sqrt(p.shape[-1])))
            if name.endswith("norm.weight"):
                p.add_(1.0)
    return model


def plain_features(model: StructureEncoder, coords: torch.Tensor) -> torch.Tensor:
    """The encoder written the direct way: every neighbourhood through TransformerBlock.forward (all queries, full
    FFN), readout node 0. z [B, L, d_out]."""
    b, length = coords.shape[:2]
    frames, valid = Rigid.from_backbone(coords[:, :, 0], coords[:, :, 1], coords[:, :, 2])
    mask = torch.ones(b, length, dtype=torch.bool)
    k = min(model.config.n_neighbors, length)
    idx = find_neighbourhoods(knn_cost(coords[:, :, 1], valid, mask, None), k).index
    rows = torch.arange(b)[:, None, None]
    rel = (idx - torch.arange(length)[None, :, None]).clamp(-32, 32) + 33
    x = model.relative_position(rel.reshape(b * length, k))
    hood = Rigid(frames.rot[rows, idx].reshape(-1, k, 3, 3), frames.trans[rows, idx].reshape(-1, k, 3))
    hood_mask = valid[rows, idx].reshape(-1, k)
    for block in model.blocks:
        x = block(x, None, hood, hood_mask)
    centre = x[:, 0].view(b, length, -1) * valid[..., None]
    return model.pre_vq_proj(centre)


def test_knn_cost_and_neighbourhoods() -> None:
    ca = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [float("nan"), 0, 0], [2, 0, 0]]])
    valid = torch.isfinite(ca).all(-1)
    mask = torch.tensor([[True, True, True, True, False]])  # last residue is padding
    cost = knn_cost(ca, valid, mask, None)
    assert cost[0, 0, 1] == 1.0 and cost[0, 0, 2] == 5.0
    assert cost[0, 0, 3] == C.ENCODER_MISSING_COST + 3 * C.ENCODER_MISSING_COST_PER_OFFSET  # missing: sequence distance
    assert cost[0, 3, 3] == C.ENCODER_MISSING_COST  # an invalid centre is still its own nearest
    assert torch.isinf(cost[0, :, 4]).all() and torch.isinf(cost[0, 4]).all()  # padding
    hood = find_neighbourhoods(cost, 3).index[0]
    assert hood[:4, 0].tolist() == [0, 1, 2, 3]  # centre first
    assert hood[0].tolist() == [0, 1, 2] and hood[3].tolist() == [3, 2, 1]
    seq = torch.tensor([[0, 0, 1, 1, 1]])
    cost = knn_cost(ca, valid, torch.ones_like(mask), seq)
    assert torch.isinf(cost[0, 0, 2]) and torch.isinf(cost[0, 2, 1]) and cost[0, 2, 4] == 3.0


def test_vectorised_forward_equals_plain_blocks() -> None:
    model = randomized_encoder()
    coords = backbone("1a62.pdb.gz")[None]  # 122 residues, real
    with torch.no_grad():
        z, _ = model.encode_features(coords)
        expected = plain_features(model, coords)
    assert (z - expected).abs().max() < 2e-5
    # chunking does not change anything
    model.chunk_size = 50
    with torch.no_grad():
        z7, _ = model.encode_features(coords)
    assert (z7 - z).abs().max() < 1e-5


def test_tokens_are_rigid_motion_invariant_and_local() -> None:
    model = randomized_encoder(1)
    coords = backbone("1a62.pdb.gz")[None]
    rot = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))[0]
    moved = coords @ rot.T + torch.tensor([10.0, -40.0, 7.0])
    with torch.no_grad():
        a = model(coords)
        b = model(moved)
    assert (a.z - b.z).abs().max() < 1e-3
    assert (a.tokens == b.tokens).float().mean() > 0.95  # ties aside, identical codes
    # negative: moving one residue changes its neighbourhood's codes, not far-away ones
    bent = coords.clone()
    bent[0, 60] += torch.tensor([1.5, -1.0, 0.5])
    with torch.no_grad():
        c = model(bent)
    changed = (c.z - a.z).abs().amax(-1)[0] > 1e-3
    assert changed[60]
    near = (coords[0, :, 1] - coords[0, 60, 1]).norm(dim=-1) < 4.0
    assert changed[near].all()
    assert not changed[(coords[0, :, 1] - coords[0, 60, 1]).norm(dim=-1) > 40.0].any()


def test_missing_coordinates_and_relative_positions() -> None:
    model = randomized_encoder(2)
    coords = backbone("1a62.pdb.gz")[None]
    holes = coords.clone()
    holes[0, 10, 1] = float("nan")  # CA missing
    holes[0, 11, 0] = float("inf")
    holes[0, 12, 2, 0] = 2e6  # beyond the validity bound
    with torch.no_grad():
        out = model(holes)
    assert out.residue_mask[0, 10:13].tolist() == [False, False, False] and out.residue_mask[0, 13]
    assert torch.isfinite(out.z).all()
    # residues without a frame read out zeros: z is the projection bias
    assert torch.allclose(out.z[0, 10], model.pre_vq_proj.bias, atol=1e-6)
    # default residue_index is 0..L-1; any shift of the numbering gives the same result, a gap does not
    with torch.no_grad():
        base = model.encode_features(coords)[0]
        shifted = model.encode_features(coords, residue_index=torch.arange(122)[None] + 100)[0]
        gap = torch.arange(122)[None] + (torch.arange(122)[None] >= 60) * 50
        gapped = model.encode_features(coords, residue_index=gap)[0]
    assert (base - shifted).abs().max() < 1e-5
    assert (gapped - base).abs().amax(-1)[0, 55:65].min() > 1e-4


@pytest.mark.parametrize("pad", [float("nan"), 0.0, 7.5])  # the mask, not the padding's coordinates, decides
def test_batched_with_padding_equals_single(pad: float) -> None:
    model = randomized_encoder(3)
    a = backbone("1a62.pdb.gz")
    b = a[:40] @ torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    tiny = a[70:80]  # 10 residues: fewer than K = 16 neighbours
    batch = torch.full((3, 122, 3, 3), pad)
    batch[0], batch[1, :40], batch[2, :10] = a, b, tiny
    mask = torch.zeros(3, 122, dtype=torch.bool)
    mask[0], mask[1, :40], mask[2, :10] = True, True, True
    with torch.no_grad():
        out = model(batch, mask=mask)
        for row, single in ((0, a), (1, b), (2, tiny)):
            ref = model(single[None])
            n = single.shape[0]
            assert (out.z[row, :n] - ref.z[0]).abs().max() < 1e-5
            assert torch.equal(out.tokens[row, :n], ref.tokens[0])
    assert not out.residue_mask[1, 40:].any()


@pytest.mark.parametrize("shape", [(1, 0), (0, 5)])
@pytest.mark.parametrize("padded", [False, True])
def test_no_residues_encode_to_empty_outputs(shape: tuple[int, int], padded: bool) -> None:
    model = randomized_encoder()
    mask = torch.ones(shape, dtype=torch.bool) if padded else None
    with torch.no_grad():
        out = model(torch.zeros(*shape, 3, 3), mask=mask)
    d_out = model.config.d_out
    assert out.tokens.shape == shape and out.residue_mask.shape == shape
    assert out.z.shape == (*shape, d_out) and out.z_q.shape == (*shape, d_out)
    assert float(out.commitment_loss) == 0.0


def test_bad_coordinate_shape() -> None:
    with pytest.raises(ValueError, match="coords"):
        randomized_encoder()(torch.zeros(1, 5, 2, 3))


def test_training_path_equals_inference_path_and_backpropagates() -> None:
    model = randomized_encoder(4)
    coords = backbone("1a62.pdb.gz")[None, :60]
    with torch.no_grad():
        inference = model(coords)
    out = model(coords)  # grad enabled: the out-of-place branch of the geometric attention
    assert (out.z - inference.z).abs().max() < 1e-5  # fp32 rounding (kernels differ with autograd)
    assert torch.equal(out.tokens, inference.tokens)
    (out.z_q.square().mean() + out.commitment_loss).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["blocks.0.geom_attn.distance_scale"].abs().sum() > 0
    assert grads["relative_position.weight"].abs().sum() > 0


def test_folded_first_ffn_follows_weight_changes() -> None:
    model = randomized_encoder(5)
    coords = backbone("1a62.pdb.gz")[None, :50]
    with torch.no_grad():
        model.encode_features(coords)  # builds the cached folded matrix
        model.blocks[0].ffn.norm.weight.mul_(1.5)  # in place: the cache must notice
        model.relative_position.weight.add_(0.1)
        fast, _ = model.encode_features(coords)
        expected = plain_features(model, coords)
    assert (fast - expected).abs().max() < 2e-5


def test_folded_first_ffn_follows_a_reload_of_inference_tensors() -> None:
    # Weights created under torch.inference_mode have no version counter, so an in-place load_state_dict there
    # leaves data pointers and "versions" unchanged: the cached folded matrix must still be dropped.
    coords = backbone("1a62.pdb.gz")[None, :30]
    first, second = randomized_encoder(6).state_dict(), randomized_encoder(7)
    with torch.no_grad():
        expected = second.encode_features(coords)[0]
    with torch.inference_mode():
        model = StructureEncoder(STRUCTURE_ENCODER_TINY).eval()
        model.load_state_dict(first)
        model.encode_features(coords)  # caches the folded matrix of the first weights
        model.load_state_dict(second.state_dict())
        got = model.encode_features(coords)[0]
    assert (got - expected).abs().max() < 2e-5


@pytest.mark.parametrize("grad", [True, False])
def test_block_dropout_reaches_the_encoder_blocks(grad: bool) -> None:
    # Dropout 1 zeroes every residual branch in training: each residue with a frame reads out its own row of the
    # position table (offset 0), whichever path (autograd or the folded no-grad one) runs.
    model = randomized_encoder(8).train()
    set_block_dropout(model, 1.0)
    coords = backbone("1a62.pdb.gz")[None, :20]
    with torch.set_grad_enabled(grad):
        z, valid = model.encode_features(coords)
        own_row = model.pre_vq_proj(model.relative_position.weight[model.config.max_relative_position + 1])
    assert valid.all()
    torch.testing.assert_close(z[0], own_row.expand(20, -1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": torch.ones(1, 12, dtype=torch.long)}, "mask: expected a bool tensor"),
        ({"mask": torch.ones(1, 12)}, "mask: expected a bool tensor"),
        ({"mask": torch.ones(12, dtype=torch.bool)}, r"mask: expected shape \[B, L\]"),
        ({"mask": torch.ones(1, 11, dtype=torch.bool)}, r"mask: expected shape \[B, L\]"),
        ({"sequence_id": torch.zeros(1, 11, dtype=torch.long)}, r"sequence_id: expected shape \[B, L\]"),
        ({"residue_index": torch.arange(12)}, r"residue_index: expected shape \[B, L\]"),
        ({"residue_index": torch.arange(11)[None]}, r"residue_index: expected shape \[B, L\]"),
        ({"residue_index": torch.arange(12.0)[None]}, "residue_index: expected an integer tensor"),
    ],
)
def test_bad_side_inputs_raise_input_errors_naming_them(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        randomized_encoder()(torch.randn(1, 12, 3, 3), **kwargs)


def test_folded_first_ffn_built_under_autocast_does_not_leak_into_fp32() -> None:
    # The folded matrix is cached: one built from bf16 products under autocast must not serve later fp32 calls.
    coords = backbone("1a62.pdb.gz")[None, :30]
    model = randomized_encoder(9)
    with torch.no_grad():
        expected = model.encode_features(coords)[0]
        model.__dict__.pop("_folded_cache")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.encode_features(coords)
        got = model.encode_features(coords)[0]
    assert (got - expected).abs().max() < 2e-5
