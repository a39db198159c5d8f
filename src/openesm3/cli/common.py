"""What every model subcommand shares: weights/device/dtype/batch/seed options, reading inputs item by item,
per-item error reporting, progress bars.

Options (:func:`add_model_arguments`): ``--weights`` (an official release directory, converted weights, or one
file; default ``$OPENESM3_WEIGHTS`` or ``~/.cache/openesm3/weights``), ``--device`` (``auto``: CUDA if present),
``--dtype {fp32,bf16}``, ``--batch-size``, ``--seed`` and ``--quiet`` (no progress bar).

Inputs (:func:`read_inputs`): FASTA (every record), our protein JSON (every protein) or a structure file (one
protein, chains joined with ``|``). Each input protein is an :class:`Item`; an item that cannot be read carries
its error instead, and :class:`Failures` reports those at the end while the other items still complete. The
exit code is 0 when everything worked, 1 when some items failed, 2 when nothing could be done.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openesm3.errors import InputError, OpenESM3Error, OutputsExistError
from openesm3.utils.checks import check_batch_size, check_seed

if TYPE_CHECKING:
    from openesm3.config import TaskDecoding
    from openesm3.generation.bundle import ModelBundle
    from openesm3.protein import Protein
    from openesm3.utils.progress import Progress

DEFAULT_BATCH_SIZE = 8


def one_line_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Decorate a research script's ``main`` (``scripts/``): an OpenESM3 error or an unreadable file (a bad
    ``--data``, ``--weights`` or input path) ends it with one line and exit status 2, as the openesm3 commands end,
    not with a traceback."""
    name = Path(main.__code__.co_filename).name

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return int(main(*args, **kwargs) or 0)
        except (OpenESM3Error, OSError) as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            return 2

    return wrapped


def add_model_arguments(parser: argparse.ArgumentParser, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--weights",
        metavar="PATH",
        help="ESM3 weights: a directory with the official .pth files (or data/weights/ of the release), a "
        "directory of converted weights ('openesm3 convert'), or one trunk file. Default: $OPENESM3_WEIGHTS, "
        "else ~/.cache/openesm3/weights",
    )
    group.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps, or auto (default: CUDA if present)")
    group.add_argument(
        "--dtype", choices=("fp32", "bf16"), default="fp32", help="weights/compute dtype (default fp32, exact)"
    )
    group.add_argument(
        "--batch-size", type=int, default=batch_size, metavar="N", help=f"items per forward pass (default {batch_size})"
    )
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--quiet", action="store_true", help="no progress bar")


