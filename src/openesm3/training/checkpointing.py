"""Training checkpoints: atomic, keep-N-most-recent, exact resumption (no pickle anywhere).

A checkpoint is a directory ``step_<9 digits>`` (the number of completed optimizer steps) holding

- ``model.safetensors``: the full (unsharded) model state dict;
- ``optimizer.safetensors``: optimizer tensors, keyed ``state/<parameter name>/<key>``;
- ``rng_rank<r>.json``: random-number-generator states of process ``r`` (Python, NumPy, torch CPU/CUDA);
- ``trainer_state.json`` (written last): format version, step, world size, sampler position, the optimizer's
  param groups and non-tensor state, the configuration and anything the loop adds.

It is assembled in a hidden ``.step_<n>.tmp`` directory and renamed into place, an atomic operation: a run
killed at any moment (even ``kill -9``) leaves either the complete checkpoint or none, and the previous
checkpoints are untouched. Only ``step_<n>`` directories holding every file (and a trainer state this code
writes) count as checkpoints, so a half-written one can never become the latest; one damaged since it was written
is listed by :func:`damaged_checkpoints`, and the loop refuses to go on under one newer than its latest checkpoint
(as the tokenizer's ``init_from`` and export refuse to take a run's latest from under one).
Old checkpoints are renamed to hidden ``.trash`` names before deletion for the same reason.

Multi-process runs (DDP, FSDP) gather the full state dicts on rank 0, which writes them; every process writes
its own RNG file. All processes read the full state on resume (a shared filesystem is assumed, as with one
machine).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from openesm3.errors import OpenESM3Error
from openesm3.utils.atomic import atomic_write_text
from openesm3.utils.provenance import note_output, note_removed

CHECKPOINT_FORMAT = "openesm3-train-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step_(\d{9})$")


class CheckpointError(OpenESM3Error):
    """A checkpoint that cannot be read or does not fit the run resuming from it."""


# What a JSON document that is not an object holds, for messages.
_JSON_KINDS = {
    list: "a JSON array",
    str: "a JSON string",
    int: "a JSON number",
    float: "a JSON number",
    bool: "a JSON boolean",
    type(None): "JSON null",
}


def checkpoint_name(step: int) -> str:
    return f"step_{step:09d}"


def _incomplete(path: Path) -> str:
    """Why the directory ``path`` is no complete checkpoint ('' when it is one)."""
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except OSError as exc:
        return f"{STATE_FILE} cannot be read: {exc.strerror or exc}"
    except ValueError as exc:  # not JSON, or not UTF-8 (a damaged file)
        return f"{STATE_FILE} is not JSON: {exc}"
    if not isinstance(state, dict):
        return f"{STATE_FILE} holds {_JSON_KINDS[type(state)]}"
    world_size = state.get("world_size", 1)
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        # not a state this code writes: no more a checkpoint to resume from than an unreadable one
        return f"{STATE_FILE} gives world_size {json.dumps(world_size)}, not a number of processes"
    files = [MODEL_FILE, OPTIMIZER_FILE] + [f"rng_rank{r}.json" for r in range(world_size)]
    missing = [f for f in files if not (path / f).is_file()]
    return f"{', '.join(missing)} missing" if missing else ""


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first."""
    return [(step, path) for step, path in _step_dirs(Path(root)) if not _incomplete(path)]


def damaged_checkpoints(root: str | Path) -> list[tuple[int, Path, str]]:
    """The ``step_<n>`` directories under ``root`` that are no complete checkpoint, as ``(step, path, why)``, oldest
    first. This code never leaves one (a checkpoint is renamed into place whole), so each was damaged or edited
    since it was written: a run must not go on from an older checkpoint, or start afresh, over a newer one."""
    found = []
    for step, path in _step_dirs(Path(root)):
        why = _incomplete(path)
        if why:
            found.append((step, path, why))
    return found


def newer_damaged(root: str | Path) -> tuple[list[tuple[int, Path, str]], Path | None]:
    """The damaged ``step_`` directories under ``root`` (see :func:`damaged_checkpoints`) newer than its latest
    complete checkpoint (all of them when there is none), oldest first, and that latest checkpoint (None: none). A
    damaged one older than the latest is no obstacle to anything."""
    found = list_checkpoints(root)
    newer = [d for d in damaged_checkpoints(root) if not found or d[0] > found[-1][0]]
    return newer, (found[-1][1] if found else None)


def describe_damaged(newer: list[tuple[int, Path, str]], use: str) -> str:
    """The start of a refusal over damaged ``step_`` directories ``newer`` (not empty, oldest first, as
    :func:`newer_damaged` gives them): the oldest, why it is no checkpoint that can be ``use`` (e.g. "resumed
    from", "read"), and how many more follow. Callers add what would have happened and what to do."""
    _, path, why = newer[0]
    more = f" (and {len(newer) - 1} newer one(s))" if len(newer) > 1 else ""
    return f"{path}: a checkpoint that cannot be {use} ({why}){more}, newer than any that can"


