"""Iterative generation (paper A.1.10, spec §10.3): 8 real proteins of L = 128 residues, one track generated in
32 steps, official ``ESM3.batch_generate`` against our batched ``generate``, same random full-size (1.4B) weights.

Usage (full-size models: take both locks; timings from a shared machine are indicative only):

    flock /tmp/openesm3-bigmem.lock flock /tmp/openesm3-bench.lock \\
        python benchmarks/bench_generation.py --out benchmarks/results/generation.json \\
        [--tracks structure,sequence,secondary_structure,sasa,function] [--repeats N] [--threads N] [--steps K]
        [--impls reference,ours_fp32,ours_bf16,ours_autocast] [--device cpu|cuda] [--tiny]

- Weights: the random official-format file and its bf16 conversion prepared by ``bench_trunk.py`` (cached under
  ``--cache``; made here if missing). Both implementations read the same file; ours also runs from the bf16 copy
  (``openesm3 convert --dtype bf16``).
- Prompts (real chains of ``../shared/data/dev``, cropped to 128 residues, featurised with our reader):
  structure / SS8 / SASA / function: the sequence given, the target track absent (generated whole);
  sequence: nothing given but the backbone coordinates (inverse folding, geometric attention on).
- Each implementation x track runs in a fresh process (``benchmarks/common.py``); every forward pass is
  timestamped, so the time of step i (forward + sampling + commit) is measured directly. A step costs the same at
  any ``num_steps`` (one forward of the whole batch plus sampling over every masked position), so with
  ``--steps K < 32`` the run is made with ``num_steps = K`` and the 32-step time is extrapolated as
  32 x median steady step (the first step of the first repeat, which pays one-off warm-up, is left out).
  Throughput = prompts x steps / time (prompt-steps per second). Wall and process CPU time per step are both
  reported (CPU time moves less on a shared machine), with the fastest step and the time inside the forward pass.
- ``--device`` defaults to CUDA when available (steps are then timed after ``torch.cuda.synchronize(device)``; GPU peak
  memory is added). ``--tiny`` runs a 2-layer model to check the script (tests/integration); it times nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

from benchmarks.common import (  # noqa: E402
    SHARED_DATA,
    current_rss_gb,
    machine_info,
    output_error,
    run_worker,
    worker_main,
    write_results,
)

SCRIPT = Path(__file__).resolve()
N_PROMPTS, N_RESIDUES, NUM_STEPS = 8, 128, 32
TRACKS = ("structure", "sequence", "secondary_structure", "sasa", "function")
FULL = {"d_model": 1536, "n_heads": 24, "v_heads": 256, "n_layers": 48}  # ESM3_SM_OPEN_V1
TINY = {"d_model": 64, "n_heads": 4, "v_heads": 4, "n_layers": 2}  # --tiny: checks the script, times nothing


# ---- inputs --------------------------------------------------------------------------------------------------
def write_prompts(path: Path) -> None:
    """The 8 real chains (>= 128 residues, first in manifest order) cropped to 128 residues, as plain tensors."""
    import torch

    from tests.generation_testing import real_proteins

    chains = real_proteins(SHARED_DATA / "dev", n=N_PROMPTS, min_len=N_RESIDUES)
    assert len(chains) == N_PROMPTS, f"only {len(chains)} dev chains of >= {N_RESIDUES} residues"
    keep = list(range(N_RESIDUES + 1)) + [-1]  # BOS, 128 residues, EOS
    data = {"names": [c.name for c in chains]}
    tensors = {
        f"{field}_{i}": getattr(c, field)[keep].clone()
        for i, c in enumerate(chains)
        for field in ("sequence", "coordinates")
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensors, path)
    path.with_suffix(".json").write_text(json.dumps(data))


def load_prompts(path: Path, track: str) -> list[Any]:
    """Prompts for ``track`` (see the module docstring) as our ``ProteinTensor``s."""
    import torch

    from openesm3 import constants as C
    from openesm3.generation.protein_tensor import ProteinTensor

    tensors = torch.load(path, weights_only=True)
    out = []
    for i in range(N_PROMPTS):
        seq, xyz = tensors[f"sequence_{i}"], tensors[f"coordinates_{i}"]
        if track == "sequence":
            masked = torch.full_like(seq, C.SEQUENCE_MASK)
            masked[0], masked[-1] = C.SEQUENCE_BOS, C.SEQUENCE_EOS
            out.append(ProteinTensor(sequence=masked, coordinates=xyz))
        else:
            out.append(ProteinTensor(sequence=seq))
    return out


class StepClock:
    """Wraps the model call and records wall and process CPU time at the start of every forward pass."""

    def __init__(self, fn: Any, device: str = "cpu") -> None:
        self.fn = fn
        self.device = device
        self.sync = device.startswith("cuda")  # kernels are asynchronous there: wait for them at every mark
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.forward: list[float] = []  # wall seconds inside each forward pass (the rest of a step is sampling)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.mark()
        out = self.fn(*args, **kwargs)
        self._wait()
        self.forward.append(time.perf_counter() - self.wall[-1])
        return out

    def _wait(self) -> None:
        if self.sync:
            import torch

            torch.cuda.synchronize(self.device)  # the benchmarked GPU (cuda:1 is not the current device)

    def mark(self) -> None:
        self._wait()
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def reset(self) -> None:
        self.wall.clear()
        self.cpu.clear()
        self.forward.clear()

    def steps(self) -> tuple[list[float], list[float], list[float]]:
        """Per-step wall and CPU seconds (the last step ending at the final :meth:`mark`), and forward seconds."""
        wall = [b - a for a, b in zip(self.wall, self.wall[1:])]
        return wall, [b - a for a, b in zip(self.cpu, self.cpu[1:])], list(self.forward)


def _summary(runs: list[tuple[list[float], list[float], list[float], float]], n_steps: int) -> dict[str, Any]:
    # Drop the very first step (one-off warm-up) unless it is the only one measured.
    warm = 1 if sum(len(r[0]) for r in runs) > 1 else 0
    wall = [s for r in runs for s in r[0]][warm:]
    cpu = [s for r in runs for s in r[1]][warm:]
    forward = [s for r in runs for s in r[2]][warm:]
    step, step_cpu = statistics.median(wall), statistics.median(cpu)
    return {
        "steps_per_run": n_steps,
        "repeats": len(runs),
        "run_wall_s": [round(r[3], 2) for r in runs],
        "step_wall_s": [[round(s, 3) for s in r[0]] for r in runs],
        "step_cpu_s": [[round(s, 3) for s in r[1]] for r in runs],
        "median_step_s": round(step, 4),
        "median_step_cpu_s": round(step_cpu, 4),
        "min_step_s": round(min(wall), 4),  # best case: the step least disturbed by other jobs on a shared machine
        "median_forward_s": round(statistics.median(forward), 4),  # the rest of a step: sampling and commit
        "time_32_steps_s": round(NUM_STEPS * step, 2),
        "extrapolated": n_steps != NUM_STEPS,
        "includes_warmup_step": warm == 0,
        "throughput_prompt_steps_per_s": round(N_PROMPTS / step, 4),
        "throughput_cpu_prompt_steps_per_cpu_s": round(N_PROMPTS / step_cpu, 4),
    }


# ---- workers -------------------------------------------------------------------------------------------------
def w_reference(args: dict[str, Any]) -> dict[str, Any]:
    import os

    import torch

    os.environ["DISABLE_ITERATIVE_SAMPLING_TQDM"] = "1"
    os.chdir(args["oracle_dir"])  # the official package reads its vocabulary data/ from the working directory
    from esm.models.esm3 import ESM3
    from esm.sdk.api import ESMProteinTensor
    from esm.sdk.api import GenerationConfig as RefConfig
    from esm.tokenization import get_esm3_model_tokenizers

    track, n_steps = args["track"], int(args["steps"])
    start = time.perf_counter()
    with torch.device("meta"):
        ref = ESM3(**args["shape"], structure_encoder_fn=None, structure_decoder_fn=None, function_decoder_fn=None,
                   tokenizers=get_esm3_model_tokenizers())  # fmt: skip
    state = torch.load(args["weights"], map_location="cpu", weights_only=True, mmap=True)
    ref.load_state_dict(state, assign=True, strict=True)
    for module in ref.modules():
        if type(module).__name__ == "RotaryEmbedding":
            module.reset_parameters()  # its non-persistent inv_freq is not in the state dict
    ref = ref.to(args["device"]).eval()
    load_s = time.perf_counter() - start
    prompts = load_prompts(Path(args["prompts"]), track)
    inputs = [ESMProteinTensor(sequence=p.sequence, coordinates=p.coordinates).to(args["device"]) for p in prompts]
    configs = [RefConfig(track=track, num_steps=n_steps) for _ in prompts]
    clock = StepClock(ref.logits, args["device"])
    ref.logits = clock  # type: ignore[method-assign]
    runs = []
    for r in range(int(args["repeats"])):
        clock.reset()
        torch.manual_seed(r)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = ref.batch_generate(inputs, configs)
        clock.mark()
        assert all(getattr(o, track, None) is not None for o in out), out
        runs.append((*clock.steps(), time.perf_counter() - t0))
    return {"impl": "reference batch_generate", "dtype": "fp32", "track": track, "device": args["device"],
            "load_s": round(load_s, 1), "rss_after_run_gb": round(current_rss_gb(), 3), **_gpu_memory(args),
            **_summary(runs, n_steps)}  # fmt: skip


def w_ours(args: dict[str, Any]) -> dict[str, Any]:
    import torch

    from openesm3.checkpoints.loading import load_model
    from openesm3.config import ESM3Config, GenerationConfig
    from openesm3.generation.iterative import generate

    track, n_steps = args["track"], int(args["steps"])
    start = time.perf_counter()
    tiny = args["shape"] != FULL
    model, _ = load_model(args["weights"], "esm3", device=args["device"], config=ESM3Config(**TINY) if tiny else None,
                          dtype=torch.bfloat16 if args.get("cast_bf16") else None)  # fmt: skip
    load_s = time.perf_counter() - start
    autocast = torch.bfloat16 if args.get("autocast") else None
    prompts = load_prompts(Path(args["prompts"]), track)
    config = GenerationConfig(track=track, num_steps=n_steps)
    clock = StepClock(model, args["device"])
    runs = []
    for r in range(int(args["repeats"])):
        clock.reset()
        t0 = time.perf_counter()
        results = generate(clock, prompts, config, batch_size=N_PROMPTS, seed=r, device=args["device"],
                           autocast_dtype=autocast)  # fmt: skip
        clock.mark()
        assert all(r.ok for r in results), [r.error for r in results]
        runs.append((*clock.steps(), time.perf_counter() - t0))
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return {"impl": "openesm3 generate (batched)", "dtype": dtype + (" + bf16 autocast" if autocast else ""),
            "track": track, "device": args["device"], "load_s": round(load_s, 1),
            "rss_after_run_gb": round(current_rss_gb(), 3), **_gpu_memory(args), **_summary(runs, n_steps)}  # fmt: skip


def _gpu_memory(args: dict[str, Any]) -> dict[str, float]:
    if not args["device"].startswith("cuda"):
        return {}
    import torch

    return {"cuda_max_allocated_gb": round(torch.cuda.max_memory_allocated(args["device"]) / 1e9, 3)}


WORKERS = {"reference": w_reference, "ours": w_ours}


# ---- driver --------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="write all results as JSON here")
    parser.add_argument("--tracks", default="structure", help=f"comma-separated subset of {','.join(TRACKS)}")
    parser.add_argument("--impls", default="reference,ours_fp32,ours_bf16",
                        help="comma-separated subset of reference,ours_fp32,ours_bf16,ours_autocast")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="generate calls per process")
    parser.add_argument("--steps", type=int, default=NUM_STEPS,
                        help="steps per call (num_steps); < 32 extrapolates the 32-step time")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model: checks the script, times nothing")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/openesm3-bench/trunk"))
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    args = parser.parse_args()
    if error := output_error(args.out, overwrite=args.overwrite):
        parser.error(error)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    tracks = [t for t in args.tracks.split(",") if t]
    unknown = set(tracks) - set(TRACKS)
    if unknown:
        parser.error(f"unknown track(s) {sorted(unknown)}; choose from {','.join(TRACKS)}")

    work = args.cache.parent / ("generation-tiny" if args.tiny else "generation")
    prompts = work / "prompts.pt"
    write_prompts(prompts)
    oracle_dir = _oracle_dir(work / "oracle")
    if args.tiny:
        files = {"random": work / "esm3_sm_open_v1.pth"}
        _tiny_weights(files["random"], oracle_dir)
    else:
        from benchmarks.bench_trunk import prepare  # the same random weights as the trunk benchmark

        files = prepare(args.cache, args.threads)
    common = {"prompts": str(prompts), "steps": args.steps, "repeats": args.repeats, "threads": args.threads,
              "device": args.device, "shape": TINY if args.tiny else FULL}  # fmt: skip
    bf16 = {"weights": str(files["random"]), "cast_bf16": True} if args.tiny else {"weights": str(files["random_bf16"])}
    impls = {
        "reference": ("reference", {"weights": str(files["random"]), "oracle_dir": str(oracle_dir)}),
        "ours_fp32": ("ours", {"weights": str(files["random"])}),
        "ours_bf16": ("ours", bf16),
        "ours_autocast": ("ours", {"weights": str(files["random"]), "autocast": True}),
    }
    unknown_impls = set(args.impls.split(",")) - set(impls)
    if unknown_impls:
        parser.error(f"unknown implementation(s) {sorted(unknown_impls)}; choose from {','.join(impls)}")
    results: dict[str, Any] = {
        "machine": machine_info(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "prompts": json.loads(prompts.with_suffix(".json").read_text())["names"],
        "runs": {},
    }
    for track in tracks:
        for name in args.impls.split(","):
            worker, extra = impls[name]
            label = f"{track} / {name}"
            print(f"running: {label} ...", flush=True)
            res = run_worker(SCRIPT, worker, {**common, **extra, "track": track}, timeout=7200)
            shown = {k: v for k, v in res.items() if k not in ("machine", "step_wall_s", "step_cpu_s")}
            print(f"  {json.dumps(shown)}", flush=True)
            results["runs"][label] = res
            _write(args.out, results, final=False)

    print("\n| track | run | median step (s) | 32 steps (s) | prompt-steps/s | x ref | step CPU (s) | x ref (CPU) "
          "| peak RSS (GB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for track in tracks:
        ref = results["runs"].get(f"{track} / reference")
        for name in args.impls.split(","):
            res = results["runs"][f"{track} / {name}"]
            ratio = f"{ref['median_step_s'] / res['median_step_s']:.2f}x" if ref else "-"
            ratio_cpu = f"{ref['median_step_cpu_s'] / res['median_step_cpu_s']:.2f}x" if ref else "-"
            print(f"| {track} | {name} ({res['dtype']}) | {res['median_step_s']:.2f} | {res['time_32_steps_s']:.1f} | "
                  f"{res['throughput_prompt_steps_per_s']:.3f} | {ratio} | {res['median_step_cpu_s']:.2f} | "
                  f"{ratio_cpu} | {res['peak_rss_gb']:.2f} |")  # fmt: skip
    _write(args.out, results, final=True)
    print(f"results written to {args.out}")


def _oracle_dir(root: Path) -> Path:
    """A working directory whose data/ holds the vocabulary files the official package reads (the LSH
    hyperplanes and residue-annotation CSV are the parity tests' seeded stand-ins)."""
    import shutil

    from openesm3 import constants as C
    from openesm3.tokenizers import build
    from openesm3.tokenizers.vocabulary import FUNCTION_FILES, esm_package_data_dir
    from tests.parity.conftest import STANDIN_SEED, standin_choose_clean, standin_residue_label_counts

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    package = esm_package_data_dir()
    if package is None:
        raise SystemExit("the official esm package (oracle) is not installed: run scripts/install_reference.sh")
    for name in FUNCTION_FILES[:-1]:
        shutil.copyfile(package / name, data / name)
    build.write_hyperplanes(build.draw_hyperplanes(C.N_KEYWORDS, seed=STANDIN_SEED), data / C.LSH_HYPERPLANES_FILE)
    vocab = build.build_residue_annotation_vocabulary(
        standin_residue_label_counts(STANDIN_SEED), min_proteins=1000, choose_clean=standin_choose_clean
    )
    build.write_residue_annotation_vocabulary(vocab, data)
    return root


def _tiny_weights(path: Path, oracle_dir: Path) -> None:
    """A 2-layer official ESM3, every parameter random, in the official format (``--tiny``)."""
    import os

    import torch

    from tests.parity.esm3_oracle import build_reference

    os.environ["INFRA_PROVIDER"] = "1"
    import esm  # noqa: PLC0415 - the oracle, benchmarks only

    previous = Path.cwd()
    os.chdir(oracle_dir)
    try:
        torch.save(build_reference(esm, **TINY, seed=0).state_dict(), path)
    finally:
        os.chdir(previous)


def _write(path: Path, results: dict[str, Any], *, final: bool) -> None:
    """The runs finished so far go to ``<out>.partial`` (they survive a later crash without replacing ``out``);
    the whole result goes to ``out`` at the end, atomically, and the partial file is removed."""
    partial = path.with_name(path.name + ".partial")
    write_results(path if final else partial, results)
    if final:
        partial.unlink(missing_ok=True)


if __name__ == "__main__":
    if not worker_main(WORKERS):
        main()
