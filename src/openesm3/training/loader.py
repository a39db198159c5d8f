"""From global step batches to this process's collated micro-batches, optionally in background workers.

A global step batch of ``n`` items (``n`` divisible by ``world_size * grad_accum``) is cut into
``grad_accum * world_size`` equal slices of ``k = n / (grad_accum * world_size)`` items; micro-batch ``m`` of
process ``r`` is slice ``m * world_size + r``. The partition does not depend on how the slices are spread over
processes and accumulation steps, so 2 processes x 1 micro-batch see exactly the items of 1 process x 2
micro-batches, and of 1 process x 1 micro-batch of ``n``.

Loading (``fetch`` per item, then ``collate`` per micro-batch) runs in a ``torch.utils.data.DataLoader``: in
this process with ``num_workers=0``, else in worker processes that prefetch whole steps. Every step carries
the sampler position after it, so the training loop checkpoints the position of the last step it *consumed*,
never that of steps merely prefetched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch.utils.data

from openesm3.training.sampler import LengthBucketSampler, SampleRef, SamplerPosition

Item = TypeVar("Item")
Batch = TypeVar("Batch")


def shard_step(refs: Sequence[SampleRef], *, rank: int, world_size: int, grad_accum: int) -> list[list[SampleRef]]:
    """The ``grad_accum`` micro-batches of process ``rank`` from one global step batch (see module docstring)."""
    parts = world_size * grad_accum
    if len(refs) % parts:
        raise ValueError(f"a step batch of {len(refs)} items cannot be split into {parts} equal micro-batches")
    k = len(refs) // parts
    return [list(refs[(m * world_size + rank) * k : (m * world_size + rank + 1) * k]) for m in range(grad_accum)]


@dataclass(frozen=True)
class StepRequest:
    position: SamplerPosition  # after this step
    micro_batches: tuple[tuple[SampleRef, ...], ...]


@dataclass(frozen=True)
class StepData(Generic[Batch]):
    """One optimizer step's input for this process: its micro-batches and the sampler position after it."""

    position: SamplerPosition
    micro_batches: list[Batch]


class _StepDataset(torch.utils.data.Dataset, Generic[Item, Batch]):
    def __init__(self, fetch: Callable[[SampleRef], Item], collate: Callable[[list[Item]], Batch]) -> None:
        self.fetch = fetch
        self.collate = collate

    def __getitem__(self, request: StepRequest) -> StepData[Batch]:  # type: ignore[override]
        batches = [self.collate([self.fetch(ref) for ref in micro]) for micro in request.micro_batches]
        return StepData(request.position, batches)


class _Requests:
    def __init__(self, loader: StepLoader[Any, Any], start: SamplerPosition) -> None:
        self.loader = loader
        self.start = start

    def __iter__(self) -> Iterator[StepRequest]:
        lo = self.loader
        for position, refs in lo.sampler.iterate(self.start):
            micro = shard_step(refs, rank=lo.rank, world_size=lo.world_size, grad_accum=lo.grad_accum)
            yield StepRequest(position, tuple(tuple(m) for m in micro))


def _identity(x: Any) -> Any:
    return x


class StepLoader(Generic[Item, Batch]):
    """Iterates over :class:`StepData` from any sampler position (endless for training samplers)."""

    def __init__(
        self,
        sampler: LengthBucketSampler,
        fetch: Callable[[SampleRef], Item],
        collate: Callable[[list[Item]], Batch],
        *,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        num_workers: int = 0,
    ) -> None:
        if sampler.multiple_of % (world_size * grad_accum):
            raise ValueError(
                f"the sampler's batches are multiples of {sampler.multiple_of}, not of "
                f"world_size x grad_accum = {world_size * grad_accum}"
            )
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size
        self.grad_accum = grad_accum
        self.num_workers = num_workers
        self._dataset: _StepDataset[Item, Batch] = _StepDataset(fetch, collate)

    def iterate(self, start: SamplerPosition | None = None) -> Iterator[StepData[Batch]]:
        start = start or SamplerPosition()
        loader = torch.utils.data.DataLoader(
            self._dataset,  # type: ignore[arg-type]
            sampler=_Requests(self, start),  # type: ignore[arg-type]
            batch_size=None,
            collate_fn=_identity,
            num_workers=self.num_workers,
            prefetch_factor=2 if self.num_workers else None,
            # its own generator: creating an iterator must not consume the global torch RNG (dropout), or a
            # resumed run, which creates its iterator at a different time, would draw different numbers
            generator=torch.Generator().manual_seed(0),
        )
        yield from loader

    def __iter__(self) -> Iterator[StepData[Batch]]:
        return self.iterate()
