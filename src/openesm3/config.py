"""Typed, frozen configurations of every network, with named presets.

Each network takes exactly one of these; variants are new presets (``dataclasses.replace``), never copied
code. Sizes of the official open release come from REFERENCE_SPEC §0; the 7B and 98B shapes from the paper's
Table S1 (PAPER_NOTES §2.7).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from openesm3 import constants as C


def _check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ESM3Config:
    """The multimodal trunk (paper A.1.1-A.1.6, spec §4)."""

    d_model: int
    n_heads: int
    n_layers: int
    v_heads: int  # heads of the geometric attention in block 0 (3-vectors per head)
    max_length: int = 2048  # tokens including BOS/EOS; the paper trains with a 2048 context
    n_taxonomy_terms: int = 0  # 0: no taxonomy track (paper A.1.9; 98B only, 40,000 terms)
    taxonomy_embed_dim: int = 768

    def __post_init__(self) -> None:
        _check_positive(self, "d_model", "n_heads", "n_layers", "v_heads", "max_length")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.d_model % C.FUNCTION_DEPTH:
            raise ValueError(f"d_model={self.d_model} must be divisible by {C.FUNCTION_DEPTH} (function embedding)")
        if self.n_taxonomy_terms < 0:
            raise ValueError("n_taxonomy_terms must be >= 0")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_dim(self) -> int:
        return C.ffn_hidden_dim(self.d_model)

    @property
    def residual_scale(self) -> float:
        """Every residual branch is divided by this (spec §4.4: sqrt(48/36) for the open model)."""
        return math.sqrt(self.n_layers / C.RESIDUAL_SCALE_REFERENCE_DEPTH)

    def replace(self, **changes: Any) -> ESM3Config:
        return dataclasses.replace(self, **changes)


ESM3_TINY = ESM3Config(d_model=64, n_heads=4, n_layers=2, v_heads=4)
ESM3_SM_OPEN_V1 = ESM3Config(d_model=1536, n_heads=24, n_layers=48, v_heads=256)
# Paper Table S1. The geometric head count of the larger models is not published; 256 as in the open model.
ESM3_7B = ESM3Config(d_model=2560, n_heads=40, n_layers=96, v_heads=256)
ESM3_98B = ESM3Config(d_model=6144, n_heads=48, n_layers=216, v_heads=256, n_taxonomy_terms=40000)


@dataclass(frozen=True, kw_only=True)
class StructureEncoderConfig:
    """Structure VQ-VAE encoder and codebook (paper A.1.7.1, spec §6)."""

    d_model: int = 1024
    n_heads: int = 1  # recorded for compatibility; the encoder blocks have no self-attention
    v_heads: int = 128
    n_layers: int = 2
    d_out: int = 128  # code dimension
    n_codes: int = C.STRUCTURE_N_CODES
    n_neighbors: int = C.ENCODER_N_NEIGHBORS
    max_relative_position: int = C.ENCODER_MAX_RELATIVE_POSITION
    # Codebook training (paper A.1.7.1.1 names EMA + dead-code restart without values; these are the usual
    # VQ-VAE-2 / Jukebox choices; the commitment weight 0.25 is the released code's, spec §11). Inference ignores them.
    codebook_decay: float = 0.99
    codebook_epsilon: float = 1e-5
    commitment_weight: float = 0.25
    dead_code_threshold: float = 1.0

    def __post_init__(self) -> None:
        _check_positive(self, "d_model", "v_heads", "n_layers", "d_out", "n_codes", "n_neighbors")
        if not 0.0 <= self.codebook_decay < 1.0:
            raise ValueError(f"codebook_decay must be in [0, 1), got {self.codebook_decay}")

    @property
    def n_relative_positions(self) -> int:
        """Rows of the relative-position table: offsets -m..m shifted by m + 1, plus the unused row 0 (spec §6)."""
        return 2 * self.max_relative_position + 2

    @property
    def ffn_dim(self) -> int:
        return C.ffn_hidden_dim(self.d_model, expansion=C.ENCODER_FFN_EXPANSION)

    def replace(self, **changes: Any) -> StructureEncoderConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class StructureDecoderConfig:
    """Structure VQ-VAE decoder with confidence heads (paper A.1.7.2, spec §7)."""

    d_model: int = 1280
    n_heads: int = 20
    n_layers: int = 30
    pairwise_dim: int = 128  # downprojection width of the pairwise head
    max_length: int = 2048  # tokens including BOS/EOS
    sequence_conditioning: bool = False  # stage-2 training option (paper A.1.7.3.2); off in the official file

    def __post_init__(self) -> None:
        _check_positive(self, "d_model", "n_heads", "n_layers", "pairwise_dim", "max_length")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_dim(self) -> int:
        return C.ffn_hidden_dim(self.d_model)

    def replace(self, **changes: Any) -> StructureDecoderConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class FunctionDecoderConfig:
    """Function token decoder (paper A.1.8.2.1, spec §8)."""

    d_model: int = 1024
    n_heads: int = 8
    n_layers: int = 3
    n_keywords: int = C.N_KEYWORDS
    n_interpro: int = C.N_INTERPRO
    depth: int = C.FUNCTION_DEPTH
    bits_per_token: int = C.FUNCTION_BITS_PER_TOKEN

    def __post_init__(self) -> None:
        _check_positive(self, "d_model", "n_heads", "n_layers", "n_keywords", "n_interpro", "depth")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_bits(self) -> int:
        return self.depth * self.bits_per_token

    def replace(self, **changes: Any) -> FunctionDecoderConfig:
        return dataclasses.replace(self, **changes)


STRUCTURE_ENCODER_V0 = StructureEncoderConfig()
STRUCTURE_DECODER_V0 = StructureDecoderConfig()
FUNCTION_DECODER_V0 = FunctionDecoderConfig()
STRUCTURE_ENCODER_TINY = StructureEncoderConfig(d_model=64, v_heads=8, n_layers=2, d_out=16, n_codes=64)
STRUCTURE_DECODER_TINY = StructureDecoderConfig(d_model=64, n_heads=4, n_layers=2, pairwise_dim=32)
FUNCTION_DECODER_TINY = FunctionDecoderConfig(d_model=64, n_heads=4, n_layers=1, n_keywords=97, n_interpro=53)
