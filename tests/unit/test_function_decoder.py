"""Function token decoder network (tiny config): bit unpacking by hand, independence of residues, shapes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from openesm3 import constants as C
from openesm3.config import FUNCTION_DECODER_TINY
from openesm3.layers.block import set_block_dropout
from openesm3.models.function_decoder import FunctionDecoder, unpack_lsh_bits


def randomized_function_decoder(seed: int = 0) -> FunctionDecoder:
    torch.manual_seed(seed)
    model = FunctionDecoder(FUNCTION_DECODER_TINY).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1 / math.sqrt(p.shape[-1])))
    return model


def test_unpack_lsh_bits_by_hand() -> None:
    # depth d holds <lsh:k_d>, token 4 + k_d; bit b of k_d sits at index b * 8 + d (bit-major), embedding row 2j + bit
    ks = [0b00000001, 0b10000000, 0b11111111, 0, 0b00000110, 3, 128, 77]
    index = unpack_lsh_bits(torch.tensor([[4 + k for k in ks]]))[0]
    for d, k in enumerate(ks):
        for b in range(8):
            j = b * 8 + d
            assert index[j] == 2 * j + ((k >> b) & 1), (d, b)
    assert index.shape == (64,)


def test_more_bits_per_token_than_a_token_holds_are_refused() -> None:
    """An <lsh:k> token holds 8 bits (k < 256); bits_per_token had no upper bound, and 64 shifted past int64 in
    unpack_lsh_bits (garbage embedding indices, silently). The config and the function both refuse it."""
    assert C.FUNCTION_MAX_BITS_PER_TOKEN == 8 == C.FUNCTION_BITS_PER_TOKEN
    for bits in (9, 64):
        with pytest.raises(ValueError, match=rf"^FunctionDecoderConfig\.bits_per_token must be <= 8 .*, got {bits}$"):
            dataclasses.replace(FUNCTION_DECODER_TINY, bits_per_token=bits)
        with pytest.raises(ValueError, match=f"bits_per_token must be 1 to 8, got {bits}"):
            unpack_lsh_bits(torch.full((1, 8), 100), bits)
    with pytest.raises(ValueError, match="bits_per_token must be 1 to 8, got 0"):  # no bits: no embedding indices
        unpack_lsh_bits(torch.full((1, 8), 100), 0)
    assert dataclasses.replace(FUNCTION_DECODER_TINY, bits_per_token=4).n_bits == 32  # fewer bits stay allowed
    assert unpack_lsh_bits(torch.full((1, 8), 4 + 0b1010), 4).shape == (1, 32)


@pytest.mark.parametrize("special", [0, 1, 2, 3])
def test_any_special_token_zeroes_the_row(special: int) -> None:
    row = torch.full((1, 8), 100)
    row[0, 5] = special
    assert torch.equal(unpack_lsh_bits(row), torch.zeros(1, 64, dtype=torch.long))


def test_residues_are_decoded_independently_and_shapes() -> None:
    model = randomized_function_decoder()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(4, 260, (2, 7, 8), generator=g)
    tokens[1, 2, 0] = 3
    with torch.no_grad():
        out = model(tokens)
        alone = model(tokens[1, 4:5])
        other = tokens.clone()
        other[1, 4, 3] = 4 + ((other[1, 4, 3] - 4) ^ 1)  # flip one bit of one residue
        flipped = model(other)
    cfg = FUNCTION_DECODER_TINY
    assert out.keyword_logits.shape == (2, 7, cfg.n_keywords)
    assert out.keyword_tfidf.shape == (2, 7, cfg.n_keywords)
    assert out.interpro_logits.shape == (2, 7, cfg.n_interpro)
    assert torch.allclose(out.interpro_logits[1, 4], alone.interpro_logits[0], atol=1e-5)
    diff = (flipped.interpro_logits - out.interpro_logits).abs().amax(-1)
    assert diff[1, 4] > 1e-4  # a single bit matters ...
    diff[1, 4] = 0
    assert diff.max() < 1e-5  # ... and only for its own residue


@pytest.mark.parametrize("deduplicate", [True, False])
@pytest.mark.parametrize("lead", [(0,), (2, 0)])
def test_no_residues_decode_to_empty_outputs(lead: tuple[int, ...], deduplicate: bool) -> None:
    with torch.no_grad():
        out = randomized_function_decoder()(torch.zeros(*lead, 8, dtype=torch.long), deduplicate=deduplicate)
    cfg = FUNCTION_DECODER_TINY
    assert out.keyword_logits.shape == (*lead, cfg.n_keywords)
    assert out.keyword_tfidf.shape == (*lead, cfg.n_keywords)
    assert out.interpro_logits.shape == (*lead, cfg.n_interpro)


def test_training_dropout_draws_per_residue_even_for_repeated_rows() -> None:
    # Deduplication would decode a repeated row once, so every copy would share one dropout mask.
    model = randomized_function_decoder().train()
    set_block_dropout(model, 0.5)
    tokens = torch.randint(4, 260, (1, 8), generator=torch.Generator().manual_seed(3)).repeat(6, 1)
    torch.manual_seed(0)
    out = model(tokens)
    assert (out.interpro_logits - out.interpro_logits[:1]).abs().amax(-1)[1:].min() > 1e-4
    model.eval()  # no dropout: the copies agree again
    with torch.no_grad():
        out = model(tokens)
    assert (out.interpro_logits - out.interpro_logits[:1]).abs().max() == 0


def test_wrong_depth() -> None:
    with pytest.raises(ValueError, match="function tokens"):
        randomized_function_decoder()(torch.zeros(3, 7, dtype=torch.long))


def test_decode_function_annotations_plumbing() -> None:
    import numpy as np

    from openesm3.generation.function_tokens import decode_function_annotations
    from openesm3.tokenizers.vocabulary import FunctionVocabulary, InterProEntry

    cfg = FUNCTION_DECODER_TINY
    model = randomized_function_decoder()
    with torch.no_grad():  # outputs = biases only: every decodable row predicts the same classes
        for head in (model.interpro_head, model.keyword_head):
            head.proj_out.weight.zero_()
            head.proj_out.bias.fill_(-5.0)
        model.interpro_head.proj_out.bias[3] = -2.0  # sigmoid 0.12 >= 0.1
        model.interpro_head.proj_out.bias[4] = -2.3  # sigmoid 0.09 < 0.1
        model.keyword_head.proj_out.bias[7] = 0.1  # sigmoid 0.52 >= 0.5
    entries = tuple(InterProEntry(f"IPR{i:06d}", "Domain", f"entry {i}") for i in range(cfg.n_interpro))
    vocab = FunctionVocabulary(
        keywords=tuple(f"word {i}" for i in range(cfg.n_keywords)), idf=np.ones(cfg.n_keywords),
        entries=entries, interpro_keywords={}, hyperplanes=None,
    )  # fmt: skip
    lsh = torch.randint(4, 260, (1, 8), generator=torch.Generator().manual_seed(3))
    rows = [torch.zeros(1, 8, dtype=torch.long)] + [lsh] * 6 + [torch.full((1, 8), 3)] * 3 + [lsh] * 3
    rows += [torch.zeros(1, 8, dtype=torch.long)] + [lsh] * 4 + [torch.zeros(1, 8, dtype=torch.long)]
    tokens = torch.cat(rows)  # BOS, 6 lsh (1-6), 3 <none> (7-9), 3 lsh (10-12), pad (13), 4 lsh (14-17), EOS
    got = decode_function_annotations(tokens, model, vocab)
    # gap 7-9 (3 positions) merges, gap 13 merges; one range 1..17 per firing label; keywords first
    assert [(a.label, a.start, a.end) for a in got] == [("word 7", 1, 17), ("entry 3 (IPR000003)", 1, 17)]
    short = decode_function_annotations(tokens[:5], model, vocab)  # positions 1-4 only: below the minimum length 5
    assert short == []
    raw = decode_function_annotations(tokens, model, vocab, name_interpro=False, gap_merge=None, min_length=None)
    assert ("IPR000003", 1, 6) in [(a.label, a.start, a.end) for a in raw]


def test_deduplicated_rows_equal_the_plain_path() -> None:
    """Runs of identical rows and rows with special tokens (as in real function tracks) are decoded once each; the
    outputs equal decoding every row, in every position."""
    model = randomized_function_decoder()
    g = torch.Generator().manual_seed(2)
    distinct = torch.randint(4, 260, (3, 8), generator=g)
    rows = distinct[torch.tensor([0, 0, 0, 1, 1, 2, 0, 2, 2, 1])]
    rows[7] = 3  # <none>: unpacks like every other row with a special token
    rows[8, 5] = 0  # pad
    tokens = rows.view(2, 5, 8)
    with torch.no_grad():
        fast = model(tokens)
        plain = model(tokens, deduplicate=False)
    for name in ("keyword_logits", "keyword_tfidf", "interpro_logits"):
        a, b = getattr(fast, name), getattr(plain, name)
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-5, name
    assert not torch.equal(fast.interpro_logits[0, 0], fast.interpro_logits[0, 3])  # distinct rows stay distinct


@pytest.mark.parametrize("batch_size", [0, -3, True])
def test_function_decoder_predictor_refuses_a_bad_batch_size(batch_size) -> None:
    # batch_size=0 failed only at predict time with range()'s 'arg 3 must not be zero'.
    from openesm3.errors import InputError  # noqa: PLC0415
    from openesm3.generation.function_tokens import FunctionDecoderPredictor  # noqa: PLC0415

    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        FunctionDecoderPredictor(FunctionDecoder(FUNCTION_DECODER_TINY).eval(), batch_size)
