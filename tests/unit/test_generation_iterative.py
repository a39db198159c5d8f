"""Iterative decoding on a small deterministic stand-in model (tests/generation_testing.py): schedule counts,
batched == alone, determinism, the sequential plain path, resets, caps, errors, and no host syncs in the loop."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from openesm3 import constants as C
from openesm3.config import GenerationConfig
from openesm3.errors import InputError
from openesm3.generation.iterative import count_to_generate, generate
from openesm3.generation.protein_tensor import ProteinTensor
from openesm3.generation.schedules import commit_counts
from tests.generation_testing import FakeESM3, masked_prompt

TRACKS = ("sequence", "structure", "secondary_structure", "sasa", "function")


@pytest.fixture(scope="module")
def model() -> FakeESM3:
    return FakeESM3(seed=0).eval()


def _mixed_prompts() -> tuple[list[ProteinTensor], list[GenerationConfig]]:
    """Seven prompts of different lengths, all tracks as targets, some with coordinates, mixed strategies."""
    specs = [
        (21, "sequence", "random", 1.0, 1.0), (12, "structure", "entropy", 0.7, 0.9),
        (17, "secondary_structure", "max_logit", 1.0, 1.0), (26, "sasa", "random", 0.5, 0.8),
        (14, "function", "entropy", 1.0, 1.0), (9, "sequence", "entropy", 0.0, 1.0),
        (15, "structure", "random", 1.2, 1.0),
    ]  # fmt: skip
    prompts, configs = [], []
    for i, (n, track, strategy, temp, top_p) in enumerate(specs):
        prompts.append(masked_prompt(n, seed=10 + i, track=track, masked_fraction=0.7, with_coordinates=i % 2 == 1))
        configs.append(
            GenerationConfig(track=track, num_steps=3 + i // 2, strategy=strategy, temperature=temp, top_p=top_p,
                             condition_on_coordinates_only=i != 3, seed=1000 + i)
        )  # fmt: skip
    return prompts, configs


def _target(result, config) -> torch.Tensor:
    return getattr(result.unwrap(), config.track)


def test_batched_equals_alone_and_batch_size_does_not_matter(model: FakeESM3) -> None:
    prompts, configs = _mixed_prompts()
    together = generate(model, prompts, configs, batch_size=None)
    for bs in (1, 3):
        other = generate(model, prompts, configs, batch_size=bs)
        for a, b, c in zip(together, other, configs):
            assert torch.equal(_target(a, c), _target(b, c))
    for i, (p, c) in enumerate(zip(prompts, configs)):
        alone = generate(model, [p], c)[0]
        assert torch.equal(_target(alone, c), _target(together[i], c)), c.track
        assert alone.num_steps == together[i].num_steps


def test_every_mask_is_filled_with_a_valid_token_and_only_masks_change(model: FakeESM3) -> None:
    prompts, configs = _mixed_prompts()
    for p, c, r in zip(prompts, configs, generate(model, prompts, configs, seed=5)):
        before, after = getattr(p, c.track), _target(r, c)
        masked = before == (C.SEQUENCE_MASK if c.track == "sequence" else C.STRUCTURE_MASK if c.track == "structure"
                            else 0)  # fmt: skip
        if c.track == "function":
            masked = masked.all(-1)
        masked[0] = masked[-1] = False
        if c.track == "structure" and p.coordinates is not None and c.condition_on_coordinates_only:
            masked[1:-1] = True  # the structure tokens were dropped for the coordinates: all regenerated
        assert torch.equal(after[~masked], before[~masked])  # BOS/EOS and given positions untouched
        filled = after[masked]
        if c.track == "sequence":
            assert ((filled >= 4) & (filled <= 30)).all()
        elif c.track == "structure":
            assert (filled < C.STRUCTURE_N_CODES).all()
        elif c.track == "secondary_structure":
            assert (filled >= 3).all()
        elif c.track == "sasa":
            assert (filled >= 3).all()
        else:
            assert (filled >= 3).all()  # ours never emits <pad>/<motif>/<unk> on function


def test_same_seed_same_output_and_different_seed_differs(model: FakeESM3) -> None:
    prompts = [masked_prompt(40, seed=s, track="sequence") for s in range(3)]
    config = GenerationConfig(track="sequence", num_steps=10)
    a = generate(model, prompts, config, seed=7)
    b = generate(model, prompts, config, seed=7)
    c = generate(model, prompts, config, seed=8)
    assert all(torch.equal(x.unwrap().sequence, y.unwrap().sequence) for x, y in zip(a, b))
    assert any(not torch.equal(x.unwrap().sequence, y.unwrap().sequence) for x, y in zip(a, c))
    # A generator gives the base seed when no seed is passed.
    d = generate(model, prompts, config, generator=torch.Generator().manual_seed(3))
    e = generate(model, prompts, config, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x.unwrap().sequence, y.unwrap().sequence) for x, y in zip(d, e))


def test_prompts_with_their_own_seeds_leave_the_global_rng_alone(model: FakeESM3) -> None:
    """With a seed in every config, generate still drew an unused base seed from torch's global RNG: every task
    (fold, inverse_fold, predict_function, design: one call per batch) moved the caller's random state, so the
    numbers a script drew afterwards depended on how many batches the task had run."""
    prompts = [masked_prompt(20, seed=s, track="sequence") for s in range(3)]
    configs = [GenerationConfig(track="sequence", num_steps=4, seed=s) for s in range(3)]
    torch.manual_seed(0)
    state = torch.get_rng_state()
    generate(model, prompts, configs)
    assert torch.equal(torch.get_rng_state(), state)
    generate(model, prompts, GenerationConfig(track="sequence", num_steps=4))  # no seed: documented to draw one
    assert not torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("length", [50, 128])
def test_positions_committed_per_step_follow_the_schedule(length: int) -> None:
    model = FakeESM3(seed=1)
    prompt = ProteinTensor.empty(length)
    generate(model, [prompt], GenerationConfig(track="sequence", num_steps=20, strategy="entropy"), seed=0)
    masked = [int((seen["sequence"] == C.SEQUENCE_MASK).sum()) for seen in model.seen]
    masked.append(0)
    committed = [a - b for a, b in zip(masked, masked[1:])]
    assert committed == commit_counts("cosine", 20, length)


def test_sequential_plain_path_equals_batched_when_greedy(model: FakeESM3) -> None:
    prompts, configs = _mixed_prompts()
    greedy = [c.replace(temperature=0.0, temperature_annealing=False, strategy="entropy") for c in configs]
    greedy[2] = greedy[2].replace(strategy="max_logit")
    batched = generate(model, prompts, greedy, batch_size=3)
    plain = generate(model, prompts, greedy, sequential=True, batch_size=3)
    for a, b, c in zip(batched, plain, greedy):
        assert torch.equal(_target(a, c), _target(b, c)), c.track
    # With the reference's semantics (padding attended): the batched loop keeps the batch whole and agrees too
    # (except the reference's function entropy, where all candidates tie and only the sequential path follows
    # topk's tie order: that prompt uses max_logit here).
    greedy[4] = greedy[4].replace(strategy="max_logit")
    batched = generate(model, prompts, greedy, reference_compat=True, sequential=False, batch_size=None)
    plain = generate(model, prompts, greedy, reference_compat=True, batch_size=None)
    for a, b, c in zip(batched, plain, greedy):
        assert torch.equal(_target(a, c), _target(b, c)), c.track


def test_attended_padding_changes_batched_results_only_in_reference_mode(model: FakeESM3) -> None:
    prompts = [masked_prompt(10, seed=1, track="sequence"), masked_prompt(60, seed=2, track="sequence")]
    config = GenerationConfig(track="sequence", num_steps=10, temperature=0.0, strategy="entropy")
    alone = generate(model, prompts[:1], config, reference_compat=True)[0].unwrap().sequence
    together = generate(model, prompts, config, reference_compat=True, batch_size=None)[0].unwrap().sequence
    assert not torch.equal(alone, together)  # the reference's batching quirk, reproduced
    ours_alone = generate(model, prompts[:1], config)[0].unwrap().sequence
    ours_together = generate(model, prompts, config, batch_size=None)[0].unwrap().sequence
    assert torch.equal(ours_alone, ours_together)


def test_sequential_stream_is_the_shared_generator(model: FakeESM3) -> None:
    prompts = [masked_prompt(20, seed=s, track="structure") for s in range(2)]
    config = GenerationConfig(track="structure", num_steps=5)
    a = generate(model, prompts, config, sequential=True, seed=11)
    b = generate(model, prompts, config, sequential=True, generator=torch.Generator().manual_seed(11))
    assert all(torch.equal(x.unwrap().structure, y.unwrap().structure) for x, y in zip(a, b))


def test_other_tracks_are_reset_and_structure_is_dropped_for_coordinates(model: FakeESM3) -> None:
    prompt = masked_prompt(16, seed=3, track="sequence", with_coordinates=True)
    model.seen.clear()
    result = generate(model, [prompt], GenerationConfig(track="sequence", num_steps=4), seed=1)[0].unwrap()
    # The model saw an all-mask structure track (condition_on_coordinates_only) ...
    assert (model.seen[0]["structure"][0, 1:-1] == C.STRUCTURE_MASK).all()
    # ... but the result keeps the prompt's structure tokens, coordinates and every other track.
    for name in ("structure", "secondary_structure", "sasa", "function"):
        assert torch.equal(getattr(result, name), getattr(prompt, name))
    assert torch.equal(result.coordinates.nan_to_num(7.0), prompt.coordinates.nan_to_num(7.0))
    assert result.residue_annotations is None
    model.seen.clear()
    keep = GenerationConfig(track="sequence", num_steps=4, condition_on_coordinates_only=False)
    generate(model, [prompt], keep, seed=1)
    assert torch.equal(model.seen[0]["structure"][0], prompt.structure)


def test_absent_target_track_is_generated_whole(model: FakeESM3) -> None:
    prompt = masked_prompt(14, seed=4, track="sequence", masked_fraction=0.0)
    prompt.secondary_structure = None
    result = generate(model, [prompt], GenerationConfig(track="secondary_structure", num_steps=5), seed=0)[0]
    ss8 = result.unwrap().secondary_structure
    assert ss8 is not None and (ss8[1:-1] >= 3).all() and ss8[0] == 0 and ss8[-1] == 0


def test_count_to_generate_rules() -> None:
    seq = torch.tensor([0, 5, C.SEQUENCE_MASK, 31, 3, C.SEQUENCE_MASK, 2])  # <cls> A <mask> | <unk> <mask> <eos>
    prompt = ProteinTensor(sequence=seq)
    assert count_to_generate(prompt, "structure") == (3, 5)  # non-special sequence ids (masks count); 5 filled
    assert count_to_generate(prompt, "sequence") == (2, 2)
    assert count_to_generate(ProteinTensor(coordinates=torch.zeros(6, 37, 3)), "sequence") == (4, 4)
    func = torch.zeros(5, 8, dtype=torch.long)
    func[2, 3] = 7  # one non-zero depth: not masked
    assert count_to_generate(ProteinTensor(function=func), "function") == (2, 2)


def test_num_steps_is_capped_to_the_masked_positions(model: FakeESM3) -> None:
    prompt = masked_prompt(30, seed=5, track="sequence", masked_fraction=0.0)
    seq = prompt.sequence.clone()
    seq[seq == C.SEQUENCE_MASK] = 5
    seq[[3, 9, 17]] = C.SEQUENCE_MASK
    prompt.sequence = seq
    model.calls.clear()
    result = generate(model, [prompt], GenerationConfig(track="sequence", num_steps=20), seed=0)[0]
    assert result.num_steps == 3 and len(model.calls) == 3
    assert (result.unwrap().sequence != C.SEQUENCE_MASK).all()


def test_finished_prompts_leave_the_batch(model: FakeESM3) -> None:
    short = masked_prompt(40, seed=6, track="sequence")
    long = masked_prompt(20, seed=7, track="sequence")
    configs = [GenerationConfig(track="sequence", num_steps=2), GenerationConfig(track="sequence", num_steps=5)]
    model.calls.clear()
    generate(model, [short, long], configs, seed=0)
    assert model.calls == [(2, 42), (2, 42), (1, 22), (1, 22), (1, 22)]


def test_invalid_ids_and_top_p(model: FakeESM3) -> None:
    prompt = masked_prompt(50, seed=8, track="sequence")
    allowed = (5, 9)  # A and E only
    invalid = tuple(i for i in range(4, 31) if i not in allowed)
    config = GenerationConfig(track="sequence", num_steps=5, invalid_ids=invalid, temperature=2.0)
    seq = generate(model, [prompt], config, seed=0)[0].unwrap().sequence
    assert set(seq[prompt.sequence == C.SEQUENCE_MASK].tolist()) <= set(allowed)
    # A tiny nucleus keeps only the top token: sampling at any temperature equals argmax (one step: every position
    # is committed from the same logits, whatever the order).
    greedy = GenerationConfig(track="sequence", num_steps=1, temperature=0.0)
    nucleus = greedy.replace(temperature=1.5, top_p=1e-6)
    a = generate(model, [prompt], greedy)[0].unwrap().sequence
    b = generate(model, [prompt], nucleus, seed=3)[0].unwrap().sequence
    assert torch.equal(a, b)


def test_bad_prompts_are_reported_without_stopping_the_others(model: FakeESM3) -> None:
    good = masked_prompt(12, seed=9, track="sequence")
    no_masks = masked_prompt(12, seed=9, track="sequence", masked_fraction=0.0)
    no_masks.sequence = torch.where(no_masks.sequence == C.SEQUENCE_MASK, torch.tensor(5), no_masks.sequence)
    bad_token = masked_prompt(12, seed=9, track="sequence")
    bad_token.secondary_structure = bad_token.secondary_structure.clone()
    bad_token.secondary_structure[4] = 99
    config = GenerationConfig(track="sequence", num_steps=4)
    no_tokens = GenerationConfig(track="sequence", invalid_ids=tuple(range(4, 31)))
    results = generate(model, [good, no_masks, bad_token, "not a prompt", good], [config] * 4 + [no_tokens])  # type: ignore[list-item]
    assert results[0].ok and results[0].unwrap().sequence is not None
    assert "prompt 1" in str(results[1].error) and "no masked position" in str(results[1].error)
    assert "prompt 2" in str(results[2].error) and "'secondary_structure'" in str(results[2].error)
    assert "99" in str(results[2].error)
    assert "prompt 3" in str(results[3].error) and "ProteinTensor" in str(results[3].error)
    assert "prompt 4" in str(results[4].error) and "leave no token" in str(results[4].error)
    with pytest.raises(InputError, match="prompt 1"):
        results[1].unwrap()


def test_a_sequence_of_only_special_tokens_fails_like_the_reference(model: FakeESM3) -> None:
    # Structure absent, sequence all <unk>: nothing counts as "to sample" (total 0, no cap), step 0 fills every
    # position, step 1 finds nothing masked -> the reference's error 500. With one step it succeeds.
    prompt = ProteinTensor(sequence=torch.tensor([0, 3, 3, 3, 2]))
    config = GenerationConfig(track="structure", num_steps=4)
    for kwargs in ({}, {"sequential": True}):
        result = generate(model, [prompt, masked_prompt(6, seed=1)], [config, config.replace(track="sequence")],
                          **kwargs)  # fmt: skip
        assert not result[0].ok and "no masked position left" in str(result[0].error)
        assert result[1].ok
        assert generate(model, [prompt], config.replace(num_steps=1), **kwargs)[0].ok


def test_config_validation() -> None:
    for track in ("coordinates", "residue_annotations"):
        with pytest.raises(InputError, match="cannot be generated"):
            GenerationConfig(track=track)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown"):
        GenerationConfig(track="seq")  # type: ignore[arg-type]
    for bad in ({"num_steps": 0}, {"schedule": "cubic"}, {"strategy": "greedy"}, {"temperature": -1.0},
                {"top_p": 0.0}, {"invalid_ids": (-1,)}, {"seed": -3}):  # fmt: skip
        with pytest.raises(InputError):
            GenerationConfig(track="sequence", **bad)  # type: ignore[arg-type]
    c = GenerationConfig(track="sequence", invalid_ids=[7, 5, 7])  # type: ignore[arg-type]
    assert c.invalid_ids == (5, 7)
    e = GenerationConfig.entropy_unmasking("structure")
    assert (e.strategy, e.schedule, e.temperature_annealing) == ("entropy", "cosine", False)
    with pytest.raises(InputError, match="configs"):
        generate(FakeESM3(), [ProteinTensor.empty(3)], [GenerationConfig(track="sequence")] * 2)


class _SyncCounter(TorchDispatchMode):
    """Counts, from the first forward pass on and outside the model, the aten ops that on a GPU would make the host
    wait for the device (item/bool/nonzero/masked_select/...) or copy host data to it (torch.tensor -> lift_fresh)."""

    SYNC_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "lift_fresh", "unique")

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.armed = False
        self.inside_model = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = func.__name__.split(".")[0]
        if self.armed and not self.inside_model and name in self.SYNC_OPS:
            self.ops.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_no_host_sync_inside_the_step_loop() -> None:
    model = FakeESM3(seed=2)
    prompts, configs = _mixed_prompts()  # several tracks and strategies, top-p, greedy and sampled rows
    counter = _SyncCounter()
    original = model.forward

    def forward(**kwargs):  # noqa: ANN202 - the stand-in model itself may sync; only the loop is audited
        counter.armed = counter.inside_model = True
        try:
            return original(**kwargs)
        finally:
            counter.inside_model = False

    model.forward = forward  # type: ignore[method-assign]
    model.calls.clear()
    with counter:
        results = generate(model, prompts, configs, batch_size=None, seed=0)
    assert all(r.ok for r in results)
    assert len({b for b, _ in model.calls}) > 2  # prompts finished at different steps: the batch shrank
    assert counter.ops == []
    # The auditor does see a sync when there is one.
    with counter:
        torch.ones(3).sum().item()
    assert counter.ops == ["_local_scalar_dense.default"]


def test_running_out_of_masked_positions_fails_in_any_batch(model: FakeESM3) -> None:
    # SS8 absent and a sequence of <unk> only: step 0 fills every position, step 1 finds nothing masked. On the
    # SS8 track <pad> (0) is also the mask id, so in a batch with a longer prompt the padding of this row looked
    # masked to the sequential loop and the prompt "succeeded" there while it fails alone (quirk #7, which the
    # docs say is not reproduced).
    prompt = ProteinTensor(sequence=torch.tensor([0, 3, 3, 3, 2]))
    longer = masked_prompt(9, seed=1, track="secondary_structure")
    config = GenerationConfig(track="secondary_structure", num_steps=4)
    for kwargs in ({}, {"sequential": True}, {"reference_compat": True}):
        alone = generate(model, [prompt], config, seed=0, **kwargs)[0]
        together = generate(model, [prompt, longer], config, seed=0, **kwargs)
        assert not alone.ok and not together[0].ok and together[1].ok, kwargs
        assert "no masked position left" in str(together[0].error)


def test_a_generator_of_another_device_than_the_draws_is_named_up_front(model: FakeESM3) -> None:
    """Sequential decoding draws on the decoding device from ``generator`` itself; torch refuses a CPU generator for
    CUDA tensors deep inside ``torch.multinomial``. The mismatch is an InputError before any forward pass ("meta"
    stands in for an accelerator: a CPU generator cannot draw there either)."""
    prompts = [masked_prompt(10, seed=0, track="sequence")]
    config = GenerationConfig(track="sequence", num_steps=2)
    calls = len(model.calls)
    on_meta = FakeESM3(seed=0).to("meta")
    with pytest.raises(InputError, match=r"generator is a cpu generator but the draws are made on meta"):
        generate(on_meta, prompts, config, sequential=True, generator=torch.Generator())
    with pytest.raises(InputError, match="generator must be a torch.Generator"):
        generate(model, prompts, config, generator=7)  # type: ignore[arg-type]
    assert len(model.calls) == calls


def test_the_base_seed_is_drawn_on_the_generators_device(model: FakeESM3, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batched decoding only takes its base seed from ``generator``: that draw must be made on the generator's device
    (torch refuses a CUDA generator for a CPU tensor), so ``generator=torch.Generator("cuda")`` works on a GPU."""
    real, seen = torch.randint, []

    def spy(*args, **kwargs):
        seen.append((kwargs.get("generator"), kwargs.get("device")))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "randint", spy)
    generator = torch.Generator().manual_seed(3)
    generate(
        model, [masked_prompt(10, seed=0, track="sequence")], GenerationConfig(track="sequence"), generator=generator
    )
    assert (generator, generator.device) in seen, seen