def set_threads(threads: int) -> None:
    """``--threads N``: torch's CPU threads (0 keeps torch's choice)."""
    if threads < 0:
        raise InputError(f"--threads must be >= 0 (0: torch's choice), got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


def check_model_options(args: argparse.Namespace) -> None:
    """``--batch-size`` (unless None: not given, where a command allows that) and ``--seed``, by the API's rules under
    the options' names: each model command calls it before reading any input, and :func:`bundle_from_args` again."""
    if args.batch_size is not None:
        check_batch_size(args.batch_size, "--batch-size")
    check_seed(args.seed, "--seed")


def bundle_from_args(args: argparse.Namespace, needs: Sequence[str] = ("esm3",)) -> ModelBundle:
    """Seed, build the :class:`ModelBundle` and check up front that the ``needs`` networks' weights exist."""
    import torch  # noqa: PLC0415

    from openesm3.generation.bundle import ModelBundle  # noqa: PLC0415

    check_model_options(args)
    torch.manual_seed(args.seed)
    vocabulary_dir = getattr(args, "vocabulary_dir", None)
    bundle = ModelBundle(args.weights, device=args.device, dtype=args.dtype, vocabulary_dir=vocabulary_dir)
    bundle.require(*needs)
    return bundle


def progress_bar(args: argparse.Namespace, total: int, desc: str, unit: str) -> Progress:
    """A progress bar on stderr, shown for multi-item work unless ``--quiet``."""
    from openesm3.utils.progress import Progress  # noqa: PLC0415

    return Progress(total=total, desc=desc, unit=unit, disable=args.quiet or total <= 1)


@dataclass
class Item:
    """One input protein: its name (record id, file stem), where it came from, and the protein or the error."""

    name: str
    source: str
    protein: Protein | None = None
    error: OpenESM3Error | None = None


def read_inputs(paths: Sequence[str], chains: Sequence[str] | None = None) -> list[Item]:
    """Every protein of every input file (FASTA, JSON or structure), each valid or carrying its error.

    ``chains``: author chain ids to read from structure files (in this order); None reads every protein chain. A
    FASTA record or JSON protein is not cut into chains: one whose chains are not exactly ``chains`` carries an error
    saying so, rather than being used whole as if the selection had been applied."""
    from openesm3 import protein_io  # noqa: PLC0415
    from openesm3.protein import Protein  # noqa: PLC0415

    def item(name: str, path: str, protein: Protein) -> Item:
        if chains is not None:
            held = [chain_id for chain_id, _, _ in protein.chain_segments()]
            if held != list(chains):
                return Item(name, path, error=InputError(
                    f"{path}: protein {name!r} has chain(s) {', '.join(held)}; --chains {','.join(chains)} selects "
                    "chains of structure files only: give the structure file, or a FASTA/JSON of the chains wanted"
                ))  # fmt: skip
        return Item(name, path, protein=protein)

    items: list[Item] = []
    for path in paths:
        suffix = protein_io.file_kind(path)
        try:
            if suffix == "fasta":
                for record, result in protein_io.iter_fasta_proteins(path):
                    if isinstance(result, Protein):
                        items.append(item(record.id, path, result))
                    else:
                        items.append(Item(record.id, path, error=result))
            elif suffix == "json":
                proteins = protein_io.read_json(path)
                if not proteins:  # as an empty FASTA file is, rather than a run with nothing done and nothing said
                    raise InputError(f"{path}: no proteins (an empty JSON list)")
                for n, protein in enumerate(proteins):
                    items.append(item(protein.name or f"{path}[{n}]", path, protein))
            else:
                protein = Protein.from_structure(path, chains=chains)
                items.append(Item(protein.name, path, protein=protein))
        except OpenESM3Error as exc:
            items.append(Item(path, path, error=exc))
    return items


def chain_ids(value: str | Sequence[str] | None, option: str) -> list[str] | None:
    """The chain ids given to ``option`` (``--chain A --chain B``, or ``--chains A,B``); None when not given.

    A chain id given twice is refused before any work: a file's chain is read once, so ``--chain A --chain A`` would
    silently give one chain A, whether a homodimer (two chain ids) or another chain (a typo) was meant."""
    if not value:
        return None
    ids = [c.strip() for c in value.split(",") if c.strip()] if isinstance(value, str) else list(value)
    repeated = [c for c in dict.fromkeys(ids) if ids.count(c) > 1]
    if repeated:
        raise InputError(
            f"{option}: chain {', '.join(map(repr, repeated))} given more than once; a file's chain is read once: give "
            "each chain id once, in the order wanted"
        )
    return ids


def split_items(items: Sequence[Item], failures: Failures) -> list[tuple[Item, Protein]]:
    """The readable items with their protein; the others are recorded in ``failures``."""
    valid = []
    for item in items:
        if item.protein is None:
            failures.add(item.name, item.error or "unreadable")
        else:
            valid.append((item, item.protein))
    return valid


def input_positions(items: Sequence[Item]) -> list[int]:
    """The place in the whole input (unreadable items counted) of each item :func:`split_items` keeps: the random
    stream of a protein is chosen by it, so fixing a bad record does not change the draws of the others."""
    return [i for i, item in enumerate(items) if item.protein is not None]


def _names(message: str, name: str) -> bool:
    """Whether ``message`` already names the item ``name``: it starts with it (a file's ``PATH: reason``, or
    ``PATH[2]: reason`` for an item of a JSON list) or quotes it (``protein 'x': ...``). Merely containing it is not
    enough: a record named ``A`` or ``1`` appears inside almost any message."""
    if not name:
        return False
    starts = message.startswith(name) and message[len(name) : len(name) + 1] in ("", ":", " ", ",", "[")
    return starts or repr(name) in message or f'"{name}"' in message


def _item_line(name: str, message: str) -> str:
    """An item's error as one line that names the item once."""
    return message if _names(message, name) else f"{name}: {message}"


class Failures:
    """Per-item errors of one command, reported on stderr at the end."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.errors: list[tuple[str, str]] = []

    def add(self, name: str, error: BaseException | str) -> None:
        from openesm3.utils.provenance import note_error  # noqa: PLC0415

        message = str(error)
        self.errors.append((name, message))
        note_error(_item_line(name, message))  # for the run record

    def __len__(self) -> int:
        return len(self.errors)

    def report(self, total: int, what: str = "item(s)", stream: Any = None, limit: int = 50) -> None:
        """One line per failed item (the first ``limit``), then a count."""
        out = stream if stream is not None else sys.stderr
        for name, message in self.errors[:limit]:
            print(f"openesm3 {self.command}: error: {_item_line(name, message)}", file=out)
        if len(self.errors) > limit:
            print(f"openesm3 {self.command}: ... and {len(self.errors) - limit} more", file=out)
        if self.errors:
            print(f"openesm3 {self.command}: {len(self.errors)} of {total} {what} failed", file=out)

    def exit_code(self, n_ok: int) -> int:
        if not self.errors:
            return 0
        return 1 if n_ok else 2


def add_decoding_arguments(parser: argparse.ArgumentParser, defaults: TaskDecoding) -> None:
    """``--steps``, ``--temperature``, ``--schedule``, ``--strategy``, ``--top-p``, ``--no-annealing``."""
    group = parser.add_argument_group("decoding")
    group.add_argument(
        "--steps", type=int, metavar="N",
        help=f"decoding steps per generated track (default: {defaults.steps_per_residue:g} x length, at least 1)",
    )  # fmt: skip
    group.add_argument("--temperature", type=float, default=defaults.temperature,
                       help=f"sampling temperature, 0 = greedy (default {defaults.temperature:g})")  # fmt: skip
    group.add_argument("--schedule", choices=("cosine", "linear"), default=defaults.schedule,
                       help=f"unmasking schedule (default {defaults.schedule})")  # fmt: skip
    group.add_argument("--strategy", choices=("random", "entropy", "max_logit"), default=defaults.strategy,
                       help=f"which positions to commit first (default {defaults.strategy})")  # fmt: skip
    group.add_argument("--top-p", type=float, default=defaults.top_p, help="nucleus sampling threshold (default 1)")
    group.add_argument(
        "--annealing", action=argparse.BooleanOptionalAction, default=defaults.temperature_annealing,
        help="anneal the temperature over the steps (default: %(default)s)",
    )  # fmt: skip
    parser.set_defaults(decoding_defaults=defaults)


def decoding_from_args(args: argparse.Namespace) -> TaskDecoding:
    """The :class:`TaskDecoding` of the options added by :func:`add_decoding_arguments` (validated)."""
    import math  # noqa: PLC0415

    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    # The config checks these too, but under its field names; the user typed the options.
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise InputError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise InputError(f"--top-p must lie in (0, 1], got {args.top_p}")
    defaults: TaskDecoding = args.decoding_defaults
    return defaults.replace(
        num_steps=args.steps,
        temperature=args.temperature,
        schedule=args.schedule,
        strategy=args.strategy,
        top_p=args.top_p,
        temperature_annealing=args.annealing,
    )


STDOUT = "-"  # an output option given as ``-``: standard output


def is_stdout(path: str | Path | None) -> bool:
    """Whether an output option was given as ``-`` (standard output), as Unix tools read it."""
    return path is not None and str(path) == STDOUT


def names_a_file(path: str | Path | None) -> bool:
    """Whether an output option was given a file (not left out, not ``-``): such an output is written as the run
    goes, standard output only once, at the end."""
    return path is not None and not is_stdout(path)


def refuse_stdout(path: str | Path | None, option: str, what: str) -> None:
    """Stop before any work when an output that cannot go to standard output (binary data, a directory, several
    files) was given as ``-``; ``what`` says what the option writes (``"embed writes a directory or a .safetensors
    file"``)."""
    if is_stdout(path):
        raise InputError(f"{option} -: {what}; give a path (standard output takes text results only)")


def write_text(path: str | Path, text: str) -> None:
    """A text output the user named: to standard output for ``-`` (the whole result, once), else to the file,
    atomically (gzip-compressed under ``.gz``). Standard output is not a file: the run record lists no output for
    it, as for a table printed without ``-o``."""
    if is_stdout(path):
        if sys.stdout is None:  # started with standard output closed (``>&-``)
            raise InputError("standard output is closed; give a file name for the result")
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from openesm3.utils.atomic import write_text_output  # noqa: PLC0415

        write_text_output(path, text)


def stdout_structure_format(option: str, fmt: str | None) -> str:
    """The format of a structure written to standard output (``option -``): ``--format``, else PDB (there is no
    suffix to read it from); BinaryCIF, binary, is refused."""
    if fmt == "bcif":
        raise InputError(f"{option} -: BinaryCIF is binary, not for standard output; give a file name, or --format "
                         "pdb or cif")  # fmt: skip
    return fmt or "pdb"


def write_structure_text(structure: Any, path: str | Path, fmt: str, mmcif: str = "give --format cif") -> None:
    """A chain or complex to ``path`` in format ``fmt`` (atomically), or as text on standard output for ``-``.
    ``mmcif`` says how to get mmCIF on standard output, added to the error of a structure PDB cannot hold (a chain id
    of two characters): the error's own advice, a .cif file name, cannot be given as ``-``."""
    if is_stdout(path):
        from openesm3.structure.io import structure_text  # noqa: PLC0415

        try:
            text = structure_text(structure, fmt)  # type: ignore[arg-type]
        except InputError as exc:
            if fmt != "pdb":
                raise
            raise InputError(f"{exc} (on standard output: {mmcif})") from None
        write_text(path, text)
    else:
        structure.write(path, fmt)


def write_table(path: str | None, header: list[str], rows: list[list[Any]]) -> None:
    """A table to ``path`` (``.json``: a list of objects; ``.csv``; otherwise TSV; each gzip-compressed under a further
    ``.gz``), atomically; a TSV table on stdout if None or ``-``."""
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415
    import json  # noqa: PLC0415
    import math  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from openesm3.utils.atomic import write_text_output  # noqa: PLC0415

    def cell(v: Any) -> Any:
        if isinstance(v, float):  # the shortest text that reads back as the same number: nothing rounded away
            if math.isnan(v):
                return ""
            with np.errstate(over="ignore"):  # beyond float32's range: not a float32, written as float64
                single = np.float32(v)  # a model output (float32): its own shortest form, not float64's 17 digits
            return str(single) if float(single) == v else repr(v)
        return "" if v is None else v

    if is_stdout(path):
        path = None
    kind = path.lower().removesuffix(".gz") if path is not None else ""
    if path is not None and kind.endswith(".json"):
        records = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in zip(header, row)} for row in rows
        ]
        write_text_output(path, json.dumps(records, indent=1) + "\n")
        return
    buffer = io.StringIO()
    delimiter = "," if kind.endswith(".csv") else "\t"
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[cell(v) for v in row] for row in rows])
    write_text(STDOUT if path is None else path, buffer.getvalue())


