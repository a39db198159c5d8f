"""DSSP secondary structure (Kabsch & Sander 1983) as ``mkdssp`` 4.2.2 assigns it, in vectorised numpy.

ESM3 conditions on the 8-state DSSP alphabet ``GHITEBSC`` (spec §3.1); the official package obtains it by running
the external ``mkdssp`` binary (spec §12). This module reproduces that assignment without the binary.

Algorithm (Kabsch & Sander 1983, with the choices of mkdssp 4.2.2):

1. Residues lacking any of N, CA, C, O are skipped, as mkdssp drops them. The chain is broken where the chain
   changes or where C(k)-N(k+1) > 2.5 A between consecutive kept residues (so a skipped residue breaks it too).
2. The amide H of every kept residue but the first and prolines is N + unit(C(prev) - O(prev)), prev being the
   previous kept residue even across a break or a chain change (mkdssp links its whole residue list).
3. Electrostatic H-bond energy E = 0.084 * 332 * (1/rON + 1/rCH - 1/rOH - 1/rCN) kcal/mol for residue pairs with
   CA-CA < 9 A (not for the donor k+1 -> acceptor k), rounded to 0.001, clamped at -9.9 (-9.9 also when two atoms
   are closer than 0.5 A); prolines do not donate. Each donor keeps its two lowest-energy acceptors, and an
   H-bond exists when one of those two is below -0.5.
4. n-turns (n = 3, 4, 5), bends (kappa > 70 degrees), bridges, ladders and bulges (gaps up to 1 and 4), then the
   priorities: E and B; H over them; G only on coil; I on coil and over H (mkdssp 4.2 prefers pi helices);
   T, then S, on the remaining coil.

The arithmetic follows mkdssp (coordinates and distances in float32, energies in float64) so that energies that
round to exactly -0.5 and ties are decided the same way. DSSP 4's polyproline state ``P`` is coil (``C``) here.
Agreement with mkdssp 4.2.2 on 545 PDB files is measured by ``tests/unit/test_dssp_mkdssp.py`` and
``benchmarks/bench_dssp.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from biotite.structure import CellList

from openesm3.constants import SS8_STATES
from openesm3.errors import InputError

# atom37 slots (spec §12 table): backbone N, CA, C, O and proline's CD.
_N, _CA, _C, _O, _CD = 0, 1, 2, 4, 11
_ATOM37 = 37

# Parameters of mkdssp 4.2.2 (Kabsch & Sander 1983).
COUPLING_CONSTANT = -27.888  # kcal/mol * A: -332 * 0.42 * 0.2 (q1 * q2 * f)
MIN_HBOND_ENERGY = -9.9  # kcal/mol: energies are clamped at this value
MAX_HBOND_ENERGY = -0.5  # kcal/mol: an H-bond needs an energy strictly below this
MINIMAL_DISTANCE = 0.5  # A: any donor/acceptor atom pair closer than this gives MIN_HBOND_ENERGY
MINIMAL_CA_DISTANCE = 9.0  # A: residue pairs with CA-CA >= this are not evaluated
MAX_PEPTIDE_BOND_LENGTH = 2.5  # A: C(k)-N(k+1) longer than this is a chain break
BEND_ANGLE = 70.0  # degrees: kappa above this is a bend
PROLINE_CD_N_DISTANCE = 1.8  # A: ours, a CD this close to N marks a proline when no sequence is given

PARALLEL, ANTIPARALLEL = 1, 2

# Internal state codes, and the letter of each ("C" for loop, as in the SS8 alphabet).
_LOOP, _BRIDGE, _STRAND, _ALPHA, _THREE10, _PI, _TURN, _BEND = range(8)
_LETTERS = np.frombuffer(b"CBEHGITS", dtype=np.uint8)
assert sorted("CBEHGITS") == sorted(SS8_STATES)


@dataclass(frozen=True)
class Ladder:
    """A ladder of bridges after bulge merging; indices are input rows (0..L-1).

    ``i`` is the first strand (increasing), ``j`` its partners (increasing for both kinds; for an antiparallel
    ladder ``j[-1]`` pairs with ``i[0]``). ``kind`` is :data:`PARALLEL` or :data:`ANTIPARALLEL`.
    """

    kind: int
    i: tuple[int, ...]
    j: tuple[int, ...]


@dataclass(frozen=True)
class DsspResult:
    """Everything :func:`dssp` computes; residue indices are input rows (0..L-1).

    Attributes:
        ss8: the assignment, length L over ``GHITEBSC`` (``C`` also for residues without a complete backbone).
        valid: [L] bool, residues with finite N, CA, C and O, the only ones DSSP considers.
        segment: [L] int64, id of the unbroken backbone segment of each valid residue (-1 if not valid).
        hydrogen: [L, 3] float32, the placed amide H (equal to N for the first residue and prolines; NaN if
            not valid).
        donor, acceptor, energy: [P] int64, int64, float64: every evaluated N-H(donor) -> O=C(acceptor) pair and
            its energy in kcal/mol (rounded and clamped; 0 for proline donors).
        best_acceptor: [L, 2] int64, the two lowest-energy acceptors of each donor (-1: none below 0).
        best_energy: [L, 2] float64, their energies (0 where none).
        turn: [3, L] bool, n-turn starts for n = 3, 4, 5 (H-bond from k+n to k, no break in between).
        kappa: [L] float64, the CA(k-2), CA(k), CA(k+2) bend angle in degrees (360 where undefined).
        bend: [L] bool, kappa > 70.
        bridge_i, bridge_j, bridge_kind: [B] int64, the bridges found (i < j; kind PARALLEL or ANTIPARALLEL).
        ladders: the ladders after bulge merging, in mkdssp's order.
    """

    ss8: str
    valid: np.ndarray
    segment: np.ndarray
    hydrogen: np.ndarray
    donor: np.ndarray
    acceptor: np.ndarray
    energy: np.ndarray
    best_acceptor: np.ndarray
    best_energy: np.ndarray
    turn: np.ndarray
    kappa: np.ndarray
    bend: np.ndarray
    bridge_i: np.ndarray
    bridge_j: np.ndarray
    bridge_kind: np.ndarray
    ladders: tuple[Ladder, ...]

    def energy_matrix(self) -> np.ndarray:
        """[L, L] float64 H-bond energies indexed ``[donor, acceptor]``; 0 for pairs that were not evaluated."""
        n = self.valid.shape[0]
        out = np.zeros((n, n), dtype=np.float64)
        out[self.donor, self.acceptor] = self.energy
        return out

    def hbond(self, donor: np.ndarray | int, acceptor: np.ndarray | int) -> np.ndarray:
        """Whether DSSP counts the H-bond N-H(donor) -> O=C(acceptor): one of the donor's best two, below -0.5."""
        d = np.asarray(donor)
        a = np.asarray(acceptor)[..., None]
        return ((self.best_acceptor[d] == a) & (self.best_energy[d] < MAX_HBOND_ENERGY) & (a >= 0)).any(-1)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance over the last axis in the inputs' precision, summed x, y, then z as mkdssp does."""
    d = a - b
    return np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2])


