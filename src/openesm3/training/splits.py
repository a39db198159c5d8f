"""Train/validation splits by cluster, greedy sequence-identity clustering, and per-record sampling weights.

Splitting by cluster keeps similar proteins on one side: a whole cluster goes to validation when a hash of
``(seed, cluster name)`` falls below ``valid_fraction``. The decision depends on nothing else, so it is the
same on every process and run, and adding records never moves an existing cluster across the split.

When no cluster labels are given, :func:`greedy_identity_clusters` makes them, in the manner of CD-HIT:
sequences are taken longest first; each joins the first existing cluster whose representative it matches at
>= ``threshold`` identity, or founds a new cluster. Identity is the number of identical aligned positions in
an optimal semiglobal alignment (BLOSUM62, gap open -10, extend -1, free end gaps) divided by the length of
the shorter sequence. Only representatives that pass a FASTA/BLAST-style prefilter are aligned, best first
and at most ``max_candidates`` of them: they must share with the query, on nearby diagonals (two adjacent
bands of 16), at least half the 3-mers a uniformly mutated sequence at the threshold identity would keep
(``t^3 * L / 2``, and at least 3). On the dev set (757 chains) this aligns a few candidates per chain; the
prefilter can miss remote pairs near the threshold, so clusters can be finer than exact ones. For large
sets, cluster with a dedicated tool (MMseqs2) and give the labels as a manifest column at ingestion.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np

_KMER = 3
_DIAGONAL_BAND = 16


def _clean(sequence: str) -> str:
    from biotite.sequence import ProteinSequence

    alphabet = set(ProteinSequence.alphabet.get_symbols())
    return "".join(c if c in alphabet else "X" for c in sequence.upper())


def sequence_identity(a: str, b: str) -> float:
    """Identical aligned positions / length of the shorter sequence (semiglobal BLOSUM62 alignment)."""
    if not a or not b:
        return 0.0
    from biotite.sequence import ProteinSequence
    from biotite.sequence.align import SubstitutionMatrix, align_optimal, get_sequence_identity

    matrix = SubstitutionMatrix.std_protein_matrix()
    alignment = align_optimal(
        ProteinSequence(_clean(a)),
        ProteinSequence(_clean(b)),
        matrix,
        gap_penalty=(-10, -1),
        terminal_penalty=False,
        max_number=1,
    )[0]
    return float(get_sequence_identity(alignment, mode="shortest"))


def _kmers(sequence: str) -> np.ndarray:
    codes = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8).astype(np.int64)
    if len(codes) < _KMER:
        return np.zeros(0, dtype=np.int64)
    return codes[:-2] * 65536 + codes[1:-1] * 256 + codes[2:]


def greedy_identity_clusters(
    sequences: Sequence[str], threshold: float = 0.4, *, min_hits: int = 3, max_candidates: int = 20
) -> list[int]:
    """Cluster id per sequence (ids are 0.. in order of founding); see the module docstring for the method."""
    order = sorted(range(len(sequences)), key=lambda i: (-len(sequences[i]), i))
    labels = [-1] * len(sequences)
    reps: list[int] = []  # sequence index of each cluster's representative
    index: dict[int, list[tuple[int, int]]] = {}  # 3-mer -> [(cluster, position in representative)]
    for i in order:
        seq = sequences[i]
        kmers = _kmers(seq)
        hits: Counter[tuple[int, int]] = Counter()
        for qpos, kmer in enumerate(kmers.tolist()):
            for cluster, rpos in index.get(kmer, ()):
                hits[(cluster, (rpos - qpos) // _DIAGONAL_BAND)] += 1
        best: dict[int, int] = {}
        for (cluster, band), n in hits.items():
            # a band and its neighbour together: hits straddling a band edge still count
            n2 = n + hits.get((cluster, band + 1), 0)
            best[cluster] = max(best.get(cluster, 0), n2)
        needed = max(min_hits, math.ceil(0.5 * threshold**3 * len(kmers)))
        candidates = sorted((c for c, n in best.items() if n >= needed), key=lambda c: (-best[c], c))
        candidates = candidates[:max_candidates]
        if len(seq) < _KMER + min_hits:  # too short for the prefilter: align against everything
            candidates = list(range(len(reps)))
        for cluster in candidates:
            if sequence_identity(seq, sequences[reps[cluster]]) >= threshold:
                labels[i] = cluster
                break
        else:
            cluster = len(reps)
            reps.append(i)
            labels[i] = cluster
            for rpos, kmer in enumerate(kmers.tolist()):
                index.setdefault(kmer, []).append((cluster, rpos))
    return labels


def identical_sequence_clusters(
    names: Sequence[str], sequences: Sequence[str], labels: Sequence[str] | None = None
) -> list[str]:
    """Cluster per record by identical sequence, for records without a label (``labels[i] == ""``; all of them when
    ``labels`` is None); a labelled record keeps its label. An unlabelled record takes the label of the first labelled
    record with its sequence (a copy of a labelled chain); else the name of the first unlabelled record with that
    sequence (a record whose sequence no other has: its own name). A name that is some record's label is set apart as
    ``NAME (unlabelled)`` (a record named as an unrelated cluster would otherwise join it). The clusters of records
    ingested without a cluster label."""
    given = list(labels) if labels is not None else [""] * len(names)
    taken = set(given) - {""}
    first: dict[str, str] = {}
    for label, sequence in zip(given, sequences, strict=True):
        if label:
            first.setdefault(sequence, label)
    out = []
    for name, sequence, label in zip(names, sequences, given, strict=True):
        if label:
            out.append(label)
            continue
        own = name
        while own in taken:  # never an unrelated labelled cluster's name
            own += " (unlabelled)"
        out.append(first.setdefault(sequence, own))
    return out


def _unit_hash(seed: int, name: str) -> float:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def valid_by_cluster(clusters: Sequence[str], valid_fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean ``[N]``: True for records whose cluster falls in the validation set."""
    return np.array([_unit_hash(seed, c) < valid_fraction for c in clusters], dtype=bool)


