"""lDDT, TM-score and GDT: hand-computed cases, an independent TM-score implementation, invariances with
negatives, and cross-checks between the metrics on real pairs of conformations of the same protein."""

from __future__ import annotations

import collections
import gzip
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3.errors import InputError
from openesm3.geometry import gdt, gdt_ha, gdt_ts, kabsch, lddt, lddt_all_atom, lddt_ca, tm_d0, tm_score
from tests.conftest import TEST_DATA, shared_data

AKE_CLOSED = "domainmotion__P69441__1AKE_A.pdb.gz"
AKE_OPEN = "domainmotion__P69441__4AKE_A.pdb.gz"
SMALL_A, SMALL_B = "ood60__Q2FYI5__8E2B_A.pdb.gz", "ood60__Q2FYI5__8E2C_A.pdb.gz"
ALL_ATOM = "1igd.pdb.gz"

# atom37 order (spec §12)
ATOM37 = (
    "N CA C CB O CG CG1 CG2 OG OG1 SG CD CD1 CD2 ND1 ND2 OD1 OD2 SD CE CE1 CE2 CE3 NE NE1 NE2 OE1 OE2 CH2 NH1 "
    "NH2 OH CZ CZ2 CZ3 NZ OXT"
).split()


def _read_atoms(path: Path):  # noqa: ANN202 - biotite AtomArray
    import biotite.structure as struc
    import biotite.structure.io.pdb as pdb

    with gzip.open(path, "rt") as handle:
        atoms = pdb.PDBFile.read(handle).get_structure(model=1)
    return atoms[struc.filter_amino_acids(atoms) & ~atoms.hetero]


def paired_ca(name_a: str, name_b: str, folder: Path = TEST_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """CA [L, 3] float64 of the residues present, with the same name, in both files (read with biotite)."""
    cas = []
    for name in (name_a, name_b):
        atoms = _read_atoms(folder / name)
        atoms = atoms[atoms.atom_name == "CA"]
        cas.append({(int(a.res_id), str(a.ins_code)): (str(a.res_name), a.coord) for a in atoms})
    a, b = cas
    keys = sorted(k for k in a.keys() & b.keys() if a[k][0] == b[k][0])
    stack = lambda d: torch.tensor(np.stack([d[k][1] for k in keys]), dtype=torch.float64)
    return stack(a), stack(b)


def read_atom37(name: str, folder: Path = TEST_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """atom37 coordinates [L, 37, 3] (NaN where missing) and mask [L, 37] of the first chain."""
    atoms = _read_atoms(folder / name)
    atoms = atoms[(atoms.chain_id == atoms.chain_id[0]) & np.isin(atoms.atom_name, ATOM37)]
    keys = [(int(r), str(i)) for r, i in zip(atoms.res_id, atoms.ins_code)]
    index = {k: i for i, k in enumerate(sorted(set(keys)))}
    xyz = torch.full((len(index), 37, 3), float("nan"), dtype=torch.float64)
    rows = torch.tensor([index[k] for k in keys])
    cols = torch.tensor([ATOM37.index(name) for name in atoms.atom_name])
    xyz[rows, cols] = torch.from_numpy(atoms.coord.astype(np.float64))
    return xyz, torch.isfinite(xyz).all(-1)


def rotate(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=g))
    q = q * torch.sign(torch.diagonal(r))[None, :]
    if torch.det(q) < 0:
        q[:, 0] *= -1
    return x @ q.T.to(x.dtype) + torch.tensor([4.0, -9.0, 17.0], dtype=x.dtype)


# ---- lDDT -----------------------------------------------------------------------------------------------------


def test_lddt_hand_computed() -> None:
    # Three points on a line 3 A apart; the model moves the last by 0.7 A away. A fourth point is 20 A from all.
    ref = torch.tensor([[0.0, 0, 0], [3.0, 0, 0], [6.0, 0, 0], [0.0, 40.0, 0]])
    model = ref.clone()
    model[2, 0] += 0.7
    out = lddt(model, ref)
    # Pairs (0,2) and (1,2) err by 0.7 A: under 1, 2, 4 but not 0.5 -> 0.75. Pair (0,1) is exact -> 1.
    torch.testing.assert_close(out.per_residue[:3], torch.tensor([0.875, 0.875, 0.75]), atol=1e-6, rtol=0)
    assert out.score.item() == pytest.approx((2 * 1.0 + 4 * 0.75) / 6, abs=1e-6)
    # The isolated point has no pair within 15 A: (eps + 0) / (eps + 0) = 1, as in the reference, and not scored.
    assert out.per_residue[3].item() == 1.0 and out.scored.tolist() == [True, True, True, False]
    # An error of exactly a threshold does not count (strict <): 2.0 A error -> under 4 only -> 0.25.
    model = ref.clone()
    model[1, 0] += 2.0
    assert lddt(model[:2], ref[:2]).score.item() == pytest.approx(0.25, abs=1e-6)


def test_lddt_cutoff_is_strict_and_chunked_rows_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two points exactly 15 A apart in the reference are not a pair (d < 15): neither is scored.
    ref = torch.tensor([[0.0, 0, 0], [15.0, 0, 0]])
    assert lddt(ref + torch.tensor([[0.0, 0, 0], [3.0, 0, 0]]), ref).scored.tolist() == [False, False]
    # Long inputs are scored in blocks of rows; force several blocks, the last one partial, and compare.
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 37, 3, generator=g) * 6
    model = ref + torch.randn(2, 37, 3, generator=g)
    whole = lddt(model, ref)
    module = sys.modules["openesm3.geometry.lddt"]  # the package re-exports a function of the same name
    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 2 * 37 * 5)  # 5 rows a block: 8 blocks
    chunked = lddt(model, ref)
    assert torch.equal(chunked.per_residue, whole.per_residue) and torch.equal(chunked.score, whole.score)


