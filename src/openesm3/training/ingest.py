"""Ingestion: PDB/mmCIF files -> protein records (chains or complexes) -> a shard dataset.

Files are read with :func:`openesm3.structure.io.load_structure` in chunks, in parallel worker processes when
``workers > 1`` (results keep the input order, so the dataset does not depend on the number of workers), with
a progress bar. A file that cannot be read is listed in the index's ``skipped`` entries with the reason and
the run goes on; records too short or too long are counted as filtered.

Labels: with a manifest (TSV, e.g. ``../shared/data/dev/manifest.tsv``), each record gets the cluster and split
of its file's row; every chain of a file shares them, so copies and partners of a protein never straddle the
train/validation split. Without one (or for a file the manifest does not list), records have no cluster label:
when splitting, an unlabelled record takes the cluster of a labelled record with its sequence, else unlabelled
records with identical sequences (two copies of a structure, the same chain in two files) share one cluster and
the others are each their own (:attr:`ProteinDataset.clusters`); the report's ``grouped`` counts the unlabelled
records that share one. Use ``split.method=identity`` to cluster similar sequences too.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openesm3.errors import InputError, OpenESM3Error
from openesm3.training.config import IngestConfig
from openesm3.training.cropping import ATOM37_CA
from openesm3.training.data import ProteinRecord, ShardWriter
from openesm3.utils.progress import Progress
from openesm3.utils.text import read_text_file

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".bcif")


def _is_structure_file(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(STRUCTURE_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    return name.rsplit(".", 1)[0]


def find_structure_files(
    sources: str | Path | Sequence[str | Path], *, missing: list[dict[str, str]] | None = None
) -> list[Path]:
    """Structure files from a directory (searched recursively), a text file listing paths, or a list of paths.

    Returns sorted paths, each file once however it was named (``a.pdb``, ``./a.pdb``, ``/abs/a.pdb``, a link, and a
    directory holding it); raises :class:`InputError` for a source that does not exist, a directory without
    structure files or a list file that cannot be read as text. With ``missing`` (a list), such a source, and a
    listed path that does not exist or is not a file, is appended to it instead (``{"source": path, "problem":
    why}``, naming the list file and line of a listed one; each path once) and the others are returned.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    found: set[Path] = set()
    absent: dict[Path, dict[str, str]] = {}  # each missing path once, at its first mention

    def not_found(path: Path, problem: str) -> None:
        if missing is None:
            raise InputError(f"{path}: {problem}")
        absent.setdefault(path.resolve(), {"source": str(path), "problem": problem})

    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file() and _is_structure_file(p)]
            if not files:
                not_found(path, "no structure files (.pdb, .cif, .bcif, optionally .gz) in this directory")
            found.update(files)
        elif path.is_file() and not _is_structure_file(path):  # a list of paths, one per line
            try:
                text = read_text_file(path)
            except InputError as exc:  # binary, damaged gzip, unreadable: the message names the file first
                not_found(path, str(exc).removeprefix(f"{path}: "))
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                line = line.strip()
                if line and not line.startswith("#"):
                    listed = Path(line) if Path(line).is_absolute() else path.parent / line
                    if listed.is_file():
                        found.add(listed)
                    elif listed.exists() and missing is None:
                        raise InputError(f"{path}: line {number}: listed {line!r} is not a file")
                    elif listed.exists():
                        not_found(listed, f"not a file (listed in {path}, line {number}); a list names files")
                    elif missing is None:
                        raise InputError(f"{path}: line {number}: listed file {line!r} does not exist")
                    else:
                        not_found(listed, f"no such file (listed in {path}, line {number})")
        elif path.is_file():
            found.add(path)
        else:
            not_found(path, "no such file or directory")
    if missing is not None:
        missing.extend(absent.values())
    unique: dict[Path, Path] = {}  # the same file named twice would be ingested twice
    for path in sorted(found):
        unique.setdefault(path.resolve(), path)
    return sorted(unique.values())


def read_manifest(config: IngestConfig) -> dict[str, tuple[str, str]]:
    """``{resolved path or file name: (cluster, split)}`` from the manifest TSV (empty without one)."""
    if not config.manifest:
        return {}
    path = Path(config.manifest)
    text = read_text_file(path, role="manifest")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")
        rows = list(reader)
        header = [name for name in reader.fieldnames or [] if name is not None]
    except csv.Error as exc:
        raise InputError(f"{path}: not a tab-separated manifest ({exc})") from None
    columns = [config.manifest_file_column, config.cluster_column] + ([config.split_column] * bool(config.split_column))
    for column in columns:
        if column not in header:
            raise InputError(f"{path}: manifest has no column {column!r} (columns: {', '.join(header)})")
    labels: dict[str, tuple[str, str]] = {}
    for row in rows:
        value = (row[config.cluster_column], row[config.split_column] if config.split_column else "")
        file = row[config.manifest_file_column]
        labels[str((path.parent / file).resolve())] = value
        labels.setdefault(Path(file).name, value)
    return labels


@dataclass(frozen=True)
class _FileResult:
    records: list[ProteinRecord]
    problem: str | None = None
    filtered: int = 0


