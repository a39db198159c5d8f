"""The taxonomy track of the 98B model (paper A.1.9, "Taxonomy"; PAPER_NOTES §2.13).

Input: the lineage terms of the protein's organism (taxonomy ranks and species), ids into a term vocabulary
(40,000 terms in the paper). Their 768-wide embeddings are summed (an embedding bag), projected linearly to the
model width by a **zero-initialised** projection (so switching the track on late in training leaves the model
unchanged) and added at every position. Output: a shallow MLP head with one binary logit per term, trained
with binary cross-entropy to predict the (dropped) terms.

The paper leaves the head's input open; we read it from the mean of the final normalised hidden states over
the non-padding positions (one prediction per protein), documented as our choice.

Our ids: 0 is "no term" and is skipped by the bag (so rows of a batch can list different numbers of terms),
terms are 1..n_terms; the head's logit column k belongs to id k (column 0 is never a target). The open
release has no taxonomy track; this is off in every config except the 98B preset.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.layers.heads import RegressionHead


class TaxonomyEmbedding(nn.Module):
    """Embedding bag of lineage terms followed by a zero-initialised projection to the model width.

    Args:
        n_terms: vocabulary size without the padding id (ids 1..n_terms).
        embed_dim: width of the term embeddings (768 in the paper).
        d_model: model width D.
    """

    def __init__(self, n_terms: int, embed_dim: int, d_model: int) -> None:
        super().__init__()
        self.terms = nn.EmbeddingBag(n_terms + 1, embed_dim, mode="sum", padding_idx=C.TAXONOMY_PAD)
        self.proj = nn.Linear(embed_dim, d_model, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self, taxonomy_tokens: Tensor) -> Tensor:
        """taxonomy_tokens [B, T] int (0 = no term). Returns [B, 1, D], to be added at every position."""
        summed = self.terms(taxonomy_tokens)  # [B, E]
        return self.proj(summed.to(self.proj.weight.dtype))[:, None, :]


class TaxonomyHead(nn.Module):
    """One binary logit per term id from the mean of the final hidden states over non-padding positions."""

    def __init__(self, n_terms: int, d_model: int) -> None:
        super().__init__()
        self.mlp = RegressionHead(d_model, n_terms + 1)

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:
        """x [B, L, D] (normalised); valid [B, L] bool (False at padding) or None. Returns [B, n_terms + 1]."""
        if valid is None:
            pooled = x.mean(dim=1)
        else:
            w = valid.to(x.dtype)[..., None]
            pooled = (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        return self.mlp(pooled)


def taxonomy_logit_targets(term_ids: Tensor, n_terms: int) -> Tensor:
    """Multi-hot BCE targets [B, n_terms + 1] from term ids [B, T] (0 = no term; column 0 stays 0)."""
    targets = torch.zeros(term_ids.shape[0], n_terms + 1, device=term_ids.device)
    targets.scatter_(1, term_ids.long(), 1.0)
    targets[:, C.TAXONOMY_PAD] = 0.0
    return targets
