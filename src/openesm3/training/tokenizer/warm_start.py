"""Warm-starting the stage-2 decoder from the stage-1 decoder (our choice for small compute budgets).

The paper re-initialises the stage-2 decoder (A.1.7.3.2) and trains it for 90k+ steps. With a few hundred CPU
steps, a decoder trained from scratch spends most of them relearning what the stage-1 decoder already knows, so
:func:`warm_start_decoder` builds a *deeper* decoder that starts as the stage-1 one: the token embedding is the
stage-1 decoder's baked ``code_proj(codebook)`` (plus its special-token rows), its blocks fill the first
positions, the extra blocks start as identities (zero output projections), the sequence embedding starts at zero,
and the final norm and heads are copied. Widths must match.

:func:`load_exported_tokenizer` continues a stage-2 decoder from exported weights instead of a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from openesm3.checkpoints.format import load_pretrained
from openesm3.errors import WeightsError
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.training.checkpointing import load_checkpoint
from openesm3.training.tokenizer.export import DECODER_DIR, ENCODER_DIR, resolve_checkpoint
from openesm3.training.tokenizer.model import StructureTokenizerModel


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


# Largest relative residual of the least-squares fit of code_proj (see load_exported_tokenizer) that still counts as
# "these rows are code_proj(codebook)": float16 storage of the rows leaves ~1e-3; free rows leave ~1.
CODE_PROJ_FIT_TOLERANCE = 1e-2


@torch.no_grad()
def load_exported_tokenizer(model: StructureTokenizerModel, directory: str | Path) -> Path:
    """Load a trained tokenizer in our weight format (``directory/structure_encoder`` and
    ``directory/structure_decoder``: a run's ``export/``, or the bundled tokenizer) into a stage-2 training model,
    so training continues from exported weights when the run's checkpoints are gone (``decoder_init=weights``).

    Export baked ``code_proj(codebook)`` into the decoder's token embedding; ``code_proj`` is recovered as the
    least-squares affine map from the code vectors to those rows, after which the training model decodes exactly
    as the exported decoder (up to the rows' storage rounding). Raises :class:`WeightsError` when the shapes differ
    from the run's config, or when the rows are not an affine image of the codebook (a decoder trained with free
    embedding rows, such as the official one). Returns ``directory``."""
    root = load_exported_encoder(model, directory)
    _load_matching(model.decoder, root / DECODER_DIR)
    codes = model.encoder.codebook.embeddings.float()
    rows = model.decoder.embed.weight[: codes.shape[0]].float()
    design = torch.cat([codes, torch.ones(codes.shape[0], 1)], dim=1)
    solution = torch.linalg.lstsq(design.double(), rows.double()).solution.float()
    residual = (design @ solution - rows).norm() / rows.norm().clamp_min(1e-12)
    if residual > CODE_PROJ_FIT_TOLERANCE:
        raise WeightsError(
            f"{root / DECODER_DIR}: its token embedding rows are not code_proj(codebook) (relative residual "
            f"{residual:.3f} of the affine fit); decoder_init=weights continues decoders exported by train-tokenizer"
        )
    model.code_proj.weight.copy_(solution[:-1].T)
    model.code_proj.bias.copy_(solution[-1])
    return root


@torch.no_grad()
def load_exported_encoder(model: StructureTokenizerModel, directory: str | Path) -> Path:
    """Load the encoder and codebook of a trained tokenizer in our weight format (``directory/structure_encoder``)
    into a stage-2 training model (alone for ``decoder_init=random``; :func:`load_exported_tokenizer` adds the
    decoder). Returns ``directory``."""
    root = Path(directory)
    _load_matching(model.encoder, root / ENCODER_DIR)
    return root


# Encoder config fields that only steer codebook training (stage 1); a frozen stage-2 encoder ignores them.
_CODEBOOK_TRAINING = frozenset({"codebook_decay", "codebook_epsilon", "commitment_weight", "dead_code_threshold"})


def _load_matching(target: StructureEncoder | StructureDecoder, directory: Path) -> None:
    """Load the weights in ``directory`` into ``target`` when their config equals the target's (codebook-training
    fields aside)."""
    part = ENCODER_DIR if isinstance(target, StructureEncoder) else DECODER_DIR  # directory name = model type
    network, config = load_pretrained(directory, expected_type=part, dtype=torch.float32)
    fields = [
        f for f in vars(config) if f not in _CODEBOOK_TRAINING and getattr(config, f) != getattr(target.config, f, None)
    ]
    if fields:
        raise WeightsError(
            f"{directory}: its config differs from this run's in {', '.join(fields)}; set the run's "
            f"{part.split('_')[1]} section to match the weights"
        )
    target.load_state_dict(network.state_dict())
