"""The generic training loop: a model, a loss function, data loaders and a :class:`TrainConfig`.

It knows nothing about proteins. Per optimizer step it takes this process's micro-batches from a
:class:`~openesm3.training.loader.StepLoader`, runs ``loss_fn(model, batch) -> (loss, metrics)`` on each
under autocast, accumulates gradients (synchronising across processes on the last micro-batch only), clips
the global gradient norm, and steps AdamW at the rate of the warmup + cosine schedule (paper A.2.3). It
validates, logs (JSONL, TensorBoard, progress bar) and checkpoints periodically, and resumes from the latest
complete checkpoint in ``out_dir``: with the same seed a resumed run continues the same loss trajectory.

Conventions for ``loss_fn``:
- it calls ``model(...)`` (the wrapped model: DDP/FSDP hooks run in ``forward``), not its submodules;
- ``loss`` is a scalar *mean over its micro-batch* (each micro-batch and process weighs the same, so the
  result does not depend on how a global batch is split); ``metrics`` maps names to scalars (tensors or
  floats), logged as means over micro-batches, processes and the logging interval;
- precision: with ``precision="bf16"`` the call runs under ``torch.autocast(dtype=bfloat16)``. Geometry and
  losses must stay in fp32: compute them inside :func:`full_precision` on ``.float()`` inputs (the model's
  bf16 activations are cast back), as the paper's mixed-precision recipe does.
- batches may define ``to(device)``, ``n_tokens`` (for tokens/s) and ``n_samples`` (to weight validation).

All randomness flows from seeded generators whose states are checkpointed: the sampler (a pure function of
``(seed, epoch)``), per-item crop seeds, and the global Python/NumPy/torch RNGs (dropout). Validation runs with
those RNGs seeded afresh (:func:`validation_seed`) and restores them after, so when and how often a run validates
changes none of its training steps, and the same model and data give the same valid loss. The caller seeds
and builds the model before calling :func:`train` (:func:`seed_everything`); every process must build it the
same way (FSDP does not broadcast parameters).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from openesm3.training import distributed as D
from openesm3.training.checkpointing import (
    CheckpointError,
    describe_damaged,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    newer_damaged,
    read_model_shapes,
    read_trainer_state,
    restore_rng_state,
    save_checkpoint,
)
from openesm3.training.config import ConfigError, TrainConfig, config_to_dict
from openesm3.training.data import INDEX_FILE, dataset_fingerprint
from openesm3.training.loader import StepLoader
from openesm3.training.logging import MetricsLogger
from openesm3.training.sampler import SamplerPosition
from openesm3.training.schedules import WarmupCosineSchedule, set_learning_rate
from openesm3.utils.progress import Progress

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, Any]]]
CHECKPOINT_DIR = "checkpoints"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global RNG that user code may draw from
    torch.manual_seed(seed)


def full_precision(device_type: str | None = None) -> contextlib.AbstractContextManager[Any]:
    """A region where autocast is off: geometry and losses computed in fp32 (on ``.float()`` inputs).

    ``device_type`` (``"cpu"``, ``"cuda"``, the batch's ``tensor.device.type``) turns off autocast of that device
    type; None turns it off on the CPU and on every accelerator present, whichever the batch is on."""
    if device_type is not None:
        return torch.autocast(device_type=device_type, enabled=False)
    return _full_precision_everywhere()


@contextlib.contextmanager
def _full_precision_everywhere() -> Iterator[None]:
    """Autocast off on the CPU and every accelerator present, from entering the block (not from the call: a
    context made ahead of its ``with`` must leave autocast alone until then) to leaving it."""
    types = ["cpu"] + ["cuda"] * torch.cuda.is_available() + ["mps"] * torch.backends.mps.is_available()
    with contextlib.ExitStack() as stack:
        for kind in types:
            stack.enter_context(torch.autocast(device_type=kind, enabled=False))
        yield


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors, objects with ``to``, and dicts/lists/tuples of them, moved to ``device``."""
    non_blocking = device.type == "cuda"
    if isinstance(batch, torch.Tensor) or hasattr(batch, "to"):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on parameters with >= 2 dimensions (matrices, embeddings), none on biases/scales."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps
    )


