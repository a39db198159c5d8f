"""The analytic FLOP count behind the benchmark roofline (benchmarks/roofline.py) against torch's own counter."""

from __future__ import annotations

import pytest
import torch
from benchmarks.roofline import CDIST_FLOPS, trunk_flops
from torch.utils.flop_counter import FlopCounterMode

from openesm3.config import ESM3Config
from openesm3.models.esm3 import ESM3


def _matmul_flops(model: ESM3, **inputs: torch.Tensor) -> int:
    """FLOPs of the matrix products only (mm/addmm/bmm), as torch.utils.flop_counter counts them; attention
    kernels are left out because whether the fused CPU kernel is counted depends on the torch version."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    counts = counter.get_flop_counts()["Global"]
    return sum(v for op, v in counts.items() if str(op).split(".")[-1] in ("mm", "addmm", "bmm"))


@pytest.mark.parametrize(("batch", "length"), [(2, 20), (1, 33)])
def test_trunk_flop_count_matches_torch_flop_counter(batch: int, length: int) -> None:
    cfg = ESM3Config(d_model=64, n_heads=4, n_layers=3, v_heads=4)
    model = ESM3(cfg).eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 24, (batch, length), generator=g)
    shape = {"d_model": 64, "n_layers": 3, "ffn_dim": cfg.ffn_dim, "v_heads": 4}
    plain = trunk_flops(batch=batch, length=length, **shape)
    assert _matmul_flops(model, sequence_tokens=tokens) == plain["total"] - plain["attention"]
    geo = trunk_flops(batch=batch, length=length, geometric=True, **shape)
    coords = torch.randn(batch, length, 3, 3, generator=g) * 5
    cdist = CDIST_FLOPS * batch * 4 * length * length  # computed elementwise (no matmul) in our kernel
    assert _matmul_flops(model, sequence_tokens=tokens, structure_coords=coords) == (
        geo["total"] - geo["attention"] - cdist
    )
    # Full size, B x L = 1 x 256: ~0.73 TFLOP, ~2 x 1.4B parameters x 256 tokens.
    full = trunk_flops(batch=1, length=256)["total"]
    assert 0.70e12 < full < 0.76e12
