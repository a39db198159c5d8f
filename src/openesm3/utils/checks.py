"""Argument checks shared by the Python API and the CLI (one message for one mistake, wherever it is made)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openesm3.errors import InputError

if TYPE_CHECKING:
    import torch


def check_batch_size(batch_size: object, name: str = "batch_size", *, allow_none: bool = False) -> None:
    """InputError unless ``batch_size`` is an int >= 1 (a bool is not one), or None where ``allow_none``; the
    message calls it ``name`` (the CLI passes ``"--batch-size"``)."""
    if allow_none and batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        also = " or None" if allow_none else ""
        raise InputError(f"{name} must be an integer >= 1{also}, got {batch_size!r}")


def check_seed(seed: object, name: str = "seed") -> None:
    """InputError unless ``seed`` is an int in [0, 2**64) (a bool is not one): a ``torch.Generator`` takes 64 bits."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise InputError(f"{name} must be an int in [0, 2**64), got {seed!r}")


def check_generator(generator: object, device: torch.device | str | None = None, name: str = "generator") -> None:
    """InputError unless ``generator`` is None or a ``torch.Generator`` that can draw tensors on ``device`` (when
    given). torch draws a tensor only from a generator of the same device type: a CPU generator passed while the
    model runs on CUDA (or MPS) would otherwise fail deep inside ``torch.multinomial`` / ``torch.rand``."""
    if generator is None:
        return
    import torch  # noqa: PLC0415 - this module stays importable without torch

    if not isinstance(generator, torch.Generator):
        raise InputError(f"{name} must be a torch.Generator (or None), got {type(generator).__name__}")
    if device is None:
        return
    made, used = generator.device, torch.device(device)
    if made.type != used.type:
        raise InputError(
            f"{name} is a {made.type} generator but the draws are made on {used}: create it with "
            f"torch.Generator(device={str(used)!r}).manual_seed(...)"
        )
