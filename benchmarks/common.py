"""Benchmark harness shared by the scripts in ``benchmarks/``.

- Every measurement runs in its own fresh Python process (:func:`run_worker`), so one measurement's
  allocations, caches and peak RSS never leak into another's. A worker prints one ``RESULT {json}`` line.
- Both implementations load the same random weights through the official file format.
- Times are medians of repeated runs after warm-up; peak memory is the worker's ``ru_maxrss`` (everything the
  process ever held: weights, memory-mapped pages that were touched, activations).
- Machine and library versions are recorded with every result.

Timings from a shared machine are indicative only; run under ``flock /tmp/openesm3-bench.lock`` (and the
big-memory lock for full-size models) so that two benchmarks never overlap.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OPENESM3_SHARED_DATA", REPO.parent / "shared" / "data"))
FASTA = SHARED_DATA / "sequences" / "derived" / "sequences_dedup.fasta"
RESULT_PREFIX = "RESULT "


# ---- process-level measurements ------------------------------------------------------------------------------
def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def current_rss_gb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; wall seconds of each run, their median, and
    the median CPU seconds of the process."""
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    # CPU seconds (all threads) are reported too: on a shared machine they move less than wall time.
    return {
        "median_s": statistics.median(times),
        "times_s": [round(t, 4) for t in times],
        "median_cpu_s": statistics.median(cpu),
        "cpu_times_s": [round(t, 4) for t in cpu],
    }


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        flags = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "mem_total_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS") if k in os.environ},
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


# ---- fresh-process workers -----------------------------------------------------------------------------------
def run_worker(script: Path, name: str, args: dict[str, Any], *, timeout: float = 3600) -> dict[str, Any]:
    """Run ``script --worker name --args JSON`` in a fresh interpreter and return its RESULT dict."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("INFRA_PROVIDER", "1")  # the official package, if imported, never touches the network
    cmd = [sys.executable, str(script), "--worker", name, "--args", json.dumps(args)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["worker_wall_s"] = round(time.perf_counter() - start, 1)
    return result


def worker_main(workers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> bool:
    """If this process was started as a worker, run it, print its RESULT line and return True."""
    if "--worker" not in sys.argv:
        return False
    name = sys.argv[sys.argv.index("--worker") + 1]
    args = json.loads(sys.argv[sys.argv.index("--args") + 1])
    threads = args.get("threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    result = workers[name](args)
    result.setdefault("peak_rss_gb", round(peak_rss_gb(), 3))
    result["machine"] = machine_info()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return True


# ---- results files -------------------------------------------------------------------------------------------
def output_error(path: Path | None, *, overwrite: bool) -> str | None:
    """Why results may not be written to ``path`` (None: they may). An existing file is kept unless ``overwrite``:
    a re-run must not silently replace recorded figures."""
    if path is None:
        return None
    if path.is_dir():
        return f"{path}: is a directory"
    if path.exists() and not overwrite:
        return f"{path} exists; pass --overwrite to replace it"
    return None


def write_results(path: Path, results: Any) -> None:
    """``results`` as indented JSON at ``path``, atomically: an interrupted run leaves the previous file whole."""
    from openesm3.utils.atomic import atomic_write_json

    atomic_write_json(path, results)


# ---- real inputs ---------------------------------------------------------------------------------------------
def read_fasta(path: Path = FASTA, *, n: int, min_len: int = 1, max_len: int | None = None) -> list[str]:
    """The first ``n`` sequences (file order) of at least ``min_len`` residues, cropped to ``max_len``, using
    only the 20 canonical letters (others are skipped so both models see ordinary proteins)."""
    from openesm3.constants import CANONICAL_AMINO_ACIDS

    if not path.is_file():
        raise FileNotFoundError(f"{path}: real sequences are needed (set OPENESM3_SHARED_DATA)")
    allowed = set(CANONICAL_AMINO_ACIDS)
    out: list[str] = []
    seq: list[str] = []

    def flush() -> None:
        s = "".join(seq)
        if len(s) >= min_len and set(s) <= allowed:
            out.append(s[:max_len] if max_len else s)

    with open(path) as handle:
        for line in handle:
            if line.startswith(">"):
                if seq:
                    flush()
                    seq.clear()
                    if len(out) == n:
                        return out
            else:
                seq.append(line.strip())
    if seq and len(out) < n:
        flush()
    return out[:n]


def sequence_tokens(seq: str) -> Any:
    """[1, len + 2] token ids: BOS, residues, EOS."""
    import torch

    from openesm3 import constants as C

    index = {tok: i for i, tok in enumerate(C.SEQUENCE_VOCAB)}
    return torch.tensor([[C.SEQUENCE_BOS, *(index[a] for a in seq), C.SEQUENCE_EOS]])


def real_backbone(n_residues: int) -> Any:
    """N/CA/C coordinates [n_residues, 3, 3] (NaN where missing) of the first top240 chain of the dev set that
    is long enough, read with biotite."""
    import gzip

    import biotite.structure as struc
    import numpy as np
    import torch
    from biotite.structure.io.pdb import PDBFile

    rows = (SHARED_DATA / "dev" / "manifest.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    for line in rows[1:]:
        row = dict(zip(header, line.split("\t")))
        if row["subset"] != "top240" or int(row["primary_len"]) < n_residues:
            continue
        with gzip.open(SHARED_DATA / "dev" / row["file"], "rt") as handle:
            atoms = PDBFile.read(handle).get_structure(model=1)
        atoms = atoms[struc.filter_amino_acids(atoms) & (atoms.chain_id == row["primary_chain"]) & ~atoms.hetero]
        starts = struc.get_residue_starts(atoms, add_exclusive_stop=True)
        if len(starts) - 1 < n_residues:
            continue
        xyz = np.full((n_residues, 3, 3), np.nan, dtype=np.float32)
        for i, (lo, hi) in enumerate(zip(starts[:n_residues], starts[1 : n_residues + 1])):
            res = atoms[lo:hi]
            for k, name in enumerate(("N", "CA", "C")):
                hit = np.flatnonzero(res.atom_name == name)
                if hit.size:
                    xyz[i, k] = res.coord[hit[0]]
        return torch.from_numpy(xyz)
    raise FileNotFoundError(f"no dev-set chain with >= {n_residues} residues under {SHARED_DATA / 'dev'}")
