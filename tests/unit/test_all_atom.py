"""All-atom decoding: side-chain tables, torsions, frame composition into atom14/atom37, all-atom losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openesm3.geometry import all_atom as A
from openesm3.geometry.rigid import Rigid
from openesm3.layers.structure_heads import backbone_from_frames
from openesm3.structure import sidechain_geometry as S
from openesm3.structure.io import load_chain
from openesm3.structure.residue_constants import ATOM37_ORDER, RESIDUE_HEAVY_ATOMS, RESTYPE_1TO3
from openesm3.training.data import sequence_to_ids
from openesm3.training.tokenizer.all_atom_losses import (
    all_atom_direction_loss,
    all_atom_distance_loss,
    bonded_partners,
    torsion_loss,
)
from tests.conftest import TEST_DATA

TOP240_COPIES = ("1a62", "1aac", "1orc", "1jhg", "2ctc", "1fxd", "1fus")


def _chain(name: str = "structures/1a62.pdb.gz") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    chain = load_chain(TEST_DATA / name)
    x37 = torch.tensor(np.nan_to_num(chain.atom37), dtype=torch.float32)
    m37 = torch.tensor(chain.atom37_mask)
    restype = A.restype_from_sequence_tokens(torch.tensor(sequence_to_ids(chain.sequence)))
    return x37, m37, restype, chain.sequence


def _rebuild(x37: torch.Tensor, m37: torch.Tensor, restype: torch.Tensor) -> tuple[A.AllAtom, torch.Tensor]:
    frames, ok = Rigid.from_backbone(x37[:, 0], x37[:, 1], x37[:, 2])
    sc, _, _ = A.torsion_angles(x37, m37, restype)
    return A.all_atom_from_frames(frames, sc, restype), ok


def _dihedral(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """IUPAC dihedral by the textbook formula (independent of the module's frame construction)."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - (b0 * b1).sum(-1, keepdims=True) * b1
    w = b2 - (b2 * b1).sum(-1, keepdims=True) * b1
    return np.arctan2((np.cross(b1, v) * w).sum(-1), (v * w).sum(-1))


# ---- tables -----------------------------------------------------------------------------------------------------
def test_every_side_chain_atom_has_one_group() -> None:
    for one in S.RESTYPES:
        three = RESTYPE_1TO3[one]
        names = S.atom14_names(three)
        assert len(names) <= 14 and names[:4] == ("N", "CA", "C", "O")
        assert set(names) == set(RESIDUE_HEAVY_ATOMS[three]) - {"OXT"}
        grouped = [a for atoms in S.CHI_GROUP_ATOMS[three] for a in atoms]
        assert len(grouped) == len(set(grouped))
        assert set(grouped) | {"N", "CA", "C", "O", "CB"} >= set(names)
        assert len(S.CHI_GROUP_ATOMS[three]) == len(S.CHI_ATOMS[three])
        for k, (_, _, _, d) in enumerate(S.CHI_ATOMS[three]):
            assert S.group_of_atom(three, d) == 2 + k  # a chi's fourth atom moves with it
    assert len(S.atom14_names("TRP")) == 14


def test_ideal_coordinates_agree_with_a_fresh_measurement() -> None:
    chains = []
    for name in TOP240_COPIES:
        chain = load_chain(TEST_DATA / "structures" / f"{name}.pdb.gz")
        chains.append((chain.sequence, np.asarray(chain.atom37), np.asarray(chain.atom37_mask)))
    fresh = S.measure_ideal_coordinates(chains)
    diffs = [
        np.linalg.norm(np.subtract(xyz, S.IDEAL_LOCAL_COORDS[three][atom]))
        for three, atoms in fresh.items()
        for atom, xyz in atoms.items()
    ]
    assert len(diffs) > 90
    assert np.median(diffs) < 0.05 and max(diffs) < 0.3
    # chemistry sanity: CB-CG bond of Leu and the C=O bond
    assert np.linalg.norm(S.IDEAL_LOCAL_COORDS["LEU"]["CG"]) == pytest.approx(1.53, abs=0.03)
    assert np.linalg.norm(S.IDEAL_LOCAL_COORDS["ALA"]["O"]) == pytest.approx(1.23, abs=0.03)


# ---- torsions -----------------------------------------------------------------------------------------------------
def test_torsions_are_iupac_dihedrals() -> None:
    x37, m37, restype, sequence = _chain()
    sc, alt, mask = A.torsion_angles(x37, m37, restype)
    ours = torch.atan2(sc[..., 0], sc[..., 1]).numpy()
    xyz = x37.numpy()
    checked = 0
    for i, one in enumerate(sequence):
        if one not in S.RESTYPES:
            continue
        three = RESTYPE_1TO3[one]
        for g, atoms in enumerate(S.group_definitions(three), start=1):
            slot = S.TORSION_SLOT_OF_GROUP[g]
            if atoms is None:
                assert not bool(mask[i, slot])
                continue
            if not bool(mask[i, slot]):
                continue
            ref = _dihedral(*(xyz[i, ATOM37_ORDER[a]] for a in atoms))
            assert abs(np.angle(np.exp(1j * (ours[i, slot] - ref)))) < 1e-4
            checked += 1
    assert checked > 300
    assert not bool(mask[:, :2].any())  # omega and phi are not used
    flip = (alt != sc).any(-1)
    pi_residues = {i for i, one in enumerate(sequence) if one in "DEFY"}
    assert {int(i) for i in flip.any(-1).nonzero()} <= pi_residues


# ---- building atoms ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["structures/1a62.pdb.gz", "1igd.pdb.gz", "structures/107L.pdb.gz"])
def test_true_frames_and_torsions_rebuild_the_structure(name: str) -> None:
    x37, m37, restype, _ = _chain(name)
    built, ok = _rebuild(x37, m37, restype)
    true14, present = A.atom37_to_atom14(x37, m37, restype)
    err = (built.atom14 - true14).norm(dim=-1)[present & ok[:, None]]
    # the floor of ideal geometry: bond angles vary by a few degrees around the measured means
    assert err.median() < 0.1 and torch.quantile(err, 0.95) < 0.7 and err.max() < 2.0
    frames, _ = Rigid.from_backbone(x37[:, 0], x37[:, 1], x37[:, 2])
    torch.testing.assert_close(built.atom14[:, :3], backbone_from_frames(frames))


def test_equivariance_and_torsion_locality() -> None:
    x37, m37, restype, sequence = _chain()
    frames, _ = Rigid.from_backbone(x37[:, 0], x37[:, 1], x37[:, 2])
    sc, _, _ = A.torsion_angles(x37, m37, restype)
    base = A.all_atom_from_frames(frames, sc, restype).atom14
    # a global rigid motion moves every atom rigidly
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))
    q = q * torch.det(q)
    moved = Rigid(q @ frames.rot, frames.trans @ q.T + torch.tensor([1.0, 2.0, 3.0]))
    exists = A.tables()["atom14_mask"][restype]
    expected = base @ q.T + torch.tensor([1.0, 2.0, 3.0])
    got = A.all_atom_from_frames(moved, sc, restype).atom14
    torch.testing.assert_close(got[exists], expected[exists], atol=1e-4, rtol=0)
    # changing chi2 of a lysine moves CD, CE, NZ about the CB-CG bond and nothing else
    i = sequence.index("K")
    names = S.atom14_names("LYS")
    turned = sc.clone()
    turned[i, 4] = torch.tensor([1.0, 0.0])  # chi2 = 90 degrees
    out = A.all_atom_from_frames(frames, turned, restype).atom14
    moved_atoms = {names[j] for j in range(len(names)) if (out[i, j] - base[i, j]).norm() > 1e-4}
    assert moved_atoms == {"CD", "CE", "NZ"}
    assert torch.equal(out[torch.arange(len(sequence)) != i], base[torch.arange(len(sequence)) != i])
    cg, cd = names.index("CG"), names.index("CD")
    assert (out[i, cd] - out[i, cg]).norm() == pytest.approx(float((base[i, cd] - base[i, cg]).norm()), abs=1e-4)