# Settings that do not change what is computed; changing them on resume is expected. log_every, ckpt_every and
# val_every say when the loop reports, saves and validates: none of them changes a value the training steps compute
# or the random numbers they draw (their collectives only sum what is reported, a checkpoint reads the RNG states
# without drawing, and evaluate() restores the global RNGs it may draw from).
_RUN_ONLY_KEYS = frozenset(
    {
        "out_dir",
        "resume",
        "tensorboard",
        "progress",
        "data.num_workers",
        "data.path",
        "keep_last",
        "log_every",
        "ckpt_every",
        "val_every",
    }
)


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def check_resume(cfg: TrainConfig, *, world_size: int | None = None, model: nn.Module | None = None) -> None:
    """Refuse, without loading the checkpoint's tensors, a run that :func:`train` would refuse on reaching its
    ``out_dir``: checkpoints there with ``resume=false``, a latest checkpoint past ``max_steps``, one written by
    another number of processes than ``world_size`` (when given; its trainer state says), or, given the caller's
    ``model`` (wrapped by torch.compile or DDP or not), one whose tensors have other names or shapes than the
    model's (the checkpoint's safetensors header says). A ``step_`` directory that is no checkpoint it can read
    (damaged or edited since it was written) and newer than the latest that is, is refused whatever ``resume`` says:
    the run would go on from the older checkpoint (or start afresh) and overwrite it. A caller with expensive work
    before :func:`train` (stage 2 encodes its whole dataset) calls it first."""
    ckpt_root = Path(cfg.out_dir) / CHECKPOINT_DIR
    newer, latest_good = newer_damaged(ckpt_root)
    if newer:
        raise CheckpointError(_damaged(newer, latest_good, cfg))
    found = list_checkpoints(ckpt_root)
    if not found:
        return
    if not cfg.resume:
        raise ConfigError(f"{ckpt_root} holds checkpoints but resume=false: use another out_dir or resume=true")
    step, latest = found[-1]
    if step > cfg.max_steps:
        raise CheckpointError(_past_max_steps(latest, step, cfg))
    if world_size is None and model is None:
        return
    state = read_trainer_state(latest)
    if world_size is not None and state.get("world_size") != world_size:
        raise CheckpointError(_other_world_size(latest, state.get("world_size"), world_size))
    if model is not None:
        # named as the loop saves them: in the user's module, inside DDP and torch.compile wrappers
        mismatch = _shape_mismatch(read_model_shapes(latest), D.unwrap(model).state_dict())
        if mismatch:
            changed = _changed_settings(state, cfg)
            raise CheckpointError(_does_not_fit(latest, cfg, changed, mismatch))


def _damaged(newer: list[tuple[int, Path, str]], latest: Path | None, cfg: TrainConfig) -> str:
    """Why a run does not go on in ``cfg.out_dir`` whose newest ``step_`` directories (``newer``, oldest first) are no
    checkpoint it can read: it would resume from the older ``latest`` (or start afresh, with ``latest`` None) and
    overwrite them, and the metrics logged after, without a word."""
    path = newer[0][1]
    older = f"resume from the older {latest.name}" if latest is not None else "start afresh"
    return (
        f"{describe_damaged(newer, 'resumed from')}; a run in {Path(cfg.out_dir)} would {older} and overwrite it: "
        f"repair it or move it out of {path.parent} to go on, or give another out_dir for a new run"
    )


def _other_world_size(latest: Path, written: Any, now: int) -> str:
    return (
        f"{latest}: written by {written} processes, resumed with {now}; resume with the same number to continue the "
        "same run"
    )


