"""Benchmark: our DSSP (``openesm3.structure.dssp``) against mkdssp 4.2.2, speed and agreement.

Both run on the same decompressed PDB files: the dev-set files of ``dev/derived/mkdssp_ss8.tsv.gz`` (545). mkdssp
runs once per file, as a user would (``mkdssp --output-format dssp in.pdb out.dssp``); its wall time covers process
start, dictionary loading, parsing, DSSP, its accessibility calculation and writing the output. Ours is timed twice:
the assignment alone (``assign_ss8`` on atom37 arrays already in memory) and end to end (reading the PDB file with
the DSSP tests' loader, then ``assign_ss8``); the parsing time is also reported on its own.

mkdssp 4.2.2 refuses PDB files that do not start with a HEADER record (it then tries mmCIF) and fails on some
MDTraj-written files at their ``MODEL 0`` record, so files without HEADER get one prepended and their single
MODEL/ENDMDL pair dropped (86 files; done before timing, and both tools read the result).

Usage (timings are indicative on a shared machine):
    flock /tmp/openesm3-bench.lock python benchmarks/bench_dssp.py [--limit N] [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import biotite
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "unit"))

from _dssp_support import load_pdb_backbone, read_mkdssp_table  # noqa: E402

from openesm3.structure.dssp import assign_ss8  # noqa: E402
from openesm3.utils.atomic import atomic_open  # noqa: E402

DATA = Path(os.environ.get("OPENESM3_SHARED_DATA", REPO.parent / "shared" / "data"))
TABLE = DATA / "dev" / "derived" / "mkdssp_ss8.tsv.gz"
STATES = "GHITEBSC"
HEADER = "HEADER    UNKNOWN                                 01-JAN-00   XXXX              \n"


def prepare(name: str, out_dir: Path) -> tuple[Path, bool]:
    """Decompress one dev file into ``out_dir``; add a HEADER record (and drop MODEL/ENDMDL) when it has none."""
    text = gzip.decompress((DATA / "dev" / name).read_bytes()).decode("latin-1")
    fixed = not text.startswith("HEADER")
    if fixed:
        text = HEADER + "".join(
            line for line in text.splitlines(keepends=True) if not line.startswith(("MODEL", "ENDMDL"))
        )
    path = out_dir / (name.replace("/", "__").removesuffix(".gz"))
    path.write_text(text, encoding="latin-1")
    return path, fixed


def read_classic_dssp(path: Path) -> dict[tuple[str, int, str], str]:
    """States of a classic DSSP file keyed by (chain, resseq, icode); blank and P are coil C."""
    lines = path.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("  #  RESIDUE")) + 1
    states = {}
    for line in lines[start:]:
        if line[13] == "!":
            continue
        state = line[16] if line[16] not in " P" else "C"
        states[(line[11], int(line[5:10]), line[10].strip())] = state
    return states


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="only the first N files (sorted by name)")
    parser.add_argument("--repeats", type=int, default=3, help="passes of our assignment; the fastest is reported")
    parser.add_argument("--markdown", type=Path, default=None, help="write the '## DSSP' section of this file")
    args = parser.parse_args()

    mkdssp = shutil.which("mkdssp")
    if mkdssp is None:
        print("mkdssp not found on PATH", file=sys.stderr)
        return 2
    mkdssp_version = subprocess.run([mkdssp, "--version"], capture_output=True, text=True).stdout.strip()
    table = read_mkdssp_table(TABLE)
    names = sorted(table)[: args.limit]

    with tempfile.TemporaryDirectory(prefix="bench_dssp_") as tmp:
        tmp_dir = Path(tmp)
        prepared = [prepare(name, tmp_dir) for name in names]
        n_fixed = sum(fixed for _, fixed in prepared)

        # mkdssp, once per file, sequentially.
        mk_times, mk_states, mk_failed = [], {}, []
        for name, (path, _) in zip(names, prepared):
            out = path.with_suffix(".dssp")
            t0 = time.perf_counter()
            proc = subprocess.run([mkdssp, "--output-format", "dssp", str(path), str(out)], capture_output=True)
            mk_times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                mk_failed.append(name)
                continue
            mk_states[name] = read_classic_dssp(out)

        # Ours: parsing, then the assignment on arrays in memory (fastest of --repeats passes).
        t0 = time.perf_counter()
        loaded = [load_pdb_backbone(path) for path, _ in prepared]
        parse_total = time.perf_counter() - t0
        ours: dict[str, dict[tuple[str, int, str], str]] = {}
        pass_totals, per_file = [], []
        for _ in range(max(args.repeats, 1)):
            per_file = []
            for name, chains in zip(names, loaded):
                t1 = time.perf_counter()
                ss8 = assign_ss8(
                    chains.atom37,
                    chain_index=chains.chain_index,
                    residue_index=chains.residue_index,
                    sequence=chains.sequence,
                )
                per_file.append(time.perf_counter() - t1)
                ours[name] = dict(zip(chains.keys, ss8))
            pass_totals.append(sum(per_file))
        assign_total = min(pass_totals)

    # Agreement with the fresh mkdssp run and with the table.
    confusion: Counter[tuple[str, str]] = Counter()
    unmatched = 0
    for name, states in mk_states.items():
        for key, state in states.items():
            if key in ours[name]:
                confusion[state, ours[name][key]] += 1
            else:
                unmatched += 1
    matched = sum(confusion.values())
    agree = sum(n for (a, b), n in confusion.items() if a == b)
    table_pairs = [(s, ours[n][k]) for n in names for k, s in table[n].items() if k in ours[n]]
    table_agree = sum(a == b for a, b in table_pairs)
    n_res = sum(len(c.keys) for c in loaded)
    mk_total = sum(mk_times)

    lines = [
        "## DSSP",
        "",
        "Our `openesm3.structure.dssp.assign_ss8` (numpy) against `mkdssp` (the binary the official package calls),",
        "on the same decompressed PDB files.",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs (shared; timings indicative), "
        f"{platform.system()} {platform.release()}.",
        f"- Versions: {mkdssp_version}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"biotite {biotite.__version__}.",
        "- Command: `flock /tmp/openesm3-bench.lock python benchmarks/bench_dssp.py --markdown docs/benchmarks.md`"
        + (f" `--limit {args.limit}`" if args.limit else ""),
        f"- Files: {len(names)} dev-set files of `dev/derived/mkdssp_ss8.tsv.gz`, {n_res:,} residues read by our "
        f"loader; {n_fixed} files got a HEADER record (and lost their MODEL/ENDMDL pair) so that mkdssp reads them; "
        f"mkdssp failed on {len(mk_failed)}.",
        "",
        "| what | total wall time | per file (median) | file parsing included |",
        "|---|---|---|---|",
        f"| mkdssp, one process per file (`--output-format dssp`) | {mk_total:.1f} s | "
        f"{1000 * statistics.median(mk_times):.0f} ms | yes (also its accessibility and output) |",
        f"| ours, assignment only (`assign_ss8` on arrays in memory) | {assign_total:.2f} s | "
        f"{1000 * statistics.median(per_file):.1f} ms | no |",
        f"| ours, parsing only (test loader: biotite, N/CA/C/O/CD records) | {parse_total:.2f} s | "
        f"{1000 * parse_total / len(names):.1f} ms (mean) | yes |",
        f"| ours, end to end (parsing + assignment) | {parse_total + assign_total:.2f} s | "
        f"{1000 * (parse_total + assign_total) / len(names):.1f} ms (mean) | yes |",
        "",
        f"Speedup over mkdssp: **{mk_total / assign_total:.0f}x** for the assignment, "
        f"**{mk_total / (parse_total + assign_total):.0f}x** end to end including parsing.",
        "",
        f"Agreement with this mkdssp run: **{agree:,} / {matched:,} residues ({100 * agree / matched:.3f} %)**, "
        f"{unmatched} mkdssp residues not found by our loader; with the reference table: "
        f"{table_agree:,} / {len(table_pairs):,} ({100 * table_agree / len(table_pairs):.3f} %).",
        "The disagreements come from files whose residue set differs between mkdssp and our loader",
        "(microheterogeneity, non-standard residues); `tests/unit/test_dssp_mkdssp.py` lists them.",
        "",
        "Confusion (rows: mkdssp, columns: ours; `P` counts as `C`):",
        "",
        "| mkdssp \\ ours | " + " | ".join(STATES) + " | recall |",
        "|---" * (len(STATES) + 2) + "|",
    ]
    for ref in STATES:
        row = [confusion[ref, got] for got in STATES]
        recall = confusion[ref, ref] / max(sum(row), 1)
        lines.append(f"| **{ref}** | " + " | ".join(f"{n:,}" for n in row) + f" | {100 * recall:.2f} % |")
    section = "\n".join(lines) + "\n"
    print(section)
    if mk_failed:
        print("mkdssp failed on:", ", ".join(mk_failed))

    if args.markdown is not None:
        write_section(args.markdown, section)
        print(f"wrote the DSSP section of {args.markdown}")
    return 0


def write_section(path: Path, section: str) -> None:
    """Replace the '## DSSP' section of a markdown file (up to the next '## ' heading), or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\nSpeed and agreement measurements.\n"
    lines = text.splitlines(keepends=True)
    start = next((k for k, line in enumerate(lines) if line.rstrip() == "## DSSP"), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        stop = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        tail = "".join(lines[stop:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    with atomic_open(path, "w") as handle:
        handle.write(new)


if __name__ == "__main__":
    raise SystemExit(main())
