"""One forward + one sample (spec §10.4 forward_and_sample) on the stand-in model."""

from __future__ import annotations

import math

import pytest
import torch

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.generation import sampling as S
from openesm3.generation.forward_sample import TrackSampling, forward_and_sample
from openesm3.generation.protein_tensor import model_inputs, stack
from tests.generation_testing import FakeESM3, masked_prompt


@pytest.fixture(scope="module")
def model() -> FakeESM3:
    return FakeESM3(seed=4)


def test_masked_positions_are_sampled_with_their_log_probabilities(model: FakeESM3) -> None:
    prompt = masked_prompt(20, seed=1, track="sequence", masked_fraction=0.5)
    cfg = TrackSampling(temperature=0.0, invalid_ids=(24, 25), topk_logprobs=3)
    out = forward_and_sample(model, prompt, {"sequence": cfg})
    sample = out.tracks["sequence"]
    masked = prompt.sequence == C.SEQUENCE_MASK
    assert torch.equal(sample.sampled, masked)
    assert torch.equal(out.protein.sequence[~masked], prompt.sequence[~masked])
    # Independent recomputation from the model's logits.
    logits = model(**model_inputs(stack([prompt])), validate=False).sequence_logits[0]
    valid = S.valid_id_mask("sequence", (24, 25))
    log_p = logits.masked_fill(~valid, -math.inf).log_softmax(-1)
    assert torch.equal(sample.tokens[masked], log_p.argmax(-1)[masked])
    expected = log_p.gather(-1, sample.tokens[:, None])[:, 0]
    assert torch.allclose(sample.logprob[masked], expected[masked])
    assert (sample.logprob[~masked] == 0).all() and (sample.prob[~masked] == 0).all()
    assert torch.allclose(sample.entropy, S.categorical_entropy(log_p))
    assert sample.topk_tokens.shape == (22, 3) and torch.equal(sample.topk_tokens[:, 0], log_p.argmax(-1))
    assert torch.allclose(sample.top_prob, log_p.exp().max(-1).values)


def test_all_positions_when_asked_and_absent_tracks_filled(model: FakeESM3) -> None:
    prompt = masked_prompt(12, seed=2, track="sequence", masked_fraction=0.3)
    prompt.structure = None
    out = forward_and_sample(
        model, prompt,
        {"sequence": TrackSampling(only_sample_masked_tokens=False), "structure": TrackSampling(temperature=0.5)},
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert out.tracks["sequence"].sampled[1:-1].all() and not out.tracks["sequence"].sampled[[0, -1]].any()
    structure = out.protein.structure
    assert (structure[1:-1] < C.STRUCTURE_N_CODES).all() and structure[0] == C.STRUCTURE_BOS
    assert out.embeddings is not None and out.embeddings.shape == (14, model.d)


def test_sasa_floats_function_and_residue_annotations(model: FakeESM3) -> None:
    prompt = masked_prompt(15, seed=3, track="sasa", masked_fraction=0.5)
    func = prompt.function.clone()
    func[3:6] = 0
    prompt.function = func
    out = forward_and_sample(model, prompt, {"sasa": TrackSampling(), "function": TrackSampling()})
    masked = prompt.sasa == 0
    masked[0] = masked[-1] = False
    assert torch.isinf(out.sasa_values[~masked]).all()
    finite = out.sasa_values[masked]
    assert (finite[torch.isfinite(finite)] >= 0).all()
    f = out.tracks["function"]
    assert f.sampled.nonzero().flatten().tolist() == [3, 4, 5]
    assert (f.tokens[3:6] >= 3).all() and torch.equal(f.tokens[6:], prompt.function[6:])
    assert f.logprob.shape == (17, 8) and (f.logprob[~f.sampled] == 0).all()
    assert out.residue_annotations is not None and out.residue_annotations.shape == (17, 16)
    tokens = forward_and_sample(model, prompt, {"sasa": TrackSampling(temperature=0.0)}, decode_sasa=False)
    assert (tokens.protein.sasa[masked] >= 3).all()


def test_errors() -> None:
    with pytest.raises(InputError, match="cannot sample"):
        forward_and_sample(FakeESM3(), masked_prompt(5, seed=0), {"coordinates": TrackSampling()})
    with pytest.raises(InputError, match="topk_logprobs"):
        TrackSampling(topk_logprobs=33)


def test_log_probs_batched_equal_alone_and_normalised(model: FakeESM3) -> None:
    from openesm3.generation.forward_sample import log_probs

    prompts = [masked_prompt(n, seed=n, track="sequence") for n in (7, 19, 12)]
    together = log_probs(model, prompts, "sequence", batch_size=2)
    for p, lp in zip(prompts, together):
        alone = log_probs(model, [p], "sequence")[0]
        assert lp.shape == (len(p), C.SEQUENCE_EMBED_DIM) and torch.equal(lp, alone)
        assert torch.allclose(lp.exp().sum(-1), torch.ones(len(p)))
        assert (lp[:, :4] == -math.inf).all()  # specials are not emittable
    f = log_probs(model, prompts[:1], "function", restrict_to_valid=False)[0]
    assert f.shape == (9, 8, 260) and torch.isfinite(f).all()
    with pytest.raises(InputError, match="cannot score"):
        log_probs(model, prompts, "coordinates")


def test_malformed_arguments_get_one_line_errors(model: FakeESM3) -> None:
    from openesm3.generation.forward_sample import log_probs

    prompt = masked_prompt(5, seed=0)
    with pytest.raises(InputError, match="list"):
        log_probs(model, prompt, "sequence")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="batch_size"):
        log_probs(model, [prompt], "sequence", batch_size=0)
    with pytest.raises(InputError, match="ProteinTensor"):
        forward_and_sample(model, [prompt], {"sequence": TrackSampling()})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="'sequence'.*TrackSampling"):
        forward_and_sample(model, prompt, {"sequence": {"temperature": 0.0}})  # type: ignore[dict-item]
    for bad in ({"temperature": math.inf}, {"temperature": math.nan}, {"topk_logprobs": True}):
        with pytest.raises(InputError):
            TrackSampling(**bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="999"):
        forward_and_sample(model, prompt, {"sequence": TrackSampling(invalid_ids=(999,))})