def check_output_file(path: str | None, option: str, inputs: Sequence[str] = ()) -> None:
    """Stop before any work when the output file ``path`` (given as ``option``) could not be written at the end: it
    is a directory, or something on its way is a file, or it is one of the ``inputs`` (:func:`check_not_inputs`).
    Missing parent directories are fine (they are created). ``-`` (standard output) is always fine."""
    if path is None or is_stdout(path):
        return
    if path.endswith(("/", os.sep)):  # Path() drops the '/': a file would be written where a directory was meant
        raise InputError(f"{option} {path}: ends with '/', a directory; give a file name")
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{option} {path}: is a directory; give a file name")
    _check_parents(target, option, path)
    check_not_inputs([path], inputs, option)


def check_distinct_outputs(outputs: Sequence[tuple[str, str | Path | None]]) -> None:
    """Stop before any work when two outputs, given as ``(option, path)``, are one file: the second written would
    replace the first (``fold x.fasta -o x.pdb --summary x.pdb`` kept the table and lost the structure). Two
    outputs given as ``-`` would be mixed on standard output: refused too."""
    seen: dict[Path | None, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        key = None if is_stdout(path) else Path(path).resolve()
        if key is None and key in seen and seen[key] != option:
            raise InputError(f"{option} -: {seen[key]} also goes to standard output; give one of them a file")
        if key in seen and seen[key] != option:
            raise InputError(f"{option} {path}: is also the file of {seen[key]}; give each output its own file")
        seen.setdefault(key, option)


def check_not_inputs(outputs: Sequence[str | Path | None], inputs: Sequence[str | Path], option: str) -> None:
    """Stop before any work when an output file (given as ``option``) is one of the command's input files: writing
    it would replace the user's file with the result (``fold structures/*.pdb -o structures`` writes
    structures/<id>.pdb over the experimental structures it reads)."""
    import stat  # noqa: PLC0415

    def identity(path: str | Path) -> tuple[int, int] | None:  # the file itself, whatever path names it
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None

    sources: dict[tuple[int, int], str | Path] = {}
    for path in inputs:  # looked up once each: 10,000 inputs and outputs are not 10^8 comparisons
        key = identity(path)
        if key is not None:
            sources.setdefault(key, path)
    for output in outputs:
        key = None if output is None or is_stdout(output) else identity(output)
        if key is not None and key in sources:
            raise InputError(
                f"{option} {output}: is the input file {sources[key]}; writing there would replace it (give another "
                "output)"
            )


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` of a command that writes its results as it goes (:func:`check_new_outputs`)."""
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace the files of an earlier run that this run writes (default: refuse to start when any of them "
        "exists, since a stopped run would leave them part replaced; other files are never touched)",
    )  # fmt: skip


def check_new_outputs(
    args: argparse.Namespace, outputs: Sequence[tuple[str, str | Path | None, Sequence[str | Path | None]]]
) -> None:
    """Stop before any work when a file this run would write already exists, unless ``--overwrite``.

    ``outputs``: ``(option, value given, the files it makes this run write)``; a file None (an option not given) is
    skipped, and so is ``-`` (standard output: nothing to replace). A command that writes its results as it goes
    replaces an earlier run's files one by one: stopped part way (Ctrl-C, SIGTERM, a crash), it would leave a partial
    ``designs.fasta`` or table where a complete one was, beside a mix of new and old files. Files of the output
    directory that this run would not write are no reason to refuse. The refusal is an
    :class:`~openesm3.errors.OutputsExistError`: an existing ``--record`` file is then kept (it is the record of the
    run that wrote those files)."""
    if getattr(args, "overwrite", False):
        return
    clashes, total = [], 0
    for option, given, paths in outputs:
        named = dict.fromkeys(str(p) for p in paths if names_a_file(p))
        there = [path for path in named if os.path.lexists(path)]
        total += len(there)
        if there:
            shown = ", ".join(there[:3]) + (f" and {len(there) - 3} more" if len(there) > 3 else "")
            what = f"{len(there)} file already exists" if len(there) == 1 else f"{len(there)} files already exist"
            clashes.append((option, given, f"{option} {given}: {what} that this run would write ({shown})"))
    if clashes:
        if len(clashes) > 1:  # e.g. -o DIR and --summary FILE: each needs a new name
            new = " and ".join(option for option, _, _ in clashes)
        else:
            new = "directory" if Path(str(clashes[0][1])).is_dir() else "file"
        them = "it" if total == 1 else "them"
        raise OutputsExistError(
            "; ".join(text for _, _, text in clashes) + f"; give a new {new}, or --overwrite to replace {them} (a "
            f"stopped run would leave {them} part replaced)"
        )


def check_output_dir(path: str, option: str) -> Path:
    """Stop before any work when the output directory ``path`` (given as ``option``) could not be made or written
    into: a file is there or on its way, or it is read-only; it is not created (see :func:`prepare_output_dir`)."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InputError(f"{option} {path}: exists and is not a directory; give a directory")
    _check_parents(target, option, path)
    if target.is_dir():
        _check_writable(target, option, path)
    return target


def prepare_output_dir(path: str, option: str) -> Path:
    """The output directory ``path`` (given as ``option``), checked (:func:`check_output_dir`) and created now, before
    any work."""
    target = check_output_dir(path, option)
    target.mkdir(parents=True, exist_ok=True)
    _check_writable(target, option, path)
    return target


def _check_parents(target: Path, option: str, path: str) -> None:
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option} {path}: {parent} is not a directory")
            _check_writable(parent, option, path)
            return


def _check_writable(directory: Path, option: str, path: str) -> None:
    """A directory the output goes into (or is created under) must take new files: a read-only place (another
    user's directory, a read-only mount) was found only when the results were written, after all the work."""
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: cannot write in {directory} (permission denied or read-only)")


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats made distinct (``x``, ``x_2``, ``x_3``, ...), the text otherwise kept: ids of output
    records, e.g. of two structure files with the same stem from different directories."""
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 1
        while candidate in seen or (candidate != name and candidate in taken):
            k += 1
            candidate = f"{name}_{k}"
        seen.add(candidate)
        out.append(candidate)
    return out


def output_names(items: Sequence[str]) -> list[str]:
    """File-system-safe, unique file stems for record ids (see :func:`openesm3.generation.embedding.safe_name`)."""
    from openesm3.generation.embedding import safe_name  # noqa: PLC0415

    used: set[str] = set()
    return [safe_name(name, used) for name in items]


def untrained_note(untrained: tuple[str, ...]) -> str:
    """One line saying that the decoder's weights record ``untrained`` confidence heads as never trained."""
    names = " and ".join({"plddt": "pLDDT", "pae": "PAE/pTM"}[h] for h in untrained)
    which = f"{names} head{'s' * (len(untrained) > 1)}"
    if len(untrained) > 1:
        which += " (a stage-1 tokenizer export)"  # the only run that trains neither, see training/tokenizer/run.py
    return f"these decoder weights record their {which} as never trained: the values would be those of random weights"