def test_a_device_other_than_the_models_is_named_up_front(model: FakeESM3) -> None:
    """``device="cuda"`` with the model still on the CPU made the prompts on the GPU and failed in the first forward
    pass (tensors on two devices); it is an InputError naming both ("meta" stands in for the GPU)."""
    prompts = [masked_prompt(10, seed=0, track="sequence")]
    results_before = len(model.calls)
    with pytest.raises(
        InputError, match=r"device='meta' but the model is on cpu: move it first \(model.to\('meta'\)\)"
    ):
        generate(model, prompts, GenerationConfig(track="sequence", num_steps=2), device="meta")
    assert len(model.calls) == results_before
    assert generate(model, prompts, GenerationConfig(track="sequence", num_steps=2), device="cpu")[0].error is None


class _FixedLogits(torch.nn.Module):
    """Every position gets the same sequence logits, whatever the input: one decoding step then draws every masked
    position independently from softmax(logits / T), so the tokens of a long prompt are a large i.i.d. sample."""

    probs = {5: 0.4, 6: 0.3, 7: 0.2, 8: 0.1}

    def __init__(self) -> None:
        super().__init__()
        row = torch.full((C.SEQUENCE_EMBED_DIM,), -1e4)
        for i, p in self.probs.items():
            row[i] = math.log(p)
        self.register_buffer("row", row)

    def forward(self, *, sequence_tokens: torch.Tensor, **_: object) -> SimpleNamespace:
        b, length = sequence_tokens.shape
        return SimpleNamespace(sequence_logits=self.row.expand(b, length, -1).clone())