def latest_checkpoint(root: str | Path) -> Path | None:
    """The most recent complete checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


# --------------------------------------------------------------------------------------------------------
# Random-number-generator states, as JSON.
# --------------------------------------------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of Python, NumPy and torch (CPU and initialised CUDA devices)."""
    version, internal, gauss = random.getstate()
    # the legacy global NumPy RNG is what user code (e.g. augmentations) draws from; ours use Generators
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]  # noqa: NPY002
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        # One state per GPU the writing process saw; a node with fewer GPUs restores those it has (setting a state
        # for a GPU index it lacks raises inside torch).
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"][: torch.cuda.device_count()]])


# --------------------------------------------------------------------------------------------------------
# State dicts <-> safetensors + JSON.
# --------------------------------------------------------------------------------------------------------


def _tensors_for_safetensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; tensors sharing storage (tied weights) are copied, as safetensors requires."""
    out, seen = {}, set()
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[name] = t
    return out


def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A full optimizer state dict (parameters named by FQN) -> (tensors, JSON-serialisable rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, entries in state.get("state", {}).items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{param}/{key}"] = value
            else:
                scalars.setdefault(str(param), {})[key] = value
    groups = json.loads(json.dumps(state.get("param_groups", [])))
    return tensors, {"param_groups": groups, "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, param_key = name.split("/", 1)
        param, key = param_key.rsplit("/", 1)
        state.setdefault(param, {})[key] = value
    for param, entries in rest.get("scalars", {}).items():
        state.setdefault(param, {}).update(entries)
    return {"state": state, "param_groups": rest["param_groups"]}


# --------------------------------------------------------------------------------------------------------
# Save and load.
# --------------------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem supports it
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file(_tensors_for_safetensors(tensors), str(path), metadata={"format": CHECKPOINT_FORMAT})
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _discard(path: Path) -> None:
    """Remove a directory by first renaming it to a hidden name (so it stops counting at once)."""
    trash = path.parent / f".{path.name}.trash"
    with contextlib.suppress(FileNotFoundError):
        if trash.exists():
            shutil.rmtree(trash)
        os.replace(path, trash)
        note_removed(path)
        shutil.rmtree(trash)


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    trainer_state: dict[str, Any],
    keep_last: int,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
) -> Path:
    """Write checkpoint ``step`` atomically under ``root`` (called by every process; see module docstring).

    ``model_state`` and ``optimizer_state`` are full state dicts; only rank 0's are written (other ranks may
    pass empty dicts). Returns the checkpoint directory.
    """
    root = Path(root)
    final = root / checkpoint_name(step)
    tmp = root / f".{checkpoint_name(step)}.tmp"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    barrier()
    _write_json(tmp / f"rng_rank{rank}.json", capture_rng_state())
    if rank == 0:
        _save_tensors(tmp / MODEL_FILE, model_state)
        optim_tensors, optim_rest = split_optimizer_state(optimizer_state)
        _save_tensors(tmp / OPTIMIZER_FILE, optim_tensors)
    barrier()
    if rank == 0:
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_FORMAT_VERSION,
            "step": step,
            "world_size": world_size,
            "optimizer": optim_rest,
            **trainer_state,
        }
        _write_json(tmp / STATE_FILE, state)
        _fsync_dir(tmp)
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
        for file in sorted(final.iterdir()):  # written here, not through openesm3.utils.atomic: noted now
            note_output(file)
        _fsync_dir(root)
        for _, old in list_checkpoints(root)[:-keep_last]:
            _discard(old)
        for stale in root.glob(".step_*"):
            if stale.name != tmp.name:
                shutil.rmtree(stale, ignore_errors=True)
        atomic_write_text(root / "latest.txt", final.name + "\n")  # informational; discovery scans directories
    barrier()
    return final


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    trainer_state: dict[str, Any]
    rng_state: dict[str, Any] | None  # of the loading process's rank; None if the checkpoint has no such rank


def read_trainer_state(path: str | Path) -> dict[str, Any]:
    """The trainer state (``trainer_state.json``: step, world size, config, ...) of a checkpoint directory, read
    without its tensors: what a run checks before any expensive work."""
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise CheckpointError(f"{path}: unreadable checkpoint state ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: unreadable checkpoint state ({STATE_FILE} holds {_JSON_KINDS[type(state)]})")
    if state.get("format") != CHECKPOINT_FORMAT or state.get("version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: not an {CHECKPOINT_FORMAT} v{CHECKPOINT_FORMAT_VERSION} checkpoint "
            f"(format {state.get('format')!r}, version {state.get('version')!r})"
        )
    return state


def read_model_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a checkpoint directory's model, from the header of its safetensors file
    (no tensor is read)."""
    path = Path(path)
    try:
        with safe_open(str(path / MODEL_FILE), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointError(f"{path}: unreadable checkpoint tensors ({exc})") from None


def load_checkpoint(path: str | Path, *, rank: int = 0) -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`."""
    path = Path(path)
    state = read_trainer_state(path)
    try:
        model_state = load_file(str(path / MODEL_FILE))
        optim_tensors = load_file(str(path / OPTIMIZER_FILE))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointError(f"{path}: unreadable checkpoint tensors ({exc})") from None
    rng_path = path / f"rng_rank{rank}.json"
    rng = json.loads(rng_path.read_text(encoding="utf-8")) if rng_path.exists() else None
    optimizer_state = join_optimizer_state(optim_tensors, state.pop("optimizer"))
    return Checkpoint(path, int(state["step"]), model_state, optimizer_state, state, rng)