def kept_clusters(clusters: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean ``[N]``: True for records whose cluster is among the kept ``fraction`` of clusters. Independent of
    the validation draw (another hash), and nested: a smaller fraction keeps a subset of a larger one."""
    return np.array([_unit_hash(seed, f"train-subset:{c}") < fraction for c in clusters], dtype=bool)


VALID_LABELS = frozenset({"valid", "validation", "val"})
CALIBRATION_LABELS = frozenset({"calibration", "calib", "cal"})
TRAIN_LABELS = frozenset({"train", "training", ""})  # no label: training, as before labels existed


def valid_by_column(splits: Sequence[str]) -> np.ndarray:
    """Boolean ``[N]`` from split labels recorded at ingestion: ``valid``/``validation``/``val`` -> True."""
    return _labelled(splits, VALID_LABELS)


def calibration_by_column(splits: Sequence[str]) -> np.ndarray:
    """Boolean ``[N]``: records labelled ``calibration``/``calib``/``cal`` at ingestion."""
    return _labelled(splits, CALIBRATION_LABELS)


def train_by_column(splits: Sequence[str]) -> np.ndarray:
    """Boolean ``[N]``: records labelled ``train``/``training`` or not labelled. Any other label (``test``...)
    is neither trained nor validated on."""
    return _labelled(splits, TRAIN_LABELS)


def _labelled(splits: Sequence[str], labels: frozenset[str]) -> np.ndarray:
    return np.array([s.strip().lower() in labels for s in splits], dtype=bool)


def calibration_by_cluster(clusters: Sequence[str], fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean ``[N]``: records whose cluster is among the ``fraction`` of clusters held out for calibrating
    confidence heads (another hash than the validation draw and the training subset)."""
    return np.array([_unit_hash(seed, f"calibration:{c}") < fraction for c in clusters], dtype=bool)


def sampling_weights(clusters: Sequence[str], mode: Literal["none", "inverse_cluster_size"]) -> np.ndarray:
    """Per-record weight: 1, or 1 / (records in its cluster) so every cluster is drawn equally often."""
    if mode == "none":
        return np.ones(len(clusters))
    counts = Counter(clusters)
    return np.array([1.0 / counts[c] for c in clusters])
