"""ProteinChain / ProteinComplex: construction, indexing, chain breaks, O inference, normalisation (spec §12)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from openesm3.errors import InputError
from openesm3.structure import ProteinChain, ProteinComplex, load_chain, load_structure
from openesm3.structure import residue_constants as RC
from openesm3.structure.chain import gram_schmidt
from tests.unit.structure_helpers import STRUCTURES


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.fixture(scope="module")
def lysozyme() -> ProteinChain:
    return load_chain(STRUCTURES / "107L.pdb.gz")


def test_atom37_layout_matches_the_spec() -> None:
    assert len(RC.ATOM37_NAMES) == 37
    assert RC.ATOM37_NAMES[:5] == ("N", "CA", "C", "CB", "O")  # O after CB (spec §12)
    assert RC.ATOM37_NAMES[18] == "SD" and RC.ATOM37_NAMES[36] == "OXT"


def test_from_atom37_defaults_follow_the_reference(lysozyme: ProteinChain) -> None:
    coords = lysozyme.atom37.copy()
    coords[3, :] = np.inf  # the decoder's convention for missing atoms is +inf
    chain = ProteinChain.from_atom37(coords)
    assert chain.sequence == "A" * len(lysozyme)
    np.testing.assert_array_equal(chain.residue_index, np.arange(1, len(lysozyme) + 1))
    assert not chain.atom37_mask[3].any() and np.isnan(chain.atom37[3]).all()
    np.testing.assert_array_equal(chain.atom37_mask[4:], lysozyme.atom37_mask[4:])
    assert set(chain.insertion_code.tolist()) == {""} and chain.chain_id == "A"
    masked = ProteinChain.from_atom37(coords, atom37_mask=np.ones(coords.shape[:2], dtype=bool))
    assert not masked.atom37_mask[3].any() and masked.atom37_mask[4:].sum() == lysozyme.atom37_mask[4:].sum()
    per_residue = ProteinChain.from_atom37(lysozyme.atom37, b_factor=np.arange(len(lysozyme), dtype=np.float32))
    assert per_residue.b_factor[5, RC.ATOM_CA] == 5.0 and np.isnan(per_residue.b_factor[~per_residue.atom37_mask]).all()


def test_shape_and_length_are_validated(lysozyme: ProteinChain) -> None:
    with pytest.raises(ValueError, match="atom37 must have shape"):
        ProteinChain.from_atom37(np.zeros((4, 14, 3)))
    with pytest.raises(ValueError, match="sequence has length 3"):
        ProteinChain.from_atom37(np.zeros((4, 37, 3)), sequence="AAA")
    with pytest.raises(ValueError, match="residue_index has shape"):
        replace(lysozyme, residue_index=lysozyme.residue_index[:-1])
    bad_mask = lysozyme.atom37_mask.copy()
    bad_mask[0, 30] = True  # an atom marked present with NaN coordinates
    with pytest.raises(ValueError, match="not finite"):
        replace(lysozyme, atom37_mask=bad_mask)


def test_indexing_returns_consistent_sub_chains(lysozyme: ProteinChain) -> None:
    part = lysozyme[10:20]
    assert len(part) == 10 and part.sequence == lysozyme.sequence[10:20]
    np.testing.assert_array_equal(part.atom37_mask, lysozyme.atom37_mask[10:20])
    np.testing.assert_array_equal(part.residue_index, lysozyme.residue_index[10:20])
    one = lysozyme[-1]
    assert len(one) == 1 and one.sequence == lysozyme.sequence[-1] and one.atom37.shape == (1, 37, 3)
    picked = lysozyme[[5, 2, 7]]
    assert picked.sequence == "".join(lysozyme.sequence[i] for i in (5, 2, 7))
    mask = np.zeros(len(lysozyme), dtype=bool)
    mask[::2] = True
    assert lysozyme[mask].sequence == lysozyme.sequence[::2]
    with pytest.raises(IndexError):
        lysozyme[len(lysozyme)]
    with pytest.raises(IndexError):
        lysozyme[mask[:-1]]


def test_backbone_and_has_coordinates() -> None:
    chain = load_chain(STRUCTURES / "1H7M.pdb.gz")
    bb = chain.backbone()
    assert bb.shape == (len(chain), 3, 3)
    np.testing.assert_array_equal(bb[:, 1], chain.atom37[:, RC.ATOM_CA])
    assert chain.backbone(oxygen=True).shape == (len(chain), 4, 3)
    assert chain.has_coordinates.all()
    empty = replace(chain, atom37=np.full_like(chain.atom37, np.nan), atom37_mask=np.zeros_like(chain.atom37_mask))
    assert not empty.has_coordinates.any()


def test_chain_breaks_distance_decides_when_atoms_are_present() -> None:
    # 1h7m numbers -2, -1, 1 (no 0) but -1 and 1 are peptide-bonded: not a break.
    h7m = load_chain(STRUCTURES / "1H7M.pdb.gz")
    i = int(np.flatnonzero(h7m.residue_index == 1)[0])
    assert h7m.residue_index[i - 1] == -1 and not h7m.chain_breaks()[i]
    # 1qu9: residues 105 and 106 are numbered consecutively but C-N is 4.4 A apart: a break.
    qu9 = load_chain(STRUCTURES / "1qu9.pdb.gz")
    j = int(np.flatnonzero(qu9.residue_index == 106)[0])
    assert qu9.chain_breaks()[j]
    assert qu9.chain_breaks().sum() == 1
    assert not qu9.chain_breaks()[0]


def test_chain_breaks_in_real_files_with_gaps() -> None:
    # 3gqs: residue 12 is missing from the deposited model.
    gqs = load_chain(STRUCTURES / "3GQS_A.pdb.gz")
    starts = np.flatnonzero(gqs.chain_breaks())
    assert [(int(gqs.residue_index[i - 1]), int(gqs.residue_index[i])) for i in starts] == [(11, 13)]
    # The bioemu copy of 6jt0 renumbers residues 1..576 consecutively across its two missing loops.
    jt0 = load_chain(STRUCTURES / "oodval__Q02153__6JT0_B.pdb.gz")
    assert (np.diff(jt0.residue_index) == 1).all()
    starts = np.flatnonzero(jt0.chain_breaks())
    assert [int(jt0.residue_index[i]) for i in starts] == [188, 271]


def test_chain_breaks_at_missing_residues_and_the_negative_case(lysozyme: ProteinChain) -> None:
    assert not lysozyme.chain_breaks().any()
    # Remove residues 40-42: a numbering gap with a C-N distance far above 2 A.
    keep = np.ones(len(lysozyme), dtype=bool)
    keep[40:43] = False
    gapped = lysozyme[keep]
    assert np.flatnonzero(gapped.chain_breaks()).tolist() == [40]
    # Moving one residue away by 3 A breaks the chain on both sides of it.
    moved = lysozyme.atom37.copy()
    moved[60] += np.float32(3.0)
    assert np.flatnonzero(replace(lysozyme, atom37=moved).chain_breaks()).tolist() == [60, 61]


def test_chain_breaks_fall_back_to_numbering_when_atoms_are_missing(lysozyme: ProteinChain) -> None:
    chain = lysozyme[:6]
    atom37, mask = chain.atom37.copy(), chain.atom37_mask.copy()
    atom37[2, RC.ATOM_C] = np.nan  # residue 3 has no C: the 3->4 link is judged by numbering
    mask[2, RC.ATOM_C] = False
    no_c = replace(chain, atom37=atom37, atom37_mask=mask)
    assert not no_c.chain_breaks().any()
    renumbered = replace(no_c, residue_index=np.array([1, 2, 3, 5, 6, 7]))
    assert np.flatnonzero(renumbered.chain_breaks()).tolist() == [3]
    codes = np.array(["", "", "", "A", "", ""])
    inserted = replace(no_c, residue_index=np.array([1, 2, 3, 3, 4, 5]), insertion_code=codes)
    assert not inserted.chain_breaks().any()


def test_infer_oxygen_reproduces_crystal_oxygens(lysozyme: ProteinChain) -> None:
    mask = lysozyme.atom37_mask.copy()
    atom37 = lysozyme.atom37.copy()
    mask[:, RC.ATOM_O] = False
    atom37[:, RC.ATOM_O] = np.nan
    stripped = replace(lysozyme, atom37=atom37, atom37_mask=mask)
    placed = stripped.infer_oxygen()
    assert not placed.atom37_mask[-1, RC.ATOM_O]  # the last residue has no next N
    assert placed.atom37_mask[:-1, RC.ATOM_O].all()
    error = np.linalg.norm(placed.atom37[:-1, RC.ATOM_O] - lysozyme.atom37[:-1, RC.ATOM_O], axis=-1)
    assert np.median(error) < 0.15 and error.max() < 0.6, (np.median(error), error.max())
    # Only missing O atoms are filled by default; overwrite=True recomputes them all.
    np.testing.assert_array_equal(lysozyme.infer_oxygen().atom37, lysozyme.atom37)
    recomputed = lysozyme.infer_oxygen(overwrite=True)
    np.testing.assert_allclose(recomputed.atom37[:-1, RC.ATOM_O], placed.atom37[:-1, RC.ATOM_O], atol=1e-5)
    np.testing.assert_array_equal(recomputed.atom37[-1], lysozyme.atom37[-1])
    # A placed O carries its residue's CA B-factor.
    np.testing.assert_array_equal(placed.b_factor[:-1, RC.ATOM_O], lysozyme.b_factor[:-1, RC.ATOM_CA])


def test_infer_oxygen_leaves_residues_before_a_break_missing(lysozyme: ProteinChain) -> None:
    keep = np.ones(len(lysozyme), dtype=bool)
    keep[40:43] = False
    gapped = lysozyme[keep]
    mask = gapped.atom37_mask.copy()
    mask[:, RC.ATOM_O] = False
    atom37 = gapped.atom37.copy()
    atom37[:, RC.ATOM_O] = np.nan
    placed = replace(gapped, atom37=atom37, atom37_mask=mask).infer_oxygen()
    assert not placed.atom37_mask[39, RC.ATOM_O] and placed.atom37_mask[38, RC.ATOM_O]


def test_normalize_coordinates_frame_properties(lysozyme: ProteinChain) -> None:
    normalized = lysozyme.normalize_coordinates()
    bb = normalized.backbone()
    mean_n, mean_ca, mean_c = bb.mean(axis=0)
    np.testing.assert_allclose(mean_ca, 0.0, atol=1e-3)  # origin at the mean CA
    assert mean_c[0] < 0 and abs(mean_c[1]) < 1e-3 and abs(mean_c[2]) < 1e-3  # mean C on the -x axis
    assert abs(mean_n[2]) < 1e-3 and mean_n[1] > 0  # mean N in the xy-plane, +y side
    # Distances are preserved.
    d0 = np.linalg.norm(lysozyme.atom37[10, 1] - lysozyme.atom37[90, 1])
    d1 = np.linalg.norm(normalized.atom37[10, 1] - normalized.atom37[90, 1])
    assert d1 == pytest.approx(d0, abs=1e-3)


def test_normalize_coordinates_is_invariant_to_rigid_motion_and_sees_changes(lysozyme: ProteinChain) -> None:
    rng = np.random.default_rng(0)
    rot, shift = _random_rotation(rng), rng.normal(size=3) * 20
    moved = replace(lysozyme, atom37=(lysozyme.atom37 @ rot.T + shift).astype(np.float32))
    a, b = lysozyme.normalize_coordinates(), moved.normalize_coordinates()
    # The frame's x-axis is mean CA - mean C, a vector of a few tenths of an Angstrom computed in float32 from
    # coordinates of tens of Angstroms (as in the reference): its direction carries ~1e-4 rad of rounding, i.e.
    # up to ~1e-2 A at the far end of the protein.
    np.testing.assert_allclose(a.atom37[a.atom37_mask], b.atom37[b.atom37_mask], atol=2e-2)
    # Negative: moving some C atoms changes the frame, hence every other normalised coordinate.
    bent = lysozyme.atom37.copy()
    bent[100:110, RC.ATOM_C] += np.array([0.0, 3.0, 0.0], dtype=np.float32)
    c = replace(lysozyme, atom37=bent).normalize_coordinates()
    assert np.abs(c.atom37[:50][lysozyme.atom37_mask[:50]] - a.atom37[:50][lysozyme.atom37_mask[:50]]).max() > 0.5


def test_normalize_coordinates_skip_and_inf_restoration(lysozyme: ProteinChain) -> None:
    # No residue with N, CA and C: the mean CA is the origin, |t| = 0, nothing moves (reference quirk).
    atom37 = lysozyme.atom37.copy()
    mask = lysozyme.atom37_mask.copy()
    atom37[:, RC.ATOM_N] = np.nan
    mask[:, RC.ATOM_N] = False
    no_n = replace(lysozyme, atom37=atom37, atom37_mask=mask)
    assert no_n.normalize_coordinates() is no_n
    # Infinite entries (missing atoms written as +inf, as the decoder does) stay +inf.
    with_inf = lysozyme.atom37.copy()
    with_inf[5, 30] = np.array([np.inf, -np.inf, np.inf])
    out = replace(lysozyme, atom37=with_inf).normalize_coordinates()
    assert np.isposinf(out.atom37[5, 30]).all()
    assert np.isfinite(out.atom37[lysozyme.atom37_mask]).all()


def test_gram_schmidt_gives_rotations() -> None:
    rng = np.random.default_rng(1)
    rot = gram_schmidt(rng.normal(size=(8, 3)), rng.normal(size=(8, 3)))
    np.testing.assert_allclose(rot.transpose(0, 2, 1) @ rot, np.broadcast_to(np.eye(3), (8, 3, 3)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)


def test_with_b_factor_broadcasts_per_residue_values(lysozyme: ProteinChain) -> None:
    plddt = np.linspace(0, 1, len(lysozyme), dtype=np.float32)
    chain = lysozyme.with_b_factor(plddt)
    np.testing.assert_array_equal(chain.b_factor[:, RC.ATOM_CA], plddt)
    assert np.isnan(chain.b_factor[~chain.atom37_mask]).all()


def test_protein_complex_views() -> None:
    complex_ = load_structure(STRUCTURES / "2ZTA.pdb.gz")
    a, b = complex_["A"], complex_["B"]
    assert complex_.chain_ids == ("A", "B") and len(complex_) == len(a) + len(b)
    assert "A" in complex_ and "Z" not in complex_
    assert [c.chain_id for c in complex_] == ["A", "B"]
    assert complex_.sequence_with_breaks() == a.sequence + "|" + b.sequence
    assert complex_.sequence == a.sequence + b.sequence
    np.testing.assert_array_equal(complex_.chain_index, [0] * len(a) + [1] * len(b))
    assert complex_.atom37.shape == (len(complex_), 37, 3)
    assert complex_.atom37_mask.shape == (len(complex_), 37)
    np.testing.assert_array_equal(complex_.residue_index, np.concatenate([a.residue_index, b.residue_index]))
    with_breaks = complex_.atom37_with_breaks()
    assert with_breaks.shape == (len(complex_) + 1, 37, 3)
    assert np.isnan(with_breaks[len(a)]).all()
    np.testing.assert_array_equal(with_breaks[len(a) + 1 :], b.atom37)
    breaks = complex_.chain_breaks()
    assert breaks[len(a)] and not breaks[0] and breaks.sum() == 1 + a.chain_breaks().sum() + b.chain_breaks().sum()
    swapped = complex_.select(["B", "A"])
    assert swapped.chain_ids == ("B", "A") and swapped.sequence_with_breaks().startswith(b.sequence + "|")
    with pytest.raises(InputError, match="no chain 'Z'; chains: A, B"):
        complex_["Z"]
    # An id given twice is refused (as load_structure(chains=...) refuses it: it was kept once, silently); one id may
    # be a string; none is an error.
    with pytest.raises(InputError, match="chain 'B' given more than once"):
        complex_.select(["B", "A", "B"])
    assert complex_.select("B").chain_ids == ("B",)
    # any iterable of ids, a one-pass generator included (it was consumed by the check for repeats, then indexed)
    assert complex_.select(c for c in "BA").chain_ids == ("B", "A")
    with pytest.raises(InputError, match="chain 'A' given more than once"):
        complex_.select(iter(["A", "B", "A"]))
    with pytest.raises(InputError, match="no chain selected; chains: A, B"):
        complex_.select([])
    with pytest.raises(ValueError, match="distinct"):
        ProteinComplex((a, a))
    with pytest.raises(ValueError, match="at least one chain"):
        ProteinComplex(())
