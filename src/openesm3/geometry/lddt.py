"""lDDT (local distance difference test) in torch, CA and all-atom: spec §12 ``compute_lddt`` / ``compute_lddt_ca``.

Superposition-free: for every pair of atoms closer than 15 A in the reference, score the fraction of the thresholds
0.5, 1, 2, 4 A that the pair's distance error stays under. The reference's quirks are reproduced on purpose and
commented inline. Shapes: ``[*, L, 3]`` points or ``[*, L, 37, 3]`` atom37, ``[*, L]`` / ``[*, L, 37]`` masks.
Math in fp32 (fp64 for fp64 inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.geometry._validation import check_same_shape, out_dtype, resolve_mask

AllAtomPairs = Literal["reference", "inter_residue"]

# Upper bound on the [B, rows, N] pair-distance block held at once.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class LDDT:
    """lDDT scores.

    Attributes:
        score: [*] global lDDT: (eps + sum of pair scores) / (eps + number of scored pairs), over all pairs (the
            reference's ``per_residue=False``; this weights residues by their pair count, it is not the mean of
            ``per_residue``).
        per_residue: [*, L] per-residue lDDT. Residues with no scored pair get (eps + 0) / (eps + 0) = 1.0, as in
            the reference; use ``scored`` to leave them out.
        scored: [*, L] bool, residues with at least one scored pair.
        per_atom: [*, L, 37] per-atom lDDT for the all-atom variant (same formula per atom), else ``None``.
    """

    score: Tensor
    per_residue: Tensor
    scored: Tensor
    per_atom: Tensor | None = None


def _lddt_sums(
    model: Tensor,
    reference: Tensor,
    mask: Tensor,
    model_present: Tensor,
    group: Tensor | None,
    cutoff: float,
    eps: float,
) -> tuple[Tensor, Tensor]:
    """Per-point sums over partners j: (sum of pair scores, number of scored pairs), each [B, N].

    A pair (i, j) is scored when both points are present in the reference (``mask``), i != j, the reference
    distance is below ``cutoff`` and (if ``group`` is given) the points are in different groups. Its score is the
    fraction of the thresholds 0.5, 1, 2, 4 A that |d_model - d_reference| is strictly under, and 0 when either
    point is missing from the model (``model_present`` False).
    """
    b, n = mask.shape
    eye_base = torch.arange(n, device=mask.device)
    num = torch.zeros(b, n, dtype=model.dtype, device=model.device)
    den = torch.zeros_like(num)
    rows = max(1, _CHUNK_ELEMENTS // max(b * n, 1))
    for s in range(0, n, rows):
        e = min(n, s + rows)
        # sqrt(eps + d^2) rather than d: reproduces the reference's distances (spec §12).
        d_ref = torch.sqrt(eps + ((reference[:, s:e, None] - reference[:, None]) ** 2).sum(-1))  # [B, r, N]
        d_mod = torch.sqrt(eps + ((model[:, s:e, None] - model[:, None]) ** 2).sum(-1))
        pair = mask[:, s:e, None] & mask[:, None] & (d_ref < cutoff)
        pair = pair & (eye_base[s:e, None] != eye_base[None])
        if group is not None:
            pair = pair & (group[:, s:e, None] != group[:, None])
        err = (d_ref - d_mod).abs()
        score = sum((err < t).to(model.dtype) for t in C.LDDT_THRESHOLDS) / len(C.LDDT_THRESHOLDS)
        # A pair with an atom the model lacks is not preserved (the reference gets 0 from its NaN distances).
        score = score * (model_present[:, s:e, None] & model_present[:, None]).to(model.dtype)
        pair_f = pair.to(model.dtype)
        num[:, s:e] = (pair_f * score).sum(-1)
        den[:, s:e] = pair_f.sum(-1)
    return num, den


def _ratio(num: Tensor, den: Tensor, eps: float) -> Tensor:
    # (eps + sum) / (eps + count): an item without scored pairs gets exactly 1.0, as in the reference (spec §12).
    return (eps + num) / (eps + den)


def _check_cutoff(cutoff: float) -> None:
    # NaN or a cutoff <= 0 selects no pair, and every item would silently score 1.0 (inf: every pair, allowed)
    if not cutoff > 0:
        raise InputError(f"cutoff: expected a positive number of Angstroms, got {cutoff!r}")


def _lddt_inputs(
    model: Tensor, reference: Tensor, mask: Tensor | None, mask_name: str = "mask"
) -> tuple[Tensor, Tensor]:
    """(mask of the reference's atoms, model atoms present among them), both [*, N] bool.

    The mask describes the reference (default: its finite atoms); model atoms that are not finite are missing
    from the model, and their pairs score 0 instead of being left out (which would let an incomplete model score
    higher than a complete one).
    """
    check_same_shape("model", model, "reference", reference)
    m = resolve_mask(mask, [("reference", reference)], mask_name)
    return m, m & torch.isfinite(model).all(-1)


def lddt(
    model: Tensor,
    reference: Tensor,
    mask: Tensor | None = None,
    *,
    cutoff: float = C.LDDT_CUTOFF,
    eps: float = C.LDDT_EPS,
) -> LDDT:
    """lDDT over one point per residue (e.g. CA coordinates): spec §12 ``compute_lddt``.

    Pairs i != j with both points present in the reference and reference distance < ``cutoff`` (15 A) are scored
    by the fraction of the thresholds 0.5, 1, 2, 4 A their distance error is under; a pair with a point missing
    (non-finite) in the model scores 0, as in the reference implementation and the lDDT definition. Superposition-
    free, so invariant to rigid motions (and reflections) of either structure.

    Args:
        model: [*, L, 3] predicted coordinates; non-finite rows are residues the model lacks.
        reference: [*, L, 3] true coordinates (the cutoff is applied to its distances).
        mask: [*, L] bool, residues present in the reference (default: finite in the reference); the reference
            must be finite where it is True.
        cutoff: inclusion radius in the reference, A.
        eps: added to squared distances and to both sides of the per-residue ratio (spec §12).

    Returns:
        :class:`LDDT` with ``per_atom=None``.
    """
    _check_cutoff(cutoff)
    m, present = _lddt_inputs(model, reference, mask)
    dtype, batch, n = out_dtype(model), model.shape[:-2], model.shape[-2]
    b = batch.numel()  # not -1 in the reshapes: ambiguous when L = 0
    x, y = _masked(model, present, dtype), _masked(reference, m, dtype)
    num, den = _lddt_sums(
        x.reshape(b, n, 3), y.reshape(b, n, 3), m.reshape(b, n), present.reshape(b, n), None, cutoff, eps
    )
    return LDDT(
        score=_ratio(num.sum(-1), den.sum(-1), eps).reshape(batch),
        per_residue=_ratio(num, den, eps).reshape(*batch, n),
        scored=(den > 0).reshape(*batch, n),
    )


def _masked(x: Tensor, mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``x`` in ``dtype`` with unselected points set to 0 (their NaN placeholders must not reach the sums)."""
    return torch.where(mask[..., None], x.to(dtype), torch.zeros((), dtype=dtype, device=x.device))


def _check_atom37(model: Tensor, reference: Tensor) -> None:
    check_same_shape("model", model, "reference", reference)
    if model.dim() < 3 or model.shape[-2] != C.ATOM37_NUM_ATOMS:
        raise InputError(f"model: expected atom37 coordinates [*, L, 37, 3], got {tuple(model.shape)}")


def lddt_ca(
    model: Tensor,
    reference: Tensor,
    mask: Tensor | None = None,
    *,
    cutoff: float = C.LDDT_CUTOFF,
    eps: float = C.LDDT_EPS,
) -> LDDT:
    """CA lDDT from atom37 coordinates (spec §12 ``compute_lddt_ca``: atom 1 of atom37, then :func:`lddt`).

    Args:
        model, reference: [*, L, 37, 3] atom37 coordinates.
        mask: [*, L, 37] bool atom mask of the reference (only the CA column is used); default: finite in the
            reference. CAs missing from the model score 0 (see :func:`lddt`).
    """
    _check_atom37(model, reference)
    ca = C.ATOM37_CA_INDEX
    if mask is not None and (not isinstance(mask, Tensor) or mask.shape != model.shape[:-1]):
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise InputError(f"mask: expected an atom37 mask of shape {tuple(model.shape[:-1])}, got {got}")
    return lddt(
        model[..., ca, :], reference[..., ca, :], None if mask is None else mask[..., ca], cutoff=cutoff, eps=eps
    )


def lddt_all_atom(
    model: Tensor,
    reference: Tensor,
    mask: Tensor | None = None,
    *,
    pairs: AllAtomPairs = "reference",
    cutoff: float = C.LDDT_CUTOFF,
    eps: float = C.LDDT_EPS,
) -> LDDT:
    """All-atom lDDT over atom37 coordinates.

    ``pairs="reference"`` (default) reproduces the reference (spec §12): ``compute_lddt`` is applied to the
    flattened L*37 atoms, so every pair of distinct present atoms within the cutoff counts, *including pairs of
    atoms of the same residue*. ``pairs="inter_residue"`` is the standard all-atom lDDT of Mariani et al. (2013):
    only pairs of atoms from different residues (no stereochemistry checks and no renaming of symmetric side
    chain atoms).

    Per-atom scores use the per-residue formula of spec §12 per atom; per-residue scores pool the pairs of all
    atoms of the residue, (eps + sum over its atoms' pair scores) / (eps + their pair count); the global score
    pools all pairs.

    Args:
        model, reference: [*, L, 37, 3].
        mask: [*, L, 37] bool atoms present in the reference (default: finite in the reference); atoms missing
            from the model (non-finite) score 0 in their pairs (see :func:`lddt`).
        pairs: which atom pairs are scored (see above).
    """
    _check_atom37(model, reference)
    if pairs not in ("reference", "inter_residue"):
        raise ValueError(f"pairs must be 'reference' or 'inter_residue', got {pairs!r}")
    _check_cutoff(cutoff)
    batch, n_res, n_atoms = model.shape[:-3], model.shape[-3], model.shape[-2]
    flat = lambda t: t.reshape(*batch, n_res * n_atoms, 3)
    m, present = _lddt_inputs(flat(model), flat(reference), None if mask is None else _flat_mask(mask, model.shape))
    dtype, b = out_dtype(model), batch.numel()  # not -1 in the reshapes: ambiguous when L = 0
    x = _masked(flat(model), present, dtype).reshape(b, n_res * n_atoms, 3)
    y = _masked(flat(reference), m, dtype).reshape(b, n_res * n_atoms, 3)
    m, present = m.reshape(b, n_res * n_atoms), present.reshape(b, n_res * n_atoms)
    # Only present atoms can be in a scored pair: gather them to the front so the pair blocks stay small
    # (about 8 of the 37 slots are present per residue), then scatter the sums back.
    k = max(int(m.sum(-1).max()) if b else 0, 1)
    order = torch.argsort((~m).to(torch.uint8), dim=-1, stable=True)[:, :k]  # [B, K] present atoms first
    take = lambda t: torch.gather(t, 1, order[..., None].expand(-1, -1, 3))
    group = torch.div(order, n_atoms, rounding_mode="floor") if pairs == "inter_residue" else None
    num_k, den_k = _lddt_sums(
        take(x), take(y), torch.gather(m, 1, order), torch.gather(present, 1, order), group, cutoff, eps
    )
    num = torch.zeros(m.shape, dtype=dtype, device=m.device).scatter(1, order, num_k)
    den = torch.zeros(m.shape, dtype=dtype, device=m.device).scatter(1, order, den_k)
    num, den = num.reshape(*batch, n_res, n_atoms), den.reshape(*batch, n_res, n_atoms)
    res_num, res_den = num.sum(-1), den.sum(-1)
    return LDDT(
        score=_ratio(res_num.sum(-1), res_den.sum(-1), eps),
        per_residue=_ratio(res_num, res_den, eps),
        scored=res_den > 0,
        per_atom=_ratio(num, den, eps),
    )


def _flat_mask(mask: Tensor, shape: torch.Size) -> Tensor:
    if not isinstance(mask, Tensor) or mask.shape != shape[:-1]:
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise InputError(f"mask: expected an atom37 mask of shape {tuple(shape[:-1])}, got {got}")
    return mask.reshape(*shape[:-3], shape[-3] * shape[-2])