def test_lddt_ca_uses_atom_one_and_all_atom_pair_modes_hand_computed() -> None:
    # Two residues, atoms N (0) and CA (1) present. Distances in the reference: N-CA within residue 1.5,
    # across residues 4.0 (CA-CA), 5.0 (N-N), etc. The model stretches residue 1's N-CA bond by 1.5 A.
    ref = torch.full((2, 37, 3), float("nan"))
    ref[0, 0], ref[0, 1] = torch.tensor([0.0, 0, 0]), torch.tensor([1.5, 0, 0])
    ref[1, 0], ref[1, 1] = torch.tensor([0.0, 5.0, 0]), torch.tensor([1.5, 5.0, 0])
    model = ref.clone()
    model[1, 1] = torch.tensor([3.0, 5.0, 0])
    ca = lddt_ca(model, ref)
    ca_pair = (1.5**2 + 25) ** 0.5 - 5.0  # CA-CA distance error 0.22 A: all four thresholds -> 1.0
    assert ca_pair < 0.5 and ca.score.item() == pytest.approx(1.0, abs=1e-6)
    ref_mode = lddt_all_atom(model, ref)
    inter = lddt_all_atom(model, ref, pairs="inter_residue")
    # Pair errors: N0-CA0 0, N1-N0 0, N1-CA0 |sqrt(1.5^2+25)-sqrt(1.5^2+25)| = 0, N1-CA1 1.5 (-> 0.5),
    # CA1-N0 |sqrt(9+25) - sqrt(2.25+25)| = 0.61 (-> 0.75), CA1-CA0 |sqrt(2.25+25) - 5| = 0.22 (-> 1).
    e_ca1_n0 = math.sqrt(34) - math.sqrt(27.25)
    assert 0.5 < e_ca1_n0 < 1.0
    # reference mode: all 6 pairs (intra-residue N-CA pairs included); inter_residue: the 4 across residues.
    assert ref_mode.score.item() == pytest.approx((1 + 1 + 1 + 0.5 + 0.75 + 1) / 6, abs=1e-6)
    assert inter.score.item() == pytest.approx((1 + 1 + 0.75 + 1) / 4, abs=1e-6)
    # Per residue pools the pairs of its atoms (each pair counted from both ends).
    assert ref_mode.per_residue[1].item() == pytest.approx((1 + 0.5 + 1 + 0.75 + 0.5 + 1) / 6, abs=1e-6)
    assert ref_mode.per_atom is not None and ref_mode.per_atom.shape == (2, 37)
    assert ref_mode.per_atom[1, 1].item() == pytest.approx((0.75 + 1 + 0.5) / 3, abs=1e-6)
    assert ref_mode.per_atom[1, 5].item() == 1.0  # absent atom: no pairs -> 1, as in the reference