def _records_from_file(path: Path, config: IngestConfig, cluster: str, split: str) -> _FileResult:
    from openesm3.structure.io import load_structure

    try:
        complex_ = load_structure(path, model=config.model)
    except (OpenESM3Error, OSError, ValueError) as exc:
        return _FileResult([], str(exc) or type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a long ingestion; it is reported
        return _FileResult([], f"internal error while reading (please report): {type(exc).__name__}: {exc}")
    stem = _stem(path)
    chains = list(complex_.chains)
    records = []
    if config.unit == "complex":
        groups = [chains] if chains else []
    else:
        seen: set[str] = set()
        groups = []
        for chain in chains:
            if config.unique_chains and chain.sequence in seen:
                continue
            seen.add(chain.sequence)
            groups.append([chain])
    filtered = 0
    for group in groups:
        atom37 = np.concatenate([np.asarray(c.atom37, dtype=np.float32) for c in group])
        mask = np.concatenate([np.asarray(c.atom37_mask, dtype=bool) for c in group])
        n_ca = int(mask[:, ATOM37_CA].sum())
        if n_ca < config.min_length or (config.max_length and len(atom37) > config.max_length):
            filtered += 1
            continue
        name = stem if config.unit == "complex" else f"{stem}_{group[0].chain_id}"
        records.append(
            ProteinRecord(
                name=name,
                sequence="".join(c.sequence for c in group),
                atom37=atom37,
                atom37_mask=mask,
                residue_index=np.concatenate([np.asarray(c.residue_index) for c in group]).astype(np.int32),
                chain_index=np.concatenate([np.full(len(c.sequence), i, np.int32) for i, c in enumerate(group)]),
                chain_ids=tuple(c.chain_id for c in group),
                source=str(path),
                cluster=cluster,
                split=split,
                weight=config.weight,
            )
        )
    return _FileResult(records, None, filtered)


def _work(item: tuple[Path, IngestConfig, str, str]) -> _FileResult:
    return _records_from_file(*item)


@dataclass(frozen=True)
class IngestReport:
    index: Path
    n_files: int
    n_records: int
    n_residues: int
    skipped: list[dict[str, str]]  # {"source": path, "problem": why}
    filtered: int  # records left out by min_length / max_length
    grouped: int = 0  # unlabelled records whose sequence another record has (they share a cluster)


def _newly_grouped(record: ProteinRecord, unlabelled: Counter[str], labelled: set[str]) -> int:
    """How many more unlabelled records share a cluster by identical sequence (:attr:`ProteinDataset.clusters`: with
    a labelled record, or with another unlabelled one) once ``record`` is added; updates ``unlabelled``/``labelled``."""
    seq = record.sequence
    if record.cluster:
        new = seq not in labelled
        labelled.add(seq)
        return 1 if new and unlabelled[seq] == 1 else 0  # a lone unlabelled copy now shares this record's cluster
    unlabelled[seq] += 1
    if seq in labelled or unlabelled[seq] > 2:
        return 1
    return 2 if unlabelled[seq] == 2 else 0  # a pair counts both


def ingest_structures(
    sources: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    config: IngestConfig | None = None,
    *,
    progress: bool = True,
    skip_missing: bool = False,
) -> IngestReport:
    """Read structure files into a shard dataset in ``out_dir`` (see the module docstring). With ``skip_missing``, a
    source or listed path that does not exist, a directory without structure files and a list file that cannot be
    read are skipped entries, as an unreadable structure file is, instead of errors."""
    config = config or IngestConfig()
    missing: list[dict[str, str]] | None = [] if skip_missing else None
    files = find_structure_files(sources, missing=missing)
    labels = read_manifest(config)

    def items() -> Iterator[tuple[Path, IngestConfig, str, str]]:
        for path in files:
            cluster, split = labels.get(str(path.resolve())) or labels.get(path.name) or ("", "")
            yield path, config, cluster, split

    writer = ShardWriter(out_dir, shard_size=config.shard_size)
    skipped: list[dict[str, str]] = list(missing or [])
    filtered = n_residues = grouped = 0
    unlabelled: Counter[str] = Counter()  # sequence -> unlabelled records with it
    labelled: set[str] = set()  # sequences of labelled records
    executor = ProcessPoolExecutor(max_workers=config.workers) if config.workers > 1 else None
    try:
        results: Iterator[_FileResult] = (
            executor.map(_work, items(), chunksize=8) if executor else (_work(i) for i in items())
        )
        with Progress(total=len(files), desc="ingest", unit="file", disable=not progress) as bar:
            for path, result in zip(files, results):
                if result.problem is not None:
                    skipped.append({"source": str(path), "problem": result.problem})
                filtered += result.filtered
                for record in result.records:
                    writer.add(record)
                    n_residues += record.length
                    grouped += _newly_grouped(record, unlabelled, labelled)
                postfix = f"{writer.n_records} records, {len(skipped)} skipped"
                bar.update(postfix=postfix + (f", {grouped} grouped by identical sequence" if grouped else ""))
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    info: dict[str, Any] = {
        "unit": config.unit,
        "n_files": len(files),
        "filtered": filtered,
        "manifest": os.fspath(config.manifest) if config.manifest else "",
    }
    index = writer.close(skipped=skipped, info=info)
    return IngestReport(index, len(files), writer.n_records, n_residues, skipped, filtered, grouped)
