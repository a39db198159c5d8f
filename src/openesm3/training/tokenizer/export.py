"""From a training checkpoint to the library's weight format: an encoder and a decoder directory that load
(``checkpoints.format.load_pretrained``) into :class:`~openesm3.models.structure_encoder.StructureEncoder` and
:class:`~openesm3.models.structure_decoder.StructureDecoder`, the classes the official weights use.

A decoder reads ``code_proj(z_q)`` (stage 1) or ``code_proj(codebook[id])`` (stage 2) during training;
:func:`bake_code_projection` writes ``code_proj(codebook)`` into its token embedding, after which it decodes token
ids exactly as it decoded the quantised vectors (the straight-through vector *is* the code at the forward pass).

The decoder's ``config.json`` records which confidence heads the run trained (``"trained_heads"``, see
:func:`openesm3.checkpoints.format.save_pretrained`): none for stage 1, whose pLDDT and PAE heads keep their random
initial weights, so that decoding with it does not present their outputs as confidences.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from openesm3.checkpoints.format import check_state_fits, save_pretrained
from openesm3.errors import WeightsError
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.training.checkpointing import STATE_FILE, describe_damaged, load_checkpoint, newer_damaged
from openesm3.training.loop import CHECKPOINT_DIR
from openesm3.training.tokenizer.model import StructureTokenizerModel
from openesm3.utils.provenance import note_moved, note_removed

ENCODER_DIR = "structure_encoder"  # the layout checkpoints.vqvae_weights looks for (ROOT/<model_type>/)
DECODER_DIR = "structure_decoder"


def resolve_checkpoint(path: str | Path, *, damaged_ok: bool = False) -> Path:
    """A checkpoint directory from a run directory (its latest complete checkpoint) or a checkpoint directory.

    A run whose newest ``step_`` directory is no checkpoint that can be read (damaged or edited since it was written)
    is refused: its latest complete checkpoint is an older one than the run ended with, and a stage-2 run
    (``init_from``) or an export would take it without a word. ``damaged_ok``: take it (for a caller whose networks
    are replaced anyway, e.g. by a resumed run's own checkpoint)."""
    p = Path(path)
    if (p / STATE_FILE).is_file():
        return p
    for root in (p / CHECKPOINT_DIR, p):
        if not root.is_dir():
            continue
        newer, latest = newer_damaged(root)
        if newer and not damaged_ok:
            raise WeightsError(_damaged_newest(path, newer, latest))
        if latest is not None:
            return latest
    raise WeightsError(f"{path}: no complete training checkpoint (expected a run or checkpoint directory)")


def _damaged_newest(given: str | Path, newer: list[tuple[int, Path, str]], latest: Path | None) -> str:
    """Why the run or checkpoints directory ``given`` does not stand for its ``latest`` complete checkpoint: damaged
    ``step_`` directories ``newer`` than it (see :func:`~openesm3.training.checkpointing.newer_damaged`)."""
    parent = newer[0][1].parent
    if latest is None:
        return f"{describe_damaged(newer, 'read')}; {given} holds no other: repair it, or give another checkpoint"
    return (
        f"{describe_damaged(newer, 'read')}; {given} would stand for the older {latest.name} instead: repair it, or "
        f"move it out of {parent} to use that one, or give that checkpoint directory ({latest}) in place of {given}"
    )


def load_submodule_state(model: nn.Module, checkpoint: str | Path, prefix: str) -> Path:
    """Load the ``prefix.*`` entries of a training checkpoint into ``model`` (strictly). Returns the checkpoint."""
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path).model_state
    sub = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    if not sub:
        raise WeightsError(f"{path}: no {prefix!r} weights in this checkpoint")
    # checked before loading: load_state_dict raises a multi-line RuntimeError on shapes even with strict=False
    check_state_fits(
        f"{path}: its {prefix} does not fit this run's (set the run's {prefix} section as the checkpoint's run had it)",
        model.state_dict(),
        sub,
        labels=("checkpoint", "run"),
        shown=3,
    )
    model.load_state_dict(sub)
    return path


@torch.no_grad()
def bake_code_projection(model: StructureTokenizerModel) -> StructureDecoder:
    """The decoder with ``embed[code] = code_proj(codebook[code])`` for every code (a copy; both stages; without a
    record of its trained heads)."""
    decoder = StructureDecoder(model.decoder.config)
    decoder.load_state_dict(model.decoder.state_dict())
    codes = model.encoder.codebook.embeddings.float()
    decoder.embed.weight[: codes.shape[0]] = model.code_proj(codes).to(decoder.embed.weight.dtype)
    return decoder


def export_networks(
    model: StructureTokenizerModel, out_dir: str | Path, *, trained_heads: Sequence[str] | None = None
) -> tuple[Path, Path]:
    """Save the encoder and the (baked, for stage 1) decoder under ``out_dir/structure_encoder`` and
    ``out_dir/structure_decoder``; the decoder's config records ``trained_heads`` (confidence heads the run
    trained, of :data:`~openesm3.constants.CONFIDENCE_HEADS`; see ``run.trained_heads``; None: not recorded)."""
    out = Path(out_dir)
    encoder: StructureEncoder = model.encoder
    decoder = bake_code_projection(model)
    decoder.trained_heads = None if trained_heads is None else tuple(trained_heads)
    # Both networks are written beside the export first and then renamed into place together, so a run stopped
    # while exporting never leaves a new encoder beside an old decoder (codes that the decoder reads differently).
    tmp = out / f".export.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_pretrained(encoder, encoder.config, tmp / ENCODER_DIR, model_type="structure_encoder")
        save_pretrained(decoder, decoder.config, tmp / DECODER_DIR, model_type="structure_decoder")
        olds = []
        for name in (ENCODER_DIR, DECODER_DIR):
            if (out / name).exists():
                olds.append(out / f".{name}.old-{os.getpid()}")
                os.replace(out / name, olds[-1])
            note_removed(out / name)  # an earlier export of this run, replaced
            os.replace(tmp / name, out / name)
            note_moved(tmp / name, out / name)
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        note_removed(tmp)
    return out / ENCODER_DIR, out / DECODER_DIR
