"""Data parallelism on PyTorch's own engine: process setup, DDP / FSDP2 wrapping, collectives, state dicts.

Launch with ``torchrun --nproc_per_node N ...``; :func:`setup_distributed` reads the environment torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and joins the process group (NCCL on GPUs, gloo on CPU). Models
never know about parallelism: :func:`wrap_model` applies it from outside, torchtitan style.

- ``ddp``: ``DistributedDataParallel``; gradients are averaged across processes during backward.
- ``fsdp``: FSDP2 ``fully_shard`` on every unit returned by ``fsdp_units(model)`` (by default every block of
  every ``nn.ModuleList``, i.e. the transformer blocks), then on the root. Parameters, gradients and optimizer
  state are sharded; each unit is all-gathered for its forward/backward. It runs on CPU with gloo (tested).

Both average gradients over processes; with equal per-process batches and a loss that is a mean over its
batch, N processes with batch B/N take the same steps as one process with batch B.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from openesm3.errors import DependencyError
from openesm3.training.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of the process of local rank ``local_rank``: on CUDA, GPU ``local_rank`` of this node.

    More processes per node than GPUs is a :class:`ConfigError`: two processes cannot share a GPU under NCCL (it
    stops at the first collective with "Duplicate GPU detected")."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device='cuda' but no CUDA device is available (use device=cpu or auto)")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but this node has {count} CUDA device(s): launch at most one process per "
                f"GPU (torchrun --nproc_per_node {count}), or use device=cpu"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def launched_world_size() -> int:
    """The number of processes torchrun launched (``WORLD_SIZE``; 1 without torchrun), known before
    :func:`setup_distributed` joins them. A ``WORLD_SIZE`` that is no number of processes is a :class:`ConfigError`."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        world_size = int(text)
    except ValueError:
        world_size = 0
    if world_size < 1:
        raise ConfigError(
            f"WORLD_SIZE={text!r} in the environment is not a number of processes: launch with torchrun, which sets "
            "it, or unset it for one process"
        )
    return world_size


def setup_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when launched by torchrun with more than one process; pick the device."""
    world_size = launched_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place on a copy); identity on one process."""
    tensor = tensor.clone()
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def default_fsdp_units(model: nn.Module) -> Iterator[nn.Module]:
    """Every element of every ``nn.ModuleList`` (the blocks of a transformer), outermost lists first."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            yield from module


def wrap_model(
    model: nn.Module,
    strategy: str,
    info: DistInfo,
    *,
    fsdp_units: Callable[[nn.Module], Iterable[nn.Module]] = default_fsdp_units,
    find_unused_parameters: bool = False,
) -> nn.Module:
    """Apply ``strategy`` (``auto``, ``none``, ``ddp``, ``fsdp``) to ``model`` (already on ``info.device``)."""
    if strategy == "auto":
        strategy = "ddp" if info.distributed else "none"
    if strategy == "none":
        if info.distributed:
            raise ConfigError(f"distributed=none but {info.world_size} processes were launched")
        return model
    if not dist.is_initialized():
        raise ConfigError(f"distributed={strategy} needs a process group: launch with torchrun")
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)
    if strategy == "fsdp":
        try:
            from torch.distributed.fsdp import fully_shard
        except ImportError:  # FSDP2 is public from torch 2.6; the package itself allows torch >= 2.3
            raise DependencyError(
                f"distributed=fsdp needs torch >= 2.6 (FSDP2's fully_shard); this is torch {torch.__version__}: "
                "upgrade torch, or use distributed=ddp"
            ) from None

        units = list(fsdp_units(model))
        for unit in units:
            fully_shard(unit)
        fully_shard(model)
        return model
    raise ConfigError(f"unknown distributed strategy {strategy!r} (auto, none, ddp, fsdp)")


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the cross-process gradient reduction when ``enabled`` is False (all but the last micro-batch)."""
    if enabled:
        yield
        return
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    elif isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm to ``max_norm`` (<= 0: no clipping); returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
        norm = norm.full_tensor()
    return norm


def _is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DDP and ``torch.compile`` wrappers (FSDP2 modifies modules in place)."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        model = model.module
    inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
    return inner if isinstance(inner, nn.Module) else model


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the optimizer's parameters in the order of its state dict's integer ids."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts, parameters named by their FQN in the user's module.

    Collective under FSDP (torch.distributed.checkpoint gathers the shards; non-zero ranks get empty dicts).
    Without FSDP the plain state dicts are renamed here: importing torch.distributed.checkpoint costs
    seconds, which one-process runs need not pay.
    """
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)
    inner = unwrap(model)
    names = _param_names(inner, optimizer)
    raw = optimizer.state_dict()
    optim_state = {
        "state": {names[i]: dict(v) for i, v in raw["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in raw["param_groups"]],
    }
    return inner.state_dict(), optim_state


def load_full_state_dicts(
    model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict
) -> None:
    """Load full state dicts from :func:`full_state_dicts` (every process passes the same ones)."""
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, strict=True)
        set_model_state_dict(model, model_state, options=options)
        set_optimizer_state_dict(model, optimizer, optim_state, options=options)
        return
    inner = unwrap(model)
    inner.load_state_dict(model_state, strict=True)
    index = {name: i for i, name in enumerate(_param_names(inner, optimizer))}
    try:
        raw = {
            "state": {index[name]: v for name, v in optim_state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in optim_state["param_groups"]],
        }
    except KeyError as exc:
        raise ValueError(f"optimizer state names parameter {exc} that the model does not have") from None
    optimizer.load_state_dict(raw)
