"""Input checks shared by the superposition and metric functions: shapes, masks, finiteness.

Every problem raises :class:`openesm3.errors.InputError` naming the argument, the batch item and the atom.
"""

from __future__ import annotations

import torch
from torch import Tensor

from openesm3.errors import InputError


def check_coordinates(name: str, x: Tensor) -> None:
    """``x`` must be a floating tensor of shape [*, N, 3]."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name}: expected a torch.Tensor of shape [*, N, 3], got {type(x).__name__}")
    if x.dim() < 2 or x.shape[-1] != 3:
        raise InputError(f"{name}: expected shape [*, N, 3], got {tuple(x.shape)}")
    if not (x.is_floating_point()):
        raise InputError(f"{name}: expected floating-point coordinates, got dtype {x.dtype}")


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    check_coordinates(name_a, a)
    check_coordinates(name_b, b)
    if a.shape != b.shape:
        raise InputError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; they must match"
        )


def out_dtype(x: Tensor) -> torch.dtype:
    """fp32 for half/bfloat16/fp32 inputs, fp64 for fp64 inputs."""
    return torch.promote_types(x.dtype, torch.float32)


def _first_bad(bad: Tensor) -> str:
    """Human-readable position of the first True in ``bad`` [*, N]: 'batch item (i, j), atom k'."""
    idx = [int(i) for i in torch.nonzero(bad)[0].tolist()]
    where = f"atom {idx[-1]}"
    if len(idx) > 1:
        where = f"batch item {tuple(idx[:-1]) if len(idx) > 2 else idx[0]}, {where}"
    return where


def resolve_mask(mask: Tensor | None, coords: list[tuple[str, Tensor]], mask_name: str = "mask") -> Tensor:
    """Boolean mask [*, N] of the atoms to use.

    ``None`` means every atom whose coordinates are finite in all of ``coords``. A given mask must be boolean with
    shape [*, N], and every atom it selects must have finite coordinates in all of ``coords``.
    """
    ref_name, ref = coords[0]
    shape = ref.shape[:-1]
    finite = torch.ones(shape, dtype=torch.bool, device=ref.device)
    for _, x in coords:
        finite = finite & torch.isfinite(x).all(-1)
    if mask is None:
        return finite
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise InputError(
            f"{mask_name}: expected a boolean torch.Tensor of shape {tuple(shape)}, got "
            f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}"
        )
    if mask.shape != shape:
        raise InputError(f"{mask_name} has shape {tuple(mask.shape)} but {ref_name} needs {tuple(shape)} ([*, N])")
    for name, x in coords:
        bad = mask & ~torch.isfinite(x).all(-1)
        if bool(bad.any()):
            raise InputError(f"{name}: non-finite coordinates at {_first_bad(bad)}, which {mask_name} marks present")
    return mask


def resolve_weights(weights: Tensor | None, mask: Tensor) -> Tensor:
    """Float64 weights [*, N]: ``weights * mask`` (``weights`` defaults to 1), checked finite and non-negative."""
    if weights is None:
        return mask.to(torch.float64)
    if not isinstance(weights, Tensor) or weights.shape != mask.shape:
        got = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise InputError(f"weights: expected a tensor of shape {tuple(mask.shape)} ([*, N]), got {got}")
    w = weights.to(torch.float64)
    bad = mask & ~(torch.isfinite(w) & (w >= 0))
    if bool(bad.any()):
        raise InputError(f"weights: negative or non-finite weight at {_first_bad(bad)}")
    return torch.where(mask, w, torch.zeros((), dtype=torch.float64, device=w.device))


def require_nonempty(weights: Tensor, what: str) -> None:
    """Every batch item needs a positive total weight (at least one atom)."""
    empty = ~(weights.sum(-1) > 0)
    if bool(empty.any()):
        idx = torch.nonzero(empty)[0].tolist()
        where = f" (batch item {tuple(idx) if len(idx) > 1 else idx[0]})" if idx else ""
        raise InputError(f"{what}: no atoms selected{where}: the mask selects none, or all their weights are 0")
