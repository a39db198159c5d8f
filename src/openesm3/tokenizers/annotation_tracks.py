"""Routing a protein's annotations to the function and residue-annotation tracks (spec §3.3, §3.4).

A label goes to the function track if it names a known InterPro id or is a keyword, to the residue-annotation
track if it is a residue-annotation label, to both if both hold; a label that fits neither raises. Unlike the
official SDK (which silently drops the residue-annotation part, spec §13.16), both tracks are tokenized.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.errors import TokenizationError
from openesm3.tokenizers.function import FunctionTokenizer
from openesm3.tokenizers.residue import ResidueAnnotationTokenizer, ResidueLookup
from openesm3.tokenizers.tracks import finish


def split_annotations(
    annotations: Sequence[FunctionAnnotation],
    function: FunctionTokenizer,
    residue: ResidueAnnotationTokenizer | None,
    *,
    residue_lookup: ResidueLookup = "clean",
) -> tuple[list[FunctionAnnotation], list[FunctionAnnotation]]:
    """(function-track annotations, residue-track annotations), order kept; unknown labels raise."""
    to_function: list[FunctionAnnotation] = []
    to_residue: list[FunctionAnnotation] = []
    for n, ann in enumerate(annotations):
        on_function = function.accepts(ann.label)
        on_residue = residue is not None and residue.accepts(ann.label, residue_lookup)
        if on_function:
            to_function.append(ann)
        if on_residue:
            to_residue.append(ann)
        if not (on_function or on_residue):
            error = function.unknown_label_error(ann.label, n)
            if residue is None:
                error = TokenizationError(f"{error} (no residue-annotation vocabulary was given)")
            raise error
    return to_function, to_residue


def encode_annotation_tracks(
    annotations: Sequence[FunctionAnnotation],
    length: int,
    function: FunctionTokenizer,
    residue: ResidueAnnotationTokenizer | None = None,
    *,
    residue_lookup: ResidueLookup = "clean",
    add_special_tokens: bool = True,
    as_tensor: bool = False,
) -> tuple[Any, Any]:
    """Function ids ``[L + 2, 8]`` and residue-annotation ids ``[L + 2, 16]`` of a protein's annotations.

    Without a residue tokenizer the residue track is all ``<pad>`` and residue labels are unknown labels.
    """
    for n, ann in enumerate(annotations):
        ann.check(length, index=n)
    to_function, to_residue = split_annotations(annotations, function, residue, residue_lookup=residue_lookup)
    function_ids = function.encode(to_function, length, add_special_tokens=add_special_tokens, as_tensor=as_tensor)
    if residue is None:
        n_rows = length + 2 if add_special_tokens else length
        residue_ids = finish(np.zeros((n_rows, C.RESIDUE_MAX_PER_POSITION), dtype=np.int64), as_tensor)
    else:
        residue_ids = residue.encode(
            to_residue, length, lookup=residue_lookup, add_special_tokens=add_special_tokens, as_tensor=as_tensor
        )
    return function_ids, residue_ids
