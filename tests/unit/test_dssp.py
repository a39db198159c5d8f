"""DSSP on hand-made structures: energies, helices, sheets, breaks, missing atoms, prolines, input errors.

Expected strings marked "mkdssp" are mkdssp 4.2.2's output on the same coordinates written as a PDB file.
"""

from __future__ import annotations

import numpy as np
import pytest

from openesm3.errors import InputError
from openesm3.structure.dssp import (
    ANTIPARALLEL,
    MIN_HBOND_ENERGY,
    Ladder,
    _round_half_away,
    _top_two_acceptors,
    assign_ss8,
    dssp,
    hbond_energy,
)
from tests.unit._dssp_support import ideal_hairpin, ideal_helix


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


# ---- H-bond energy ---------------------------------------------------------------------------------------------


def test_hbond_energy_on_a_hand_computed_geometry() -> None:
    # Collinear N-H...O=C: rNH = 1, rON = 3, rOH = 2, rCH = 3.2, rCN = 4.2 (A). With q1 q2 f = 27.888:
    # 27.888/3 + 27.888/3.2 - 27.888/2 - 27.888/4.2 = 9.296 + 8.715 - 13.944 - 6.64 = -2.573 kcal/mol.
    n, h, o, c = (np.array([x, 0.0, 0.0]) for x in (0.0, 1.0, 3.0, 4.2))
    assert hbond_energy(n, h, o, c) == pytest.approx(-2.573, abs=1e-12)
    # The reverse orientation (O beyond N instead of beyond H) repels: positive energy.
    assert hbond_energy(n, h, -o, -c) > 0


def test_hbond_energy_clamps_at_minus_9_9_and_for_atoms_closer_than_half_an_angstrom() -> None:
    n, h = np.zeros(3), np.array([1.0, 0.0, 0.0])
    # rOH = 0.6: the formula gives about -23.5, clamped to -9.9.
    assert hbond_energy(n, h, np.array([1.6, 0.0, 0.0]), np.array([2.8, 0.0, 0.0])) == MIN_HBOND_ENERGY
    # rOH = 0.3 < 0.5: -9.9 by rule (the formula would give something else).
    assert hbond_energy(n, h, np.array([1.3, 0.0, 0.0]), np.array([1.0, 1.2, 0.0])) == MIN_HBOND_ENERGY
    # A NaN hydrogen (the previous residue's C and O coincide, so C - O is divided by 0) with N 0.3 A from O: -9.9
    # by the N-O test, as in mkdssp's "or" of the four comparisons (a NaN minimum of the four gave NaN).
    nan_h = np.full(3, np.nan)
    assert hbond_energy(n, nan_h, np.array([0.3, 0.0, 0.0]), np.array([1.5, 0.0, 0.0])) == MIN_HBOND_ENERGY
    assert np.isnan(hbond_energy(n, nan_h, np.array([3.0, 0.0, 0.0]), np.array([4.2, 0.0, 0.0])))  # never bonded


def test_energies_are_rounded_half_away_from_zero_like_c() -> None:
    got = _round_half_away(np.array([-2.5, 2.5, -0.5, 1.5, -1.49]))
    np.testing.assert_array_equal(got, [-3.0, 3.0, -1.0, 2.0, -1.0])


def test_each_donor_keeps_its_two_lowest_acceptors_ties_to_the_lower_index() -> None:
    donor = np.array([0, 0, 0, 0, 1, 1, 2])
    acceptor = np.array([5, 3, 4, 6, 7, 8, 9])
    energy = np.array([-1.0, -2.0, -1.0, -0.2, 0.0, -0.7, 0.3])
    best_acc, best_e = _top_two_acceptors(3, donor, acceptor, energy)
    np.testing.assert_array_equal(best_acc, [[3, 4], [8, -1], [-1, -1]])  # 4 beats 5 on the tie; 0 is no bond
    np.testing.assert_array_equal(best_e, [[-2.0, -1.0], [-0.7, 0.0], [0.0, 0.0]])


# ---- helices, sheets -------------------------------------------------------------------------------------------