def test_psi_places_the_carbonyl_oxygen_of_known_and_unknown_residues() -> None:
    # O hangs on the psi frame for every residue type, the unknown one (X: backbone only) included.
    x37, m37, restype, _ = _chain()
    frames, _ = Rigid.from_backbone(x37[:, 0], x37[:, 1], x37[:, 2])
    sc, _, _ = A.torsion_angles(x37, m37, restype)
    unknown = restype.clone()
    unknown[7] = S.UNKNOWN_RESTYPE
    for types in (restype, unknown):
        base = A.all_atom_from_frames(frames, sc, types).atom14
        turned = sc.clone()
        turned[7, 2] = -turned[7, 2]  # (sin, cos) negated: psi + 180 degrees
        out = A.all_atom_from_frames(frames, turned, types).atom14
        o = 3  # atom14 slots start N, CA, C, O for every type
        assert (out[7, o] - base[7, o]).norm() > 0.1
        assert torch.equal(out[7, :3], base[7, :3])


def test_pi_flip_swaps_symmetric_ring_atoms() -> None:
    x37, m37, restype, sequence = _chain()
    frames, _ = Rigid.from_backbone(x37[:, 0], x37[:, 1], x37[:, 2])
    sc, _, _ = A.torsion_angles(x37, m37, restype)
    i = sequence.index("F") if "F" in sequence else sequence.index("Y")
    base = A.all_atom_from_frames(frames, sc, restype).atom14[i]
    flipped_sc = sc.clone()
    flipped_sc[i, 4] = -sc[i, 4]
    flipped = A.all_atom_from_frames(frames, flipped_sc, restype).atom14[i]
    swap = A.tables()["symmetric_swap"][restype[i]]
    assert (flipped[swap] - base).norm(dim=-1).max() < 0.1  # the measured ring is symmetric to < 0.1 A


