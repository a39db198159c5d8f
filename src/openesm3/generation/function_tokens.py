"""Function tokens -> InterPro and keyword annotations with the function token decoder (paper A.1.8.2.1; spec §8).

The post-processing (which rows are decoded, thresholds 0.1 / 0.5, class index -> id, gap merge 3, minimum
length 5, ``"{name} ({IPR id})"`` labels, positions = 1-indexed residue numbers) lives in
:mod:`openesm3.tokenizers.function_decoding`; this module plugs the network into it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.models.function_decoder import FunctionDecoder
from openesm3.tokenizers.function_decoding import FunctionPredictions, decode_function_tokens
from openesm3.tokenizers.vocabulary import FunctionVocabulary
from openesm3.utils.checks import check_batch_size


class FunctionDecoderPredictor:
    """The function decoder as the decoding seam's predictor: token rows [N, 8] -> sigmoid probabilities.

    Args:
        model: the function token decoder (on any device; inputs follow it).
        batch_size: residues per forward pass (each head has up to 58,641 outputs per residue).
        deduplicate: decode each distinct token row once (real tracks repeat rows over annotation spans); the
            probabilities equal the plain path's to ~1e-7, so only exact near-ties can decide differently.
            False runs every row, in the reference's arithmetic.
    """

    def __init__(self, model: FunctionDecoder, batch_size: int = 64, *, deduplicate: bool = True) -> None:
        check_batch_size(batch_size)
        self.model = model
        self.batch_size = batch_size
        self.deduplicate = deduplicate

    def predict(self, tokens: np.ndarray) -> FunctionPredictions:
        if self.deduplicate and tokens.shape[0] > 1:
            distinct, inverse = np.unique(tokens, axis=0, return_inverse=True)
            if distinct.shape[0] < tokens.shape[0]:
                found = self._predict(distinct)
                inverse = inverse.reshape(-1)
                return FunctionPredictions(interpro=found.interpro[inverse], keywords=found.keywords[inverse])
        return self._predict(tokens)

    def _predict(self, tokens: np.ndarray) -> FunctionPredictions:
        device = self.model.embedding.weight.device
        interpro, keywords = [], []
        with torch.no_grad():
            for start in range(0, tokens.shape[0], self.batch_size):
                rows = torch.as_tensor(tokens[start : start + self.batch_size], dtype=torch.long, device=device)
                out = self.model(rows, deduplicate=self.deduplicate)
                # sigmoid in fp32 on the logits, as the reference thresholds them
                interpro.append(torch.sigmoid(out.interpro_logits.float()).cpu().numpy())
                keywords.append(torch.sigmoid(out.keyword_logits.float()).cpu().numpy())
        cfg = self.model.config
        return FunctionPredictions(
            interpro=np.concatenate(interpro) if interpro else np.zeros((0, cfg.n_interpro), np.float32),
            keywords=np.concatenate(keywords) if keywords else np.zeros((0, cfg.n_keywords), np.float32),
        )


def decode_function_annotations(
    tokens: Any,
    decoder: FunctionDecoder,
    vocabulary: FunctionVocabulary,
    *,
    interpro_threshold: float = C.FUNCTION_DECODER_INTERPRO_THRESHOLD,
    keyword_threshold: float = C.FUNCTION_DECODER_KEYWORD_THRESHOLD,
    min_length: int | None = C.ANNOTATION_MIN_LENGTH,
    gap_merge: int | None = C.ANNOTATION_GAP_MERGE,
    name_interpro: bool = True,
    batch_size: int = 64,
    deduplicate: bool = True,
) -> list[FunctionAnnotation]:
    """Annotations of function tokens [L + 2, 8] (BOS/EOS rows included; positions are residue numbers).

    Keyword annotations come first, then InterPro ones labelled ``"{name} ({id})"``, as the official SDK.
    ``deduplicate``: see :class:`FunctionDecoderPredictor`.
    """
    return decode_function_tokens(
        tokens,
        FunctionDecoderPredictor(decoder, batch_size, deduplicate=deduplicate),
        vocabulary,
        interpro_threshold=interpro_threshold,
        keyword_threshold=keyword_threshold,
        min_length=min_length,
        gap_merge=gap_merge,
        name_interpro=name_interpro,
    )
