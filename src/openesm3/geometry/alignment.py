"""Optimal rigid superposition (Kabsch), RMSD and the fragment-seeded superposition search of the TM-score program.

Conventions (same as :mod:`openesm3.geometry.rigid`): a superposition maps the *mobile* coordinates onto the
*target* as ``R @ x + t`` (column vectors), so ``Rigid(rotation, translation).apply(mobile)`` gives the superposed
coordinates. Shapes: ``[*, N, 3]`` coordinates, ``[*, N]`` masks and weights, any number of leading batch dims.

Numerics: the cross-covariance, its SVD and the transform are computed in float64 (the spec §12 reference does the
same); outputs are fp32 (fp64 when the inputs are fp64).

Differences from the reference (spec §12, ``compute_affine_and_rmsd``), each selectable for parity:
- the reference's Kabsch has no determinant correction, so for some inputs it returns a *reflection*; ours returns
  proper rotations unless ``allow_reflection=True``;
- the reference's RMSD divides the summed squared deviation by ``3 * n_atoms`` (an RMS over coordinates, a factor
  sqrt(3) below the usual RMSD); ours divides by ``n_atoms`` unless ``normalization="coordinates"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.geometry._validation import (
    check_same_shape,
    out_dtype,
    require_nonempty,
    resolve_mask,
    resolve_weights,
)
from openesm3.geometry.rigid import Rigid

RMSDNormalization = Literal["atoms", "coordinates"]

# Upper bound on seeds x residues held at once by the superposition search (float64 [S, N, 3] tensors).
_SEARCH_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class Superposition:
    """Result of :func:`kabsch`.

    Attributes:
        rotation: [*, 3, 3] rotation (or, with ``allow_reflection=True``, possibly a reflection) R.
        translation: [*, 3] translation t; ``R @ mobile + t`` is superposed onto the target.
        superposed: [*, N, 3] all mobile atoms after the transform (masked ones too; NaN stays NaN).
        rmsd: [*] weighted RMSD over the masked atoms after superposition (usual ``n_atoms`` normalisation).
    """

    rotation: Tensor
    translation: Tensor
    superposed: Tensor
    rmsd: Tensor

    @property
    def rigid(self) -> Rigid:
        """The transform as a :class:`Rigid` (mobile frame -> target frame)."""
        return Rigid(self.rotation, self.translation)


def kabsch_float64(x: Tensor, y: Tensor, w: Tensor, allow_reflection: bool = False) -> tuple[Tensor, Tensor]:
    """Weighted least-squares rigid transform taking ``x`` onto ``y``; the unchecked float64 core.

    Kabsch (1976) with the determinant correction: H = sum_n w_n (x_n - x̄)(y_n - ȳ)^T = U S V^T, then
    R = V diag(1, 1, d) U^T with d = sign det(V U^T) (d = 1 when ``allow_reflection``), t = ȳ - R x̄.

    Args:
        x, y: [B, N, 3] float64, finite wherever ``w > 0`` (other rows must be finite too: zero them first).
        w: [B, N] float64 non-negative weights, positive sum per batch item.

    Returns:
        ``(R [B, 3, 3], t [B, 3])`` in float64.
    """
    wsum = w.sum(-1, keepdim=True)  # [B, 1]
    cx = (w[..., None] * x).sum(-2) / wsum  # [B, 3]
    cy = (w[..., None] * y).sum(-2) / wsum
    h = torch.einsum("bn,bni,bnj->bij", w, x - cx[:, None], y - cy[:, None])  # [B, 3, 3]
    rot = _rotation_from_covariance(h, allow_reflection)
    trans = cy - (rot @ cx[..., None])[..., 0]
    return rot, trans


def _det3(m: Tensor) -> Tensor:
    """Determinant of [..., 3, 3] by cofactor expansion (much faster than ``torch.det`` for many tiny matrices)."""
    a, b = m[..., 0, :], m[..., 1, :]
    return (a * torch.linalg.cross(b, m[..., 2, :], dim=-1)).sum(-1)


def _rotation_from_covariance(h: Tensor, allow_reflection: bool) -> Tensor:
    """R = V diag(1, 1, d) U^T from H = U S V^T (d = sign det(V U^T), or 1 when reflections are allowed)."""
    u, _, vh = torch.linalg.svd(h)
    v = vh.transpose(-1, -2)
    if not allow_reflection:
        # Flip the axis of the smallest singular value when V U^T would be a reflection (det = -1).
        flip = torch.ones_like(v[..., 0, :])  # [..., 3]
        flip[..., 2] = torch.where(_det3(v) * _det3(u) < 0, -1.0, 1.0)
        v = v * flip[..., None, :]
    return v @ u.transpose(-1, -2)


def _flatten(x: Tensor, tail: int) -> Tensor:
    return x.reshape(-1, *x.shape[x.dim() - tail :])


def kabsch(
    mobile: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
    *,
    allow_reflection: bool = False,
) -> Superposition:
    """Optimal superposition of ``mobile`` onto ``target`` (weighted, masked, batched).

    Spec §12 (``Aligner`` / ``compute_affine_and_rmsd``) plus the reflection correction the reference lacks.

    Args:
        mobile: [*, N, 3] coordinates to move.
        target: [*, N, 3] coordinates to superpose onto (same atoms, same order).
        mask: [*, N] bool, atoms to fit on; default: atoms finite in both. Selected atoms must be finite.
        weights: [*, N] non-negative per-atom weights (default 1), multiplied by the mask.
        allow_reflection: ``True`` reproduces the reference (spec §12, pitfall 17): the orthogonal matrix from the
            SVD is used as is, so a mirror image can be "superposed" by a reflection. ``False`` (default) always
            returns a proper rotation (det +1).

    Returns:
        :class:`Superposition`; fp32 outputs (fp64 for fp64 inputs).

    Raises:
        InputError: on shape mismatches, non-boolean or misshaped masks, bad weights, non-finite selected
            coordinates, or a batch item with no selected atom.
    """
    check_same_shape("mobile", mobile, "target", target)
    m = resolve_mask(mask, [("mobile", mobile), ("target", target)])
    w = resolve_weights(weights, m)
    require_nonempty(w, "kabsch")
    batch, dtype = mobile.shape[:-2], out_dtype(mobile)
    x, y, wf = _zeroed64(mobile, m), _zeroed64(target, m), _flatten(w, 1)
    x, y = _flatten(x, 2), _flatten(y, 2)
    rot, trans = kabsch_float64(x, y, wf, allow_reflection)
    moved = torch.einsum("bij,bnj->bni", rot, x) + trans[:, None]
    sq = ((moved - y) ** 2).sum(-1)
    rmsd_ = torch.sqrt((wf * sq).sum(-1) / wf.sum(-1))
    superposed = torch.einsum("bij,bnj->bni", rot, _flatten(mobile.to(torch.float64), 2)) + trans[:, None]
    return Superposition(
        rotation=rot.to(dtype).reshape(*batch, 3, 3),
        translation=trans.to(dtype).reshape(*batch, 3),
        superposed=superposed.to(dtype).reshape(mobile.shape),
        rmsd=rmsd_.to(dtype).reshape(batch),
    )


def _zeroed64(x: Tensor, mask: Tensor) -> Tensor:
    """float64 copy with unselected atoms set to 0, so NaN placeholders of missing atoms cannot leak through."""
    return torch.where(mask[..., None], x.to(torch.float64), torch.zeros((), dtype=torch.float64, device=x.device))


def rmsd(
    mobile: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
    *,
    superpose: bool = True,
    allow_reflection: bool = False,
    normalization: RMSDNormalization = "atoms",
) -> Tensor:
    """Root-mean-square deviation between two sets of the same atoms, by default after optimal superposition.

    Args:
        mobile, target: [*, N, 3].
        mask: [*, N] bool (default: atoms finite in both).
        weights: [*, N] non-negative weights (default 1).
        superpose: superpose ``mobile`` onto ``target`` first (:func:`kabsch`); ``False`` compares as given.
        allow_reflection: passed to :func:`kabsch` (``True`` reproduces the reference).
        normalization: ``"atoms"`` (default): sqrt(sum_n w_n |d_n|^2 / sum_n w_n), the usual RMSD.
            ``"coordinates"``: divides by 3 sum_n w_n instead, as the reference's ``compute_affine_and_rmsd``
            (spec §12); that value is the usual RMSD / sqrt(3).

    Returns:
        [*] RMSD in the units of the coordinates; fp32 (fp64 for fp64 inputs).
    """
    if normalization not in ("atoms", "coordinates"):
        raise ValueError(f"normalization must be 'atoms' or 'coordinates', got {normalization!r}")
    if superpose:
        value = kabsch(mobile, target, mask, weights, allow_reflection=allow_reflection).rmsd
    else:
        check_same_shape("mobile", mobile, "target", target)
        m = resolve_mask(mask, [("mobile", mobile), ("target", target)])
        w = resolve_weights(weights, m)
        require_nonempty(w, "rmsd")
        sq = ((_zeroed64(mobile, m) - _zeroed64(target, m)) ** 2).sum(-1)
        value = torch.sqrt((w * sq).sum(-1) / w.sum(-1)).to(out_dtype(mobile))
    if normalization == "coordinates":
        # Reproduces the reference, which averages the squared deviation over 3 * n_atoms coordinates (spec §12).
        value = value / 3.0**0.5
    return value


# ---- fragment-seeded iterative superposition search (TM-score program, Zhang & Skolnick 2004) ----------------


def seed_fragment_lengths(n: int) -> list[int]:
    """Lengths of the seed fragments: n, n/2, n/4, ... (integer division), stopping at the minimum of 4 (or n).

    As in the TM-score program: at most :data:`~openesm3.constants.TM_SEARCH_N_FRAGMENT_LENGTHS` halvings; once a
    length is <= the minimum it is replaced by the minimum and the list ends; otherwise the minimum is appended.
    """
    shortest = min(C.TM_SEARCH_MIN_FRAGMENT, n)
    lengths = []
    for i in range(C.TM_SEARCH_N_FRAGMENT_LENGTHS):
        length = n // 2**i
        if length <= shortest:
            lengths.append(shortest)
            return lengths
        lengths.append(length)
    lengths.append(shortest)
    return lengths


def seed_fragments(n: int, device: torch.device | str | None = None) -> Tensor:
    """[S, n] bool: every contiguous fragment of each :func:`seed_fragment_lengths` length, at every start.

    The first seed is the whole chain (the plain superposition on all residues).
    """
    pos = torch.arange(n, device=device)
    masks = []
    for length in seed_fragment_lengths(n):
        starts = torch.arange(n - length + 1, device=device)[:, None]
        masks.append((pos >= starts) & (pos < starts + length))
    return torch.cat(masks)


def _select_within(d: Tensor, cutoff: Tensor | float) -> Tensor:
    """[S, n] bool: pairs closer than ``cutoff`` (a float or one per row, [S]); per row, the cutoff grows by
    0.5 A until at least 3 pairs are selected.

    TM-score program ``score_fun``: ``while n_cut < 3 and n_ali > 3: d += 0.5``. The smallest grown cutoff is
    found in closed form from the third-smallest distance. With 3 residues or fewer, all are selected.
    """
    n = d.shape[-1]
    if n <= C.TM_SEARCH_MIN_SELECTED:
        # The program does not grow the cutoff for such tiny sets and may fit on fewer (even zero) pairs; fitting
        # on all of them instead keeps every superposition defined.
        return torch.ones_like(d, dtype=torch.bool)
    cut = torch.as_tensor(cutoff, dtype=d.dtype, device=d.device).expand(d.shape[0])
    selected = d < cut[:, None]
    short = selected.sum(-1) < C.TM_SEARCH_MIN_SELECTED  # [S]
    if not bool(short.any()):
        return selected
    third = d[short].kthvalue(C.TM_SEARCH_MIN_SELECTED, dim=-1).values  # third-smallest distance
    base = cut[short]
    grown = base + C.TM_SEARCH_CUTOFF_STEP * (torch.floor((third - base) / C.TM_SEARCH_CUTOFF_STEP) + 1)
    selected[short] = d[short] < grown[:, None]
    return selected


def _fit(
    mobile: Tensor, target: Tensor, features: Tensor, base: Tensor, selection: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Superpose on each of the S selections [S, n]: rotations [S, 3, 3], translations [S, 3], distances [S, n].

    Same result as :func:`kabsch_float64` (reflection-corrected), but every sum over residues is one matrix
    product with precomputed per-residue ``features`` [n, 16] = (x ⊗ y, y, x, 1) (see :func:`_search_features`):
    H = sum_n w x_n y_n^T - W x̄ ȳ^T, and |R x_n + t - y_n|^2 = |x_n|^2 + |y_n|^2 + c · features_n with a
    per-seed coefficient vector c. Inputs are centred on their means (by the caller), which keeps both
    subtractions accurate in float64.
    """
    w = selection.to(torch.float64)  # [S, n]
    s = w.shape[0]
    sums = w @ features  # [S, 16]: sum w x y^T (9), sum w y (3), sum w x (3), sum w (1)
    wsum = sums[:, 15:]
    cx, cy = sums[:, 12:15] / wsum, sums[:, 9:12] / wsum
    h = sums[:, :9].view(s, 3, 3) - wsum[..., None] * cx[:, :, None] * cy[:, None, :]
    rot = _rotation_from_covariance(h, allow_reflection=False)
    trans = cy - (rot @ cx[..., None])[..., 0]
    # |R x + t - y|^2 - |x|^2 - |y|^2 = -2 sum_ij R_ij x_j y_i - 2 t·y + 2 (R^T t)·x + |t|^2
    rty = (rot.transpose(-1, -2) @ trans[..., None])[..., 0]
    coef = torch.cat(
        [-2.0 * rot.transpose(-1, -2).reshape(s, 9), -2.0 * trans, 2.0 * rty, (trans * trans).sum(-1, keepdim=True)],
        dim=-1,
    )  # [S, 16]
    d = torch.sqrt((coef @ features.T + base).clamp_min_(0.0))  # [S, n]
    return rot, trans, d


