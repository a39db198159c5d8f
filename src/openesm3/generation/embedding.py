"""Per-residue and mean embeddings from any layer of the trunk, and writing them to files.

:func:`embed_proteins` runs proteins in length-sorted batches (padding is masked, so a protein's embedding does
not depend on its batch) and returns, per protein, the hidden state of the chosen layer at each residue position
(BOS/EOS rows stripped: ``[L, D]`` with L the length of the sequence string, chain-break rows included so rows
line up with its characters) and the mean over the residue rows (chain breaks excluded). Layer numbering follows
:meth:`openesm3.models.esm3.ESM3.embed`: 0 is the input embedding, i the output of block i, -1 (default) the last
block's output, the pre-final-norm ``embeddings`` of the official SDK. Note that the SDK's ``mean_embedding`` also
averages the BOS and EOS rows; ours averages residues only.

:class:`EmbeddingWriter` writes them atomically, one protein at a time: ``<id>.npy`` ([L, D] float32) and
``<id>.mean.npy`` ([D]) per record plus ``index.tsv`` in a directory, or one ``.safetensors`` file for the whole
input (tensors ``<id>`` and ``<id>.mean``; the metadata maps each key back to the record id). Ids become safe file
names (:func:`safe_name`): characters outside ``A-Za-z0-9._-`` are replaced by ``_``, and names that collide
(case-insensitively, for case-insensitive file systems; also with another record's ``.mean`` name) get ``_2``,
``_3``, ...
"""

from __future__ import annotations

import csv
import io
import json
import numbers
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.generation.protein_tensor import ProteinTensor, model_inputs, stack
from openesm3.utils.atomic import atomic_open, atomic_write_text, atomic_write_with
from openesm3.utils.checks import check_batch_size

EmbeddingFormat = Literal["npy", "safetensors"]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_LENGTH = 150  # leaves room for ".mean.npy" within the usual 255-byte file-name limit
INDEX_FILE = "index.tsv"
MEAN_SUFFIX = ".mean"  # record x: tensor / file x (per residue) and x.mean


@dataclass(frozen=True)
class ProteinEmbedding:
    """per_residue [L, D] float32 (BOS/EOS stripped), mean [D] float32 over residue rows, layer index."""

    per_residue: np.ndarray
    mean: np.ndarray
    layer: int


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device  # type: ignore[no-any-return]
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@torch.inference_mode()
def embed_batch(model: Any, proteins: Sequence[ProteinTensor], *, layer: int = -1) -> list[ProteinEmbedding]:
    """Embeddings of ``proteins`` from one padded pass of ``model.embed`` (an ESM3 trunk)."""
    _check_tensors(proteins)
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
        raise InputError(f"layer must be an int (0 = input embedding, -1 = last block), got {layer!r}")
    layer = int(layer)
    batch = stack(list(proteins), device=_device(model))
    has_coords = bool(torch.isfinite(batch.coordinates).any())
    out = model.embed(layer=layer, **model_inputs(batch, condition_on_coordinates=has_coords))
    states = out.per_residue.float().cpu()  # [B, Lmax, D]
    result = []
    for i, protein in enumerate(proteins):
        n = protein.n_residues
        rows = states[i, 1 : n + 1].numpy()  # BOS at 0, residues 1..n, EOS at n + 1
        residues = _residue_rows(protein)
        mean = rows[residues].mean(axis=0) if residues.any() else np.full(rows.shape[1], np.nan, np.float32)
        result.append(ProteinEmbedding(np.ascontiguousarray(rows), mean.astype(np.float32), int(out.layer)))
    return result


def _check_tensors(proteins: Sequence[ProteinTensor]) -> None:
    """One-line error for what is not a ProteinTensor (a Protein read from a file is the usual mistake)."""
    if isinstance(proteins, ProteinTensor):
        raise InputError("proteins must be a list of ProteinTensor; for one protein pass [tensor]")
    for i, protein in enumerate(proteins):
        if not isinstance(protein, ProteinTensor):
            raise InputError(
                f"proteins[{i}] is a {type(protein).__name__}, not a ProteinTensor: encode it first "
                "(bundle.encode(protein))"
            )


