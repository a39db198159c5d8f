"""Structure-comparison metrics in torch: TM-score, GDT (TS / HA), and lDDT (re-exported from ``lddt.py``).

All take a *model* and a *reference* structure of the same residues in the same order. Shapes: ``[*, L, 3]``
points (CA) or ``[*, L, 37, 3]`` atom37 with ``[*, L]`` / ``[*, L, 37]`` boolean masks; any leading batch dims.
Math runs in fp32 (fp64 for fp64 inputs) except superpositions, which run in float64 (see
:mod:`openesm3.geometry.alignment`). Missing atoms are excluded through the masks; for TM-score and GDT a mask of
``None`` means "every atom with finite coordinates in both structures" (pass ``length`` to normalise by the
reference's full length). lDDT's mask describes the reference, and atoms missing from the model score 0.

- lDDT follows spec §12 (``compute_lddt`` / ``compute_lddt_ca``) exactly, including its quirks (noted inline).
- GDT with ``superposition="kabsch"`` follows spec §12 (one Kabsch superposition on all masked atoms).
- TM-score is not in the reference (spec §12: "no structural TM-score"); it follows Zhang & Skolnick (2004) and
  their TM-score program, including its superposition search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.geometry._validation import (
    check_same_shape,
    out_dtype,
    require_nonempty,
    resolve_mask,
)
from openesm3.geometry.alignment import kabsch_float64, search_superposition
from openesm3.geometry.lddt import LDDT, lddt, lddt_all_atom, lddt_ca

SuperpositionMode = Literal["search", "kabsch", "none"]


# ---- TM-score ------------------------------------------------------------------------------------------------


def tm_d0(length: Tensor | int | float) -> Tensor:
    """TM-score distance scale d0(L) = 1.24 (L - 15)^(1/3) - 1.8 for L > 21, else 0.5 (TM-score program).

    Returns a float64 tensor of the shape of ``length``.
    """
    n = torch.as_tensor(length, dtype=torch.float64)
    formula = C.TM_D0_SCALE * (n - C.TM_D0_LENGTH_OFFSET).clamp_min(0.0) ** (1.0 / 3.0) - C.TM_D0_OFFSET
    return torch.where(n > C.TM_D0_MIN_LENGTH, formula.clamp_min(C.TM_D0_MIN), torch.full_like(n, C.TM_D0_MIN))


@dataclass(frozen=True)
class TMScore:
    """TM-score result.

    Attributes:
        score: [*] TM-score in (0, 1] (with the default normalisation).
        rotation: [*, 3, 3] and translation: [*, 3]: the superposition of the model onto the reference that
            gives ``score`` (``R @ model + t``).
        d0: [*] distance scale used, A.
        length: [*] normalisation length.
    """

    score: Tensor
    rotation: Tensor
    translation: Tensor
    d0: Tensor
    length: Tensor


def _lengths(length: Tensor | int | None, m: Tensor, default: Tensor, name: str = "length") -> Tensor:
    """[B] float64 normalisation lengths (``default`` [B] when ``length`` is None); at least the aligned count."""
    aligned = m.sum(-1).to(torch.float64)
    if length is None:
        return default
    n = torch.as_tensor(length, dtype=torch.float64, device=m.device)
    if n.dim() > 0 and n.shape != m.shape[:-1]:
        raise InputError(f"{name}: expected an int or a tensor of shape {tuple(m.shape[:-1])}, got {tuple(n.shape)}")
    n = n.expand(m.shape[:-1]).reshape(aligned.shape)
    if not bool(torch.isfinite(n).all()):  # NaN passed the check below and became a NaN score
        bad = n[~torch.isfinite(n)][0].item()
        raise InputError(f"{name}: the normalisation length must be a finite number of residues, got {bad:g}")
    if bool((n < aligned).any()):
        raise InputError(
            f"{name}: the normalisation length ({n.min().item():g}) must be at least the number of "
            f"aligned residues ({int(aligned.max())}); pass the reference's full length"
        )
    return n


def _superpose_and_score(
    model: Tensor, reference: Tensor, mask: Tensor | None, superposition: SuperpositionMode, what: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Checked, flattened float64 inputs: model [B, L, 3], reference [B, L, 3], mask [B, L], and the default
    normalisation length [B]: the residues of ``mask``, or without a mask those finite in the reference (residues
    the model lacks count against it, as in the TM-score program and the reference's GDT)."""
    check_same_shape("model", model, "reference", reference)
    if superposition not in ("search", "kabsch", "none"):
        raise ValueError(f"superposition must be 'search', 'kabsch' or 'none', got {superposition!r}")
    m = resolve_mask(mask, [("model", model), ("reference", reference)])
    require_nonempty(m.to(torch.float64), what)
    n = model.shape[-2]
    x = torch.where(m[..., None], model.to(torch.float64), 0.0).reshape(-1, n, 3)
    y = torch.where(m[..., None], reference.to(torch.float64), 0.0).reshape(-1, n, 3)
    counted = torch.isfinite(reference).all(-1) if mask is None else m
    return x, y, m.reshape(-1, n), counted.reshape(-1, n).sum(-1).to(torch.float64)


