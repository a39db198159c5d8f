"""Protein training data: records, cached shards on disk, cropping on load, and padded batches.

On disk a dataset is a directory with ``index.json`` and ``shard_*.safetensors`` files (never pickle). A
shard holds the residues of many records concatenated along the first axis:

- ``atom37`` [N, 37, 3] float32, NaN for missing atoms; ``atom37_mask`` [N, 37] bool
- ``sequence`` [N] uint8 (ASCII one-letter codes); ``residue_index`` [N] int32; ``chain_index`` [N] int32
  (0-based position of the residue's chain in the record's ``chain_ids``)

``index.json`` lists, per record, its shard, offset and length, the source file, chain ids and lengths, the
cluster and split labels from ingestion, plus the files that could not be read. A record is a single chain
or a whole complex (multi-chain records carry ``chain_index``). Records are read lazily, one slice at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.training.cropping import crop_record
from openesm3.training.sampler import SampleRef
from openesm3.training.splits import identical_sequence_clusters
from openesm3.utils.atomic import atomic_write_text, atomic_write_with

N_ATOM37 = 37  # atom37 layout (REFERENCE_SPEC §12)
INDEX_FILE = "index.json"
SHARD_FORMAT = "openesm3-protein-shards"
SHARD_FORMAT_VERSION = 1


class DatasetError(InputError):
    """A dataset directory that cannot be read: missing or malformed index or shard."""


@dataclass(frozen=True, kw_only=True, eq=False)
class ProteinRecord:
    """One training example: a chain or a complex of L residues (numpy arrays)."""

    name: str
    sequence: str  # one-letter codes, length L
    atom37: np.ndarray  # [L, 37, 3] float32, NaN where missing
    atom37_mask: np.ndarray  # [L, 37] bool
    residue_index: np.ndarray  # [L] int32, author residue numbers
    chain_index: np.ndarray  # [L] int32, position in chain_ids
    chain_ids: tuple[str, ...] = ("A",)
    source: str = ""
    cluster: str = ""
    split: str = ""
    weight: float = 1.0  # relative sampling weight (multiplies the cluster weighting), e.g. to upsample a source
    # [L] int64 codes of a frozen encoder (tokenizer stage 2), if attached; [L, K] with K renditions of the record
    # (the clean encoding first, then encodings of noised coordinates: token augmentation, see tokenized_dataset)
    structure_tokens: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.sequence)
        expected = {
            "atom37": (n, N_ATOM37, 3),
            "atom37_mask": (n, N_ATOM37),
            "residue_index": (n,),
            "chain_index": (n,),
        }
        if self.structure_tokens is not None:
            k = self.structure_tokens.shape[1:] if self.structure_tokens.ndim == 2 else ()
            expected["structure_tokens"] = (n, *k)
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise InputError(f"record {self.name!r}: {name} has shape {got}, expected {shape}")
        if not (self.weight >= 0 and np.isfinite(self.weight)):
            raise InputError(f"record {self.name!r}: weight must be finite and >= 0, got {self.weight}")
        if n and (self.chain_index.min() < 0 or self.chain_index.max() >= len(self.chain_ids)):
            raise InputError(f"record {self.name!r}: chain_index out of range for chains {self.chain_ids}")

    @property
    def length(self) -> int:
        return len(self.sequence)

    @property
    def n_chains(self) -> int:
        return len(np.unique(self.chain_index))

    def select(self, keep: np.ndarray) -> ProteinRecord:
        """The record restricted to residues ``keep`` (sorted int indices)."""
        seq = np.frombuffer(self.sequence.encode("ascii"), dtype=np.uint8)[keep].tobytes().decode("ascii")
        return replace(
            self,
            sequence=seq,
            atom37=self.atom37[keep],
            atom37_mask=self.atom37_mask[keep],
            residue_index=self.residue_index[keep],
            chain_index=self.chain_index[keep],
            structure_tokens=None if self.structure_tokens is None else self.structure_tokens[keep],
        )


# --------------------------------------------------------------------------------------------------------
# Writing shards.
# --------------------------------------------------------------------------------------------------------


class ShardWriter:
    """Accumulates records and writes shards of ``shard_size`` records; :meth:`close` writes the index last.

    A dataset already in ``out_dir`` is replaced: its index is removed first, so an interrupted write leaves
    a directory without index (refused by :class:`ProteinDataset`), never an old index over new shards.
    """

    def __init__(self, out_dir: str | Path, *, shard_size: int = 1000) -> None:
        if shard_size <= 0:
            raise ValueError(f"shard_size must be > 0, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / INDEX_FILE).unlink(missing_ok=True)
        for old in self.out_dir.glob("shard_*.safetensors"):
            old.unlink()
        self.shard_size = shard_size
        self.entries: list[dict[str, Any]] = []
        self.shards: list[str] = []
        self._pending: list[ProteinRecord] = []

    @property
    def n_records(self) -> int:
        return len(self.entries) + len(self._pending)

    def add(self, record: ProteinRecord) -> None:
        record.sequence.encode("ascii")  # one-letter codes only
        self._pending.append(record)
        if len(self._pending) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        name = f"shard_{len(self.shards):05d}.safetensors"
        recs, self._pending = self._pending, []
        arrays = {
            "atom37": np.concatenate([r.atom37 for r in recs]).astype(np.float32),
            "atom37_mask": np.concatenate([r.atom37_mask for r in recs]).astype(bool),
            "sequence": np.frombuffer("".join(r.sequence for r in recs).encode("ascii"), dtype=np.uint8).copy(),
            "residue_index": np.concatenate([r.residue_index for r in recs]).astype(np.int32),
            "chain_index": np.concatenate([r.chain_index for r in recs]).astype(np.int32),
        }
        meta = {"format": SHARD_FORMAT, "version": str(SHARD_FORMAT_VERSION)}
        atomic_write_with(self.out_dir / name, lambda tmp: save_file(arrays, tmp, metadata=meta))
        offset = 0
        for r in recs:
            lengths = [int((r.chain_index == i).sum()) for i in range(len(r.chain_ids))]
            self.entries.append(
                {
                    "name": r.name,
                    "shard": len(self.shards),
                    "offset": offset,
                    "length": r.length,
                    "source": r.source,
                    "chain_ids": list(r.chain_ids),
                    "chain_lengths": lengths,
                    "cluster": r.cluster,
                    "split": r.split,
                    "weight": r.weight,
                }
            )
            offset += r.length
        self.shards.append(name)

    def close(self, *, skipped: Sequence[dict[str, str]] = (), info: dict[str, Any] | None = None) -> Path:
        """Write the last shard and ``index.json`` (atomically, last: a dataset without it is incomplete)."""
        self._flush()
        index = {
            "format": SHARD_FORMAT,
            "version": SHARD_FORMAT_VERSION,
            "shards": self.shards,
            "records": self.entries,
            "skipped": list(skipped),
            "info": info or {},
        }
        path = self.out_dir / INDEX_FILE
        atomic_write_text(path, json.dumps(index, indent=1) + "\n")
        return path


def write_dataset(
    records: Iterable[ProteinRecord], out_dir: str | Path, *, shard_size: int = 1000, info: dict[str, Any] | None = None
) -> Path:
    """Write ``records`` as a shard dataset in ``out_dir``; returns the index path."""
    writer = ShardWriter(out_dir, shard_size=shard_size)
    for record in records:
        writer.add(record)
    return writer.close(info=info)


def index_fingerprint(raw: bytes) -> str:
    """The fingerprint of a dataset whose ``index.json`` holds ``raw``: ``sha256:<hex>``. Ingesting the same files
    again writes the same index (every record's shard, offsets, source, labels), so a copied, moved or re-ingested
    dataset keeps it; another dataset (other or more structures, other labels) has another."""
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


def dataset_fingerprint(root: str | Path) -> str | None:
    """:func:`index_fingerprint` of the dataset in ``root`` (None when its ``index.json`` cannot be read: reading the
    dataset names the problem)."""
    try:
        return index_fingerprint((Path(root) / INDEX_FILE).read_bytes())
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------------
# Reading shards.
# --------------------------------------------------------------------------------------------------------


class ProteinDataset:
    """Lazy, random-access view of a shard dataset (or of a subset of its records)."""

    def __init__(
        self,
        root: str | Path,
        *,
        _index: dict[str, Any] | None = None,
        _rows: Sequence[int] | np.ndarray = (),
        _structure_tokens: dict[int, np.ndarray] | None = None,
        _fingerprint: str | None = None,
    ) -> None:
        self.root = Path(root)
        self._structure_tokens = _structure_tokens
        if _index is None:
            _index, _fingerprint = self._read_index()
            _rows = range(len(_index["records"]))
        self._index = _index
        # of the index read, so of the records this view reads; subsets and attached tokens keep it (stage 2's encoded
        # dataset carries its source's)
        self.fingerprint = _fingerprint
        self.rows = np.asarray(_rows, dtype=np.int64)
        entries = [_index["records"][i] for i in self.rows]
        self.entries: list[dict[str, Any]] = entries
        self.lengths = np.array([e["length"] for e in entries], dtype=np.int64)
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()
        self._by_sequence: dict[int, str] | None = None  # row -> cluster of an unlabelled record (lazy)

    def _read_index(self) -> tuple[dict[str, Any], str]:
        """The dataset's index and its :func:`index_fingerprint`."""
        path = self.root / INDEX_FILE
        try:
            raw = path.read_bytes()
            index = json.loads(raw.decode("utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{path}: no dataset index (ingest structures first, or check data.path)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: unreadable dataset index ({exc})") from None
        if not isinstance(index, dict):  # a JSON list or number: no .get, an internal error otherwise
            raise DatasetError(f"{path}: not an {SHARD_FORMAT} index (a JSON {type(index).__name__}, not an object)")
        if index.get("format") != SHARD_FORMAT or index.get("version") != SHARD_FORMAT_VERSION:
            raise DatasetError(
                f"{path}: not an {SHARD_FORMAT} v{SHARD_FORMAT_VERSION} index "
                f"(format {index.get('format')!r}, version {index.get('version')!r})"
            )
        return index, index_fingerprint(raw)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self._index.get("skipped", []))

    @property
    def clusters(self) -> list[str]:
        """Cluster label per record: the one from ingestion (a manifest's cluster column). A record without one
        shares the cluster of the first labelled record of the whole dataset's index with its sequence (a copy of a
        listed file); else the unlabelled records with its sequence share one, named after the first of them in the
        index (a record with a sequence of its own: its name; a name that is another cluster's label is set apart
        as ``NAME (unlabelled)``), so two copies of a chain never straddle a split."""
        if all(e["cluster"] for e in self.entries):
            return [e["cluster"] for e in self.entries]
        if self._by_sequence is None:
            self._by_sequence = self._sequence_clusters()
        return [e["cluster"] or self._by_sequence[int(row)] for e, row in zip(self.entries, self.rows)]

    def _sequence_clusters(self) -> dict[int, str]:
        """``{row: cluster}`` of every unlabelled record of the index (not only this subset's, so a subset names
        clusters as the whole dataset does), by :func:`identical_sequence_clusters`."""
        records = self._index["records"]
        sequences: dict[int, np.ndarray] = {}  # shard -> its residues' sequence codes, read once
        for e in records:
            if e["shard"] not in sequences:
                sequences[e["shard"]] = self._shard(e["shard"]).get_tensor("sequence")
        keys = [
            sequences[e["shard"]][e["offset"] : e["offset"] + e["length"]].tobytes().decode("ascii") for e in records
        ]
        clusters = identical_sequence_clusters([e["name"] for e in records], keys, [e["cluster"] for e in records])
        return {row: cluster for row, (e, cluster) in enumerate(zip(records, clusters)) if not e["cluster"]}

    @property
    def weights(self) -> np.ndarray:
        """Per-record sampling weight from ingestion (1 unless set)."""
        return np.array([float(e.get("weight", 1.0)) for e in self.entries])

    @property
    def splits(self) -> list[str]:
        return [e["split"] for e in self.entries]

    def subset(self, positions: Sequence[int] | np.ndarray) -> ProteinDataset:
        """A dataset of the records at ``positions`` (indices into this dataset)."""
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        return ProteinDataset(
            self.root,
            _index=self._index,
            _rows=rows,
            _structure_tokens=self._structure_tokens,
            _fingerprint=self.fingerprint,
        )

    def with_structure_tokens(self, tokens: Sequence[np.ndarray]) -> ProteinDataset:
        """This dataset with per-residue structure tokens attached to every record (``tokens[i]`` [L_i], or [L_i, K]
        for K renditions, for record i, in order); subsets keep them, and records read from it carry them
        (``ProteinRecord.structure_tokens``)."""
        if len(tokens) != len(self):
            raise ValueError(f"need structure tokens for {len(self)} records, got {len(tokens)}")
        table = dict(self._structure_tokens or {})
        for position, row_tokens in enumerate(tokens):
            if len(row_tokens) != self.lengths[position]:
                raise ValueError(
                    f"record {self.entries[position]['name']!r}: {len(row_tokens)} structure tokens for "
                    f"{self.lengths[position]} residues"
                )
            table[int(self.rows[position])] = np.asarray(row_tokens, dtype=np.int64)
        return ProteinDataset(
            self.root, _index=self._index, _rows=self.rows, _structure_tokens=table, _fingerprint=self.fingerprint
        )

    def _shard(self, shard: int) -> Any:
        if os.getpid() != self._pid:  # forked data-loading worker: open its own handles
            self._handles, self._pid = {}, os.getpid()
        if shard not in self._handles:
            path = self.root / self._index["shards"][shard]
            try:
                self._handles[shard] = safe_open(str(path), framework="np")
            except Exception as exc:  # noqa: BLE001 - safetensors raises several types
                raise DatasetError(f"{path}: unreadable shard ({exc})") from None
        return self._handles[shard]

    def _slice(self, position: int, name: str) -> np.ndarray:
        e = self.entries[position]
        return self._shard(e["shard"]).get_slice(name)[e["offset"] : e["offset"] + e["length"]]

    def sequence(self, position: int) -> str:
        return self._slice(position, "sequence").tobytes().decode("ascii")

    def __getitem__(self, position: int) -> ProteinRecord:
        e = self.entries[position]
        return ProteinRecord(
            name=e["name"],
            sequence=self.sequence(position),
            atom37=self._slice(position, "atom37"),
            atom37_mask=self._slice(position, "atom37_mask"),
            residue_index=self._slice(position, "residue_index"),
            chain_index=self._slice(position, "chain_index"),
            chain_ids=tuple(e["chain_ids"]),
            source=e["source"],
            cluster=e["cluster"],
            split=e["split"],
            weight=float(e.get("weight", 1.0)),
            structure_tokens=None
            if self._structure_tokens is None
            else self._structure_tokens[int(self.rows[position])],
        )

    def __getstate__(self) -> dict[str, Any]:  # handles are per process
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state


# --------------------------------------------------------------------------------------------------------
# Loading for training: crop, tokenize, pad.
# --------------------------------------------------------------------------------------------------------


def _sequence_lookup() -> np.ndarray:
    table = np.full(256, C.SEQUENCE_UNK, dtype=np.int64)
    for token_id, token in enumerate(C.SEQUENCE_VOCAB):
        if len(token) == 1:
            table[ord(token)] = token_id
    return table


_SEQUENCE_IDS = _sequence_lookup()


def sequence_to_ids(sequence: str) -> np.ndarray:
    """Official sequence-track ids (spec §1) of one-letter codes; letters outside the vocabulary -> <unk>."""
    return _SEQUENCE_IDS[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]


@dataclass(frozen=True, kw_only=True, eq=False)
class ProteinBatch:
    """B records padded to the longest, L. Missing atoms and padding have coordinates 0 and mask False."""

    sequence_tokens: torch.Tensor  # [B, L] int64, official sequence ids, SEQUENCE_PAD at padding
    atom37: torch.Tensor  # [B, L, 37, 3] float32 (0 where atom37_mask is False: no NaN reaches a loss)
    atom37_mask: torch.Tensor  # [B, L, 37] bool
    residue_index: torch.Tensor  # [B, L] int64 (0 at padding)
    chain_index: torch.Tensor  # [B, L] int64 (-1 at padding)
    mask: torch.Tensor  # [B, L] bool, True at residues
    names: tuple[str, ...] = field(default=())
    n_tokens: int = 0  # residues in the batch, padding excluded (counted on the host at collation)
    # [B, L] (or [B, L, K] for K renditions) int64 when every record carries them (STRUCTURE_PAD pads)
    structure_tokens: torch.Tensor | None = None

    @property
    def n_samples(self) -> int:
        return int(self.mask.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ProteinBatch:
        moved = {
            name: getattr(self, name).to(device, non_blocking=non_blocking)
            for name in ("sequence_tokens", "atom37", "atom37_mask", "residue_index", "chain_index", "mask")
        }
        tokens = None if self.structure_tokens is None else self.structure_tokens.to(device, non_blocking=non_blocking)
        return ProteinBatch(**moved, names=self.names, n_tokens=self.n_tokens, structure_tokens=tokens)


def collate_proteins(records: Sequence[ProteinRecord]) -> ProteinBatch:
    """Pad records to the longest one (see :class:`ProteinBatch`)."""
    if not records:
        raise ValueError("cannot collate an empty list of records")
    b, length = len(records), max(r.length for r in records)
    tokens = np.full((b, length), C.SEQUENCE_PAD, dtype=np.int64)
    atom37 = np.zeros((b, length, N_ATOM37, 3), dtype=np.float32)
    atom_mask = np.zeros((b, length, N_ATOM37), dtype=bool)
    residue_index = np.zeros((b, length), dtype=np.int64)
    chain_index = np.full((b, length), -1, dtype=np.int64)
    mask = np.zeros((b, length), dtype=bool)
    with_tokens = all(r.structure_tokens is not None for r in records)
    renditions = {r.structure_tokens.shape[1:] for r in records if r.structure_tokens is not None}
    if with_tokens and len(renditions) > 1:
        raise ValueError(f"records carry structure tokens of different rendition counts: {sorted(renditions)}")
    shape = (b, length, *(renditions.pop() if with_tokens else ()))
    structure_tokens = np.full(shape, C.STRUCTURE_PAD, dtype=np.int64)
    for i, r in enumerate(records):
        if r.structure_tokens is not None and with_tokens:
            structure_tokens[i, : r.length] = r.structure_tokens
        n = r.length
        tokens[i, :n] = sequence_to_ids(r.sequence)
        present = r.atom37_mask & np.isfinite(r.atom37).all(axis=-1)
        atom37[i, :n] = np.where(present[..., None], r.atom37, 0.0)
        atom_mask[i, :n] = present
        residue_index[i, :n] = r.residue_index
        chain_index[i, :n] = r.chain_index
        mask[i, :n] = True
    return ProteinBatch(
        sequence_tokens=torch.from_numpy(tokens),
        atom37=torch.from_numpy(atom37),
        atom37_mask=torch.from_numpy(atom_mask),
        residue_index=torch.from_numpy(residue_index),
        chain_index=torch.from_numpy(chain_index),
        mask=torch.from_numpy(mask),
        names=tuple(r.name for r in records),
        n_tokens=int(mask.sum()),
        structure_tokens=torch.from_numpy(structure_tokens) if with_tokens else None,
    )


@dataclass(frozen=True)
class CroppedRecords:
    """``fetch`` for the loader: the record of a :class:`SampleRef`, cropped with the ref's own seed."""

    dataset: ProteinDataset
    crop_length: int
    mode: str = "spatial"
    interface_distance: float = 8.0

    def __call__(self, ref: SampleRef) -> ProteinRecord:
        record = self.dataset[ref.index]
        rng = np.random.default_rng(ref.seed)
        return crop_record(
            record,
            self.crop_length,
            rng,
            mode="contiguous" if self.mode == "contiguous" else "spatial",
            interface_distance=self.interface_distance,
        )