def _residue_rows(protein: ProteinTensor) -> np.ndarray:
    """[L] bool: rows that are residues (not chain breaks), read from the sequence or, without one, the structure."""
    n = protein.n_residues
    if protein.sequence is not None:
        return (protein.sequence[1 : n + 1] != C.SEQUENCE_CHAINBREAK).cpu().numpy()
    if protein.structure is not None:
        return (protein.structure[1 : n + 1] != C.STRUCTURE_CHAINBREAK).cpu().numpy()
    return np.ones(n, dtype=bool)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, longest first), ``batch_size`` each."""
    check_batch_size(batch_size)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def embed_proteins(
    model: Any,
    proteins: Sequence[ProteinTensor],
    *,
    layer: int = -1,
    batch_size: int = 8,
    on_result: Callable[[int, ProteinEmbedding], None] | None = None,
) -> list[ProteinEmbedding]:
    """Embeddings of every protein, in input order; ``on_result(index, embedding)`` is called as each is ready."""
    _check_tensors(proteins)
    out: list[ProteinEmbedding | None] = [None] * len(proteins)
    for group in length_batches([len(p) for p in proteins], batch_size):
        for i, emb in zip(group, embed_batch(model, [proteins[i] for i in group], layer=layer)):
            out[i] = emb
            if on_result is not None:
                on_result(i, emb)
    return [e for e in out if e is not None]


def safe_name(name: str, used: set[str], suffixes: Sequence[str] = ("",)) -> str:
    """A file-system-safe, unique (case-insensitively, within ``used``) version of ``name``; adds it to ``used``.

    ``suffixes``: the names derived from the result (e.g. ``("", ".mean")`` for the tensors ``x`` and ``x.mean``);
    every one of them must be unused, so that record ``x.mean`` cannot take the mean of record ``x``."""
    base = _UNSAFE.sub("_", name).strip("._") or "record"
    base = base[:MAX_NAME_LENGTH]
    candidate, k = base, 1
    while any((candidate + suffix).lower() in used for suffix in suffixes):
        k += 1
        candidate = f"{base}_{k}"
    used.update((candidate + suffix).lower() for suffix in suffixes)
    return candidate


def embedding_names(record_ids: Sequence[str]) -> list[str]:
    """The file / tensor names of ``record_ids``, given in input order (:func:`safe_name`; none takes another's
    ``.mean`` name), for :meth:`EmbeddingWriter.add` (``name=``): records added in another order (e.g. by length)
    still get the names of their input order, and a record left out (it could not be encoded) changes no other
    record's name."""
    used: set[str] = set()
    return [safe_name(record_id, used, suffixes=("", MEAN_SUFFIX)) for record_id in record_ids]


def embedding_files(
    output: str | os.PathLike[str], format: EmbeddingFormat, names: Sequence[str], *, per_residue: bool = True
) -> list[Path]:
    """The files that an :class:`EmbeddingWriter` of these arguments writes for embeddings stored under ``names``
    (from :func:`embedding_names`): their ``.npy`` files and ``index.tsv``, or the one safetensors file. Known before
    any model work, so that ``embed`` can refuse an earlier run's files up front."""
    out = Path(output)
    if format == "safetensors":
        return [out]
    suffixes = ("", MEAN_SUFFIX) if per_residue else (MEAN_SUFFIX,)
    return [out / f"{name}{suffix}.npy" for name in names for suffix in suffixes] + [out / INDEX_FILE]