def _global_fit(
    x: Tensor, y: Tensor, m: Tensor, superposition: SuperpositionMode, allow_reflection: bool = False
) -> tuple[Tensor, Tensor]:
    """Identity (``"none"``) or one Kabsch superposition on all masked residues, batched: R [B,3,3], t [B,3]."""
    if superposition == "none":
        eye = torch.eye(3, dtype=torch.float64, device=x.device)
        return eye.expand(x.shape[0], 3, 3), torch.zeros(x.shape[0], 3, dtype=torch.float64, device=x.device)
    return kabsch_float64(x, y, m.to(torch.float64), allow_reflection)


def _distances(x: Tensor, y: Tensor, rot: Tensor, trans: Tensor) -> Tensor:
    return (torch.einsum("...ij,...nj->...ni", rot, x) + trans[..., None, :] - y).norm(dim=-1)


def tm_score(
    model: Tensor,
    reference: Tensor,
    mask: Tensor | None = None,
    *,
    length: Tensor | int | None = None,
    d0: float | None = None,
    superposition: SuperpositionMode = "search",
) -> TMScore:
    """TM-score (Zhang & Skolnick 2004) of two structures of the same residues (CA coordinates).

    TM = max over superpositions of (1 / L) sum_i 1 / (1 + (d_i / d0(L))^2), over the residues present in both.

    ``superposition="search"`` (default) maximises as the TM-score program does
    (:func:`~openesm3.geometry.alignment.search_superposition`): seed fragments of L, L/2, ..., 4 residues at
    every start, each refined by re-selecting the pairs closer than d0_search - 1 A (first round), then
    d0_search + 1 A (later rounds; d0_search = d0 clamped to [4.5, 8]), re-superposing on them, up to 20 rounds;
    the best score wins. ``"kabsch"`` scores the plain superposition on all residues; ``"none"`` the
    coordinates as given.

    Args:
        model: [*, L, 3] CA coordinates of the model (moved).
        reference: [*, L, 3] CA coordinates of the reference (fixed), same residues in the same order.
        mask: [*, L] bool residues present in both (default: finite in both).
        length: normalisation length L (int or [*]); default the number of residues in ``mask`` or, without a
            mask, the number finite in the reference (residues missing from the model then score 0). Pass the
            reference's full length when it has residues beyond those given.
        d0: override the distance scale (A); default :func:`tm_d0` of the normalisation length.
        superposition: ``"search"``, ``"kabsch"`` or ``"none"``.

    Returns:
        :class:`TMScore`; fp32 outputs (fp64 for fp64 inputs).
    """
    x, y, m, n_ref = _superpose_and_score(model, reference, mask, superposition, "tm_score")
    batch, dtype = model.shape[:-2], out_dtype(model)
    n_norm = _lengths(length, m, n_ref)
    d0s = tm_d0(n_norm) if d0 is None else torch.full_like(n_norm, float(d0))
    if not bool((d0s > 0).all()):  # NaN too: it reached the superposition search as an SVD failure
        raise InputError(f"d0: must be positive, got {float(d0) if d0 is not None else float(d0s.min()):g}")
    rot, trans = _global_fit(x, y, m, superposition)
    if superposition == "search":
        rots, transs = [], []
        for b in range(x.shape[0]):
            sel = m[b]
            d0_b, l_b = float(d0s[b]), float(n_norm[b])
            d0_search = min(max(d0_b, C.TM_D0_SEARCH_RANGE[0]), C.TM_D0_SEARCH_RANGE[1])
            score_fn = lambda d, _, d0_b=d0_b, l_b=l_b: (1.0 / (1.0 + (d / d0_b) ** 2)).sum(-1) / l_b
            found = search_superposition(x[b, sel], y[b, sel], score_fn, [d0_search - 1.0], [d0_search + 1.0])
            rots.append(found.rotation[0])
            transs.append(found.translation[0])
        rot, trans = torch.stack(rots), torch.stack(transs)
    d = _distances(x, y, rot, trans)
    score = torch.where(m, 1.0 / (1.0 + (d / d0s[:, None]) ** 2), 0.0).sum(-1) / n_norm
    return TMScore(
        score=score.to(dtype).reshape(batch),
        rotation=rot.to(dtype).reshape(*batch, 3, 3),
        translation=trans.to(dtype).reshape(*batch, 3),
        d0=d0s.to(dtype).reshape(batch),
        length=n_norm.to(dtype).reshape(batch),
    )


