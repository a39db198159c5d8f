"""The training objective of each tokenizer stage: ``loss_fn(model, batch) -> (loss, metrics)`` for the generic loop.

Stage 1 (paper A.1.7.3.1): backbone distance + backbone direction + binned direction + distogram + inverse folding
+ commitment. Stage 2 (A.1.7.3.2): backbone distance + direction, binned direction + distogram (kept: the paper says
they bootstrap early training, and the stage-2 decoder starts from scratch), pLDDT, PAE and, for proteins decoded
with their sequence, the all-atom distance + direction and torsion losses (stage 2A with the confidence heads of
2B). Metrics add the
CA RMSD after superposition, lDDT-CA and the codebook's usage perplexity, so learning curves show reconstruction
quality, not only losses.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from openesm3.geometry.alignment import kabsch
from openesm3.geometry.lddt import lddt
from openesm3.layers.structure_heads import PairwiseHead
from openesm3.training.data import ProteinBatch
from openesm3.training.loop import full_precision
from openesm3.training.tokenizer import losses as L
from openesm3.training.tokenizer.all_atom_losses import all_atom_terms
from openesm3.training.tokenizer.confidence import pae_loss, plddt_loss
from openesm3.training.tokenizer.config import TokenizerLossConfig
from openesm3.training.tokenizer.model import StructureTokenizerModel, TokenizerForward


def unwrap(model: nn.Module) -> StructureTokenizerModel:
    """The tokenizer model inside a DDP/FSDP wrapper (or the model itself)."""
    inner = getattr(model, "module", model)
    return cast(StructureTokenizerModel, inner)


@torch.no_grad()
def reconstruction_metrics(fwd: TokenizerForward) -> dict[str, Tensor]:
    """CA RMSD after Kabsch superposition and lDDT-CA of the decoded backbone, means over proteins."""
    mask = fwd.residue_mask
    keep = mask.sum(-1) >= 3
    if not bool(keep.any()):
        return {}
    pred = fwd.pred_backbone[keep, :, 1].detach().float()
    true = fwd.true_backbone[keep, :, 1].float()
    m = mask[keep]
    rmsd = kabsch(pred, true, m).rmsd
    score = lddt(pred, true, m).score
    return {"ca_rmsd": rmsd.mean(), "lddt_ca": score.mean()}


def codebook_perplexity(model: StructureTokenizerModel) -> Tensor:
    """exp(entropy) of the codebook's EMA usage counts: the effective number of codes in use."""
    counts = model.encoder.codebook.N.float().clamp_min(0)
    p = counts / counts.sum().clamp_min(1e-12)
    return torch.exp(-(p * p.clamp_min(1e-12).log()).sum())


class TokenizerObjective:
    """``loss_fn`` of :func:`openesm3.training.loop.train` for a :class:`StructureTokenizerModel`.

    Args:
        weights: loss weights (0 switches a term off and skips computing it).
    """

    def __init__(self, weights: TokenizerLossConfig) -> None:
        self.w = weights

    def __call__(self, model: nn.Module, batch: ProteinBatch) -> tuple[Tensor, dict[str, Any]]:
        fwd: TokenizerForward = model(batch)
        inner = unwrap(model)
        device_type = batch.mask.device.type
        terms: dict[str, Tensor] = {}
        w = self.w
        with full_precision(device_type):
            mask = fwd.residue_mask
            pred, true = fwd.pred_backbone.float(), fwd.true_backbone.float()
            if w.backbone_distance:
                terms["backbone_distance"] = L.backbone_distance_loss(pred, true, mask, w.distance_clamp)
            if w.backbone_direction:
                terms["backbone_direction"] = L.backbone_direction_loss(pred, true, mask, w.direction_clamp)
            if w.backbone_fape:
                terms["backbone_fape"] = L.backbone_fape(pred, true, mask, w.fape_clamp)
            pair = fwd.decoder.pair_logits
            if pair is None:  # a model built without pair outputs: only the per-residue terms
                distogram = directions = pae = torch.zeros(0)
            else:
                distogram, directions, pae = PairwiseHead.split(fwd.residue_pairs(pair).float())
            if (w.distogram or w.binned_direction or (w.pae and inner.stage == 2)) and pair is None:
                raise ValueError("the distogram, binned-direction and PAE losses need the model's pair outputs")
            if w.distogram:
                terms["distogram"] = L.distogram_loss(distogram, true, mask)
            if w.binned_direction:
                terms["binned_direction"] = L.binned_direction_loss(directions, true, mask)
            if inner.stage == 1:
                if w.inverse_folding and fwd.sequence_logits is not None:
                    terms["inverse_folding"] = L.inverse_folding_loss(
                        fwd.sequence_logits.float(), batch.sequence_tokens, mask
                    )
                if w.local_structure and fwd.local_structure is not None:
                    terms["local_structure"] = L.local_structure_loss(fwd.local_structure.float(), true, mask)
                if w.commitment:
                    terms["commitment"] = fwd.commitment_loss.float()
            else:
                if w.plddt:
                    terms["plddt"] = plddt_loss(fwd.residues(fwd.decoder.plddt_logits).float(), pred, true, mask)
                if w.pae:
                    terms["pae"] = pae_loss(pae, pred, true, mask)
                terms.update(all_atom_terms(fwd, batch, w))
            loss = sum((getattr(w, name) * value for name, value in terms.items()), torch.zeros((), device=pred.device))
        metrics: dict[str, Any] = {f"loss_{k}": v.detach() for k, v in terms.items()}
        metrics.update(reconstruction_metrics(fwd))
        if inner.stage == 1:
            metrics["codebook_perplexity"] = codebook_perplexity(inner)
        return loss, metrics