class EmbeddingWriter:
    """Writes embeddings as they come (npy: immediately, atomically per file; safetensors: one file at close).

    Args:
        output: a directory (npy) or a file (safetensors).
        format: ``"npy"`` or ``"safetensors"``.
        per_residue: also write the [L, D] arrays (else only the means).
        metadata: extra string metadata (safetensors header / index.tsv comment), e.g. the layer and weights.
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        format: EmbeddingFormat = "npy",
        *,
        per_residue: bool = True,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if format not in ("npy", "safetensors"):
            raise InputError(f"embedding format {format!r}: use npy or safetensors")
        self.output = Path(output)
        self.format = format
        self.per_residue = per_residue
        self.metadata = dict(metadata or {})
        self._used: set[str] = set()
        self._tensors: dict[str, torch.Tensor] = {}
        self._keys: dict[str, str] = {}
        self._index: list[tuple[str, str, int, int]] = []
        if format == "npy":
            if self.output.exists() and not self.output.is_dir():
                raise InputError(f"{self.output}: exists and is not a directory (npy output is a directory)")
            self.output.mkdir(parents=True, exist_ok=True)
        elif self.output.is_dir():
            raise InputError(f"{self.output}: is a directory; safetensors output is one file (e.g. out.safetensors)")

    def add(self, record_id: str, embedding: ProteinEmbedding, *, name: str | None = None) -> list[Path]:
        """Store one record's embedding under ``name`` (from :func:`embedding_names`, given for every record of a
        run; default: the next free name for ``record_id``); returns the files written now (npy) or nothing
        (safetensors). A ``name`` already taken by this writer (or whose ``.mean`` is) is an :class:`InputError`."""
        if name is None:
            name = safe_name(record_id, self._used, suffixes=("", MEAN_SUFFIX))
        else:  # reserved, so that a later record added without a name cannot take it
            taken = [(name + suffix).lower() for suffix in ("", MEAN_SUFFIX)]
            if any(key in self._used for key in taken):  # stored there, it would replace an earlier embedding
                raise InputError(
                    f"name {name!r} is already taken by an embedding of this writer (names are compared ignoring case; "
                    f"{name}{MEAN_SUFFIX} is its mean): give each record its own name (embedding_names), or none"
                )
            self._used.update(taken)
        self._index.append((record_id, name, embedding.per_residue.shape[0], embedding.per_residue.shape[1]))
        if self.format == "safetensors":
            if self.per_residue:
                self._tensors[name] = torch.from_numpy(embedding.per_residue.copy())
            self._tensors[name + MEAN_SUFFIX] = torch.from_numpy(embedding.mean.copy())
            self._keys[name] = record_id
            return []
        written = []
        if self.per_residue:
            written.append(self._save_npy(self.output / f"{name}.npy", embedding.per_residue))
        written.append(self._save_npy(self.output / f"{name}{MEAN_SUFFIX}.npy", embedding.mean))
        return written

    @staticmethod
    def _save_npy(path: Path, array: np.ndarray) -> Path:
        with atomic_open(path, "wb") as handle:
            np.save(handle, array)
        return path

    def write_index(self) -> list[Path]:
        """npy: write ``index.tsv`` now, listing the records added so far (rewritten, atomically, by each call and by
        :meth:`close`), so that a run stopped later leaves an index of every file written; returns it. Nothing for
        safetensors, whose one file is written by :meth:`close`."""
        if self.format == "safetensors":
            return []
        return self.close()

    def close(self) -> list[Path]:
        """Write what is pending (the safetensors file, or the npy ``index.tsv``); returns the files written."""
        if self.format == "safetensors":
            from openesm3.checkpoints.format import write_aligned_safetensors  # noqa: PLC0415

            # Our writer, not safetensors' save_file: that one orders the metadata as a Rust hash map does,
            # differently in every run, so the same embeddings gave files that differed byte for byte.
            meta = {"format": "openesm3.embeddings", "ids": json.dumps(self._keys), **self.metadata}
            tensors = self._tensors
            atomic_write_with(self.output, lambda tmp: write_aligned_safetensors(tensors, tmp, meta))
            return [self.output]
        buffer = io.StringIO()
        buffer.writelines(f"# {k}={v}\n" for k, v in self.metadata.items())
        # csv quotes an id holding a tab, newline or quote (a JSON protein's name may), so each row stays one row.
        table = csv.writer(buffer, delimiter="\t", lineterminator="\n")
        table.writerow(["id", "name", "length", "dim"])
        table.writerows(self._index)
        path = self.output / INDEX_FILE
        atomic_write_text(path, buffer.getvalue())
        return [path]