def test_invalid_ids_that_leave_nothing_to_sample_are_named(model: FakeESM3) -> None:
    # Before: T = 0 emitted <cls> (id 0) at every masked position with NaN log-probabilities; T > 0 failed in
    # torch.multinomial.
    prompt = masked_prompt(5, seed=0)
    for temperature in (0.0, 1.0):
        with pytest.raises(InputError, match="'sequence'.*leave no token"):
            forward_and_sample(model, prompt, {"sequence": TrackSampling(temperature=temperature,
                                                                         invalid_ids=tuple(range(4, 31)))})  # fmt: skip


def test_unframed_prompts_are_named(model: FakeESM3) -> None:
    from openesm3.generation.forward_sample import log_probs
    from openesm3.generation.protein_tensor import ProteinTensor

    unframed = ProteinTensor(sequence=torch.tensor([32, 5, 32, 6]))  # no BOS/EOS
    with pytest.raises(InputError, match="'sequence'.*position 0"):
        forward_and_sample(model, unframed, {"sequence": TrackSampling()})
    with pytest.raises(InputError, match="prompt 1: track 'sequence'.*position 0"):
        log_probs(model, [masked_prompt(5, seed=0), unframed], "sequence")


def test_a_generator_of_another_device_is_named_before_the_forward(model: FakeESM3) -> None:
    """A CPU generator for draws on an accelerator ("meta" stands in) would fail inside ``torch.multinomial``."""
    prompt = masked_prompt(8, seed=1, track="sequence", masked_fraction=0.5)
    on_meta = FakeESM3(seed=4).to("meta")
    with pytest.raises(InputError, match=r"generator is a cpu generator but the draws are made on meta"):
        forward_and_sample(on_meta, prompt, {"sequence": TrackSampling()}, generator=torch.Generator())
    with pytest.raises(InputError, match=r"device='meta' but the model is on cpu"):
        forward_and_sample(model, prompt, {"sequence": TrackSampling()}, device="meta")


def test_positions_holding_an_invalid_id_are_not_resampled(model: FakeESM3) -> None:
    # Spec §10.4 / TrackSampling: with only_sample_masked_tokens=False every position but BOS/EOS is sampled, except
    # those already holding an id of invalid_ids; the mask id itself never protects a position.
    prompt = masked_prompt(20, seed=5, track="sequence", masked_fraction=0.3)
    seq = prompt.sequence.clone()
    seq[[2, 7]] = 9
    prompt.sequence = seq
    cfg = TrackSampling(only_sample_masked_tokens=False, invalid_ids=(9, C.SEQUENCE_MASK), temperature=0.0)
    sample = forward_and_sample(model, prompt, {"sequence": cfg}).tracks["sequence"]
    expected = seq != 9
    expected[0] = expected[-1] = False
    assert not expected[[2, 7]].any() and expected.sum() >= 15
    assert torch.equal(sample.sampled, expected)
    assert (sample.tokens[~expected][1:-1] == 9).all() and (sample.tokens[expected] != 9).all()
    assert (sample.tokens[1:-1] != C.SEQUENCE_MASK).all()