def test_lddt_is_superposition_free_and_local() -> None:
    x, y = paired_ca(AKE_CLOSED, AKE_OPEN)
    base = lddt(x, y)
    assert lddt(y, y).score.item() == 1.0
    assert 0.5 < base.score.item() < 0.98  # two conformations differ, mostly in loops/hinges
    # Invariant to rigid motions and mirroring of the model.
    torch.testing.assert_close(lddt(rotate(x), y).per_residue, base.per_residue, atol=1e-6, rtol=0)
    torch.testing.assert_close(lddt(-x, y).per_residue, base.per_residue, atol=1e-6, rtol=0)
    # Negative: moving one residue by 3 A lowers its score and the global one, and leaves residues whose
    # reference distance to it is >= 15 A untouched.
    moved = y.clone()
    moved[100] += torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
    out = lddt(moved, y)
    assert out.per_residue[100].item() < 0.7 and out.score.item() < 1.0
    far = (y - y[100]).norm(dim=-1) >= 15.0
    assert far.sum() > 100 and (out.per_residue[far] == 1.0).all()
    assert (out.per_residue[~far] < 1.0).sum() >= 5  # neighbours whose distance to it changed by >= 0.5 A


def test_all_atom_lddt_matches_a_dense_computation_on_a_real_protein() -> None:
    ref, mask = read_atom37(ALL_ATOM)
    assert mask.sum() > 6 * ref.shape[0]  # side chains are there
    ref, mask = ref[:40], mask[:40]  # keeps the dense [L*37, L*37] check small
    model = ref + 0.6 * torch.randn(ref.shape, dtype=torch.float64)
    for pairs in ("reference", "inter_residue"):
        out = lddt_all_atom(model.float(), ref.float(), mask, pairs=pairs)
        # dense version over all L*37 slots, in float64, written from the definition
        flat_m, r, m = mask.reshape(-1), ref.reshape(-1, 3), model.reshape(-1, 3)
        r, m = torch.nan_to_num(r), torch.nan_to_num(m)
        dr, dm = torch.cdist(r, r), torch.cdist(m, m)
        res = torch.arange(flat_m.numel()) // 37
        ok = flat_m[:, None] & flat_m[None] & (dr < 15) & ~torch.eye(flat_m.numel(), dtype=torch.bool)
        if pairs == "inter_residue":
            ok &= res[:, None] != res[None]
        s = sum(((dr - dm).abs() < t).double() for t in (0.5, 1, 2, 4)) / 4
        num, den = (s * ok).sum(-1).reshape(-1, 37).sum(-1), ok.sum(-1).reshape(-1, 37).sum(-1).double()
        torch.testing.assert_close(out.per_residue.double(), num / den, atol=1e-5, rtol=0)
        assert out.score.item() == pytest.approx(float(num.sum() / den.sum()), abs=1e-5)
    assert lddt_all_atom(ref, ref, mask).score.item() == 1.0
    ca = lddt_ca(model, ref, mask)
    torch.testing.assert_close(ca.per_residue, lddt(model[:, 1], ref[:, 1]).per_residue)


