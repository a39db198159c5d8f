"""Roofline for the ESM3 trunk: the machine's matmul FLOP/s and the trunk forward's analytic FLOP count.

- :func:`trunk_flops` counts the floating-point operations (2 per multiply-add) of one ESM3 forward pass from the
  config: per block the fused QKV projection, the two attention products (QK^T and AV), the output projection
  and the SwiGLU FFN; the six output heads; optionally block 0's geometric attention. LayerNorms, rotary,
  softmax, GELU/SiLU and embedding look-ups are elementwise (O(N D), < 1% of the total) and not counted, as usual for
  model-FLOP accounting. With sequence-only input every residue is frameless and the geometric branch adds
  exactly zero (spec §5): it is not part of the work then, and ``geometric=False``.
- :func:`matmul_flops_per_s` measures ``F.linear`` on trunk-shaped operands (``[B*L, 1536] x [1536, 4096]`` and
  friends) in fp32 and bf16: the best of these is the roofline the trunk is compared against.

Run alone: ``python benchmarks/roofline.py [--threads N] [--device cpu|cuda]`` prints the matmul FLOP/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]

# Output widths of the six heads (sequence, structure, ss8, sasa, function 8 x 260, residue annotations).
HEAD_OUTPUTS = (64, 4096, 11, 19, 8 * 260, 1478)
VECTORS_PER_HEAD = 5  # geometric attention: q_rot, k_rot, v, q_dist, k_dist per head (spec §5)
PLDDT_RBF_BINS = 16  # openesm3.constants.PLDDT_RBF_BINS (spec §4.2)
CDIST_FLOPS = 8  # per (query, key, head) pair: the Euclidean distance of two 3-vectors


def trunk_flops(
    *, batch: int, length: int, d_model: int = 1536, n_layers: int = 48, ffn_dim: int = 4096, v_heads: int = 256,
    geometric: bool = False,
) -> dict[str, float]:  # fmt: skip
    """FLOPs of one ESM3 forward pass on [batch, length] tokens (2 per multiply-add), by part."""
    n = batch * length
    d = d_model
    parts = {
        "qkv": n_layers * 2.0 * n * d * 3 * d,
        "attention": n_layers * 4.0 * batch * length * length * d,  # QK^T and AV over all heads
        "out_proj": n_layers * 2.0 * n * d * d,
        "ffn": n_layers * (2.0 * n * d * 2 * ffn_dim + 2.0 * n * ffn_dim * d),  # w_in to [a|b], w_out
        "heads": sum(2.0 * n * d * d + 2.0 * n * d * out for out in HEAD_OUTPUTS),
        "embedding": 2 * 2.0 * n * PLDDT_RBF_BINS * d,  # the two pLDDT RBF projections; the rest are lookups
        "geometric": 0.0,
    }
    if geometric:
        v = v_heads
        pairs = batch * v * length * length
        parts["geometric"] = (
            2.0 * n * d * 3 * VECTORS_PER_HEAD * v  # projection
            + 2.0 * n * 3 * v * d  # output projection
            + 2.0 * n * (VECTORS_PER_HEAD + 1) * v * 9  # rotating 5V vectors into, V out of the global frame
            + pairs * (2 * 3 + 2 * 3)  # directional dot product, AV
            + pairs * CDIST_FLOPS  # distance (3 sub, 3 mul, 2 add; the sqrt not counted)
        )
    parts["total"] = sum(parts.values())
    return parts


def matmul_shapes(tokens: int, d_model: int = 1536, ffn_dim: int = 4096) -> list[tuple[int, int, int]]:
    """(M, K, N) of the trunk's big products at ``tokens`` rows: QKV, output, FFN in, FFN out."""
    return [(tokens, d_model, 3 * d_model), (tokens, d_model, d_model), (tokens, d_model, 2 * ffn_dim),
            (tokens, ffn_dim, d_model)]  # fmt: skip


def matmul_flops_per_s(m: int, k: int, n: int, dtype: Any, device: str, *, min_seconds: float = 1.0) -> dict[str, Any]:
    """FLOP/s of ``F.linear([m, k], [n, k])`` (the model's own call) in ``dtype``: median of >= 5 timed runs,
    enough repetitions per run to last ``min_seconds`` / 5."""
    import statistics

    import torch
    import torch.nn.functional as F

    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(m, k, generator=g).to(device=device, dtype=dtype)
    w = (torch.randn(n, k, generator=g) / k**0.5).to(device=device, dtype=dtype)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    with torch.no_grad():
        F.linear(x, w)  # warm-up (oneDNN/cuBLAS picks its kernel)
        sync()
        start = time.perf_counter()
        F.linear(x, w)
        sync()
        one = max(time.perf_counter() - start, 1e-6)
        reps = max(1, int(min_seconds / 5 / one))
        rates = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(reps):
                F.linear(x, w)
            sync()
            rates.append(2.0 * m * k * n * reps / (time.perf_counter() - start))
    return {"m": m, "k": k, "n": n, "dtype": str(dtype).removeprefix("torch."), "flops_per_s": statistics.median(rates),
            "reps": reps}  # fmt: skip


def measure_roofline(device: str, tokens: int = 4096, *, quick: bool = False) -> dict[str, Any]:
    """Matmul FLOP/s on the trunk's shapes at ``tokens`` rows (16 x 256 by default), fp32 and bf16; the roofline
    of a dtype is the best of its shapes."""
    import torch

    out: dict[str, Any] = {"tokens": tokens, "shapes": []}
    shapes = matmul_shapes(tokens)[:1] if quick else matmul_shapes(tokens)
    for dtype in (torch.float32, torch.bfloat16):
        for m, k, n in shapes:
            out["shapes"].append(matmul_flops_per_s(m, k, n, dtype, device, min_seconds=0.3 if quick else 1.5))
    for name in ("float32", "bfloat16"):
        out[name] = max(s["flops_per_s"] for s in out["shapes"] if s["dtype"] == name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(json.dumps(measure_roofline(device, args.tokens, quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