def test_batched_sampling_follows_each_rows_temperature_and_top_p() -> None:
    """Rows of one batch with T = 1, T = 0 and a nucleus: each must get its own rule, not the batch's extreme."""
    n = 3000
    prompts = [masked_prompt(n, seed=20 + i, track="sequence", other_tracks=False) for i in range(3)]
    base = GenerationConfig(track="sequence", num_steps=1, temperature=1.0, temperature_annealing=False)
    configs = [base.replace(seed=1), base.replace(temperature=0.0, seed=2), base.replace(top_p=0.75, seed=3)]
    results = generate(_FixedLogits(), prompts, configs, batch_size=None)
    sampled, greedy, nucleus = (r.unwrap().sequence[1:-1] for r in results)
    # T = 1: frequencies within 4.5 sigma of the softmax (0.4, 0.3, 0.2, 0.1 on ids 5..8).
    freq = torch.bincount(sampled, minlength=9)[5:9].double() / n
    p = torch.tensor(list(_FixedLogits.probs.values()), dtype=torch.float64)
    assert ((freq - p).abs() <= 4.5 * (p * (1 - p) / n).sqrt()).all(), freq
    assert (greedy == 5).all()  # T = 0: the argmax everywhere
    # top_p = 0.75: the nucleus is {5, 6} (cumulative 0.4, 0.7, 0.9), renormalised to 4/7, 3/7.
    assert set(nucleus.tolist()) == {5, 6}
    share = (nucleus == 5).double().mean().item()
    assert abs(share - 4 / 7) <= 4.5 * math.sqrt(4 / 7 * 3 / 7 / n)