def test_lddt_bad_inputs() -> None:
    with pytest.raises(InputError, match=r"atom37 coordinates \[\*, L, 37, 3\]"):
        lddt_all_atom(torch.randn(5, 14, 3), torch.randn(5, 14, 3))
    with pytest.raises(InputError, match="atom37 mask of shape"):
        lddt_ca(torch.randn(5, 37, 3), torch.randn(5, 37, 3), torch.ones(5, dtype=torch.bool))
    for cutoff in (float("nan"), 0.0, -15.0):  # NaN selected no pair: every score was 1.0
        for fn, shape in ((lddt, (6, 3)), (lddt_ca, (6, 37, 3)), (lddt_all_atom, (6, 37, 3))):
            with pytest.raises(InputError, match="cutoff: expected a positive number"):
                fn(torch.randn(shape), torch.randn(shape), cutoff=cutoff)
    ref = torch.randn(6, 3)
    with pytest.raises(InputError, match="reference: non-finite coordinates at atom 2"):
        lddt(ref, torch.where(torch.arange(6)[:, None] == 2, float("nan"), ref), torch.ones(6, dtype=torch.bool))


def test_lddt_of_no_residues_is_an_item_without_pairs() -> None:
    """L = 0 (or an empty batch) is the all-masked case: score 1.0, nothing scored, empty per-residue tensors.
    Every variant raised a reshape RuntimeError ("-1 can be any value") instead."""
    for batch in ((), (2,), (0,)):
        out = lddt(torch.zeros(*batch, 0, 3), torch.zeros(*batch, 0, 3))
        assert out.score.shape == batch and bool((out.score == 1.0).all())
        assert out.per_residue.shape == out.scored.shape == (*batch, 0)
        for fn in (lddt_ca, lddt_all_atom):
            got = fn(torch.zeros(*batch, 0, 37, 3), torch.zeros(*batch, 0, 37, 3))
            assert got.score.shape == batch and bool((got.score == 1.0).all()), fn.__name__
            assert got.per_residue.shape == (*batch, 0), fn.__name__
    out = lddt_all_atom(torch.zeros(0, 3, 37, 3), torch.zeros(0, 3, 37, 3))
    assert out.score.shape == (0,) and out.per_atom is not None and out.per_atom.shape == (0, 3, 37)


def test_lddt_scores_atoms_missing_from_the_model_as_failures() -> None:
    # lDDT is defined on the reference's pairs: a model lacking residues must not score higher than a complete
    # one. The reference implementation scores such pairs 0 (its NaN distances fail every threshold).
    x, y = paired_ca(SMALL_A, SMALL_B)
    complete = lddt(x, y)
    partial = x.clone()
    partial[:20] = float("nan")  # the model lacks its first 20 residues
    out = lddt(partial, y)
    assert out.score.item() < complete.score.item()
    assert out.scored[:20].all() and (out.per_residue[:20] < 1e-6).all()
    # Global score: the pairs touching a missing residue count in the denominator with score 0.
    d = torch.cdist(y, y)
    pairs = (d < 15.0) & ~torch.eye(len(y), dtype=torch.bool)
    kept = pairs.clone()
    kept[:20] = False
    kept[:, :20] = False
    inner = lddt(x[20:], y[20:])
    assert out.score.item() == pytest.approx(inner.score.item() * kept.sum().item() / pairs.sum().item(), abs=1e-6)
    # Same with an explicit mask of the reference, and for the CA and all-atom variants.
    assert lddt(partial, y, torch.ones(len(y), dtype=torch.bool)).score.item() == pytest.approx(out.score.item())
    ref37 = torch.full((len(y), 37, 3), float("nan"), dtype=torch.float64)
    ref37[:, 1] = y
    model37 = torch.full_like(ref37, float("nan"))
    model37[:, 1] = partial
    assert lddt_ca(model37, ref37).score.item() == pytest.approx(out.score.item())
    assert lddt_all_atom(model37, ref37).score.item() == pytest.approx(out.score.item())


# ---- TM-score -----------------------------------------------------------------------------------------------


