"""The sampling seam: valid ids, top-p, entropy, temperature, function and residue decoding, SASA floats, position
choice (spec §10.4, §13.11)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical

from openesm3 import constants as C
from openesm3.generation import sampling as S


def test_valid_ids_per_track() -> None:
    assert S.valid_id_mask("sequence").nonzero().flatten().tolist() == list(range(4, 31))  # X B U Z O . - too
    assert S.valid_id_mask("structure").all() and S.valid_id_mask("structure").numel() == 4096
    assert S.valid_id_mask("secondary_structure").nonzero().flatten().tolist() == list(range(3, 11))
    assert S.valid_id_mask("sasa").nonzero().flatten().tolist() == list(range(3, 19))
    assert S.valid_id_mask("function").nonzero().flatten().tolist() == list(range(3, 260))
    assert S.valid_id_mask("function", restrict=False).all()
    seq = S.valid_id_mask("sequence", (24, 25, 26, 27, 28, 29, 30, 99))  # ids beyond the width are ignored
    assert seq.nonzero().flatten().tolist() == list(range(4, 24))


def test_top_p_keeps_the_nucleus_and_always_the_top_token() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.9, 0.05, 0.03, 0.02]]))
    out = S.top_p_filter(logits, torch.tensor([0.85, 0.5]))
    # Row 0: cumulative 0.5, 0.8, 0.95, 1.0 -> keep the first two. Row 1: 0.9 > 0.5, but the first is kept.
    assert torch.equal(out[0, :2], logits[0, :2]) and (out[0, 2:] == S.FLOAT32_MIN).all()
    assert out[1, 0] == logits[1, 0] and (out[1, 1:] == S.FLOAT32_MIN).all()
    untouched = S.top_p_filter(logits, torch.tensor([1.0, 1.0]))
    assert torch.equal(untouched, logits)
    assert torch.equal(S.top_p_filter(logits, torch.tensor([0.85, 1.0]))[1], logits[1])  # per-row


def test_top_p_boundaries_keep_a_cumulative_mass_equal_to_top_p_and_leave_top_p_1_untouched() -> None:
    # Dyadic probabilities: the cumulative masses 0.5, 0.75, 0.875, 1.0 are exact, so cum == top_p is decided by
    # the comparison itself (kept: cum <= top_p).
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.125]]))
    out = S.top_p_filter(logits, torch.tensor([0.75]))
    assert torch.equal(out[0, :2], logits[0, :2]) and (out[0, 2:] == S.FLOAT32_MIN).all()
    # top_p == 1 disables the filter even where the float32 cumulative sum of a wide row ends above 1.
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(50, 4096, generator=g) * 3
    cum = wide.sort(-1, descending=True).values.softmax(-1).cumsum(-1)
    assert (cum[:, -1] > 1).any()  # the case the rule exists for is present
    assert torch.equal(S.top_p_filter(wide, torch.tensor(1.0)), wide)


def test_invalid_ids_before_or_after_top_p() -> None:
    # The most likely id (0) is invalid. Reference order: the nucleus (top_p = 0.5) is {0}; removing 0 then leaves
    # every valid id at float32-min and argmax falls on the lowest valid index. Ours: the nucleus of the valid ids.
    logits = torch.log(torch.tensor([[0.6, 0.1, 0.3]]))
    valid = torch.tensor([False, True, True])
    ours = S.mask_logits(logits, valid, torch.tensor([0.5]))
    ref = S.mask_logits(logits, valid, torch.tensor([0.5]), invalid_first=False)
    assert ours.argmax(-1).item() == 2
    assert ref.argmax(-1).item() == 1
    assert ours[0, 0] == -math.inf and ref[0, 0] == -math.inf


def test_entropy_matches_torch_categorical_bitwise() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 13, 31, generator=g) * 4
    logits[..., 5] = -math.inf
    logits[0, 0, 7:] = S.FLOAT32_MIN
    log_p = logits.log_softmax(-1)
    expected = Categorical(logits=log_p).entropy()
    assert torch.equal(S.categorical_entropy(log_p), expected)


def test_greedy_is_argmax_and_sampling_follows_softmax() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, generator=g)
    assert torch.equal(S.sample_logits(logits, torch.tensor(0.0), noise=torch.ones(3, 5)), logits.argmax(-1))
    # Exponential race at T = 0.7: empirical frequencies within 3.5 sigma of softmax(logits / 0.7).
    row = torch.tensor([1.0, 0.0, -1.0, 0.5, -math.inf])
    n = 20000
    many = row.expand(n, 5)
    noise = torch.empty(n, 5).exponential_(generator=g)
    ids = S.sample_logits(many, torch.tensor(0.7), noise=noise)
    freq = torch.bincount(ids, minlength=5).double() / n
    p = (row / 0.7).softmax(-1).double()
    assert freq[4] == 0  # an id at -inf is never drawn
    assert ((freq - p).abs() <= 3.5 * (p * (1 - p) / n).sqrt() + 1e-12).all(), (freq, p)
    # Per-row temperature: row 0 greedy, row 1 sampled.
    two = torch.stack([row, row])
    picks = S.sample_logits(two, torch.tensor([[0.0], [5.0]]).squeeze(-1), noise=torch.ones(2, 5) * 0.5)
    assert picks[0].item() == 0


def test_multinomial_path_uses_the_given_generator() -> None:
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(2))
    a = S.sample_logits(logits, torch.tensor(1.3), generator=torch.Generator().manual_seed(7))
    probs = (logits / torch.full((4,), 1.3)[:, None]).softmax(-1)
    b = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(7)).squeeze(1)
    assert torch.equal(a, b)


def _function_logits(none_logit: float, best: int) -> torch.Tensor:
    logits = torch.zeros(1, 1, C.FUNCTION_DEPTH, C.FUNCTION_VOCAB_SIZE)
    logits[..., C.FUNCTION_NONE] = none_logit
    logits[..., best] = 8.0
    return logits


def test_function_none_rule() -> None:
    # p(<none>) is tiny: <none> is excluded and each depth takes its argmax (here id 77 everywhere).
    ids, log_p = S.decode_function_logits(_function_logits(-5.0, 77), torch.tensor(1.0))
    assert ids.flatten().tolist() == [77] * 8
    assert (log_p[..., C.FUNCTION_NONE] == -math.inf).all()
    # p(<none>) above 0.05 on average: all 8 depths become <none>, even though 77 is the argmax.
    ids, log_p = S.decode_function_logits(_function_logits(6.0, 77), torch.tensor(1.0))
    assert ids.flatten().tolist() == [C.FUNCTION_NONE] * 8
    assert torch.isfinite(log_p[..., C.FUNCTION_NONE]).all()
    # Temperature moves the decision: at T = 0.25 the same logits give p(<none>) < 0.05.
    ids, _ = S.decode_function_logits(_function_logits(6.0, 77), torch.tensor(0.25))
    assert ids.flatten().tolist() == [77] * 8
    # T = 0 is the limit: <none> wins only where it is an argmax at some depth.
    logits = _function_logits(6.0, 77)
    assert S.decode_function_logits(logits, torch.tensor(0.0))[0].flatten().tolist() == [77] * 8
    logits[0, 0, 3, C.FUNCTION_NONE] = 9.0
    assert S.decode_function_logits(logits, torch.tensor(0.0))[0].flatten().tolist() == [C.FUNCTION_NONE] * 8


def test_function_none_rule_averages_over_the_depths() -> None:
    # p(<none>) ~ 0.3 at one depth and ~0 at the seven others: the mean (~0.04) stays under 0.05, so no <none>,
    # although one depth alone is far above it.
    logits = _function_logits(-20.0, 77)
    logits[0, 0, 0, C.FUNCTION_NONE] = 8.0 + math.log(0.3 / 0.7)
    ids, log_p = S.decode_function_logits(logits, torch.tensor(1.0))
    p_none = torch.softmax(logits[0, 0], -1)[:, C.FUNCTION_NONE]
    assert p_none[0].item() > 0.25 and p_none.mean().item() < C.FUNCTION_P_NONE_THRESHOLD
    assert ids.flatten().tolist() == [77] * 8


def test_function_valid_ids_exclude_specials_only_when_asked() -> None:
    logits = _function_logits(-5.0, 1)  # <motif> is the argmax
    assert S.decode_function_logits(logits, torch.tensor(1.0))[0].flatten().tolist() == [1] * 8  # reference
    valid = S.valid_id_mask("function", (200,))
    ids, _ = S.decode_function_logits(logits, torch.tensor(1.0), valid=valid)
    assert (ids != 1).all() and (ids != 200).all() and (ids >= 4).all()


def test_residue_annotations_top16_sigmoid_threshold() -> None:
    logits = torch.full((2, C.RESIDUE_VOCAB_SIZE), -10.0)
    logits[0, [10, 20, 30]] = torch.tensor([3.0, 0.5, -0.1])  # sigmoid: 0.95, 0.62, 0.475
    ids, log_probs = S.residue_annotations_from_logits(logits)
    assert ids.shape == (2, 16)
    assert ids[0, :3].tolist() == [10, 20, 0] and (ids[0, 3:] == 0).all() and (ids[1] == 0).all()
    assert log_probs[0, 0].item() == pytest.approx(math.log(1 / (1 + math.exp(-3.0))), rel=1e-6)
    # A sigmoid exactly at the threshold (logit 0 -> 0.5) is kept: the rule is p >= threshold.
    assert C.RESIDUE_ANNOTATION_THRESHOLD == 0.5
    logits[1, 40] = 0.0
    assert S.residue_annotations_from_logits(logits)[0][1, 0].item() == 40


def test_sasa_floats_expected_value_and_open_bin() -> None:
    mids = S.sasa_midpoints()
    assert mids[0].item() == pytest.approx(0.4) and mids[-1].item() == pytest.approx((125.4 + 151.4) / 2)
    logits = torch.full((3, C.SASA_VOCAB_SIZE), -1e4)
    logits[0, 3] = 0.0  # all mass on bin [0, 0.8)
    logits[1, [5, 6]] = 0.0  # half on [4.0, 9.6), half on [9.6, 16.4)
    logits[2, 18] = 0.0  # the open top bin is the argmax -> +inf
    logits[:, 0] = 100.0  # a special id: never counted
    values = S.sasa_values_from_logits(logits)
    assert values[0].item() == pytest.approx(0.4)
    assert values[1].item() == pytest.approx(((4.0 + 9.6) / 2 + (9.6 + 16.4) / 2) / 2, rel=1e-6)
    assert values[2].item() == math.inf
    # Mass on the open bin that is not the argmax counts as 0 (no renormalisation over the finite bins).
    logits = torch.full((1, C.SASA_VOCAB_SIZE), -1e4)
    logits[0, 3], logits[0, 18] = math.log(0.6), math.log(0.4)
    assert S.sasa_values_from_logits(logits).item() == pytest.approx(0.6 * 0.4, rel=1e-5)


def test_select_positions_per_row_counts_and_ties() -> None:
    scores = torch.tensor([[0.5, 0.1, 0.1, 0.9, 0.0], [3.0, 2.0, 1.0, 0.0, -1.0]])
    candidates = torch.tensor([[True, True, True, True, False], [True, True, False, True, True]])
    chosen = S.select_positions(scores, candidates, torch.tensor([2, 10]))
    assert chosen[0].tolist() == [False, True, True, False, False]  # lowest two; the non-candidate 0.0 never
    assert chosen[1].tolist() == [True, True, False, True, True]  # count above the candidates: all of them
    ties = S.select_positions(torch.zeros(1, 6), torch.ones(1, 6, dtype=torch.bool), torch.tensor([3]))
    assert ties[0].tolist() == [True, True, True, False, False, False]  # ties: lowest index first
    none = S.select_positions(scores, candidates, torch.tensor([0, 0]))
    assert not none.any()


def test_zero_temperature_is_argmax_whatever_the_noise_or_the_generator() -> None:
    # Noise that favours id 3 (E tiny there) and a generator: at T = 0 neither may move the pick off the argmax.
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 2.0]])
    noise = torch.ones(2, 4)
    noise[:, 3] = 1e-6
    assert S.sample_logits(logits, torch.tensor(0.0), noise=noise).tolist() == [0, 1]
    for seed in range(5):
        picks = S.sample_logits(logits, torch.tensor(0.0), generator=torch.Generator().manual_seed(seed))
        assert picks.tolist() == [0, 1]
    # Per row: the greedy row keeps its argmax, the sampled row follows the race (id 3 wins by a factor ~1e6).
    picks = S.sample_logits(logits, torch.tensor([0.0, 1.0]), noise=noise)
    assert picks.tolist() == [0, 3]


def test_a_zero_exponential_draw_never_picks_an_id_of_probability_zero() -> None:
    # E = 0 at an id masked to -inf: p / E = 0 / 0 = NaN, which argmax would prefer over every real candidate.
    logits = torch.tensor([[0.0, 1.0, -math.inf, 0.5]])
    noise = torch.ones(1, 4)
    noise[0, 2] = 0.0
    assert S.sample_logits(logits, torch.tensor(1.0), noise=noise).item() == 1  # the argmax of p / 1
    noise[0, 0] = 0.0  # E = 0 at an id that may be drawn: it wins the race
    assert S.sample_logits(logits, torch.tensor(1.0), noise=noise).item() == 0


def test_function_none_rule_at_exactly_the_threshold_keeps_the_annotations() -> None:
    # The rule is p_none > 0.05 (spec §10.4), so a mean exactly at 0.05 is no <none>. Six depths put p(<none>) one
    # float32 step below 0.05 and two one step above; their float32 mean is exactly float32(0.05).
    a_low, a_high = -2.944438934326172, -2.9444386959075928  # logits of <none> against 0.0 for id 77
    logits = torch.full((1, 1, C.FUNCTION_DEPTH, C.FUNCTION_VOCAB_SIZE), -math.inf)
    logits[..., 77] = 0.0
    logits[0, 0, :6, C.FUNCTION_NONE] = a_low
    logits[0, 0, 6:, C.FUNCTION_NONE] = a_high
    p_none = logits.log_softmax(-1)[..., C.FUNCTION_NONE].exp().mean(-1)
    assert p_none.item() == torch.tensor(C.FUNCTION_P_NONE_THRESHOLD, dtype=torch.float32).item()  # the case is hit
    ids, _ = S.decode_function_logits(logits, torch.tensor(1.0))
    assert ids.flatten().tolist() == [77] * 8
    # One float32 step more on a depth and the mean is above: every depth becomes <none>.
    logits[0, 0, 5, C.FUNCTION_NONE] = a_high
    ids, _ = S.decode_function_logits(logits, torch.tensor(1.0))
    assert ids.flatten().tolist() == [C.FUNCTION_NONE] * 8


def test_function_ids_excluded_by_valid_keep_probability_zero_after_top_p() -> None:
    # As mask_logits does for the other tracks: an id that may not be emitted is at -inf in the returned log-probs
    # (its probability exactly 0), also where the nucleus filter has written float32-min over the other ids.
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, C.FUNCTION_DEPTH, C.FUNCTION_VOCAB_SIZE, generator=g)
    valid = S.valid_id_mask("function", (100, 101))
    for temperature in (1.0, 2.0):
        _, log_p = S.decode_function_logits(logits, torch.tensor(temperature), top_p=torch.tensor(0.5), valid=valid)
        assert (log_p[..., ~valid] == -math.inf).all()
        assert torch.isfinite(log_p[..., valid].max(-1).values).all()