def _search_features(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-residue features [n, 16] = (x_j y_i at j * 3 + i, y, x, 1) and |x|^2 + |y|^2 [n]."""
    outer = (x[:, :, None] * y[:, None, :]).reshape(-1, 9)
    features = torch.cat([outer, y, x, torch.ones_like(x[:, :1])], dim=-1)
    return features, (x * x).sum(-1) + (y * y).sum(-1)


@dataclass(frozen=True)
class SearchResult:
    """Best score per objective found by :func:`search_superposition` and the float64 transforms reaching them.

    Attributes:
        score: [K] float64 best score of each objective.
        rotation: [K, 3, 3] and translation: [K, 3] float64, ``R @ mobile + t`` (original coordinates).
    """

    score: Tensor
    rotation: Tensor
    translation: Tensor


def _unique_rows(selection: Tensor, objective: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct (objective, selection) rows of [R, n] bool selections and their [R] objective indices."""
    rows = torch.cat([objective[:, None].to(torch.int16), selection.to(torch.int16)], dim=-1)
    rows = torch.unique(rows, dim=0)
    return rows[:, 1:].bool(), rows[:, 0].long()


def search_superposition(
    mobile: Tensor,
    target: Tensor,
    score_fn: Callable[[Tensor, Tensor], Tensor],
    first_cutoffs: Sequence[float],
    cutoffs: Sequence[float],
    max_iterations: int = C.TM_SEARCH_MAX_ITERATIONS,
) -> SearchResult:
    """Maximise K objectives over superpositions, by the heuristic of the TM-score program.

    For each objective k, each seed fragment (:func:`seed_fragments`) is superposed (Kabsch with reflection
    correction), scored, and then refined: select the residue pairs closer than ``first_cutoffs[k]`` (later
    rounds: ``cutoffs[k]``), re-superpose on them, score, until the selection stops changing or after
    ``max_iterations`` rounds. The best score over all seeds and rounds wins. All seeds of all objectives run at
    once as one batch of Kabsch problems; the seed superpositions are shared by the objectives.

    Args:
        mobile, target: [n, 3] float64, every row present (compact the masks away first).
        score_fn: maps distances [R, n] (float64) after R superpositions and the objective index of each row
            [R] (long) to scores [R].
        first_cutoffs, cutoffs: K selection distances (A) of the first and of the later refinement rounds.
        max_iterations: refinement rounds per seed.
    """
    n, k = mobile.shape[0], len(cutoffs)
    dev, f64 = mobile.device, torch.float64
    first = torch.tensor(list(first_cutoffs), dtype=f64, device=dev)
    later = torch.tensor(list(cutoffs), dtype=f64, device=dev)
    # Work on centred copies (the transform is converted back at the end).
    mean_x, mean_y = mobile.mean(0), target.mean(0)
    x, y = mobile - mean_x, target - mean_y
    features, base = _search_features(x, y)
    seeds = seed_fragments(n, device=dev)
    best = torch.full((k,), -float("inf"), dtype=f64, device=dev)
    best_rot = torch.eye(3, dtype=f64, device=dev).repeat(k, 1, 1)
    best_trans = torch.zeros(k, 3, dtype=f64, device=dev)

    def keep_best(rot: Tensor, trans: Tensor, score: Tensor, objective: Tensor) -> None:
        # Per objective: the round's maximum and the first row reaching it; replace the best where it is higher.
        top = torch.full((k,), -float("inf"), dtype=f64, device=dev).scatter_reduce(0, objective, score, "amax")
        rows = torch.arange(score.shape[0], device=dev)
        at_top = torch.where(score == top[objective], rows, score.shape[0])
        first_row = torch.full((k,), score.shape[0], device=dev).scatter_reduce(0, objective, at_top, "amin")
        first_row = first_row.clamp_max(score.shape[0] - 1)
        better = top > best
        best.copy_(torch.where(better, top, best))
        best_rot.copy_(torch.where(better[:, None, None], rot[first_row], best_rot))
        best_trans.copy_(torch.where(better[:, None], trans[first_row], best_trans))

    chunk = max(1, _SEARCH_CHUNK_ELEMENTS // max(n * k, 1))
    for start in range(0, seeds.shape[0], chunk):
        rot, trans, d = _fit(x, y, features, base, seeds[start : start + chunk])
        n_seeds = d.shape[0]
        objective = torch.arange(k, device=dev).repeat_interleave(n_seeds)  # rows: objective-major
        rot, trans, d = rot.repeat(k, 1, 1), trans.repeat(k, 1), d.repeat(k, 1)
        keep_best(rot, trans, score_fn(d, objective), objective)
        sel, objective = _unique_rows(_select_within(d, first[objective]), objective)
        for _ in range(max_iterations):
            rot, trans, d = _fit(x, y, features, base, sel)
            keep_best(rot, trans, score_fn(d, objective), objective)
            new_sel = _select_within(d, later[objective])
            # Rows whose selection repeats are at a fixed point (re-fitting reproduces the same score): drop them.
            # Rows that reached the same selection would repeat each other from here on: keep one. Both leave
            # the maxima unchanged and shrink the batch a lot after the first rounds.
            moving = (new_sel != sel).any(-1)
            if not bool(moving.any()):
                break
            sel, objective = _unique_rows(new_sel[moving], objective[moving])
    # R (p - mean_x) + t + mean_y = R p + (t + mean_y - R mean_x)
    return SearchResult(best, best_rot, best_trans + mean_y - (best_rot @ mean_x[:, None])[..., 0])