def search_loops(x: np.ndarray, y: np.ndarray, score, first_cut: float, later_cut: float) -> float:  # noqa: ANN001
    """Independent, unvectorised superposition search written from the TM-score program's description: every seed
    fragment (n, n/2, ... down to 4), then re-superpose on the pairs closer than the cutoff (grown by 0.5 A until
    3 pairs) up to 20 rounds or until the selection repeats; the best ``score(distances)`` seen."""
    n = len(x)

    def fit(idx: np.ndarray) -> np.ndarray:
        a, b = x[idx], y[idx]
        u, _, vt = np.linalg.svd((a - a.mean(0)).T @ (b - b.mean(0)))
        sign = 1.0 if np.linalg.det(vt.T @ u.T) >= 0 else -1.0
        rot = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
        return np.linalg.norm(x @ rot.T + (b.mean(0) - rot @ a.mean(0)) - y, axis=1)

    def select(dist: np.ndarray, cut: float) -> np.ndarray:
        while True:
            idx = np.flatnonzero(dist < cut)
            if len(idx) >= 3 or n <= 3:
                return idx
            cut += 0.5

    lengths, length = [], n
    while length > 4 and len(lengths) < 5:
        lengths.append(length)
        length = n // 2 ** len(lengths)
    lengths.append(min(4, n))
    best = 0.0
    for frag in lengths:
        for start in range(n - frag + 1):
            dist = fit(np.arange(start, start + frag))
            best = max(best, score(dist))
            idx = select(dist, first_cut)
            for _ in range(20):
                dist = fit(idx)
                best = max(best, score(dist))
                new = select(dist, later_cut)
                if np.array_equal(new, idx):
                    break
                idx = new
    return best


def tm_score_loops(x: np.ndarray, y: np.ndarray) -> float:
    """The TM-score program's search (d0 of the length; selection at d0_search - 1, then + 1 A, d0_search = d0
    clamped to [4.5, 8])."""
    n = len(x)
    d0 = max(1.24 * (n - 15) ** (1 / 3) - 1.8, 0.5) if n > 21 else 0.5
    d0_search = min(max(d0, 4.5), 8.0)
    return search_loops(x, y, lambda d: float(np.mean(1 / (1 + (d / d0) ** 2))), d0_search - 1, d0_search + 1)


def test_tm_d0() -> None:
    assert tm_d0(100).item() == pytest.approx(1.24 * 85 ** (1 / 3) - 1.8, abs=1e-12)  # 3.6523...
    assert tm_d0(22).item() == pytest.approx(1.24 * 7 ** (1 / 3) - 1.8, abs=1e-12)
    assert tm_d0(torch.tensor([21, 10, 3])).tolist() == [0.5, 0.5, 0.5]


def test_tm_score_hand_computed_and_rigid_invariance() -> None:
    # Five CA-like points (non-planar); the model moves the last by 1 A. L = 5 -> d0 = 0.5, and the best
    # superposition keeps the other four exact: TM = (4 + 1 / (1 + (1 / 0.5)^2)) / 5 = 0.84.
    ref = torch.tensor([[0.0, 0, 0], [3.8, 0, 0], [5.0, 3.6, 0], [3.0, 5.0, 2.5], [0.5, 4.0, 5.0]])
    model = ref.clone()
    model[4] += torch.tensor([0.0, 0.0, 1.0])
    assert tm_score(model, ref).score.item() == pytest.approx(0.84, abs=1e-6)
    assert tm_score(model, ref, superposition="none").score.item() == pytest.approx(0.84, abs=1e-6)
    assert tm_score(rotate(model), ref).score.item() == pytest.approx(0.84, abs=1e-6)
    # Normalising by a longer reference (L = 100, d0 = 3.652) divides the same kind of sum by 100; with the larger
    # d0 a compromise superposition of all five points now scores a little higher, which the search finds.
    d0 = tm_d0(100).item()
    expected = (4 + 1 / (1 + (1 / d0) ** 2)) / 100
    assert tm_score(model, ref, length=100, superposition="none").score.item() == pytest.approx(expected, abs=1e-6)
    assert expected < tm_score(model, ref, length=100).score.item() < expected + 1e-3
    x, y = paired_ca(AKE_CLOSED, AKE_OPEN)
    assert tm_score(y, y).score.item() == pytest.approx(1.0, abs=1e-6)
    out = tm_score(rotate(y.float()), y.float())
    assert out.score.item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(out.rotation @ rotate(y.float())[0] + out.translation, y[0].float(), atol=1e-3, rtol=0)


