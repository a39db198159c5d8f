"""Tiny random ESM3 trunks for the task tests (embed, score): every parameter random, saved in our format."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from openesm3.checkpoints.format import save_pretrained
from openesm3.config import ESM3_TINY, ESM3Config


def tiny_esm3(seed: int = 0, config: ESM3Config = ESM3_TINY) -> nn.Module:
    """ESM3 with EVERY parameter drawn at random (LayerNorm weights and head biases too), in eval mode."""
    from openesm3.models.esm3 import ESM3  # noqa: PLC0415

    model = ESM3(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(generator=g)
            if p.ndim == 1:
                p.mul_(0.3).add_(1.0 if name.endswith("weight") else 0.0)
            elif "embedding" not in name:
                p.mul_(1.0 / math.sqrt(p.shape[-1]))
    return model.eval()


def save_tiny_weights(directory: Path, seed: int = 0) -> Path:
    """Write a tiny random trunk where ``--weights directory`` finds it (``directory/esm3``)."""
    model = tiny_esm3(seed)
    save_pretrained(model, model.config, directory / "esm3", model_type="esm3")
    return directory