def _changed_settings(trainer_state: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The settings of ``cfg`` that differ from those the checkpoint's run started with (run-only ones left out)."""
    old_config = _as_started(trainer_state.get("config") or {})
    return [k for k in _changed_keys(old_config, config_to_dict(cfg)) if k not in _RUN_ONLY_KEYS]


def _other_dataset(stored: Any, now: str | None, cfg: TrainConfig) -> str:
    """The changed-settings entry of a run resumed on another dataset than the one its checkpoint's run trained on
    (fingerprints ``stored`` in the checkpoint and ``now``); '' when the same, or when either is unknown (a checkpoint
    written before fingerprints, a dataset whose index cannot be read). ``data.path`` itself is a run-only setting: a
    dataset moved or ingested again elsewhere is the same dataset."""
    if not isinstance(stored, str) or now is None or stored == now:
        return ""
    where = f"at data.path={cfg.data.path}" if cfg.data.path else "given"
    return (
        f"data (the dataset {where} is not the one the run started on ({INDEX_FILE} differs): its split and batches "
        "differ from the uninterrupted run's)"
    )


def _shape_mismatch(saved: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]) -> str:
    """The first difference between a checkpoint's tensor shapes and a model's state dict ('' when none)."""
    for name in sorted(set(saved) | set(state)):
        if name not in state:
            return f"the checkpoint holds {name}, which this configuration's model lacks"
        if name not in saved:
            return f"this configuration's model has {name}, which the checkpoint lacks"
        if saved[name] != tuple(state[name].shape):
            return f"{name} has shape {list(saved[name])} in the checkpoint, {list(state[name].shape)} in the model"
    return ""


def _does_not_fit(latest: Path, cfg: TrainConfig, changed: list[str], detail: str) -> str:
    what = f"changed settings: {', '.join(changed)}" if changed else detail
    return (
        f"{latest}: the run in {Path(cfg.out_dir)} does not fit this configuration's model ({what}); resume with the "
        "settings it was written with, or give another out_dir for a new run"
    )


def _past_max_steps(latest: Path, step: int, cfg: TrainConfig) -> str:
    return (
        f"{latest}: the run in {cfg.out_dir} is already at step {step}, past max_steps={cfg.max_steps}; "
        "give max_steps >= that to continue it, or another out_dir for a new run"
    )


def _schedule(max_steps: int, optim: dict[str, Any]) -> WarmupCosineSchedule:
    """The learning-rate schedule of a run with ``max_steps`` and the ``optim`` settings (as ``config_to_dict``)."""
    return WarmupCosineSchedule(
        peak_lr=optim["lr"],
        warmup_steps=optim["warmup_steps"],
        total_steps=max_steps,
        min_lr_ratio=optim["min_lr_ratio"],
    )


def _schedule_change(old_config: dict[str, Any], schedule: WarmupCosineSchedule, step: int) -> str:
    """What resuming at ``step`` with ``schedule`` does to the learning rates of the run whose checkpoint holds
    ``old_config`` ('' when its schedule is the same). The rate is a pure function of the step: from ``step`` on the
    run takes the rates of a run started with the new settings, but the steps it already ran took the old ones, so
    where the two differ before ``step`` (e.g. another ``max_steps`` after the warmup: the cosine decay stretched or
    compressed to the new length) the run is not the one the new settings would have trained from the start.

    A checkpoint config of another layout (settings of other types: ``"lr": null``, a string where a number belongs)
    says nothing about the rates: the settings named are all there is to say."""
    try:
        defaults = {k: getattr(schedule, f) for k, f in _SCHEDULE_FIELDS.items()}
        old = _schedule(
            int(old_config.get("max_steps", schedule.total_steps)), {**defaults, **(old_config.get("optim") or {})}
        )
        if old == schedule:
            return ""
        # every rate compared or printed below is computed here, where a value of another type fails
        differs = next((s for s in range(step) if not math.isclose(old(s), schedule(s), rel_tol=1e-9)), None)
        old_rate = float(old(step))
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
        return ""
    if differs is None:
        return (
            f"; the learning-rate schedule changes, but not over the steps already run (0..{step - 1}): every step "
            "takes the rate of a run started with these settings"
        )
    stretched = ""
    if old.total_steps != schedule.total_steps and old.warmup_steps == schedule.warmup_steps:
        how = "stretches" if schedule.total_steps > old.total_steps else "compresses"
        stretched = (
            f" (max_steps {how} the cosine decay of steps {old.warmup_steps}..{old.total_steps} over steps "
            f"{schedule.warmup_steps}..{schedule.total_steps})"
        )
    ran = (
        f"{_steps(differs, step - 1)} ran at the old schedule's rates, so the run's rates differ from a run started "
        "with these settings"
    )
    if step >= schedule.total_steps:  # max_steps lowered to the checkpoint's step: the run ends there, nothing goes on
        return (
            f"; the learning-rate schedule changes{stretched}: no step is left to run (max_steps="
            f"{schedule.total_steps}), and {ran}"
        )
    return (
        f"; the learning-rate schedule changes{stretched}: step {step} goes on at lr {schedule(step):.3g} where "
        f"the old schedule gave {old_rate:.3g}, after {ran}"
    )