def test_ideal_alpha_helix_is_h_in_the_middle() -> None:
    helix = ideal_helix(20)
    res = dssp(helix)
    assert res.ss8 == "C" + "H" * 18 + "C"  # mkdssp: CHHHHHHHHHHHHHHHHHHC
    # Every NH from residue 4 on bonds to the O four residues back, with an alpha-helix energy.
    assert res.hbond(np.arange(4, 20), np.arange(0, 16)).all()
    e = res.energy_matrix()[np.arange(4, 20), np.arange(0, 16)]
    assert ((e < -1.5) & (e > -4.0)).all()
    assert res.turn[1, :16].all() and not res.turn[1, 16:].any()


def test_ideal_hairpin_is_two_strands_of_e() -> None:
    res = dssp(ideal_hairpin(7))
    assert res.ss8 == "CEEEEEETTEEEEEEC"  # mkdssp: CEEEEEETTEEEEEEC
    # mkdssp's bridge partners (1-based): ladder A pairs 2..7 with 15..10, ladder B pairs 4 with 14.
    assert res.ladders == (
        Ladder(ANTIPARALLEL, (1, 2, 3, 4, 5, 6), (9, 10, 11, 12, 13, 14)),
        Ladder(ANTIPARALLEL, (3,), (13,)),
    )


def test_assignment_is_invariant_to_rigid_motion_and_changes_when_the_structure_does() -> None:
    rng = np.random.default_rng(0)
    for structure in (ideal_helix(20), ideal_hairpin(7)):
        moved = structure @ _random_rotation(rng).T + rng.normal(scale=30.0, size=3)
        assert assign_ss8(moved) == assign_ss8(structure)
    # Negative: pulling the second strand 5 A away from the first breaks the sheet.
    pulled = ideal_hairpin(7)
    axis = pulled[12, 1] - pulled[3, 1]
    pulled[9:] += 5.0 * axis / np.linalg.norm(axis)
    assert "E" not in assign_ss8(pulled)


# ---- chains, breaks, missing atoms, prolines -------------------------------------------------------------------


def test_bridges_between_chains_count_but_a_chain_change_stops_turns_and_bends() -> None:
    hairpin = ideal_hairpin(7)
    one = dssp(hairpin)
    assert one.ss8[7:9] == "TT" and one.bend[7:9].all()
    two = dssp(hairpin, chain_index=np.array([0] * 8 + [1] * 8))
    assert two.ss8 == "CEEEEEECCEEEEEEC"  # mkdssp (chains A, B): CEEEEEECCEEEEEEC
    assert (two.kappa[6:10] == 360.0).all() and not two.bend[6:10].any()
    assert not two.turn[:, 5:8].any()  # no n-turn may span the chain change


def test_a_stretched_peptide_bond_breaks_the_chain() -> None:
    helix = ideal_helix(20)
    shift = helix[10, 0] - helix[9, 2]
    helix[10:] += 1.5 * shift / np.linalg.norm(shift)  # C(9)-N(10) becomes 2.83 A > 2.5 A
    res = dssp(np.round(helix, 3))
    assert res.ss8 == "CHHHHHHHHCCHHHHHHHHC"  # mkdssp: CHHHHHHHHCCHHHHHHHHC
    np.testing.assert_array_equal(res.segment, [0] * 10 + [1] * 10)
    assert not res.turn[:, 6:10].any()  # turns starting at k need k..k+n unbroken
    assert (res.kappa[8:12] == 360.0).all()


def test_a_residue_missing_a_backbone_atom_is_skipped_as_coil_and_breaks_the_chain() -> None:
    helix = ideal_helix(20)
    helix[10, 4] = np.nan  # no O
    res = dssp(helix)
    # mkdssp drops residue 10 and prints CHHHHHHHHCC HHHHHHHC for the other 19.
    assert res.ss8 == "CHHHHHHHHCC" + "C" + "HHHHHHHC"
    assert not res.valid[10] and res.segment[10] == -1 and res.segment[9] != res.segment[11]
    assert np.isnan(res.hydrogen[10]).all()
    assert not np.isin(10, res.donor) and not np.isin(10, res.acceptor)