def test_tm_score_search_agrees_with_an_independent_implementation() -> None:
    for a, b in ((SMALL_A, SMALL_B), (AKE_CLOSED, AKE_OPEN)):
        x, y = paired_ca(a, b)
        ours = tm_score(x, y)
        assert ours.score.item() == pytest.approx(tm_score_loops(x.numpy(), y.numpy()), abs=1e-9)
        # The returned superposition reproduces the score.
        again = tm_score(x @ ours.rotation.T + ours.translation, y, superposition="none")
        assert again.score.item() == pytest.approx(ours.score.item(), abs=1e-9)


def _noisy_and_cropped_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs on which the search's refinement rounds and its selection distance change the result."""
    _, small = paired_ca(SMALL_A, SMALL_B)
    g = torch.Generator().manual_seed(0)
    noisy = [small + torch.randn(small.shape, generator=g, dtype=torch.float64) * s for s in (1.5, 3.5)]
    x, y = paired_ca(AKE_CLOSED, AKE_OPEN)
    return [(noisy[0], small), (noisy[1], small), (x[-30:], y[-30:]), (x[:90], y[:90])]


def test_tm_score_and_gdt_search_agree_with_the_loops_on_noisy_and_cropped_pairs() -> None:
    # Small proteins (d0 below 4.5 A: the search selects at the clamped d0_search) and noisy models, where
    # stopping the refinement early or selecting at another distance finds a different optimum.
    for x, y in _noisy_and_cropped_pairs():
        assert tm_score(x, y).score.item() == pytest.approx(tm_score_loops(x.numpy(), y.numpy()), abs=1e-9)
        fractions = gdt(x, y, superposition="search").fractions
        for k, c in enumerate((1.0, 2.0, 4.0, 8.0)):
            expected = search_loops(x.numpy(), y.numpy(), lambda d, c=c: float(np.mean(d < c)), c, c)
            assert fractions[k].item() == pytest.approx(expected, abs=1e-12), c


def test_tm_score_search_beats_plain_superposition_when_a_domain_moves() -> None:
    _, y = paired_ca(AKE_CLOSED, AKE_OPEN)
    # Rigidly swing residues 120.. (about 45%) by 50 degrees about an axis through their centroid.
    model = y.clone()
    part = model[120:]
    c = part.mean(0)
    ang = math.radians(50)
    rz = torch.tensor(
        [[math.cos(ang), -math.sin(ang), 0], [math.sin(ang), math.cos(ang), 0], [0, 0, 1]], dtype=torch.float64
    )
    model[120:] = (part - c) @ rz.T + c
    search, plain = tm_score(model, y).score.item(), tm_score(model, y, superposition="kabsch").score.item()
    assert search > plain + 0.05
    assert search >= 120 / 214  # the unmoved domain alone, superposed exactly, gives at least this
    # Real domain motion (adenylate kinase, closed vs open; a small protein's two conformations) too.
    for a, b in ((AKE_CLOSED, AKE_OPEN), (SMALL_A, SMALL_B)):
        x, y = paired_ca(a, b)
        assert tm_score(x, y).score.item() > tm_score(x, y, superposition="kabsch").score.item() + 0.1


def test_tm_score_batched_masked_and_errors() -> None:
    x, y = paired_ca(SMALL_A, SMALL_B)
    n = x.shape[0]
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, :10] = False
    xs, ys = torch.stack([x, x]), torch.stack([y, y])
    xs[1, :10] = float("nan")  # missing residues in the model
    out = tm_score(xs, ys, mask)
    assert out.score.shape == (2,) and out.rotation.shape == (2, 3, 3)
    assert out.score[1].item() == pytest.approx(tm_score(x[10:], y[10:]).score.item(), abs=1e-9)
    # The reference still has n residues: normalising by its length lowers the score.
    longer = tm_score(xs[1], ys[1], mask[1], length=n).score.item()
    assert longer < out.score[1].item() and out.length[1].item() == n - 10
    for k in (1, 2, 3, 4):  # tiny inputs stay defined
        assert 0.0 < tm_score(x[:k], y[:k]).score.item() <= 1.0 + 1e-9
        assert 0.0 <= gdt_ts(x[:k], y[:k], superposition="search").item() <= 1.0
    with pytest.raises(InputError, match="at least the number of aligned residues"):
        tm_score(x, y, length=10)
    with pytest.raises(InputError, match="model has shape"):
        tm_score(x, y[:-1])
    with pytest.raises(InputError, match="no atoms selected"):
        tm_score(x, y, torch.zeros(n, dtype=torch.bool))