def test_a_greedy_prompt_in_random_order_gets_the_same_tokens_beside_a_sampled_one(model: FakeESM3) -> None:
    # The random order is drawn from the prompt's own stream; a greedy row must not spend that stream on noise it
    # never uses, or its result would depend on whether a sampled prompt shares its batch.
    greedy = GenerationConfig(track="sequence", num_steps=6, temperature=0.0, temperature_annealing=False, seed=4)
    sampled = greedy.replace(temperature=1.0, seed=5)
    prompts = [masked_prompt(30, seed=31, track="sequence"), masked_prompt(30, seed=32, track="sequence")]
    alone = generate(model, prompts[:1], greedy)[0].unwrap().sequence
    together = generate(model, prompts, [greedy, sampled], batch_size=None)[0].unwrap().sequence
    assert torch.equal(alone, together)


def test_each_prompt_is_decoded_once_in_batches_of_batch_size(model: FakeESM3) -> None:
    prompts = [masked_prompt(10 + 5 * i, seed=40 + i, track="sequence") for i in range(5)]
    config = GenerationConfig(track="sequence", num_steps=3, seed=0)
    model.calls.clear()
    results = generate(model, prompts, config, batch_size=2)
    assert sum(r.num_steps for r in results) == 15
    assert [b for b, _ in model.calls] == [2, 2, 2, 2, 2, 2, 1, 1, 1]  # 5 prompts: batches of 2, 2 and 1


