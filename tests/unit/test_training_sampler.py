"""Length-bucketed, seeded, resumable sampler and the split of step batches over processes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from openesm3.training.config import ConfigError
from openesm3.training.loader import shard_step
from openesm3.training.sampler import LengthBucketSampler, SampleRef, SamplerPosition
from openesm3.training.splits import sampling_weights

BOUNDS = (16, 32, 64)


def _lengths(n: int = 200, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 100, size=n)


def _batches(sampler: LengthBucketSampler, steps: int, start: SamplerPosition | None = None) -> list:
    out = []
    for position, refs in sampler.iterate(start):
        out.append((position, [(r.index, r.seed) for r in refs]))
        if len(out) == steps:
            return out
    return out


def test_deterministic_seeded_and_resumable_across_epochs() -> None:
    lengths = _lengths()
    make = lambda seed: LengthBucketSampler(lengths, batch_size=8, boundaries=BOUNDS, seed=seed)  # noqa: E731
    per_epoch = len(make(0))
    run = _batches(make(0), 3 * per_epoch)
    assert run == _batches(make(0), 3 * per_epoch)
    assert run != _batches(make(1), 3 * per_epoch)
    assert run[0][0] == SamplerPosition(0, 1) and run[per_epoch][0] == SamplerPosition(1, 1)
    assert [b for _, b in run[:per_epoch]] != [b for _, b in run[per_epoch : 2 * per_epoch]]  # epochs differ
    # resuming from any position (a fresh sampler, as after a restart) replays the same stream
    for k in (0, 5, per_epoch - 1, per_epoch, per_epoch + 3):
        assert _batches(make(0), 10, run[k][0]) == run[k + 1 : k + 11]


def test_buckets_batch_sizes_and_coverage() -> None:
    lengths = _lengths()
    sampler = LengthBucketSampler(lengths, batch_size=8, boundaries=BOUNDS, seed=0)
    batches = sampler.epoch_batches(0)
    assert all(len(b) == 8 for b in batches)
    bucket = np.searchsorted(BOUNDS, lengths, side="left")
    mixed = [b for b in batches if len(set(bucket[b[:, 0]])) > 1]
    assert len(mixed) <= len(BOUNDS)  # only the pooled leftovers mix buckets
    drawn = np.concatenate([b[:, 0] for b in batches])
    assert (
        len(set(drawn.tolist())) == len(drawn) > len(lengths) - 8 * (len(BOUNDS) + 1)
    )  # a permutation, small tail dropped
    seeds = np.concatenate([b[:, 1] for b in batches])
    assert len(set(seeds.tolist())) == len(seeds)  # every item gets its own crop seed
    # the pooled leftovers are cut from one length-sorted list: their batches' length ranges do not overlap
    fine = tuple(range(10, 100, 10))
    pooled = [
        lengths[b[:, 0]]
        for b in LengthBucketSampler(lengths, batch_size=8, boundaries=fine, seed=0).epoch_batches(0)
        if len(set(np.searchsorted(fine, lengths[b[:, 0]], side="left"))) > 1
    ]
    ranges = sorted((int(x.min()), int(x.max())) for x in pooled)
    assert len(ranges) >= 3 and all(hi <= lo for (_, hi), (lo, _) in zip(ranges, ranges[1:]))
    # and the batches come in random order, not bucket by bucket
    order = [int(bucket[b[0, 0]]) for b in batches if len(set(bucket[b[:, 0]])) == 1]
    assert order != sorted(order)


def test_an_epoch_larger_than_the_dataset_draws_epoch_size_items() -> None:
    sampler = LengthBucketSampler(_lengths(200), batch_size=8, boundaries=(1000,), epoch_size=250, seed=0)
    batches = sampler.epoch_batches(0)
    assert len(batches) == 250 // 8  # one bucket: only the incomplete tail of 2 items is dropped
    drawn = Counter(int(i) for b in batches for i in b[:, 0])
    assert max(drawn.values()) == 2 and len(drawn) == 200  # permutations, repeated as needed


def test_token_budget_batches() -> None:
    lengths = _lengths()
    sampler = LengthBucketSampler(lengths, batch_size=1, max_tokens=256, boundaries=BOUNDS, multiple_of=2, seed=0)
    for b in sampler.epoch_batches(0):
        assert len(b) % 2 == 0
        assert len(b) * lengths[b[:, 0]].max() <= 256 or len(b) == 2
    sizes = Counter(len(b) for b in sampler.epoch_batches(0))
    assert sizes[16] > 0 and sizes[2] > 0  # short items come many at a time, long ones few
    three = LengthBucketSampler(lengths, batch_size=1, max_tokens=256, boundaries=BOUNDS, multiple_of=3, seed=0)
    assert all(len(b) % 3 == 0 for b in three.epoch_batches(0))  # 256 // 16 = 16 rounds down to 15


def test_weights_balance_clusters() -> None:
    # cluster "big" has 50 members, 50 others are singletons: without weights "big" is half of every epoch
    clusters = ["big"] * 50 + [f"s{i}" for i in range(50)]
    lengths = np.full(100, 10)

    def count_big(weights: np.ndarray | None) -> int:
        total = 0
        for seed in range(20):
            sampler = LengthBucketSampler(lengths, batch_size=4, boundaries=BOUNDS, weights=weights, seed=seed)
            total += sum(clusters[i] == "big" for b in sampler.epoch_batches(0) for i in b[:, 0])
        return total

    unweighted = count_big(None)
    weighted = count_big(sampling_weights(clusters, "inverse_cluster_size"))
    assert unweighted == 20 * 50
    assert weighted / (20 * 100) == pytest.approx(1 / 51, abs=0.01)  # one of 51 clusters


def test_eval_pass_covers_every_item_once_and_pads_to_the_process_count() -> None:
    lengths = _lengths(23)
    sampler = LengthBucketSampler(lengths, batch_size=6, boundaries=BOUNDS, multiple_of=2, shuffle=False)
    batches = [refs for _, refs in sampler.iterate()]
    assert all(len(b) % 2 == 0 for b in batches)
    indices = [r.index for b in batches for r in b]
    assert sorted(set(indices)) == list(range(23)) and len(indices) == 24  # one wrap-around duplicate
    assert all(r.seed == r.index for b in batches for r in b)  # fixed crops
    assert indices[:-1] == sorted(indices[:-1], key=lambda i: lengths[i])
    again = [refs for _, refs in sampler.iterate()]
    assert again == batches


def test_errors() -> None:
    with pytest.raises(ConfigError, match="divisible by processes x grad_accum = 4"):
        LengthBucketSampler([10, 20], batch_size=6, boundaries=BOUNDS, multiple_of=4)
    with pytest.raises(ConfigError, match="empty"):
        LengthBucketSampler([], batch_size=2, boundaries=BOUNDS)
    with pytest.raises(ConfigError, match=r"no complete batch .* \(data.batch_size, .*data.epoch_size"):
        LengthBucketSampler([10, 20], batch_size=4, boundaries=BOUNDS).epoch_batches(0)


def test_shard_step_partition_is_independent_of_processes_and_accumulation() -> None:
    refs = [SampleRef(i, 100 + i) for i in range(8)]
    one = shard_step(refs, rank=0, world_size=1, grad_accum=1)
    accum = shard_step(refs, rank=0, world_size=1, grad_accum=2)
    ranks = [shard_step(refs, rank=r, world_size=2, grad_accum=1)[0] for r in range(2)]
    assert one == [refs]
    assert accum == ranks == [refs[:4], refs[4:]]
    four = [shard_step(refs, rank=r, world_size=2, grad_accum=2) for r in range(2)]
    assert four[0] == [refs[0:2], refs[4:6]] and four[1] == [refs[2:4], refs[6:8]]
    with pytest.raises(ValueError, match="cannot be split into 3"):
        shard_step(refs, rank=0, world_size=3, grad_accum=1)
