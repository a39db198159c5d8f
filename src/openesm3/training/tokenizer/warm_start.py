"""Warm-starting the stage-2 decoder from the stage-1 decoder (our choice for small compute budgets).

The paper re-initialises the stage-2 decoder (A.1.7.3.2) and trains it for 90k+ steps. With a few hundred CPU
steps, a decoder trained from scratch spends most of them relearning what the stage-1 decoder already knows, so
:func:`warm_start_decoder` builds a *deeper* decoder that starts as the stage-1 one: the token embedding is the
stage-1 decoder's baked ``code_proj(codebook)`` (plus its special-token rows), its blocks fill the first
positions, the extra blocks start as identities (zero output projections), the sequence embedding starts at zero,
and the final norm and heads are copied. Widths must match.
"""

from __future__ import annotations

from pathlib import Path

import torch

from openesm3.errors import WeightsError
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.training.checkpointing import load_checkpoint
from openesm3.training.tokenizer.export import resolve_checkpoint


@torch.no_grad()
def warm_start_decoder(decoder: StructureDecoder, checkpoint: str | Path) -> Path:
    """Initialise ``decoder`` from the stage-1 decoder of a training checkpoint (see the module docstring).

    Returns the checkpoint used. Raises :class:`WeightsError` when the shapes do not allow it.
    """
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path).model_state
    stage1 = {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
    if "code_proj.weight" not in state or not stage1:
        raise WeightsError(f"{path}: not a stage-1 tokenizer checkpoint (no decoder / code_proj weights)")
    n_old = 1 + max(int(k.split(".")[1]) for k in stage1 if k.startswith("blocks."))
    n_new = decoder.config.n_layers
    if n_new < n_old:
        raise WeightsError(f"{path}: the stage-1 decoder has {n_old} blocks, more than the new decoder's {n_new}")
    target = decoder.state_dict()
    for key, value in stage1.items():
        if key not in target or target[key].shape != value.shape:
            raise WeightsError(
                f"{path}: stage-1 decoder weight {key} {tuple(value.shape)} does not fit the new decoder "
                f"({tuple(target[key].shape) if key in target else 'absent'}); use the same width, heads and "
                "pairwise width"
            )
        target[key] = value.clone()
    codes = state["encoder.codebook.embeddings"].float()
    baked = torch.nn.functional.linear(codes, state["code_proj.weight"].float(), state["code_proj.bias"].float())
    target["embed.weight"][: codes.shape[0]] = baked.to(target["embed.weight"].dtype)
    for i in range(n_old, n_new):  # extra blocks: identity at start
        target[f"blocks.{i}.attn.out.weight"].zero_()
        target[f"blocks.{i}.ffn.w_out.weight"].zero_()
    if "sequence_embed.weight" in target:
        target["sequence_embed.weight"].zero_()
    decoder.load_state_dict(target)
    return path