def _round_half_away(x: np.ndarray) -> np.ndarray:
    # C's std::round (half away from zero), not numpy's half-to-even: mkdssp rounds energies to 0.001 with it.
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def hbond_energy(
    n_donor: np.ndarray, h_donor: np.ndarray, o_acceptor: np.ndarray, c_acceptor: np.ndarray
) -> np.ndarray:
    """DSSP electrostatic energy (kcal/mol) of N-H(donor) -> O=C(acceptor); atoms [..., 3] broadcast together.

    E = q1 q2 f (1/rON + 1/rCH - 1/rOH - 1/rCN) with q1 q2 f = 0.42 * 0.2 * 332 (Kabsch & Sander 1983, eq. 1),
    rounded to 0.001 and clamped at -9.9 as mkdssp does; -9.9 when any of the four distances is below 0.5 A.
    Distances are computed in float32 from float32 coordinates, the energy in float64.
    """
    n, h, o, c = (np.asarray(x, dtype=np.float32) for x in (n_donor, h_donor, o_acceptor, c_acceptor))
    d_ho, d_hc, d_nc, d_no = (_distance(p, q).astype(np.float64) for p, q in ((h, o), (h, c), (n, c), (n, o)))
    # mkdssp's "or" of four tests: a NaN hydrogen (its residue's C and O coincide) still lets N-C or N-O be too close
    too_close = (
        (d_ho < MINIMAL_DISTANCE) | (d_hc < MINIMAL_DISTANCE) | (d_nc < MINIMAL_DISTANCE) | (d_no < MINIMAL_DISTANCE)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        e = COUPLING_CONSTANT / d_ho - COUPLING_CONSTANT / d_hc + COUPLING_CONSTANT / d_nc - COUPLING_CONSTANT / d_no
    e = np.where(too_close, MIN_HBOND_ENERGY, e)
    e = _round_half_away(e * 1000) / 1000  # mkdssp's "DSSP compatibility" rounding to 0.001 kcal/mol
    return np.maximum(e, MIN_HBOND_ENERGY)


def _near_pairs(ca: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """All (k, l), k < l, with CA-CA < 9 A (float32, as mkdssp), ordered by k then l. ``ca``: [m, 3] float32.

    Candidates come from a biotite cell list (radius slightly above 9 A) and the exact float32 test decides. When
    the atoms are so spread out that the cell grid would be huge, row blocks of a dense distance matrix are used.
    """
    m = ca.shape[0]
    first: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    second: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    n_cells = float(np.prod(np.ceil(np.ptp(ca, axis=0) / MINIMAL_CA_DISTANCE) + 1)) if m > 1 else 0.0
    if 1 < m and n_cells <= 64 * m + 4096:
        neighbours = CellList(ca, cell_size=MINIMAL_CA_DISTANCE).get_atoms(ca, radius=MINIMAL_CA_DISTANCE + 0.01)
        k, col = np.nonzero(neighbours > np.arange(m)[:, None])  # padding is -1
        partner = neighbours[k, col]
        near = _distance(ca[k], ca[partner]) < MINIMAL_CA_DISTANCE
        first.append(k[near])
        second.append(partner[near])
    else:
        for start in range(0, m, block):
            stop = min(start + block, m)
            near = _distance(ca[start:stop, None, :], ca[None, start:, :]) < MINIMAL_CA_DISTANCE  # [b, m - start]
            near &= np.arange(start, m)[None, :] > np.arange(start, stop)[:, None]
            k, col = np.nonzero(near)
            first.append(k + start)
            second.append(col + start)
    k, partner = np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64)
    order = np.lexsort((partner, k))
    return k[order], partner[order]


def _top_two_acceptors(
    m: int, donor: np.ndarray, acceptor: np.ndarray, energy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per donor, the two lowest energies below 0 and their acceptors ([m, 2] each; -1 and 0 where none).

    mkdssp keeps a running best two per donor, starting at energy 0 and updated with a strict ``<`` while it visits
    acceptors in increasing index order; that is a stable sort by (energy, acceptor), ties to the lower acceptor.
    """
    best_acc = np.full((m, 2), -1, dtype=np.int64)
    best_e = np.zeros((m, 2), dtype=np.float64)
    keep = energy < 0
    d, a, e = donor[keep], acceptor[keep], energy[keep]
    order = np.lexsort((a, e, d))
    d, a, e = d[order], a[order], e[order]
    first = np.ones(d.size, dtype=bool)
    first[1:] = d[1:] != d[:-1]
    rank = np.arange(d.size) - np.maximum.accumulate(np.where(first, np.arange(d.size), 0))
    top = rank < 2
    best_acc[d[top], rank[top]] = a[top]
    best_e[d[top], rank[top]] = e[top]
    return best_acc, best_e


@dataclass
class _MutableLadder:
    kind: int
    i: list[int]
    j: list[int]


def _in_range(x: int, bound: int) -> bool:
    # mkdssp subtracts uint32 indices: a negative difference wraps around and is never small.
    return 0 <= x < bound


def _build_ladders(
    bi: np.ndarray, bj: np.ndarray, kind: np.ndarray, seg: np.ndarray, chain: np.ndarray
) -> list[_MutableLadder]:
    """Bridges (ordered by i, then j) -> ladders -> ladders merged over bulges, as mkdssp builds them."""
    ladders: list[_MutableLadder] = []
    open_end: dict[tuple[int, int, int], int] = {}
    # A bridge (i, j) extends the ladder whose last bridge is (i-1, j-1) (parallel) or (i-1, j+1) (antiparallel).
    for i, j, t in zip(bi.tolist(), bj.tolist(), kind.tolist()):
        hit = open_end.pop((t, i - 1, j - 1) if t == PARALLEL else (t, i - 1, j + 1), None)
        if hit is None:
            hit = len(ladders)
            ladders.append(_MutableLadder(t, [i], [j]))
        else:
            ladders[hit].i.append(i)
            ladders[hit].j.append(j) if t == PARALLEL else ladders[hit].j.insert(0, j)
        open_end[(t, i, j)] = hit

    # Bulges: mkdssp sorts ladders by (chain, first residue), then merges each ladder with any later one of the same
    # kind, with no break inside either strand span, whose strands continue after a gap of at most 1 residue on one
    # strand and 4 on the other (or 2 on the j-strand alone, whatever the i gap up to 5).
    ladders.sort(key=lambda lad: (int(chain[lad.i[0]]), lad.i[0]))
    a = 0
    while a < len(ladders):
        b = a + 1
        while b < len(ladders):
            la, lb = ladders[a], ladders[b]
            ibi, iei, jbi, jei = la.i[0], la.i[-1], la.j[0], la.j[-1]
            ibj, iej, jbj, jej = lb.i[0], lb.i[-1], lb.j[0], lb.j[-1]
            if (
                la.kind != lb.kind
                or seg[min(ibi, ibj)] != seg[max(iei, iej)]
                or seg[min(jbi, jbj)] != seg[max(jei, jej)]
                or not _in_range(ibj - iei, 6)
                or (iei >= ibj and ibi <= iej)
            ):
                b += 1
                continue
            gap = jbj - jei if la.kind == PARALLEL else jbi - jej
            if (_in_range(gap, 6) and _in_range(ibj - iei, 3)) or _in_range(gap, 3):
                la.i.extend(lb.i)
                if la.kind == PARALLEL:
                    la.j.extend(lb.j)
                else:
                    la.j[:0] = lb.j
                del ladders[b]
            else:
                b += 1
        a += 1
    return ladders


def _span_mask(m: int, starts: np.ndarray, length: int) -> np.ndarray:
    """[m] bool: residues k..k+length-1 for every start k (bool mask or index array)."""
    s = np.nonzero(starts)[0] if starts.dtype == bool else starts
    cover = np.zeros(m + length + 1, dtype=np.int64)
    np.add.at(cover, s, 1)
    np.add.at(cover, s + length, -1)
    return np.cumsum(cover)[:m] > 0


def _window_all(mask: np.ndarray, length: int) -> np.ndarray:
    """[m] bool: mask[k..k+length-1] all true (False where the window leaves the array)."""
    m = mask.shape[0]
    out = np.zeros(m, dtype=bool)
    if m >= length:
        c = np.concatenate([[0], np.cumsum(~mask)])
        out[: m - length + 1] = (c[length:] - c[:-length]) == 0
    return out


def _assign(m: int, ladders: list[_MutableLadder], turn: np.ndarray, bend: np.ndarray) -> np.ndarray:
    """[m] state codes from ladders, n-turns and bends, with mkdssp's priorities."""
    ss = np.full(m, _LOOP, dtype=np.int8)
    for lad in ladders:  # a ladder of one bridge gives B, longer ones E over both strand spans; E wins over B
        code = _STRAND if len(lad.i) > 1 else _BRIDGE
        for lo, hi in ((lad.i[0], lad.i[-1]), (lad.j[0], lad.j[-1])):
            span = ss[lo : hi + 1]
            span[span != _STRAND] = code

    def consecutive(t: int, last: int) -> np.ndarray:
        # Starts k (1 <= k < m - last) of two consecutive n-turns, at k - 1 and k.
        out = np.zeros(m, dtype=bool)
        if m > last + 1:
            out[1 : m - last] = turn[t, 1 : m - last] & turn[t, : m - last - 1]
        return out

    # H: two consecutive 4-turns at k-1 and k give H at k..k+3, over anything.
    ss[_span_mask(m, consecutive(1, 4), 4)] = _ALPHA
    # G: two consecutive 3-turns give G at k..k+2 when all three are coil (or G).
    ss[_span_mask(m, consecutive(0, 3) & _window_all(ss == _LOOP, 3), 3)] = _THREE10
    # I: two consecutive 5-turns give I at k..k+4 when all five are coil, H (mkdssp 4.2 prefers pi) or I.
    ss[_span_mask(m, consecutive(2, 5) & _window_all((ss == _LOOP) | (ss == _ALPHA), 5), 5)] = _PI
    # T on coil inside an n-turn (k-n < start < k), otherwise S on coil at a bend; never at the two ends.
    inside_turn = np.zeros(m, dtype=bool)
    for t, n in enumerate((3, 4, 5)):
        inside_turn |= _span_mask(m, np.nonzero(turn[t])[0] + 1, n - 1)
    coil = ss == _LOOP
    coil[[0, -1]] = False
    ss[coil & inside_turn] = _TURN
    ss[coil & ~inside_turn & bend] = _BEND
    return ss


def _validate(
    atom37: np.ndarray, chain_index: np.ndarray | None, residue_index: np.ndarray | None, sequence: str | None
) -> tuple[np.ndarray, np.ndarray]:
    coords = np.asarray(atom37)
    if coords.ndim != 3 or coords.shape[1:] != (_ATOM37, 3):
        raise InputError(f"DSSP: atom37 coordinates must have shape [L, 37, 3], got {list(coords.shape)}")
    if not (np.issubdtype(coords.dtype, np.floating) or np.issubdtype(coords.dtype, np.integer)):
        raise InputError(f"DSSP: atom37 coordinates must be numbers, got dtype {coords.dtype}")
    n = coords.shape[0]
    chains = np.zeros(n, dtype=np.int64) if chain_index is None else np.asarray(chain_index)
    if chains.shape != (n,) or not np.issubdtype(chains.dtype, np.integer):
        raise InputError(
            f"DSSP: chain_index must hold {n} integers (one per residue), got {chains.dtype} {list(chains.shape)}"
        )
    if residue_index is not None and np.shape(residue_index) != (n,):
        raise InputError(f"DSSP: residue_index must have shape [{n}], got {list(np.shape(residue_index))}")
    if sequence is not None and len(sequence) != n:
        raise InputError(f"DSSP: sequence has {len(sequence)} residues but atom37 has {n}")
    return coords, chains


def dssp(
    atom37: np.ndarray,
    *,
    chain_index: np.ndarray | None = None,
    residue_index: np.ndarray | None = None,
    sequence: str | None = None,
) -> DsspResult:
    """DSSP with its intermediate arrays (see :class:`DsspResult`); :func:`assign_ss8` returns only the string.

    Args:
        atom37: [L, 37, 3] coordinates in atom37 order (spec §12). Only N, CA, C, O (and CD, see ``sequence``) are
            read, cast to float32 as mkdssp stores them. Missing atoms are NaN; residues lacking N, CA, C or O are
            skipped as mkdssp skips them, and get ``C``.
        chain_index: [L] integer chain of each residue (default: one chain), rows in file order with the residues
            of a chain contiguous. Different chains are never bonded, but H-bonds and bridges between chains
            count, as mkdssp works on the whole file.
        residue_index: [L] residue numbers; checked for shape only. mkdssp decides breaks from the C-N distance,
            so a numbering gap over an intact peptide bond is not a break.
        sequence: one-letter residues, read only to find prolines ('P'), which do not donate H-bonds. Without it,
            a residue is a proline when its CD is within 1.8 A of its N (so none in backbone-only inputs).

    Returns:
        The :class:`DsspResult`.

    Raises:
        InputError: if a shape, dtype or length does not fit.
    """
    coords, chains = _validate(atom37, chain_index, residue_index, sequence)
    n_res = coords.shape[0]
    bb = coords[:, [_N, _CA, _C, _O], :].astype(np.float32)
    valid = np.asarray(np.isfinite(bb).all(axis=(1, 2)), dtype=bool)
    idx = np.nonzero(valid)[0]  # compressed index k -> input row idx[k]
    m = idx.size
    n_at, ca, c_at, o_at = (bb[idx, a] for a in range(4))
    if sequence is not None:
        is_pro = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)[idx] == ord("P")
    else:
        with np.errstate(invalid="ignore"):
            is_pro = _distance(coords[idx, _CD].astype(np.float32), n_at) < PROLINE_CD_N_DISTANCE

    # Breaks between consecutive kept residues: chain change or C-N > 2.5 A. seg[k] numbers unbroken segments.
    brk = np.ones(m, dtype=bool)
    brk[1:] = (chains[idx][1:] != chains[idx][:-1]) | (_distance(c_at[:-1], n_at[1:]) > MAX_PEPTIDE_BOND_LENGTH)
    seg = np.cumsum(brk) - 1

    # Amide H = N + unit(C(k-1) - O(k-1)), k-1 being the previous kept residue whatever the break (mkdssp).
    h_at = n_at.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = (c_at[:-1] - o_at[:-1]) / _distance(c_at[:-1], o_at[:-1])[:, None]
    place = np.nonzero(~is_pro[1:])[0]
    h_at[place + 1] += shift[place]

    # Energies of pairs with CA-CA < 9 A in both directions, except donor k+1 -> acceptor k; prolines give 0.
    pk, pl = _near_pairs(ca)
    back = pl != pk + 1
    donor = np.concatenate([pk, pl[back]])
    acceptor = np.concatenate([pl, pk[back]])
    energy = hbond_energy(n_at[donor], h_at[donor], o_at[acceptor], c_at[acceptor])
    energy[is_pro[donor]] = 0.0
    best_acc, best_e = _top_two_acceptors(m, donor, acceptor, energy)
    bonded = best_e < MAX_HBOND_ENERGY

    def hbond(d: np.ndarray, a: np.ndarray) -> np.ndarray:  # N-H(d) -> O(a); False outside 0..m-1
        inside = (d >= 0) & (d < m) & (a >= 0) & (a < m)
        dc = np.clip(d, 0, max(m - 1, 0))
        return inside & ((best_acc[dc] == a[:, None]) & bonded[dc]).any(-1)

    def unbroken(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a..b (a <= b) in one segment, both in range
        inside = (a >= 0) & (b < m)
        return inside & (seg[np.clip(a, 0, max(m - 1, 0))] == seg[np.clip(b, 0, max(m - 1, 0))])

    ks = np.arange(m)
    turn = np.stack([unbroken(ks, ks + n) & hbond(ks + n, ks) for n in (3, 4, 5)])  # [3, m]

    # kappa: angle between CA(k-2)->CA(k) and CA(k)->CA(k+2), where k-2..k+2 is unbroken.
    kappa = np.full(m, 360.0)
    mid = np.nonzero(unbroken(ks - 2, ks + 2))[0]
    v12, v34 = ca[mid] - ca[mid - 2], ca[mid + 2] - ca[mid]
    norm2 = ((v12 * v12).sum(-1) * (v34 * v34).sum(-1)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ckap = np.where(norm2 > 0, (v12 * v34).sum(-1).astype(np.float64) / np.sqrt(norm2), 0.0)
    kappa[mid] = np.degrees(np.arctan2(np.sqrt(np.maximum(1 - ckap * ckap, 0.0)), ckap))
    bend = (kappa != 360.0) & (kappa > BEND_ANGLE)

    # Bridges (k, l), l >= k + 3, with k-1..k+1 and l-1..l+1 unbroken (Kabsch & Sander 1983, Fig. 2).
    cand = (pl >= pk + 3) & unbroken(pk - 1, pk + 1) & unbroken(pl - 1, pl + 1)
    bi, bj = pk[cand], pl[cand]
    par = (hbond(bi + 1, bj) & hbond(bj, bi - 1)) | (hbond(bj + 1, bi) & hbond(bi, bj - 1))
    anti = (hbond(bi + 1, bj - 1) & hbond(bj + 1, bi - 1)) | (hbond(bj, bi) & hbond(bi, bj))
    kind = np.where(par, PARALLEL, np.where(anti, ANTIPARALLEL, 0))
    found = kind > 0
    bi, bj, kind = bi[found], bj[found], kind[found]
    ladders = _build_ladders(bi, bj, kind, seg, chains[idx])
    ss = _assign(m, ladders, turn, bend) if m else np.zeros(0, dtype=np.int8)

    # Back to input rows; residues without a complete backbone are coil.
    letters = np.full(n_res, ord("C"), dtype=np.uint8)
    letters[idx] = _LETTERS[ss]

    def full(values: np.ndarray, fill: float | int | bool, dtype: type | np.dtype) -> np.ndarray:
        out = np.full((n_res, *values.shape[1:]), fill, dtype=dtype)
        out[idx] = values
        return out

    best_rows = np.where(best_acc >= 0, idx[np.maximum(best_acc, 0)] if m else -1, -1)
    return DsspResult(
        ss8=letters.tobytes().decode("ascii"),
        valid=valid,
        segment=full(seg, -1, np.int64),
        hydrogen=full(h_at, np.nan, np.float32),
        donor=idx[donor],
        acceptor=idx[acceptor],
        energy=energy,
        best_acceptor=full(best_rows, -1, np.int64),
        best_energy=full(best_e, 0.0, np.float64),
        turn=full(turn.T, False, bool).T,
        kappa=full(kappa, 360.0, np.float64),
        bend=full(bend, False, bool),
        bridge_i=idx[bi],
        bridge_j=idx[bj],
        bridge_kind=kind.astype(np.int64),
        ladders=tuple(Ladder(lad.kind, tuple(idx[lad.i].tolist()), tuple(idx[lad.j].tolist())) for lad in ladders),
    )


def assign_ss8(
    atom37: np.ndarray,
    *,
    chain_index: np.ndarray | None = None,
    residue_index: np.ndarray | None = None,
    sequence: str | None = None,
    not_assigned: str = "C",
) -> str:
    """8-state DSSP string of length L over ``GHITEBSC`` (``C`` = coil), as mkdssp 4.2.2 assigns it.

    See :func:`dssp` for the arguments. Residues without a complete backbone (N, CA, C, O) are not assessed (mkdssp
    drops them); they get ``not_assigned`` (default ``C``). Pass another letter (``X``, or ``_`` to mask an SS8
    track) so that a CA-only or O-less structure does not read as all coil.
    """
    if len(not_assigned) != 1:
        raise InputError(f"DSSP: not_assigned must be one character, got {not_assigned!r}")
    result = dssp(atom37, chain_index=chain_index, residue_index=residue_index, sequence=sequence)
    if not_assigned == "C" or result.valid.all():
        return result.ss8
    letters = np.frombuffer(result.ss8.encode("ascii"), dtype="S1").copy()
    letters[~result.valid] = not_assigned.encode("ascii", errors="replace")
    return letters.tobytes().decode("ascii")