def test_tm_score_and_gdt_default_to_the_reference_length_when_the_model_lacks_residues() -> None:
    # TM-score (and GDT) are normalised by the reference's length: a model with residues missing (NaN) must not
    # score as if the reference were that short. Before, 10 perfect residues out of 66 gave TM = 1.
    x, y = paired_ca(SMALL_A, SMALL_B)
    n = len(y)
    partial = y.clone()
    partial[10:] = float("nan")
    out = tm_score(partial, y)
    assert out.length.item() == n and out.d0.item() == pytest.approx(tm_d0(n).item())
    assert out.score.item() == pytest.approx(10 / n * 1 / (1 + 0.0), abs=1e-6)  # 10 exact residues of n
    present = torch.isfinite(partial).all(-1)
    explicit = tm_score(partial, y, present, length=n)
    assert out.score.item() == pytest.approx(explicit.score.item(), abs=1e-9)
    # An explicit mask still chooses the residues and, by default, the length.
    assert tm_score(partial, y, present).length.item() == 10
    # GDT: the fractions are of the reference's residues (as the reference's compute_gdt_ts counts them).
    assert gdt_ts(partial, y).item() == pytest.approx(10 / n, abs=1e-6)
    # Residues missing from the reference are not part of it: they do not count.
    ref_partial = y.clone()
    ref_partial[:5] = float("nan")
    assert tm_score(x, ref_partial).length.item() == n - 5


def test_tm_score_and_gdt_refuse_a_length_that_is_not_finite_and_bad_scales() -> None:
    # A NaN length passed the "at least the aligned count" check and gave a NaN TM-score; inf gave 0 with d0 = inf.
    x, y = paired_ca(SMALL_A, SMALL_B)
    for bad in (float("nan"), float("inf"), torch.tensor([float("nan")]).squeeze()):
        with pytest.raises(InputError, match="must be a finite number of residues"):
            tm_score(x, y, length=bad)
        with pytest.raises(InputError, match="must be a finite number of residues"):
            gdt(x, y, length=bad)
    assert tm_score(y, y, length=len(y) + 5).score.item() < 1.0  # finite lengths still work
    # Likewise a NaN d0 (an SVD failure in the search) and GDT cutoffs that are none (a NaN score) or not positive.
    with pytest.raises(InputError, match="d0: must be positive, got nan"):
        tm_score(x, y, d0=float("nan"))
    for cutoffs in ((), (1.0, float("nan")), (-1.0,)):
        for mode in ("kabsch", "search"):
            with pytest.raises(InputError, match="cutoffs: expected one or more positive distances"):
                gdt(x, y, cutoffs=cutoffs, superposition=mode)


# ---- GDT ------------------------------------------------------------------------------------------------------


def test_gdt_hand_computed() -> None:
    # Residues displaced by 2, 1, 4 and 8 A; a residue counts below a cutoff strictly (as the reference).
    ref = torch.zeros(4, 3)
    ref[:, 0] = torch.arange(4.0) * 10
    model = ref.clone()
    model[:, 1] += torch.tensor([2.0, 1.0, 4.0, 8.0])
    out = gdt(model, ref, superposition="none")
    torch.testing.assert_close(out.fractions, torch.tensor([0.0, 0.25, 0.5, 0.75]))
    assert out.score.item() == pytest.approx(0.375) and out.cutoffs == (1.0, 2.0, 4.0, 8.0)
    mask = torch.tensor([True, True, False, False])
    assert gdt_ts(model, ref, mask, superposition="none").item() == pytest.approx((0 + 0.5 + 1 + 1) / 4)
    assert gdt_ha(model, ref, superposition="none").item() == pytest.approx((0 + 0 + 0.25 + 0.5) / 4)
    x, y = paired_ca(SMALL_A, SMALL_B)
    for mode in ("kabsch", "search"):
        assert gdt_ts(rotate(y), y, superposition=mode).item() == pytest.approx(1.0)
    # Reflection handling: a mirror image scores 1 only with the reference's reflection-allowing Kabsch.
    assert gdt_ts(-y, y, allow_reflection=True).item() == pytest.approx(1.0)
    assert gdt_ts(-y, y).item() < 0.5