def test_residue_numbering_gaps_do_not_break_the_chain() -> None:
    helix = ideal_helix(20)
    numbering = np.r_[np.arange(1, 11), np.arange(50, 60)]
    res = dssp(helix, residue_index=numbering)
    assert res.ss8 == dssp(helix).ss8 and (res.segment == 0).all()


def test_prolines_do_not_donate() -> None:
    helix = ideal_helix(20)
    plain = dssp(helix)
    with_pro = dssp(helix, sequence="A" * 12 + "P" + "A" * 7)
    assert plain.hbond(12, 8) and not with_pro.hbond(12, 8)
    assert (with_pro.best_acceptor[12] == -1).all()
    np.testing.assert_array_equal(with_pro.hydrogen[12], helix[12, 0].astype(np.float32))  # no H placed
    assert plain.turn[1, 8] and not with_pro.turn[1, 8]
    # Without a sequence, a CD 1.47 A from N marks the proline.
    helix_cd = helix.copy()
    helix_cd[12, 11] = helix[12, 0] + np.array([1.47, 0.0, 0.0])
    assert not dssp(helix_cd).hbond(12, 8)


def test_first_residue_has_no_h_and_the_next_residues_h_follows_the_previous_carbonyl() -> None:
    helix = ideal_helix(5)
    res = dssp(helix)
    np.testing.assert_array_equal(res.hydrogen[0], helix[0, 0].astype(np.float32))
    co = helix[1, 2] - helix[1, 4]
    np.testing.assert_allclose(res.hydrogen[2], helix[2, 0] + co / np.linalg.norm(co), atol=1e-5)


def test_the_first_residue_of_a_chain_takes_its_h_from_the_previous_chains_last_carbonyl() -> None:
    # mkdssp links its whole residue list: in 1dos, residue 1 of chain B donates (-0.1 kcal/mol), impossible with
    # H = N (the energy is then exactly 0).
    helix = ideal_helix(10)
    res = dssp(helix, chain_index=np.array([0] * 5 + [1] * 5))
    co = helix[4, 2] - helix[4, 4]
    np.testing.assert_allclose(res.hydrogen[5], helix[5, 0] + co / np.linalg.norm(co), atol=1e-5)
    assert res.segment[5] == 1 and not res.turn[:, 2:5].any()


def test_energy_matrix_holds_every_evaluated_pair() -> None:
    res = dssp(ideal_hairpin(7))
    matrix = res.energy_matrix()
    np.testing.assert_array_equal(matrix[res.donor, res.acceptor], res.energy)
    assert (np.diag(matrix) == 0).all()
    assert not ((res.donor[:, None] == np.arange(1, 16)) & (res.acceptor[:, None] == np.arange(0, 15))).any()


# ---- edge cases and errors -------------------------------------------------------------------------------------


def test_tiny_and_empty_inputs() -> None:
    assert assign_ss8(np.zeros((0, 37, 3))) == ""
    assert assign_ss8(ideal_helix(1)) == "C"
    assert assign_ss8(ideal_helix(3)) == "CCC"
    assert assign_ss8(np.full((4, 37, 3), np.nan)) == "CCCC"


def test_float64_and_float32_inputs_agree() -> None:
    hairpin = ideal_hairpin(7)
    assert assign_ss8(hairpin) == assign_ss8(hairpin.astype(np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"atom37": np.zeros((5, 14, 3))}, r"\[L, 37, 3\]"),
        ({"atom37": np.zeros((5, 37, 3)), "chain_index": np.zeros(4, dtype=int)}, "chain_index"),
        ({"atom37": np.zeros((5, 37, 3)), "chain_index": np.zeros(5)}, "chain_index"),
        ({"atom37": np.zeros((5, 37, 3)), "residue_index": np.arange(6)}, "residue_index"),
        ({"atom37": np.zeros((5, 37, 3)), "sequence": "AAAA"}, "sequence"),
        ({"atom37": np.full((5, 37, 3), "x")}, "numbers"),
    ],
)
def test_bad_input_raises_a_named_error(kwargs: dict, message: str) -> None:
    atom37 = kwargs.pop("atom37")
    with pytest.raises(InputError, match=message):
        assign_ss8(atom37, **kwargs)
