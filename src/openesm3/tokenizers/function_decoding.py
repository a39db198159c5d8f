"""From function tokens back to annotations: the seam for the function decoder network, and the pure
post-processing around it (paper A.1.8.2, spec §8).

LSH tokens cannot be inverted directly; a trained network (the function token decoder, ``models``) predicts
per-residue InterPro and keyword probabilities from the 8 tokens of a residue. This module defines what such a
network must provide (:class:`FunctionTokenDecoderProtocol`) and everything else:

- only rows with no ``<pad>``, ``<unk>`` or ``<none>`` token are decoded;
- InterPro: keep (position, class) pairs with probability >= 0.1, class index -> id in sorted-id order;
  keywords: probability >= 0.5, index -> keyword;
- per label, hits are merged into ranges; two ranges merge when ``previous.end + 1 + gap >= next.start``
  (gap 3), then ranges shorter than 5 residues are dropped;
- positions index the full token array (BOS at 0), so they are 1-indexed residue numbers;
- InterPro results are labelled ``"{entry name} ({id})"``, as the official SDK does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.errors import InputError
from openesm3.tokenizers.tracks import as_int_array, check_token_range
from openesm3.tokenizers.vocabulary import FunctionVocabulary


@dataclass(frozen=True)
class FunctionPredictions:
    """Per-residue probabilities from a function decoder.

    Attributes:
        interpro: float ``[N, n_interpro]``, sigmoid probabilities, columns in sorted InterPro-id order.
        keywords: float ``[N, n_keywords]``, sigmoid probabilities, columns in keyword-list order.
    """

    interpro: np.ndarray
    keywords: np.ndarray


class FunctionTokenDecoderProtocol(Protocol):
    """What the function token decoder network provides: tokens ``[N, 8]`` (int64, rows that contain no
    pad/unk/none id) -> :class:`FunctionPredictions` with N rows."""

    def predict(self, tokens: np.ndarray) -> FunctionPredictions: ...


def decodable_rows(tokens: Any) -> np.ndarray:
    """Indices of the rows of ``[L, 8]`` function tokens that carry no pad (0), unk (2) or none (3) id."""
    ids = as_int_array(tokens, track="function", ndim=2)
    return np.flatnonzero(~np.isin(ids, tuple(C.FUNCTION_UNDECODABLE_IDS)).any(axis=1))


def merge_ranges(
    ranges: Iterable[tuple[int, int]], gap_merge: int | None = C.ANNOTATION_GAP_MERGE
) -> list[tuple[int, int]]:
    """Merge inclusive ``(start, end)`` ranges: sorted by start, a range joins the previous one when
    ``previous.end + 1 + gap >= start`` (``gap_merge=None``: only overlapping or touching ranges merge)."""
    gap = 0 if gap_merge is None else gap_merge
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and merged[-1][1] + 1 + gap >= start:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def merge_annotations(
    annotations: Sequence[FunctionAnnotation], gap_merge: int | None = C.ANNOTATION_GAP_MERGE
) -> list[FunctionAnnotation]:
    """Merge the ranges of each label; labels in order of first appearance, each label's ranges sorted."""
    by_label: dict[str, list[tuple[int, int]]] = {}
    for ann in annotations:
        by_label.setdefault(ann.label, []).append((ann.start, ann.end))
    return [
        FunctionAnnotation(label, start, end)
        for label, ranges in by_label.items()
        for start, end in merge_ranges(ranges, gap_merge)
    ]


def _hits_to_annotations(
    positions: np.ndarray, hits: np.ndarray, labels: Sequence[str], min_length: int | None, gap_merge: int | None
) -> list[FunctionAnnotation]:
    # Row-major (by position, then class): labels come out in order of their first hit, as in the reference.
    rows, cols = np.nonzero(hits)
    at = positions[rows].tolist()
    found = [FunctionAnnotation(labels[c], p, p) for p, c in zip(at, cols.tolist())]
    merged = merge_annotations(found, gap_merge)
    if min_length is not None:
        merged = [a for a in merged if a.length >= min_length]
    return merged


def annotations_from_predictions(
    positions: np.ndarray,
    predictions: FunctionPredictions,
    vocabulary: FunctionVocabulary,
    *,
    interpro_threshold: float = C.FUNCTION_DECODER_INTERPRO_THRESHOLD,
    keyword_threshold: float = C.FUNCTION_DECODER_KEYWORD_THRESHOLD,
    min_length: int | None = C.ANNOTATION_MIN_LENGTH,
    gap_merge: int | None = C.ANNOTATION_GAP_MERGE,
    name_interpro: bool = True,
) -> list[FunctionAnnotation]:
    """Thresholded probabilities at token-array ``positions`` ``[N]`` -> annotations: keyword annotations first,
    then InterPro ones (labelled ``"{name} ({id})"`` when ``name_interpro``), as the official SDK."""
    positions = np.asarray(positions, dtype=np.int64)
    n = positions.shape[0]
    shapes = {"interpro": (n, vocabulary.n_interpro), "keywords": (n, vocabulary.n_keywords)}
    for name, shape in shapes.items():
        got = getattr(predictions, name).shape
        if tuple(got) != shape:
            raise InputError(f"function decoder {name} probabilities have shape {tuple(got)}, expected {shape}")
    keywords = _hits_to_annotations(
        positions, predictions.keywords >= keyword_threshold, vocabulary.keywords, min_length, gap_merge
    )
    interpro = _hits_to_annotations(
        positions, predictions.interpro >= interpro_threshold, vocabulary.interpro_ids, min_length, gap_merge
    )
    if name_interpro:
        names = {e.id: e.name for e in vocabulary.entries}
        interpro = [FunctionAnnotation(f"{names[a.label]} ({a.label})", a.start, a.end) for a in interpro]
    return keywords + interpro


def decode_function_tokens(
    tokens: Any,
    decoder: FunctionTokenDecoderProtocol,
    vocabulary: FunctionVocabulary,
    *,
    interpro_threshold: float = C.FUNCTION_DECODER_INTERPRO_THRESHOLD,
    keyword_threshold: float = C.FUNCTION_DECODER_KEYWORD_THRESHOLD,
    min_length: int | None = C.ANNOTATION_MIN_LENGTH,
    gap_merge: int | None = C.ANNOTATION_GAP_MERGE,
    name_interpro: bool = True,
) -> list[FunctionAnnotation]:
    """Function tokens ``[L + 2, 8]`` (BOS row included) -> annotations, with ``decoder`` supplying the network."""
    ids = as_int_array(tokens, track="function", ndim=2)
    if ids.shape[1] != C.FUNCTION_DEPTH:
        raise InputError(f"function tokens must have {C.FUNCTION_DEPTH} columns, got shape {tuple(ids.shape)}")
    check_token_range(ids, C.FUNCTION_VOCAB_SIZE, track="function")
    rows = decodable_rows(ids)
    if rows.size:
        predictions = decoder.predict(ids[rows])
    else:
        predictions = FunctionPredictions(
            np.zeros((0, vocabulary.n_interpro), np.float32), np.zeros((0, vocabulary.n_keywords), np.float32)
        )
    return annotations_from_predictions(
        rows,
        predictions,
        vocabulary,
        interpro_threshold=interpro_threshold,
        keyword_threshold=keyword_threshold,
        min_length=min_length,
        gap_merge=gap_merge,
        name_interpro=name_interpro,
    )
