"""``openesm3 featurize``: per-chain length, sequence, DSSP, mean relative SASA and chain breaks."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "featurize",
        help="DSSP, SASA and chain breaks of structure files",
        description=(
            "Read PDB/mmCIF/BinaryCIF files (optionally .gz) and print, per chain: length, sequence, the DSSP "
            "8-state string (native implementation, no mkdssp needed; X where a residue lacks N, CA, C or O), the "
            "mean relative SASA and the residues where a chain break starts. --json writes the same per residue."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="structure file(s)")
    p.add_argument("--chain", action="append", metavar="ID", help="only these chain ids (repeatable)")
    p.add_argument("--model", type=int, default=1, help="model number, 1-based (default 1)")
    p.add_argument(
        "--json",
        metavar="OUT",
        help="per-residue features as JSON (atomically; '-': stdout, the summary then to stderr)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print the per-chain summary nor a progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from openesm3.cli.common import chain_ids, check_output_file, is_stdout, write_text
    from openesm3.errors import OpenESM3Error
    from openesm3.structure.features import featurize
    from openesm3.structure.io import load_structure
    from openesm3.utils.progress import Progress

    wanted = chain_ids(args.chain, "--chain")
    check_output_file(args.json, "--json", args.files)
    # With --json - the JSON is standard output's only content; the per-chain summary goes to stderr.
    summary = sys.stderr if is_stdout(args.json) else sys.stdout
    results: list[dict[str, Any]] = []  # one per file given, in order (a file given twice appears twice)
    failures: list[str] = []
    many = len(args.files) > 1
    with Progress(total=len(args.files), desc="featurize", unit="file", disable=args.quiet or not many) as bar:
        for path in args.files:
            try:
                structure = load_structure(path, model=args.model, chains=wanted)
                chains = featurize(structure)
            except OpenESM3Error as exc:
                if not many:
                    raise
                failures.append(str(exc))
                bar.update()
                continue
            results.append({"file": path, "chains": [c.to_json() for c in chains]})
            if not args.quiet:
                for c in chains:
                    s = c.summary()
                    breaks = ",".join(s["chain_breaks"]) or "none"
                    rsa = "n/a" if s["mean_relative_sasa"] is None else f"{s['mean_relative_sasa']:.3f}"
                    print(
                        f"{path}\tchain {s['chain_id']}\tlength {s['length']}\tmean relative SASA {rsa}\t"
                        f"chain breaks at {breaks}",
                        file=summary,
                    )
                    print(f"  sequence {s['sequence']}", file=summary)
                    print(f"  dssp     {s['ss8']}", file=summary)
            bar.update()
    if args.json and results:  # a run where every file failed leaves an earlier output as it was
        payload: Any = results[0] if not many and results else results
        write_text(args.json, json.dumps(payload, indent=1) + "\n")
    for failure in failures:
        print(f"openesm3 featurize: error: {failure}", file=sys.stderr)
    if failures:
        print(f"openesm3 featurize: {len(failures)} of {len(args.files)} file(s) failed", file=sys.stderr)
        return 2 if not results else 1
    return 0