def test_reference_batches_keep_the_input_order(model: FakeESM3) -> None:
    # With attended padding the batch a prompt lands in changes its result, so reference mode batches prompts in
    # the order given (the reference's); only masked padding allows sorting by length.
    lengths = (30, 10, 20)
    prompts = [masked_prompt(n, seed=50 + n, track="sequence") for n in lengths]
    config = GenerationConfig(track="sequence", num_steps=2, seed=0)
    model.calls.clear()
    generate(model, prompts, config, batch_size=2, reference_compat=True, sequential=False)
    assert model.calls == [(2, 32), (2, 32), (1, 22), (1, 22)]
    model.calls.clear()
    generate(model, prompts, config, batch_size=2)
    assert model.calls == [(2, 22), (2, 22), (1, 32), (1, 32)]  # ours: by length


def test_reference_function_entropy_ties_commit_the_lowest_positions_when_batched() -> None:
    # The reference sums the function entropy over positions too (docs/generation.md, difference 4), so every
    # candidate ties; the batched loop then commits the lowest masked positions first.
    seen: list[torch.Tensor] = []

    class Recording(FakeESM3):
        def forward(self, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(kwargs["function_tokens"][0].clone())
            return super().forward(**kwargs)

    def left_to_right(reference_compat: bool) -> bool:
        seen.clear()
        generate(model, [prompt], config, reference_compat=reference_compat, sequential=False)
        masked = [(t[1:-1] == 0).all(-1) for t in seen]
        steps = []
        for before, after in zip(masked, masked[1:]):
            committed, still = (before & ~after).nonzero().flatten(), after.nonzero().flatten()
            steps.append(len(still) == 0 or bool(committed.max() < still.min()))
        return all(steps)

    model = Recording(seed=0).eval()
    prompt = masked_prompt(12, seed=60, track="function", masked_fraction=1.0)
    # No annealing: near T = 0 every position's (tempered) function distribution is one-hot and ties anyway.
    config = GenerationConfig(track="function", num_steps=4, strategy="entropy", temperature_annealing=False, seed=0)
    assert left_to_right(reference_compat=True)
    assert not left_to_right(reference_compat=False)  # ours: by entropy, which this prompt does not order so


def test_unseeded_prompts_of_one_call_draw_from_different_streams(model: FakeESM3) -> None:
    # Asking for several designs from the same prompt in one call must not return one design several times.
    prompt = masked_prompt(30, seed=70, track="sequence")
    config = GenerationConfig(track="sequence", num_steps=5)
    a, b = (r.unwrap().sequence for r in generate(model, [prompt, prompt], config, seed=0))
    assert not torch.equal(a, b)


def test_an_unseeded_prompt_stays_random_when_another_prompt_has_a_seed(model: FakeESM3) -> None:
    # The base seed may only be skipped when every prompt has its own seed.
    prompts = [masked_prompt(30, seed=71, track="sequence"), masked_prompt(30, seed=72, track="sequence")]
    configs = [GenerationConfig(track="sequence", num_steps=5, seed=9), GenerationConfig(track="sequence", num_steps=5)]
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        runs.append(generate(model, prompts, configs))
    assert torch.equal(runs[0][0].unwrap().sequence, runs[1][0].unwrap().sequence)  # seeded: the same
    assert not torch.equal(runs[0][1].unwrap().sequence, runs[1][1].unwrap().sequence)  # unseeded: not
