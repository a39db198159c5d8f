"""Optional ``torch.compile`` of the transformer blocks: the compile seam, off unless a caller applies it.

:func:`compile_blocks` compiles, in place, the self-attention and feed-forward branches of every
:class:`~openesm3.layers.block.TransformerBlock` inside a model (the ESM3 trunk, the structure VQ-VAE, the
function decoder). These two branches are ~99% of a trunk forward's FLOPs and are pure tensor code (no host
syncs, no data-dependent branches), so inductor can fuse their LayerNorms, rotary, SiLU-gating and residual
scaling around the matrix products. Geometric attention stays eager on purpose: it is an fp32 island under
autocast (spec §5) and walks its heads in size-dependent groups.

Compilation is in place (``nn.Module.compile``): parameter names, ``state_dict`` keys and the module tree are
unchanged, so checkpoints load into a compiled model exactly as into a plain one, and the ESM3 fast path that
calls a block's branches directly (block 0 without coordinates) is compiled as well.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from openesm3.layers.block import TransformerBlock


def compile_blocks(model: nn.Module, **compile_kwargs: Any) -> nn.Module:
    """Compile the attention and FFN branch of every transformer block in ``model``, in place.

    Args:
        model: any module containing :class:`TransformerBlock` instances.
        **compile_kwargs: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``, ``dynamic=True``,
            ``backend="eager"`` to test the tracing alone).

    Returns:
        ``model`` itself (for chaining). Raises ``ValueError`` if it holds no transformer block.
    """
    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} contains no TransformerBlock to compile")
    for block in blocks:
        for branch in (block.attn, block.ffn):
            if branch is not None:
                branch.compile(**compile_kwargs)
    return model
