"""All-atom coordinates from backbone frames and torsion angles (paper A.1.7.2, Algorithm 8 steps 4-6).

Each residue has six rigid groups (:mod:`openesm3.structure.sidechain_geometry`): the backbone frame T (from the
decoder), psi (O) and chi1..chi4. A group's frame is its parent's frame composed with a fixed transform (where the
torsion's axis atoms sit in the parent, from ideal geometry) and a rotation by the group's torsion about that axis
(the local x-axis): ``T_g = T_parent o D_g o R_x(angle_g)``. Its atoms are ideal local coordinates placed by T_g.
The result is atom14 (slots per residue type), convertible to atom37.

Torsions come as unnormalised (sin, cos) pairs, 7 per residue in AlphaFold2's order (omega, phi, psi, chi1..chi4;
omega and phi place only hydrogens and are unused). Residue types index :data:`RESTYPES` (0..19 in the official
sequence-vocabulary order, 20 unknown: backbone and O only). Everything is fp32.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.geometry.rigid import Rigid
from openesm3.structure import sidechain_geometry as S
from openesm3.structure.residue_constants import ATOM37_ORDER, RESTYPE_1TO3

N_ATOM14 = S.N_ATOM14
N_GROUPS = S.N_GROUPS


@dataclass(frozen=True)
class ResidueTables:
    """Per-residue-type tables (numpy), index 20 = unknown.

    Attributes:
        atom14_local: [21, 14, 3] ideal coordinates of each slot in its group's frame at torsion 0.
        atom14_group: [21, 14] group (0..5) of each slot (0 for empty slots).
        atom14_mask: [21, 14] bool, slot exists.
        atom14_to_atom37: [21, 14] atom37 index of each slot (0 for empty slots).
        group_default_rot: [21, 6, 3, 3], group_default_trans: [21, 6, 3]: the fixed transform D_g of each group in
            its parent's frame (identity for the backbone).
        group_exists: [21, 6] bool.
        torsion_atoms37: [21, 6, 4] atom37 indices (a, b, c, d) defining each group's torsion (group 0: unused).
        torsion_pi_periodic: [21, 6] bool, torsion defined modulo pi.
        symmetric_swap: [21, 14] atom14 slot each slot is exchanged with by the pi flip (itself if none).
    """

    atom14_local: np.ndarray
    atom14_group: np.ndarray
    atom14_mask: np.ndarray
    atom14_to_atom37: np.ndarray
    group_default_rot: np.ndarray
    group_default_trans: np.ndarray
    group_exists: np.ndarray
    torsion_atoms37: np.ndarray
    torsion_pi_periodic: np.ndarray
    symmetric_swap: np.ndarray


def _resnames() -> list[str]:
    return [RESTYPE_1TO3[one] for one in S.RESTYPES]


@functools.cache
def residue_tables() -> ResidueTables:
    """Build the tables from the chemistry and the measured ideal coordinates (cached)."""
    n = S.N_RESTYPES
    local = np.zeros((n, N_ATOM14, 3))
    group = np.zeros((n, N_ATOM14), dtype=np.int64)
    mask = np.zeros((n, N_ATOM14), dtype=bool)
    to37 = np.zeros((n, N_ATOM14), dtype=np.int64)
    d_rot = np.tile(np.eye(3), (n, N_GROUPS, 1, 1))
    d_trans = np.zeros((n, N_GROUPS, 3))
    exists = np.zeros((n, N_GROUPS), dtype=bool)
    tors = np.zeros((n, N_GROUPS, 4), dtype=np.int64)
    pi_periodic = np.zeros((n, N_GROUPS), dtype=bool)
    swap = np.tile(np.arange(N_ATOM14), (n, 1))
    backbone = {name: np.array(xyz) for name, xyz in zip(("N", "CA", "C"), C.BACKBONE_LOCAL_COORDS)}

    names = [*_resnames(), None]  # unknown: backbone N, CA, C and O
    for r, three in enumerate(names):
        slots = S.atom14_names(three) if three else ("N", "CA", "C", "O")
        ideal = S.IDEAL_LOCAL_COORDS["GLY"] if three is None else S.IDEAL_LOCAL_COORDS[three]
        for i, atom in enumerate(slots):
            mask[r, i] = True
            to37[r, i] = ATOM37_ORDER[atom]
            if three is None:
                group[r, i] = 1 if atom == "O" else 0
            else:
                group[r, i] = S.group_of_atom(three, atom)
            local[r, i] = backbone[atom] if atom in backbone else ideal[atom]
        exists[r, 0] = exists[r, 1] = True
        # psi: N, CA, C in the backbone frame
        d_rot[r, 1], d_trans[r, 1] = S.frame_from_atoms(backbone["N"], backbone["CA"], backbone["C"])
        tors[r, 1] = [ATOM37_ORDER[a] for a in S.PSI_ATOMS]
        if three is None:
            continue
        where = {atom: (group[r, i], local[r, i]) for i, atom in enumerate(slots)}
        for k, (a, b, c, d) in enumerate(S.CHI_ATOMS[three]):
            g = 2 + k
            exists[r, g] = True
            tors[r, g] = [ATOM37_ORDER[x] for x in (a, b, c, d)]
            pi_periodic[r, g] = (three, k + 1) in S.PI_PERIODIC_CHI
            if k == 0:  # chi1 hangs on the backbone frame: N, CA, CB there
                pa, pb, pc = backbone["N"], backbone["CA"], where["CB"][1]
            else:  # chi k on chi k-1's frame: its b at (-|b c|, 0, 0), its c at the origin, its d as measured
                # chi k-1's b atom is the origin of the frame its c atom is measured in, so |b c| = |c local|
                bond = np.linalg.norm(where[S.CHI_ATOMS[three][k - 1][2]][1])
                pa, pb, pc = np.array([-bond, 0.0, 0.0]), np.zeros(3), where[c][1]
            d_rot[r, g], d_trans[r, g] = S.frame_from_atoms(pa, pb, pc)
        for a1, a2 in S.SYMMETRIC_ATOMS.get(three, ()):
            i1, i2 = slots.index(a1), slots.index(a2)
            swap[r, i1], swap[r, i2] = i2, i1
    return ResidueTables(local, group, mask, to37, d_rot, d_trans, exists, tors, pi_periodic, swap)


def restype_from_sequence_tokens(tokens: Tensor) -> Tensor:
    """Residue-type index 0..20 from official sequence ids [...] (ids 4..23 are the 20 amino acids; others 20)."""
    first = C.CANONICAL_AMINO_ACID_IDS[0]
    idx = tokens - first
    return torch.where((idx >= 0) & (idx < len(S.RESTYPES)), idx, torch.full_like(idx, S.UNKNOWN_RESTYPE))


@functools.cache
def _torch_tables(device: torch.device) -> dict[str, Tensor]:
    t = residue_tables()

    def f32(x: np.ndarray) -> Tensor:
        return torch.tensor(x, dtype=torch.float32, device=device)

    return {
        "atom14_local": f32(t.atom14_local),
        "atom14_group": torch.tensor(t.atom14_group, device=device),
        "atom14_mask": torch.tensor(t.atom14_mask, device=device),
        "atom14_to_atom37": torch.tensor(t.atom14_to_atom37, device=device),
        "group_default_rot": f32(t.group_default_rot),
        "group_default_trans": f32(t.group_default_trans),
        "group_exists": torch.tensor(t.group_exists, device=device),
        "torsion_atoms37": torch.tensor(t.torsion_atoms37, device=device),
        "torsion_pi_periodic": torch.tensor(t.torsion_pi_periodic, device=device),
        "symmetric_swap": torch.tensor(t.symmetric_swap, device=device),
    }


def tables(device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """The :class:`ResidueTables` as torch tensors on ``device`` (cached per device)."""
    return _torch_tables(torch.device(device))


def normalize_torsions(torsions: Tensor, eps: float = 1e-8) -> Tensor:
    """Unit (sin, cos) pairs [..., 2] from raw outputs."""
    return torsions / torch.sqrt(torsions.pow(2).sum(-1, keepdim=True) + eps)


def _rot_x(sin_cos: Tensor) -> Tensor:
    """Rotations about x [..., 3, 3] from unit (sin, cos) pairs [..., 2]."""
    s, c = sin_cos.unbind(-1)
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    return torch.stack(
        [torch.stack([one, zero, zero], -1), torch.stack([zero, c, -s], -1), torch.stack([zero, s, c], -1)], -2
    )


def group_frames(backbone: Rigid, torsions: Tensor, restype: Tensor) -> Rigid:
    """Global frames of the 6 rigid groups [..., L, 6] from backbone frames [..., L], raw torsions [..., L, 7, 2]
    and residue types [..., L]. Groups a residue lacks get their parent's frame composed with identity data."""
    tab = tables(torsions.device)
    sc = normalize_torsions(torsions.float())
    default = Rigid(tab["group_default_rot"][restype], tab["group_default_trans"][restype])  # [..., L, 6]
    frames: list[Rigid] = [backbone.float()]
    for g in range(1, N_GROUPS):
        parent = frames[S.GROUP_PARENT[g]]
        rot = _rot_x(sc[..., S.TORSION_SLOT_OF_GROUP[g], :])
        local = Rigid(default.rot[..., g, :, :] @ rot, default.trans[..., g, :])
        frames.append(parent.compose(local))
    return Rigid(torch.stack([f.rot for f in frames], -3), torch.stack([f.trans for f in frames], -2))


