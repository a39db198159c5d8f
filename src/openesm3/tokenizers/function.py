"""Function-keyword track: annotations -> per-residue TF-IDF -> 8 LSH tokens per residue (paper A.1.8.1, spec §3.3).

For a protein of L residues and annotations ``FunctionAnnotation(label, start, end)`` (1-indexed, inclusive):

1. Each label is an InterPro id (a regex search for ``IPR\\d+`` finds a known id, so ``"Kringle (IPR000001)"``
   works) or else a function keyword (exact match in the keyword list). Anything else raises.
2. Each residue collects the set of keywords and the set of InterPro ids covering it.
3. Its vector: the sublinear TF-IDF of its plain keywords ((1 + ln count) * idf, L2-normalised), combined by
   **element-wise maximum** with the TF-IDF of each InterPro id's keyword list (repeats count).
4. LSH: for depth d and bit b, bit = [h[d, b] . v >= 0]; token_d = 4 + sum_b bit_b 2^b (bit 0 least significant).

Specials: no annotations at all -> every residue ``<pad>`` (0); an unannotated residue of an annotated protein
-> ``<none>`` (3) x 8; a residue whose vector is all zero -> ``<unk>`` (2) x 8; BOS/EOS rows are 0.

Speed: vectors stay sparse (a few hundred non-zeros out of 58,641); residues are grouped by their label set
(np.unique over a coverage bitmap) and each distinct set is hashed once with a dense ``[64, nnz]`` product.

Deliberate difference: InterPro ids whose keyword list is empty (IPR006563 in the official CSV) contribute a
zero vector (so alone they give ``<unk>``); the official tokenizer crashes on them with a ``TypeError``.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.errors import TokenizationError, VocabularyError
from openesm3.tokenizers.tracks import finish
from openesm3.tokenizers.vocabulary import FunctionVocabulary

_INTERPRO_RE = re.compile(C.INTERPRO_ID_PATTERN)
_NAMED_ID_RE = re.compile(r"\(([^()]+)\)$")  # "{name} ({id})", the decoder's label of an entry
_BIT_WEIGHTS = 1 << np.arange(C.FUNCTION_BITS_PER_TOKEN, dtype=np.int64)  # bit b has weight 2^b

SparseVector = tuple[np.ndarray, np.ndarray]  # (sorted int64 keyword indices, float64 values)


class FunctionTokenizer:
    """Function annotations <-> function-track ids ``[L + 2, 8]`` (spec §3.3)."""

    depth = C.FUNCTION_DEPTH
    pad_id = C.FUNCTION_PAD
    none_id = C.FUNCTION_NONE
    unk_id = C.FUNCTION_UNK

    def __init__(self, vocabulary: FunctionVocabulary) -> None:
        if vocabulary.hyperplanes is None:
            raise VocabularyError(f"{vocabulary.source}: the function tokenizer needs the LSH hyperplanes file")
        self.vocabulary = vocabulary
        # [64, n_keywords] rows in (depth, bit) order, as stored (float32 or float64); columns are cast to float64
        # when used, so h . v is computed in float64 like the reference.
        self._planes = vocabulary.hyperplanes.reshape(-1, vocabulary.n_keywords)
        self._interpro_vector = lru_cache(maxsize=None)(self._interpro_vector_uncached)

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str] | None = None) -> FunctionTokenizer:
        """Load the vocabulary (explicit path > $OPENESM3_VOCAB_DIR > installed esm package) and build."""
        return cls(FunctionVocabulary.load(path))

    # ---------------------------------------------------------------------------------------------------- labels
    def interpro_id(self, label: str) -> str | None:
        """The known InterPro id a label refers to, or ``None``.

        Official rule: the first regex match of ``IPR\\d+`` in the label, if it is a known id. Added for
        vocabularies built with other term ids (``build.py``): a label equal to a known id, or ending in one in
        parentheses, as the function decoder labels its predictions (``"Zinc finger (MY:0002)"``).
        """
        match = _INTERPRO_RE.search(label)
        if match:
            return match.group() if match.group() in self.vocabulary.interpro_index else None
        if label in self.vocabulary.interpro_index:
            return label
        named = _NAMED_ID_RE.search(label)
        return named.group(1) if named and named.group(1) in self.vocabulary.interpro_index else None

    def is_keyword(self, label: str) -> bool:
        return label in self.vocabulary.keyword_index

    def accepts(self, label: str) -> bool:
        """Whether the label belongs on the function track (an InterPro id or a keyword)."""
        return self.interpro_id(label) is not None or self.is_keyword(label)

    def unknown_label_error(self, label: str, index: int | None = None) -> TokenizationError:
        where = f"function annotation {index}" if index is not None else "function annotation"
        hint = ""
        match = _INTERPRO_RE.search(label)
        if match:
            hint = f": {match.group()} is not one of the {self.vocabulary.n_interpro} InterPro ids of the vocabulary"
        elif label.lower() in self.vocabulary.keyword_index:
            hint = f": keywords are lowercase, did you mean {label.lower()!r}?"
        return TokenizationError(
            f"{where}: unknown label {label!r}{hint} (expected an InterPro id or a keyword of {self.vocabulary.source})"
        )

    # ---------------------------------------------------------------------------------------------------- TF-IDF
    def tfidf(self, terms: Iterable[str]) -> SparseVector:
        """Sublinear TF-IDF of a bag of keywords: terms outside the vocabulary are dropped, then counted;
        value = (1 + ln count) * idf, L2-normalised. Returns sorted indices and float64 values."""
        index = self.vocabulary.keyword_index
        counts = Counter(index[t] for t in terms if t in index)
        if not counts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        idx = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter((1.0 + math.log(counts[i]) for i in idx.tolist()), dtype=np.float64, count=len(counts))
        values = tf * self.vocabulary.idf[idx]
        norm = float(np.sqrt(np.sum(values * values)))
        return idx, (values / norm if norm > 0 else values)

    def _interpro_vector_uncached(self, interpro_id: str) -> SparseVector:
        return self.tfidf(self.vocabulary.interpro_keywords.get(interpro_id, ()))

    def residue_vector(self, keywords: Iterable[str], interpro_ids: Iterable[str]) -> SparseVector:
        """One residue's vector: TF-IDF of its keywords, element-wise max with each InterPro id's TF-IDF."""
        parts = [self.tfidf(keywords)] + [self._interpro_vector(i) for i in sorted(set(interpro_ids))]
        parts = [p for p in parts if p[0].size]
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        if len(parts) == 1:
            return parts[0]
        idx = np.concatenate([p[0] for p in parts])
        val = np.concatenate([p[1] for p in parts])
        order = np.lexsort((-val, idx))  # by index, largest value first
        idx, val = idx[order], val[order]
        first = np.ones(idx.size, dtype=bool)
        first[1:] = idx[1:] != idx[:-1]
        return idx[first], val[first]

    # ---------------------------------------------------------------------------------------------------- LSH
    def lsh_tokens(self, vector: SparseVector) -> np.ndarray:
        """int64 ``[8]`` token ids of one residue vector; ``<unk>`` x 8 for an all-zero vector."""
        idx, val = vector
        if not np.any(val != 0):
            return np.full(self.depth, C.FUNCTION_UNK, dtype=np.int64)
        projection = self._planes[:, idx].astype(np.float64) @ val  # [64]
        bits = (projection >= 0).reshape(self.depth, C.FUNCTION_BITS_PER_TOKEN).astype(np.int64)
        return C.FUNCTION_LSH_OFFSET + bits @ _BIT_WEIGHTS

    # ---------------------------------------------------------------------------------------------------- encode
    def encode(
        self,
        annotations: Sequence[FunctionAnnotation],
        length: int,
        *,
        add_special_tokens: bool = True,
        as_tensor: bool = False,
    ) -> Any:
        """Annotations on a protein of ``length`` residues -> int64 ``[length + 2, 8]`` (``[length, 8]`` without
        special tokens). Every label must be an InterPro id or a keyword (see :meth:`accepts`)."""
        if length < 0:
            raise TokenizationError(f"protein length must be >= 0, got {length}")
        tokens = np.full((length, self.depth), C.FUNCTION_PAD, dtype=np.int64)
        annotations = list(annotations)
        if annotations:
            # One row per distinct label: ("k", keyword) or ("i", InterPro id).
            key_index: dict[tuple[str, str], int] = {}
            spans: list[tuple[int, int, int]] = []
            for n, ann in enumerate(annotations):
                ann.check(length, index=n)
                # A label naming a known InterPro id is that id only, even if it is also a keyword (official rule).
                ipr = self.interpro_id(ann.label)
                if ipr is not None:
                    key = ("i", ipr)
                elif self.is_keyword(ann.label):
                    key = ("k", ann.label)
                else:
                    raise self.unknown_label_error(ann.label, n)
                spans.append((key_index.setdefault(key, len(key_index)), ann.start - 1, ann.end))
            keys = list(key_index)
            coverage = np.zeros((len(keys), length), dtype=bool)  # [labels, L]
            for k, start, end in spans:
                coverage[k, start:end] = True
            packed = np.packbits(coverage, axis=0).T  # [L, ceil(labels/8)]: one row per residue's label set
            sets, inverse = np.unique(packed, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            rows = np.empty((len(sets), self.depth), dtype=np.int64)
            for s, packed_set in enumerate(sets):
                members = np.flatnonzero(np.unpackbits(packed_set)[: len(keys)])
                if members.size == 0:
                    rows[s] = C.FUNCTION_NONE
                    continue
                words = [keys[m][1] for m in members if keys[m][0] == "k"]
                iprs = [keys[m][1] for m in members if keys[m][0] == "i"]
                rows[s] = self.lsh_tokens(self.residue_vector(words, iprs))
            tokens = rows[inverse]
        if add_special_tokens:
            pad = np.full((1, self.depth), C.FUNCTION_PAD, dtype=np.int64)
            tokens = np.concatenate((pad, tokens, pad))
        return finish(tokens, as_tensor)