def test_atom14_atom37_round_trip() -> None:
    x37, m37, restype, _ = _chain()
    x14, m14 = A.atom37_to_atom14(x37, m37, restype)
    back, back_mask = A.atom14_to_atom37(x14, m14, restype)
    keep = m37.clone()
    keep[:, ATOM37_ORDER["OXT"]] = False
    assert torch.equal(back_mask, keep)
    torch.testing.assert_close(back[keep], x37[keep])


# ---- losses --------------------------------------------------------------------------------------------------------
def test_all_atom_losses_zero_rigid_positive_for_mirror() -> None:
    x37, m37, restype, _ = _chain()
    x14, m14 = A.atom37_to_atom14(x37, m37, restype)
    x14, m14 = x14[None], m14[None]
    assert all_atom_distance_loss(x14, x14, m14, 4096).item() < 1e-6
    assert all_atom_direction_loss(x14, x14, m14, 4096).item() < 1e-6
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2)))
    q = q * torch.det(q)
    moved = x14 @ q.T + 5.0
    assert all_atom_distance_loss(moved, x14, m14, 4096).item() < 1e-4
    assert all_atom_direction_loss(moved, x14, m14, 4096).item() < 1e-4
    mirror = x14 * torch.tensor([-1.0, 1.0, 1.0])
    assert all_atom_distance_loss(mirror, x14, m14, 4096).item() < 1e-4
    assert all_atom_direction_loss(mirror, x14, m14, 4096).item() > 0.1
    # one atom 100 A away: all of its pairs clamp at 25
    far = x14.clone()
    far[0, 5, 1] += torch.tensor([100.0, 0.0, 0.0])
    n = int(m14.sum())
    assert all_atom_distance_loss(far, x14, m14, 100_000).item() == pytest.approx(25.0 * 2 * (n - 1) / n**2, rel=0.05)


def test_bonded_partners_follow_chemistry() -> None:
    x37, m37, restype, sequence = _chain()
    x14, m14 = A.atom37_to_atom14(x37, m37, restype)
    partners, has_two = bonded_partners(x14[None], m14[None])
    i = sequence.index("K")
    names = S.atom14_names("LYS")
    ca = names.index("CA")
    assert bool(has_two[0, i, ca])
    assert [names[j] for j in partners[0, i, ca].tolist()] == ["N", "C"]  # first two bonds in atom14 order
    assert not bool(has_two[0, i, names.index("NZ")])  # a chain end has one bond