@dataclass(frozen=True)
class AllAtom:
    """atom14 [..., L, 14, 3] and its mask [..., L, 14] (slot exists for the residue type)."""

    atom14: Tensor
    atom14_mask: Tensor

    def to_atom37(self, restype: Tensor) -> tuple[Tensor, Tensor]:
        """(atom37 [..., L, 37, 3] with 0 where absent, atom37 mask [..., L, 37])."""
        return atom14_to_atom37(self.atom14, self.atom14_mask, restype)


def all_atom_from_frames(backbone: Rigid, torsions: Tensor, restype: Tensor) -> AllAtom:
    """Place every atom14 atom (Algorithm 8 steps 4-6): backbone frames [..., L], raw torsions [..., L, 7, 2],
    residue types [..., L] (0..20). The backbone N, CA, C equal ``backbone_from_frames(backbone)``."""
    tab = tables(torsions.device)
    frames = group_frames(backbone, torsions, restype)  # [..., L, 6]
    group = tab["atom14_group"][restype]  # [..., L, 14]
    idx = group[..., None, None].expand(*group.shape, 3, 3)
    rot = torch.gather(frames.rot, -3, idx)
    trans = torch.gather(frames.trans, -2, group[..., None].expand(*group.shape, 3))
    local = tab["atom14_local"][restype]
    xyz = (rot @ local[..., None]).squeeze(-1) + trans
    mask = tab["atom14_mask"][restype]
    return AllAtom(atom14=xyz * mask[..., None].to(xyz.dtype), atom14_mask=mask)


