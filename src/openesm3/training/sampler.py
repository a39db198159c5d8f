"""A deterministic, resumable, length-bucketed batch sampler that knows nothing about what it samples.

It turns per-item lengths (after cropping) and sampling weights into *global step batches*: the items of one
optimizer step over all processes and gradient-accumulation micro-batches. Everything is a pure function of
``(seed, epoch)``, so the position in the stream is just ``(epoch, step)`` and a run resumed from a checkpoint
replays exactly the batches the uninterrupted run would have seen. Each item comes with its own random seed
(for cropping), drawn from the same generator, so per-item randomness does not depend on which process or
data-loading worker handles it.

Training epochs (``shuffle=True``):
1. draw ``epoch_size`` items: a permutation when all weights are equal, otherwise sampling with replacement
   with probability proportional to the weight (so big clusters can be down-weighted);
2. assign each item to the first bucket whose boundary is >= its length (longer ones to a last bucket);
3. cut each bucket, in drawn order, into batches: ``batch_size`` items, or with a token budget as many items
   as fit ``max_tokens`` padded to the bucket's upper length (rounded down to ``multiple_of``);
4. pool the leftovers of all buckets, sort them by length and cut them the same way (the incomplete tail is
   dropped: it is a random handful of items, redrawn next epoch);
5. shuffle the order of the batches.
Evaluation passes (``shuffle=False``) take every item once, sorted by length, with fixed per-item seeds; the
last batch is completed by wrapping around to a multiple of ``multiple_of`` (as torch's DistributedSampler
does), so that every process gets the same number of equally sized batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from openesm3.training.config import ConfigError


@dataclass(frozen=True)
class SampleRef:
    """One item to load: its index in the dataset and the seed of its random crop."""

    index: int
    seed: int


@dataclass(frozen=True)
class SamplerPosition:
    """The next batch to produce: batch ``step`` (0-based) of epoch ``epoch``."""

    epoch: int = 0
    step: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> SamplerPosition:
        return cls(epoch=int(data["epoch"]), step=int(data["step"]))


class LengthBucketSampler:
    """Global step batches of item indices, bucketed by length; see the module docstring for the method."""

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        *,
        batch_size: int,
        boundaries: Sequence[int],
        max_tokens: int = 0,
        weights: Sequence[float] | np.ndarray | None = None,
        multiple_of: int = 1,
        seed: int = 0,
        epoch_size: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0:
            raise ConfigError("the sampler needs at least one item (the dataset split is empty)")
        if (self.lengths <= 0).any():
            raise ConfigError(f"item {int(np.argmin(self.lengths))} has length <= 0")
        if multiple_of <= 0:
            raise ConfigError(f"multiple_of must be > 0, got {multiple_of}")
        if max_tokens == 0 and batch_size % multiple_of:
            raise ConfigError(
                f"batch_size={batch_size} must be divisible by processes x grad_accum = {multiple_of} "
                "(batch sizes are global: per optimizer step, over all processes)"
            )
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.multiple_of = multiple_of
        self.boundaries = np.asarray(sorted(boundaries), dtype=np.int64)
        self.seed = seed
        self.shuffle = shuffle
        self.epoch_size = epoch_size or len(self.lengths)
        if weights is None:
            self.probabilities: np.ndarray | None = None
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != self.lengths.shape or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
                raise ConfigError("sampling weights must be finite, >= 0, not all 0, one per item")
            self.probabilities = None if np.all(w == w[0]) else w / w.sum()
        self._bucket = np.searchsorted(self.boundaries, self.lengths, side="left")
        self._cache: tuple[int, list[np.ndarray]] | None = None

    # ------------------------------------------------------------------------------------------------
    def _n_per_batch(self, upper_length: int) -> int:
        if self.max_tokens == 0:
            return self.batch_size
        n = (self.max_tokens // max(upper_length, 1)) // self.multiple_of * self.multiple_of
        return max(n, self.multiple_of)

    def _bucket_upper(self, bucket: int, members: np.ndarray) -> int:
        if bucket < len(self.boundaries):
            return int(self.boundaries[bucket])
        return int(self.lengths[members].max())

    def _draw(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.lengths)
        if self.probabilities is not None:
            return rng.choice(n, size=self.epoch_size, replace=True, p=self.probabilities)
        reps = -(-self.epoch_size // n)
        return np.concatenate([rng.permutation(n) for _ in range(reps)])[: self.epoch_size]

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The step batches of one epoch, each an int64 array ``[n, 2]`` of (item index, crop seed)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        batches = self._train_batches(epoch) if self.shuffle else self._eval_batches()
        self._cache = (epoch, batches)
        return batches

    def _train_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = self._draw(rng)
        seeds = rng.integers(0, 2**62, size=len(order), dtype=np.int64)
        items = np.stack([order, seeds], axis=1)
        batches: list[np.ndarray] = []
        leftovers = []
        buckets = self._bucket[order]
        for b in np.unique(buckets):
            members = items[buckets == b]
            n = self._n_per_batch(self._bucket_upper(int(b), members[:, 0]))
            full = len(members) // n * n
            batches.extend(members[i : i + n] for i in range(0, full, n))
            leftovers.append(members[full:])
        rest = np.concatenate(leftovers) if leftovers else np.zeros((0, 2), np.int64)
        if len(rest):
            rest = rest[np.argsort(self.lengths[rest[:, 0]], kind="stable")]
            n = self._n_per_batch(int(self.lengths[rest[:, 0]].max()))
            full = len(rest) // n * n
            batches.extend(rest[i : i + n] for i in range(0, full, n))
        if not batches:
            raise ConfigError(
                f"an epoch of {len(order)} items yields no complete batch of {self._n_per_batch(1)} items; "
                "lower the batch size (data.batch_size, or data.max_tokens) or raise data.epoch_size"
            )
        perm = rng.permutation(len(batches))
        return [batches[i] for i in perm]

    def _eval_batches(self) -> list[np.ndarray]:
        order = np.argsort(self.lengths, kind="stable")
        items = np.stack([order, order], axis=1)  # fixed crop seed per item: its index
        batches = []
        start = 0
        m = self.multiple_of
        while start < len(items):
            n = self.batch_size
            if self.max_tokens:
                # grow in steps of m while the padded size (the longest, i.e. last, item) fits the budget
                n = m
                while start + n + m <= len(items) and (n + m) * self.lengths[items[start + n + m - 1, 0]] <= (
                    self.max_tokens
                ):
                    n += m
            chunk = items[start : start + n]
            start += n
            if len(chunk) % m:
                pad = m - len(chunk) % m
                chunk = np.concatenate([chunk, items[np.arange(pad) % len(items)]])
            batches.append(chunk)
        return batches

    # ------------------------------------------------------------------------------------------------
    def iterate(self, start: SamplerPosition | None = None) -> Iterator[tuple[SamplerPosition, list[SampleRef]]]:
        """Yield ``(position after this batch, refs)`` from ``start``; endless when shuffling, else one pass."""
        start = start or SamplerPosition()
        epoch, step = start.epoch, start.step
        while True:
            batches = self.epoch_batches(epoch)
            for i in range(step, len(batches)):
                refs = [SampleRef(int(a), int(s)) for a, s in batches[i]]
                yield SamplerPosition(epoch, i + 1), refs
            if not self.shuffle:
                return
            epoch, step = epoch + 1, 0

    def __len__(self) -> int:
        """Batches per epoch (of epoch 0; with weights or a token budget other epochs may differ slightly)."""
        return len(self.epoch_batches(0))