def test_gdt_search_never_below_single_superposition_and_ha_below_ts() -> None:
    for a, b in ((SMALL_A, SMALL_B), (AKE_CLOSED, AKE_OPEN)):
        x, y = paired_ca(a, b)
        single = gdt(x, y)
        searched = gdt(x, y, superposition="search")
        assert (searched.fractions >= single.fractions - 1e-7).all()
        assert searched.score.item() > single.score.item() + 0.05  # both pairs move a domain
        assert gdt_ha(x, y).item() <= single.score.item()
        # The single superposition is the plain Kabsch one: its fractions follow from its distances.
        sup = kabsch(x, y)
        d = (sup.superposed - y).norm(dim=-1)
        expected = torch.tensor([float((d < c).double().mean()) for c in (1, 2, 4, 8)], dtype=torch.float64)
        torch.testing.assert_close(single.fractions, expected)
    with pytest.raises(ValueError, match="allow_reflection applies only"):
        gdt(x, y, superposition="search", allow_reflection=True)


# ---- the metrics against each other on real conformation pairs --------------------------------------------------


def _spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.dataset
def test_metrics_rank_conformation_pairs_consistently() -> None:
    folder = shared_data("dev", "bioemu_multiconf_backbone")
    lengths = {}  # primary chain lengths from the manifest, to pick the small pairs without reading every file
    for line in (folder.parent / "manifest.tsv").read_text().splitlines()[1:]:
        fields = line.split("\t")
        lengths[fields[0].split("/")[-1]] = int(fields[8])
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for f in sorted(folder.glob("*.pdb.gz")):
        groups[f.name.rsplit("__", 1)[0]].append(f.name)
    rows = []
    for names in groups.values():
        if len(names) != 2 or not all(60 <= lengths[n] <= 160 for n in names):
            continue  # keeps the test fast: 17 pairs of 65-158 residues
        x, y = paired_ca(names[0], names[1], folder)
        tm, tm_plain = tm_score(x, y).score.item(), tm_score(x, y, superposition="kabsch").score.item()
        gdt_plain, gdt_best = gdt_ts(x, y).item(), gdt_ts(x, y, superposition="search").item()
        rows.append((tm, tm_plain, gdt_plain, gdt_best))
        assert 0.0 < tm_plain <= tm <= 1.0  # the search never loses to its first seed (the plain superposition)
        assert 0.0 <= gdt_plain <= gdt_best <= 1.0
        assert lddt(y, y).score.item() == 1.0 and lddt(x, y).score.item() < 1.0
    assert len(rows) >= 15
    tm, tm_plain, gdt_plain, gdt_best = zip(*rows)
    # TM-score and GDT-TS both measure global similarity: under the same kind of superposition they must order
    # the pairs alike (measured: 0.96 and 0.95). Across kinds they need not (domain motions: 0.79).
    assert _spearman(tm_plain, gdt_plain) > 0.9
    assert _spearman(tm, gdt_best) > 0.9


def test_a_normalisation_length_below_the_aligned_count_by_one_is_refused() -> None:
    # L below the aligned residues would let the score exceed 1; L equal to them is the plain TM-score / GDT.
    x, y = paired_ca(SMALL_A, SMALL_B)
    n = len(x)
    for metric in (tm_score, gdt):
        with pytest.raises(InputError, match=rf"\({n - 1}\) must be at least the number of aligned residues \({n}\)"):
            metric(x, y, length=n - 1)
        metric(x, y, length=n)