def atom14_to_atom37(atom14: Tensor, atom14_mask: Tensor, restype: Tensor) -> tuple[Tensor, Tensor]:
    """Scatter atom14 [..., L, 14, 3] into atom37 [..., L, 37, 3] (0 where absent) and its mask."""
    tab = tables(atom14.device)
    index = tab["atom14_to_atom37"][restype]  # [..., L, 14]
    shape = (*atom14.shape[:-2], C.ATOM37_NUM_ATOMS)
    out = torch.zeros(*shape, 3, dtype=atom14.dtype, device=atom14.device)
    count = torch.zeros(shape, dtype=torch.int64, device=atom14.device)
    src = atom14 * atom14_mask[..., None].to(atom14.dtype)
    # empty slots all point at atom37 index 0 (N) and add zeros: sums, not assignments, keep N intact
    out.scatter_add_(-2, index[..., None].expand(*index.shape, 3), src)
    count.scatter_add_(-1, index, atom14_mask.long())
    return out, count > 0


def atom37_to_atom14(atom37: Tensor, atom37_mask: Tensor, restype: Tensor) -> tuple[Tensor, Tensor]:
    """Gather atom37 [..., L, 37, 3] + mask [..., L, 37] into atom14 [..., L, 14, 3] + mask [..., L, 14]
    (a slot is present when it exists for the type and the atom37 atom is present)."""
    tab = tables(atom37.device)
    index = tab["atom14_to_atom37"][restype]
    xyz = torch.gather(atom37, -2, index[..., None].expand(*index.shape, 3))
    present = torch.gather(atom37_mask, -1, index) & tab["atom14_mask"][restype]
    return xyz * present[..., None].to(xyz.dtype), present


def torsion_angles(atom37: Tensor, atom37_mask: Tensor, restype: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """True group torsions of a structure, in the builder's convention.

    Returns ``(sin_cos [..., L, 7, 2], alternative [..., L, 7, 2], mask [..., L, 7])``: unit (sin, cos) of psi
    (N-CA-C-O) and chi1..chi4 in their output slots, the same shifted by pi for pi-periodic chis (else equal), and
    which exist with all four atoms present (slots 0 and 1 are never set).
    """
    tab = tables(atom37.device)
    idx = tab["torsion_atoms37"][restype]  # [..., L, 6, 4]
    flat = idx.flatten(-2)  # [..., L, 24]
    xyz = torch.gather(atom37.float(), -2, flat[..., None].expand(*flat.shape, 3)).unflatten(-2, (N_GROUPS, 4))
    present = torch.gather(atom37_mask, -1, flat).unflatten(-1, (N_GROUPS, 4)).all(-1)
    ok = present & tab["group_exists"][restype]
    ok[..., 0] = False
    a, b, c, d = xyz.unbind(-2)
    frame = Rigid.from_gram_schmidt(c, c - b, a - b)
    local = frame.invert_apply(d)
    angle_sc = torch.nn.functional.normalize(torch.stack([local[..., 2], local[..., 1]], -1), dim=-1)
    flip = tab["torsion_pi_periodic"][restype]
    alt = torch.where(flip[..., None], -angle_sc, angle_sc)
    slots = list(S.TORSION_SLOT_OF_GROUP[1:])
    shape = (*restype.shape, C.N_TORSIONS)
    out = torch.zeros(*shape, 2, device=atom37.device)
    out_alt = torch.zeros_like(out)
    mask = torch.zeros(shape, dtype=torch.bool, device=atom37.device)
    out[..., slots, :] = angle_sc[..., 1:, :]
    out_alt[..., slots, :] = alt[..., 1:, :]
    mask[..., slots] = ok[..., 1:]
    return out, out_alt, mask
