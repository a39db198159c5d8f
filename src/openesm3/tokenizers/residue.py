"""Residue-annotation track: up to 16 label ids per residue (paper A.1.8.3, spec §3.4).

Ids: 0 ``<pad>``, 1 ``<motif>``, 2 ``<unk>``, 3 ``<none>``, then 4.. = the vocabulary's labels (1,474 officially).
Each residue gets a ``[16]`` row of zeros into which the set of its label ids is written (in Python set
iteration order, truncated to 16, as the official tokenizer); an unannotated residue of an annotated protein
is ``<none>`` in its first slot; no annotation at all -> all ``<pad>``; BOS/EOS rows are 0.

**Official quirk (spec §3.4, §13.16).** Through the official SDK, user-supplied residue annotations are silently
dropped: the track is always all zeros. Our tokenizer does tokenize them. Two lookups are offered:

- ``lookup="clean"`` (default): a label may be given as a ``label_clean`` value or as a raw ``label`` of the CSV;
  both map to the ``label_clean``'s id. Anything else raises.
- ``lookup="reference"``: the official tokenizer's own lookup, for parity: the label is mapped through the
  CSV's ``label -> label_clean`` column, so a ``label_clean`` that never appears as a ``label`` becomes
  ``<unk>`` (2); labels that are neither raise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.errors import TokenizationError
from openesm3.tokenizers.function_decoding import merge_annotations
from openesm3.tokenizers.tracks import as_int_array, check_token_range, finish
from openesm3.tokenizers.vocabulary import ResidueAnnotationVocabulary

ResidueLookup = Literal["clean", "reference"]


class ResidueAnnotationTokenizer:
    """Residue annotations <-> residue-annotation ids ``[L + 2, 16]`` (spec §3.4)."""

    max_per_residue = C.RESIDUE_MAX_PER_POSITION

    def __init__(self, vocabulary: ResidueAnnotationVocabulary) -> None:
        self.vocabulary = vocabulary

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str] | None = None) -> ResidueAnnotationTokenizer:
        return cls(ResidueAnnotationVocabulary.load(path))

    def accepts(self, label: str, lookup: ResidueLookup = "clean") -> bool:
        """Whether the label belongs on this track. The reference routes only ``label_clean`` values here."""
        if label in self.vocabulary.label_index:
            return True
        return lookup == "clean" and label in self.vocabulary.label_to_clean

    def label_id(self, label: str, lookup: ResidueLookup = "clean") -> int | None:
        """Token id of a label, or ``None`` if the label is not on this track (see module docstring)."""
        vocab = self.vocabulary
        if lookup == "reference":
            if label not in vocab.label_index:
                return None
            # Reproduced quirk: the official tokenizer looks the (clean) label up in the raw-label column.
            clean = vocab.label_to_clean.get(label)
            return vocab.label_index.get(clean, C.RESIDUE_UNK) if clean is not None else C.RESIDUE_UNK
        if label in vocab.label_index:
            return vocab.label_index[label]
        clean = vocab.label_to_clean.get(label)
        return vocab.label_index[clean] if clean is not None else None

    def encode(
        self,
        annotations: Sequence[FunctionAnnotation],
        length: int,
        *,
        lookup: ResidueLookup = "clean",
        add_special_tokens: bool = True,
        as_tensor: bool = False,
    ) -> Any:
        """Annotations -> int64 ``[length + 2, 16]`` (``[length, 16]`` without special tokens)."""
        if length < 0:
            raise TokenizationError(f"protein length must be >= 0, got {length}")
        tokens = np.full((length, self.max_per_residue), C.RESIDUE_PAD, dtype=np.int64)
        annotations = list(annotations)
        if annotations:
            per_residue: list[set[int]] = [set() for _ in range(length)]
            for n, ann in enumerate(annotations):
                ann.check(length, index=n)
                token_id = self.label_id(ann.label, lookup)
                if token_id is None:
                    raise TokenizationError(
                        f"residue annotation {n}: unknown label {ann.label!r} "
                        f"(not in the residue-annotation vocabulary {self.vocabulary.source})"
                    )
                for i in range(ann.start - 1, ann.end):
                    per_residue[i].add(token_id)
            for i, ids in enumerate(per_residue):
                if ids:
                    # Set iteration order, truncated to 16, as the official tokenizer.
                    row = list(ids)[: self.max_per_residue]
                    tokens[i, : len(row)] = row
                else:
                    tokens[i, 0] = C.RESIDUE_NONE
        if add_special_tokens:
            pad = np.zeros((1, self.max_per_residue), dtype=np.int64)
            tokens = np.concatenate((pad, tokens, pad))
        return finish(tokens, as_tensor)

    def decode(
        self,
        tokens: Any,
        *,
        min_length: int | None = C.ANNOTATION_MIN_LENGTH,
        gap_merge: int | None = C.ANNOTATION_GAP_MERGE,
    ) -> list[FunctionAnnotation]:
        """Ids ``[L + 2, 16]`` -> annotations (spec §8, residue-annotation decoding).

        Every id that is a label (not a special, not ``<none>``) at array index ``i`` is a hit at position
        ``i``; since BOS is index 0 these are 1-indexed residue numbers. Hits of one label are merged into
        ranges (gap merge 3), and ranges shorter than ``min_length`` (5) are dropped.
        """
        ids = as_int_array(tokens, track="residue annotation", ndim=2)
        check_token_range(ids, self.vocabulary.vocab_size, track="residue annotation")
        hits: list[FunctionAnnotation] = []
        for slot in range(ids.shape[1]):
            for pos in np.flatnonzero(ids[:, slot] >= C.RESIDUE_FIRST_LABEL).tolist():
                label = self.vocabulary.labels[int(ids[pos, slot]) - C.RESIDUE_FIRST_LABEL]
                hits.append(FunctionAnnotation(label, pos, pos))
        merged = merge_annotations(hits, gap_merge=gap_merge)
        if min_length is not None:
            merged = [a for a in merged if a.length >= min_length]
        return merged