def _as_started(old_config: Any) -> dict[str, Any]:
    """A checkpoint's config with the settings added since it was written set as that run behaved: a run started
    before ``data.split.identical_sequences`` gave every record without a cluster label a cluster of its own."""
    if not isinstance(old_config, dict):
        return {}  # a config of another layout: every setting is named as changed, as for a checkpoint without one
    data = old_config.get("data")
    split = data.get("split") if isinstance(data, dict) else None
    if not isinstance(split, dict) or "identical_sequences" in split:
        return old_config
    return {**old_config, "data": {**old_config["data"], "split": {**split, "identical_sequences": False}}}


def _clustering_change(changed: list[str], cfg: TrainConfig) -> str:
    """What resuming with ``data.split.identical_sequences`` turned on does to the run's split ('' when nothing)."""
    if "data.split.identical_sequences" not in changed or not cfg.data.split.identical_sequences:
        return ""
    return (
        "; records without a cluster label (a dataset ingested without a manifest, or files the manifest does not "
        "list) were each their own cluster in this run and now share one when their sequences are identical, which "
        "can move them between the training and validation sets and changes their sampling weights; give "
        "data.split.identical_sequences=false to go on with the split and weights the run started with"
    )


def _steps(first: int, last: int) -> str:
    """``steps first..last``, or ``step first`` for one step."""
    return f"step {first}" if first == last else f"steps {first}..{last}"


# The schedule's fields, by their key in the config's optim settings.
_SCHEDULE_FIELDS = {"lr": "peak_lr", "warmup_steps": "warmup_steps", "min_lr_ratio": "min_lr_ratio"}


@dataclass(frozen=True)
class TrainResult:
    step: int  # completed optimizer steps
    train_loss: float | None  # mean loss of the last logging interval
    valid: dict[str, float] | None  # last validation results
    checkpoint: Path | None  # last checkpoint written or resumed from