def test_alternative_torsions_are_shifted_by_pi_only_where_the_chi_is_pi_periodic() -> None:
    # ASP chi2, GLU chi3, PHE chi2, TYR chi2 are defined modulo pi (symmetric atoms): their alternative is the
    # angle + pi, (sin, cos) negated; every other torsion's alternative is itself.
    x37, m37, restype, sequence = _chain()
    sc, alt, mask = A.torsion_angles(x37, m37, restype)
    flipped = 0
    for i, one in enumerate(sequence):
        three = RESTYPE_1TO3.get(one)
        for k in range(1, 5):
            slot = S.TORSION_SLOT_OF_GROUP[k + 1]  # group 1 is psi, groups 2.. are chi1..chi4
            if not bool(mask[i, slot]):
                continue
            if (three, k) in S.PI_PERIODIC_CHI:
                assert torch.equal(alt[i, slot], -sc[i, slot])
                flipped += 1
            else:
                assert torch.equal(alt[i, slot], sc[i, slot])
    assert flipped >= 3


def test_torsion_loss_known_values() -> None:
    x37, m37, restype, sequence = _chain()
    sc, alt, mask = A.torsion_angles(x37, m37, restype)
    sc, alt, mask = sc[None], alt[None], mask[None]
    assert torsion_loss(sc, sc, alt, mask).item() < 1e-6
    assert torsion_loss(alt, sc, alt, mask).item() < 1e-6  # pi-periodic flips cost nothing
    # flipping every torsion by pi: non-periodic ones cost |u - (-u)|^2 = 4
    n_periodic = int(((alt != sc).any(-1) & mask).sum())
    expected = 4.0 * (int(mask.sum()) - n_periodic) / int(mask.sum())
    assert torsion_loss(-sc, sc, alt, mask).item() == pytest.approx(expected, rel=1e-4)
    # raw outputs of norm 2 add the norm penalty 0.02 * |2 - 1|
    assert torsion_loss(2 * sc, sc, alt, mask).item() == pytest.approx(0.02, rel=1e-4)


def test_backbone_phi_psi() -> None:
    chain = load_chain(TEST_DATA / "structures/2ZTA.pdb.gz")  # a coiled coil: alpha helix throughout
    bb = np.nan_to_num(chain.atom37[:, :3])
    mask = chain.atom37_mask[:, :3].all(-1)
    phi, psi = S.backbone_phi_psi(bb, mask)
    assert np.isnan(phi[0]) and np.isnan(psi[-1])  # chain ends
    for i in (5, 12, 20):  # against the plain dihedral formula
        assert abs(np.angle(np.exp(1j * (phi[i] - _dihedral(bb[i - 1, 2], bb[i, 0], bb[i, 1], bb[i, 2]))))) < 1e-4
        assert abs(np.angle(np.exp(1j * (psi[i] - _dihedral(bb[i, 0], bb[i, 1], bb[i, 2], bb[i + 1, 0]))))) < 1e-4
    assert -70 < np.degrees(np.nanmedian(phi)) < -50 and -55 < np.degrees(np.nanmedian(psi)) < -35
    gapped = np.concatenate([bb[:10], bb[14:]])  # residues 10-13 removed: no bond between 9 and 10
    gphi, gpsi = S.backbone_phi_psi(gapped, np.ones(len(gapped), dtype=bool))
    assert np.isnan(gpsi[9]) and np.isnan(gphi[10]) and np.isfinite(gpsi[8]) and np.isfinite(gphi[11])
    m = mask.copy()
    m[6] = False
    mphi, mpsi = S.backbone_phi_psi(bb, m)
    assert np.isnan(mphi[6]) and np.isnan(mpsi[6]) and np.isnan(mpsi[5]) and np.isnan(mphi[7])