# ---- GDT -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GDT:
    """GDT result: ``score`` [*] is the mean of ``fractions`` [*, K], the fractions of the L residues within
    each of ``cutoffs`` (A, strictly below) after superposition."""

    score: Tensor
    fractions: Tensor
    cutoffs: tuple[float, ...]


def gdt(
    model: Tensor,
    reference: Tensor,
    mask: Tensor | None = None,
    *,
    cutoffs: tuple[float, ...] = C.GDT_TS_CUTOFFS,
    superposition: SuperpositionMode = "kabsch",
    allow_reflection: bool = False,
    length: Tensor | int | None = None,
) -> GDT:
    """Global distance test: mean over ``cutoffs`` of the fraction of residues closer than the cutoff.

    ``superposition="kabsch"`` (default) is the reference's GDT_TS (spec §12): one Kabsch superposition on all
    masked residues, then the fractions (distance < cutoff, strictly, divided by ``length``, see below).
    The reference's Kabsch has no reflection correction: pass ``allow_reflection=True`` to reproduce it exactly.
    ``superposition="search"`` maximises each fraction separately over superpositions, LGA-style, with the
    fragment-seeded iterative search of :func:`tm_score` using the cutoff itself as the selection distance; it is
    never below the ``"kabsch"`` value, but it is a heuristic and may stay below LGA's. ``"none"`` compares the
    coordinates as given (the reference's ``compute_gdt_ts_no_alignment``).

    Args:
        model, reference: [*, L, 3] (usually CA).
        mask: [*, L] bool (default: finite in both).
        cutoffs: distance cutoffs, A (GDT-TS: 1, 2, 4, 8; GDT-HA: 0.5, 1, 2, 4).
        length: denominator of the fractions; default the number of residues in ``mask`` or, without a mask, the
            number finite in the reference (as the reference's ``compute_gdt_ts`` counts them).
    """
    if allow_reflection and superposition != "kabsch":
        raise ValueError("allow_reflection applies only to superposition='kabsch'")
    if not cutoffs or not all(c > 0 for c in cutoffs):  # none: a NaN score; NaN: 0 or an SVD failure
        raise InputError(f"cutoffs: expected one or more positive distances in Angstroms, got {tuple(cutoffs)}")
    x, y, m, n_ref = _superpose_and_score(model, reference, mask, superposition, "gdt")
    batch, dtype = model.shape[:-2], out_dtype(model)
    n_norm = _lengths(length, m, n_ref)
    if superposition == "search":
        fractions = torch.empty(x.shape[0], len(cutoffs), dtype=torch.float64, device=x.device)
        for b in range(x.shape[0]):
            sel, l_b = m[b], float(n_norm[b])
            cut = torch.tensor(cutoffs, dtype=torch.float64, device=x.device)
            score_fn = lambda d, k, cut=cut, l_b=l_b: (d < cut[k][:, None]).sum(-1).to(torch.float64) / l_b
            fractions[b] = search_superposition(x[b, sel], y[b, sel], score_fn, cutoffs, cutoffs).score
    else:
        rot, trans = _global_fit(x, y, m, superposition, allow_reflection)
        d = _distances(x, y, rot, trans)
        within = torch.stack([(m & (d < c)).sum(-1) for c in cutoffs], dim=-1)
        fractions = within.to(torch.float64) / n_norm[:, None]
    return GDT(
        score=fractions.mean(-1).to(dtype).reshape(batch),
        fractions=fractions.to(dtype).reshape(*batch, len(cutoffs)),
        cutoffs=tuple(cutoffs),
    )


def gdt_ts(
    model: Tensor,
    reference: Tensor,
    mask: Tensor | None = None,
    *,
    superposition: SuperpositionMode = "kabsch",
    allow_reflection: bool = False,
    length: Tensor | int | None = None,
) -> Tensor:
    """GDT-TS [*]: :func:`gdt` with cutoffs 1, 2, 4, 8 A."""
    return gdt(
        model,
        reference,
        mask,
        cutoffs=C.GDT_TS_CUTOFFS,
        superposition=superposition,
        allow_reflection=allow_reflection,
        length=length,
    ).score


def gdt_ha(
    model: Tensor,
    reference: Tensor,
    mask: Tensor | None = None,
    *,
    superposition: SuperpositionMode = "kabsch",
    allow_reflection: bool = False,
    length: Tensor | int | None = None,
) -> Tensor:
    """GDT-HA [*]: :func:`gdt` with cutoffs 0.5, 1, 2, 4 A."""
    return gdt(
        model,
        reference,
        mask,
        cutoffs=C.GDT_HA_CUTOFFS,
        superposition=superposition,
        allow_reflection=allow_reflection,
        length=length,
    ).score


__all__ = [
    "GDT",
    "LDDT",
    "TMScore",
    "gdt",
    "gdt_ha",
    "gdt_ts",
    "lddt",
    "lddt_all_atom",
    "lddt_ca",
    "tm_d0",
    "tm_score",
]