class _Meter:
    """Sums of scalars over micro-batches (on device, no host sync until :meth:`reduce`)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.weight = 0.0

    def add(self, values: dict[str, Any], weight: float = 1.0) -> None:
        for name, value in values.items():
            v = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            v = v * weight
            self.sums[name] = self.sums[name] + v.to(self.sums[name].device) if name in self.sums else v
        self.weight += weight

    def reduce(self, device: torch.device) -> dict[str, float]:
        """Means over everything added on every process (collective: all processes must call it)."""
        names = sorted(self.sums)
        values = [self.sums[n].to(device).reshape(()) for n in names]
        packed = torch.stack(values + [torch.tensor(self.weight, device=device)])
        packed = D.all_reduce_sum(packed).cpu()
        total = float(packed[-1])
        return {n: float(packed[i]) / total for i, n in enumerate(names)} if total else {}


def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    data: StepLoader[Any, Any],
    *,
    device: torch.device,
    precision: str,
    max_batches: int = 0,
    seed: int | None = None,
) -> dict[str, float]:
    """Mean loss and metrics over a validation loader (weighted by samples per micro-batch).

    It leaves the global RNGs (Python, NumPy, torch CPU and ``device``'s) as it found them: a loss function may draw
    from them in evaluation too (the tokenizer's all-atom losses draw their atom subsets), and validating must not
    change the random numbers of the training steps after. Given a ``seed`` it seeds them (inside that isolation)
    first, so its own draws, and hence its results, are the same at every call on the same model and data: valid
    losses compare between evaluations and between runs. Each process isolates and seeds its own RNGs. The RNGs and
    the model's training mode are restored also when it raises (a bad batch, KeyboardInterrupt)."""
    was_training = model.training
    with _isolated_rng(device, seed):
        model.eval()
        try:
            meter = _Meter()
            with torch.no_grad():
                for i, step in enumerate(data.iterate()):
                    if max_batches and i >= max_batches:
                        break
                    for batch in step.micro_batches:
                        batch = move_to_device(batch, device)
                        with _autocast(device, precision):
                            loss, metrics = loss_fn(model, batch)
                        meter.add({"loss": loss, **metrics}, float(getattr(batch, "n_samples", 1)))
            return meter.reduce(device)
        finally:  # also when a batch or the user (Ctrl-C) stops it: a caller that goes on trains in its mode
            model.train(was_training)


def validation_seed(seed: int) -> int:
    """The seed :func:`train` validates with in a run seeded with ``seed``: every validation of the run starts from
    it, and it differs from the training's own seed so validation draws other numbers than the first step."""
    digest = hashlib.sha256(f"{seed}:validation".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: torch takes it


@contextlib.contextmanager
def _isolated_rng(device: torch.device, seed: int | None) -> Iterator[None]:
    """A block whose draws from the global Python, NumPy and torch RNGs (the CPU's and ``device``'s: the one this
    process computes on, no other device is touched) leave them as they were on entry; seeded with ``seed`` when given.
    """
    accelerators = [] if device.type == "cpu" else [_device_index(device)]
    python_state = random.getstate()
    numpy_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG that user code may draw from
    try:
        with torch.random.fork_rng(devices=accelerators, device_type=device.type):
            if seed is not None:
                random.seed(seed)
                np.random.seed(seed % 2**32)  # noqa: NPY002
                torch.default_generator.manual_seed(seed)
                if device.type == "cuda":
                    with torch.cuda.device(accelerators[0]):
                        torch.cuda.manual_seed(seed)  # this device's generator only (manual_seed_all: every GPU's)
                elif accelerators:
                    torch.get_device_module(device.type).manual_seed(seed)
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002


def _device_index(device: torch.device) -> int:
    """``device``'s index; the current one of its type when it names none (``torch.device("cuda")``)."""
    if device.index is not None:
        return device.index
    module = torch.get_device_module(device.type)
    return int(module.current_device()) if hasattr(module, "current_device") else 0


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _check_loader(loader: StepLoader[Any, Any], info: D.DistInfo, grad_accum: int, name: str) -> None:
    if loader.world_size != info.world_size or loader.rank != info.rank:
        raise ConfigError(
            f"{name} loader was built for rank {loader.rank} of {loader.world_size}, "
            f"but this is rank {info.rank} of {info.world_size}"
        )
    if loader.grad_accum != grad_accum:
        raise ConfigError(f"{name} loader has grad_accum={loader.grad_accum}, config has {grad_accum}")


def train(
    model: nn.Module,
    loss_fn: LossFn,
    train_data: StepLoader[Any, Any],
    config: TrainConfig,
    *,
    valid_data: StepLoader[Any, Any] | None = None,
    dist_info: D.DistInfo | None = None,
    fsdp_units: Callable[[nn.Module], Iterable[nn.Module]] = D.default_fsdp_units,
    find_unused_parameters: bool = False,
    data_fingerprint: str | None = None,
) -> TrainResult:
    """Train ``model`` with ``loss_fn`` on ``train_data`` as ``config`` says (see the module docstring).

    ``model`` is built and seeded by the caller (identically on every process) and moved to the device here;
    ``dist_info`` comes from :func:`~openesm3.training.distributed.setup_distributed` (one process if None).
    Loaders are built for this process's rank and ``config.grad_accum`` (validation loaders with 1).

    ``data_fingerprint`` identifies the dataset the loaders read (:attr:`ProteinDataset.fingerprint
    <openesm3.training.data.ProteinDataset.fingerprint>`; by default the one of ``config.data.path``'s index, when
    set). Checkpoints store it, and a run resumed on another dataset (the split and batches of another run) is named
    in the changed-settings warning; a checkpoint without one (written before fingerprints) is compared with nothing.
    """
    cfg = config
    info = dist_info or D.DistInfo(device=D.resolve_device(cfg.device))
    _check_loader(train_data, info, cfg.grad_accum, "train")
    if valid_data is not None:
        _check_loader(valid_data, info, 1, "valid")
    device = info.device
    out_dir = Path(cfg.out_dir)
    ckpt_root = out_dir / CHECKPOINT_DIR

    model.to(device)
    wrapped = D.wrap_model(
        model, cfg.distributed, info, fsdp_units=fsdp_units, find_unused_parameters=find_unused_parameters
    )
    optimizer = build_optimizer(wrapped, cfg)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    schedule = _schedule(cfg.max_steps, config_to_dict(cfg)["optim"])
    if data_fingerprint is None and cfg.data.path:
        data_fingerprint = dataset_fingerprint(cfg.data.path)

    # ---- resume --------------------------------------------------------------------------------------
    start_step, position, last_ckpt = 0, SamplerPosition(), None
    tokens_seen = skipped = 0
    check_resume(cfg, world_size=info.world_size)
    latest = latest_checkpoint(ckpt_root) if cfg.resume else None
    if latest is not None:
        ckpt = load_checkpoint(latest, rank=info.rank)
        if ckpt.trainer_state.get("world_size") != info.world_size:  # written since check_resume read it
            raise CheckpointError(_other_world_size(latest, ckpt.trainer_state.get("world_size"), info.world_size))
        old_config = _as_started(ckpt.trainer_state.get("config") or {})
        changed = _changed_settings(ckpt.trainer_state, cfg)
        if ckpt.step > cfg.max_steps:
            raise CheckpointError(_past_max_steps(latest, ckpt.step, cfg))
        try:
            D.load_full_state_dicts(wrapped, optimizer, ckpt.model_state, ckpt.optimizer_state)
        except (RuntimeError, ValueError, KeyError) as exc:  # a model or optimizer of other shapes/parameters
            raise CheckpointError(_does_not_fit(latest, cfg, changed, str(exc).splitlines()[0])) from None
        if ckpt.rng_state is not None:
            restore_rng_state(ckpt.rng_state)
        start_step = ckpt.step
        position = SamplerPosition.from_dict(ckpt.trainer_state["sampler"])
        tokens_seen = int(ckpt.trainer_state.get("tokens_seen", 0))
        skipped = int(ckpt.trainer_state.get("skipped_steps", 0))
        last_ckpt = latest
        other_data = _other_dataset(ckpt.trainer_state.get("data_fingerprint"), data_fingerprint, cfg)
        if info.is_main and (changed or other_data):
            note = _schedule_change(old_config, schedule, ckpt.step) + _clustering_change(changed, cfg)
            named = ", ".join(changed + ([other_data] if other_data else []))
            warnings.warn(f"resuming from {latest} with changed settings: {named}{note}", stacklevel=2)
        del ckpt

    logger = MetricsLogger(
        out_dir,
        enabled=info.is_main,
        tensorboard=cfg.tensorboard,
        resume_step=start_step if latest is not None else None,
    )
    if logger.tensorboard_error:
        warnings.warn(logger.tensorboard_error, stacklevel=2)
    bar = Progress(
        total=cfg.max_steps - start_step,
        desc=f"train (from step {start_step})",
        unit="step",
        disable=not (cfg.progress and info.is_main),
    )

    def checkpoint(step: int) -> Path:
        model_state, optim_state = D.full_state_dicts(wrapped, optimizer)
        trainer_state = {
            "sampler": position.to_dict(),
            "tokens_seen": tokens_seen,
            "skipped_steps": skipped,
            "config": config_to_dict(cfg),
            "config_class": f"{type(cfg).__module__}.{type(cfg).__qualname__}",
        }
        if data_fingerprint is not None:
            trainer_state["data_fingerprint"] = data_fingerprint
        return save_checkpoint(
            ckpt_root,
            step,
            model_state=model_state,
            optimizer_state=optim_state,
            trainer_state=trainer_state,
            keep_last=cfg.keep_last,
            rank=info.rank,
            world_size=info.world_size,
            barrier=D.barrier,
        )

    # ---- loop ----------------------------------------------------------------------------------------
    wrapped.train()
    steps: Iterator[Any] = iter(train_data.iterate(position))
    meter, interval_tokens, interval_start = _Meter(), 0, time.perf_counter()
    grad_norm_sum, n_steps = torch.zeros((), device=device), 0
    train_loss: float | None = None
    valid: dict[str, float] | None = None
    try:
        for step in range(start_step, cfg.max_steps):
            step_data = next(steps)
            lr = schedule(step)
            set_learning_rate(optimizer, lr)
            n_micro = len(step_data.micro_batches)
            for m, batch in enumerate(step_data.micro_batches):
                batch = move_to_device(batch, device)
                with D.gradient_sync(wrapped, enabled=m == n_micro - 1):
                    with _autocast(device, cfg.precision):
                        loss, metrics = loss_fn(wrapped, batch)
                    (loss.float() / n_micro).backward()
                meter.add({"loss": loss, **metrics}, 1.0)
                interval_tokens += int(getattr(batch, "n_tokens", 0))
            grad_norm = D.clip_grad_norm(params, cfg.optim.grad_clip)
            # one host sync per step; the norm is the same on every process, so all skip together
            if torch.isfinite(grad_norm):
                optimizer.step()
            else:
                skipped += 1
            optimizer.zero_grad(set_to_none=True)
            grad_norm_sum = grad_norm_sum + grad_norm.detach().float().to(device)  # identical on every process
            n_steps += 1
            position = step_data.position
            done = step + 1
            last = done == cfg.max_steps

            if done % cfg.log_every == 0 or last:
                values = meter.reduce(device)
                tokens = int(D.all_reduce_sum(torch.tensor(float(interval_tokens), device=device)).item())
                elapsed = time.perf_counter() - interval_start
                tokens_seen += tokens
                train_loss = values.pop("loss", float("nan"))
                row = {
                    "lr": lr,
                    "loss": train_loss,
                    "grad_norm": float(grad_norm_sum) / n_steps,
                    "tokens_per_s": tokens / max(elapsed, 1e-9),
                    "steps_per_s": n_steps / max(elapsed, 1e-9),
                    "tokens_seen": tokens_seen,
                    "skipped_steps": skipped,
                    "metrics": values,
                }
                logger.log("train", done, row)
                bar.postfix = f"step {done} loss {train_loss:.4g} lr {lr:.3g} {row['tokens_per_s']:.0f} tok/s"
                meter, interval_tokens, interval_start = _Meter(), 0, time.perf_counter()
                grad_norm_sum, n_steps = torch.zeros((), device=device), 0
            bar.update()

            if valid_data is not None and ((cfg.val_every and done % cfg.val_every == 0) or last):
                valid = evaluate(
                    wrapped,
                    loss_fn,
                    valid_data,
                    device=device,
                    precision=cfg.precision,
                    max_batches=cfg.data.valid_max_batches,
                    seed=validation_seed(cfg.seed),
                )
                valid_metrics = {k: v for k, v in valid.items() if k != "loss"}
                logger.log("valid", done, {"loss": valid.get("loss", math.nan), "metrics": valid_metrics})
                interval_start = time.perf_counter()  # validation time does not count against throughput

            if (cfg.ckpt_every and done % cfg.ckpt_every == 0) or last:
                last_ckpt = checkpoint(done)
                interval_start = time.perf_counter()  # neither does checkpointing
    finally:
        bar.close()
        logger.close()
    return TrainResult(step=cfg.max_steps, train_loss=train_loss, valid=valid, checkpoint=last_ckpt)