def test_function_invalid_ids_exclude_ids_not_positions(model: FakeESM3) -> None:
    prompt = masked_prompt(10, seed=6, track="function", masked_fraction=0.5)
    held = prompt.function[1:-1][(prompt.function[1:-1] != 0).all(-1)]
    banned = tuple(int(i) for i in held.flatten()[:5])  # ids the prompt itself holds at given positions
    assert banned and 0 not in banned
    sample = forward_and_sample(model, prompt, {"function": TrackSampling(invalid_ids=banned)}).tracks["function"]
    masked = (prompt.function == 0).all(-1)
    masked[0] = masked[-1] = False
    assert torch.equal(sample.sampled, masked)
    assert not torch.isin(sample.tokens[masked], torch.tensor(banned)).any()


def test_function_positions_not_sampled_report_a_point_mass_on_their_tokens(model: FakeESM3) -> None:
    # As the reference (spec §10.4): entropy 0, top probability 1 and the held token first where nothing is drawn.
    prompt = masked_prompt(10, seed=7, track="function", masked_fraction=0.5)
    sample = forward_and_sample(model, prompt, {"function": TrackSampling(topk_logprobs=2)}).tracks["function"]
    kept = ~sample.sampled
    assert kept.any() and sample.sampled.any()
    assert (sample.entropy[kept] == 0).all() and (sample.top_prob[kept] == 1).all()
    assert torch.equal(sample.topk_tokens[kept][..., 0], prompt.function[kept])
    assert (sample.entropy[sample.sampled] > 0).all()


def test_function_entropy_is_summed_over_the_depths(model: FakeESM3) -> None:
    prompt = masked_prompt(10, seed=8, track="function", masked_fraction=1.0)
    sample = forward_and_sample(model, prompt, {"function": TrackSampling()}).tracks["function"]
    logits = model(**model_inputs(stack([prompt])), validate=False).function_logits[0]
    _, log_p = S.decode_function_logits(logits, torch.tensor(1.0), valid=S.valid_id_mask("function"))
    per_depth = S.categorical_entropy(log_p)
    where = sample.sampled
    assert torch.allclose(sample.entropy[where], per_depth[where].sum(-1))


def test_top_p_applies_to_the_draw_and_to_the_reported_distribution(model: FakeESM3) -> None:
    # A nucleus that holds only the top token: any temperature draws the argmax, and the reported distribution
    # (T = 1 on the masked logits) is a point mass there.
    prompt = masked_prompt(20, seed=9, track="sequence")
    greedy = forward_and_sample(model, prompt, {"sequence": TrackSampling(temperature=0.0)}).tracks["sequence"]
    cfg = TrackSampling(temperature=2.0, top_p=1e-6)
    nucleus = forward_and_sample(model, prompt, {"sequence": cfg}, generator=torch.Generator().manual_seed(0))
    sample = nucleus.tracks["sequence"]
    assert torch.equal(sample.tokens, greedy.tokens)
    where = sample.sampled
    assert (sample.top_prob[where] == 1).all() and (sample.entropy[where] == 0).all()
    assert (sample.logprob[where] == 0).all()


def test_sasa_floats_leave_out_the_invalid_bins(model: FakeESM3) -> None:
    # Only bin [0, 0.8) may be emitted: every sampled value is its midpoint 0.4. Only the open bin: +inf.
    prompt = masked_prompt(12, seed=10, track="sasa")
    masked = prompt.sasa == 0
    masked[0] = masked[-1] = False
    first_only = TrackSampling(invalid_ids=tuple(range(4, 19)))
    values = forward_and_sample(model, prompt, {"sasa": first_only}).sasa_values
    assert torch.allclose(values[masked], torch.full((int(masked.sum()),), 0.4))
    open_only = TrackSampling(invalid_ids=tuple(range(3, 18)))
    assert torch.isinf(forward_and_sample(model, prompt, {"sasa": open_only}).sasa_values[masked]).all()


def test_residue_annotations_keep_the_top_16_with_sigmoid_at_least_one_half() -> None:
    class Shifted(FakeESM3):  # residue logits around 0, so the threshold decides
        def forward(self, **kwargs):  # type: ignore[no-untyped-def]
            out = super().forward(**kwargs)
            out.residue_logits = out.residue_logits - 7.5
            return out

    model = Shifted(seed=4)
    prompt = masked_prompt(12, seed=11, track="function", masked_fraction=0.5)
    out = forward_and_sample(model, prompt, {"function": TrackSampling()})
    logits = model(**model_inputs(stack([prompt])), validate=False).residue_logits[0]
    top = logits.topk(16, dim=-1)
    expected = torch.where(top.values >= 0, top.indices, torch.zeros_like(top.indices))  # sigmoid(x) >= 0.5
    assert ((top.values > 0) & (top.values < 2.2)).any() and (top.values < 0).any()  # kept below 0.9; dropped
    assert torch.equal(out.residue_annotations, expected)
