"""Full-size function token decoder parity with the official package (random weights, fp32).

The official decoder is built at its released size, every parameter randomised, written as an official ``.pth``
and loaded through our loader. Its three heads must agree within 1e-4. Run under
``flock /tmp/openesm3-bigmem.lock`` (~6 GB).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openesm3.checkpoints.official import load_official_vqvae_network
from openesm3.models.function_decoder import FunctionDecoder

pytestmark = pytest.mark.slow

# Annotation runs (residue rows that share their tokens), so that decoded ranges are contiguous and the gap-merge
# (3) and minimum-length (5) rules both act: (run length, token row id); row id -1 = <none>, -2 = a pad row.
RUNS = ((7, 0), (2, 1), (3, -1), (6, 0), (4, 2), (1, -2), (5, 2), (9, 3), (2, 0), (4, 3), (6, 4), (3, 5))


def _randomize_(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1.0 / math.sqrt(p.shape[-1])))
            if p.ndim == 1 and (name.endswith("norm.weight") or ".0.weight" in name or ".2.weight" in name):
                p.add_(1.0)


def function_tokens() -> torch.Tensor:
    """[L + 2, 8] function tokens: BOS/EOS rows of pad, runs of 6 distinct LSH rows, <none> and pad rows."""
    g = torch.Generator().manual_seed(7)
    distinct = torch.randint(4, 260, (6, 8), generator=g)
    rows = [torch.zeros(1, 8, dtype=torch.long)]
    for length, row in RUNS:
        value = distinct[row] if row >= 0 else torch.full((8,), 3 if row == -1 else 0)
        rows.append(value.expand(length, 8))
    rows.append(torch.zeros(1, 8, dtype=torch.long))
    return torch.cat(rows)


@pytest.fixture(scope="module")
def decoders(esm_reference, tmp_path_factory) -> tuple[torch.nn.Module, FunctionDecoder]:  # noqa: ANN001
    from esm.models.function_decoder import FunctionTokenDecoder, FunctionTokenDecoderConfig

    torch.manual_seed(0)
    ref = FunctionTokenDecoder(FunctionTokenDecoderConfig()).eval()
    _randomize_(ref, seed=31)
    # Shift the output biases so that only the top ~0.3% of (residue, class) logits pass each decoding threshold:
    # annotation lists stay small and every threshold decision matters.
    tokens = function_tokens()
    with torch.no_grad():
        out = ref(tokens)
        for head, threshold in (("interpro_logits", 0.1), ("keyword_logits", 0.5)):
            cut = torch.quantile(out[head].flatten()[:: max(1, out[head].numel() // 1_000_000)].float(), 0.997)
            ref.heads[head][3].bias.add_(math.log(threshold / (1 - threshold)) - cut)
    path = tmp_path_factory.mktemp("weights") / "esm3_function_decoder_v0.pth"
    torch.save(ref.state_dict(), path)
    ours = load_official_vqvae_network(path, "function_decoder")
    assert isinstance(ours, FunctionDecoder)
    return ref, ours


def test_function_decoder_logits_match_reference(decoders) -> None:  # noqa: ANN001
    ref, ours = decoders
    tokens = function_tokens()
    with torch.no_grad():
        expected = ref(tokens)
        got = ours(tokens)
    errors = {}
    for name in ("keyword_logits", "keyword_tfidf", "interpro_logits"):
        errors[name] = err = (getattr(got, name) - expected[name]).abs().max().item()
        assert err <= 1e-4, f"{name}: max abs diff {err}"
    print(f"function decoder parity: max abs diff {errors}")  # shown with pytest -s
    # pad / <none> rows decode to the same (all-zero input) vector, LSH rows to their own
    assert torch.equal(got.interpro_logits[0], got.interpro_logits[8 + 2])
    assert (got.interpro_logits[1] - got.interpro_logits[8]).abs().max() > 1e-3


def test_decoded_annotations_match_reference(decoders, esm_reference, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """Same InterPro/keyword ranges as the official decode() and the same labelled list as the SDK's
    decode_function_tokens (keywords, then "name (IPR id)")."""
    import subprocess
    import sys

    from esm.tokenization.function_tokenizer import InterProQuantizedTokenizer
    from esm.utils.function.encode_decode import decode_function_tokens

    from openesm3.generation.function_tokens import FunctionDecoderPredictor, decode_function_annotations
    from openesm3.tokenizers.vocabulary import FunctionVocabulary
    from tests.conftest import SHARED_DATA, shared_data

    ref, ours = decoders
    vocabulary = FunctionVocabulary.load(shared_data("annotations", "esm3_function_vocab"), with_hyperplanes=False)
    # The official tokenizer needs LSH hyperplanes, absent here: seeded stand-ins (unused by decoding).
    tool = SHARED_DATA.parent / "tools" / "make_reference_standin_data.py"
    subprocess.run([sys.executable, str(tool), str(tmp_path)], check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    tokenizer = InterProQuantizedTokenizer()
    tokens = function_tokens()
    with torch.no_grad():
        expected = ref.decode(tokens, tokenizer=tokenizer)
    # The decoding rules are compared in the reference's arithmetic (every row decoded, as it does): with random
    # weights many probabilities sit within 1e-7 of each other or of a threshold, and the default deduplicated
    # path (probabilities within ~1e-7, checked below) may break such exact ties the other way.
    got = decode_function_annotations(tokens, ours, vocabulary, name_interpro=False, deduplicate=False)
    fast = FunctionDecoderPredictor(ours).predict(tokens.numpy())
    plain = FunctionDecoderPredictor(ours, deduplicate=False).predict(tokens.numpy())
    assert np.abs(fast.interpro - plain.interpro).max() < 1e-5
    assert np.abs(fast.keywords - plain.keywords).max() < 1e-5
    as_tuples = lambda anns: [(a.label, a.start, a.end) for a in anns]  # noqa: E731
    n_kw = len(expected["function_keywords"])
    assert as_tuples(got[:n_kw]) == as_tuples(expected["function_keywords"])
    assert as_tuples(got[n_kw:]) == as_tuples(expected["interpro_annotations"])
    assert n_kw >= 3 and len(expected["interpro_annotations"]) >= 3  # the comparison is not vacuous
    with torch.no_grad():
        sdk = decode_function_tokens(tokens, function_token_decoder=ref, function_tokens_tokenizer=tokenizer)
    assert as_tuples(decode_function_annotations(tokens, ours, vocabulary, deduplicate=False)) == as_tuples(sdk)
