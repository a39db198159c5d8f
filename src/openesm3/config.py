"""Typed, frozen configurations of every network, with named presets.

Each network takes exactly one of these; variants are new presets (``dataclasses.replace``), never copied
code. Sizes of the official open release come from REFERENCE_SPEC §0; the 7B and 98B shapes from the paper's
Table S1 (PAPER_NOTES §2.7).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.utils.checks import check_seed


def _check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:  # JSON true is no width
            raise ValueError(f"{type(cfg).__name__}.{name} must be a positive int, got {value!r}")


def _check_non_negative_ints(cfg: Any, *names: str) -> None:
    """Ints >= 0 where 0 turns a feature off: 1.5, "16" or JSON true from a config.json is refused by name."""
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be an int >= 0, got {value!r}")


def _check_non_negative_numbers(cfg: Any, *names: str) -> None:
    """Finite numbers >= 0: a config.json holding NaN or Infinity (Python's json reads both) is refused by name."""
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{type(cfg).__name__}.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ESM3Config:
    """The multimodal trunk (paper A.1.1-A.1.6, spec §4)."""

    d_model: int
    n_heads: int
    n_layers: int
    v_heads: int  # heads of the geometric attention in block 0 (3-vectors per head)
    max_length: int = C.MODEL_CONTEXT  # tokens including BOS/EOS; the paper trains with a 2048 context
    n_taxonomy_terms: int = 0  # 0: no taxonomy track (paper A.1.9; 98B only, 40,000 terms)
    taxonomy_embed_dim: int = C.TAXONOMY_EMBED_DIM

    def __post_init__(self) -> None:
        _check_positive(self, "d_model", "n_heads", "n_layers", "v_heads", "max_length", "taxonomy_embed_dim")
        _check_non_negative_ints(self, "n_taxonomy_terms")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.d_model % C.FUNCTION_DEPTH:
            raise ValueError(f"d_model={self.d_model} must be divisible by {C.FUNCTION_DEPTH} (function embedding)")

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
ESM3_98B = ESM3Config(d_model=6144, n_heads=48, n_layers=216, v_heads=256, n_taxonomy_terms=C.TAXONOMY_N_TERMS_98B)


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
        _check_positive(self, "d_model", "n_heads", "v_heads", "n_layers", "d_out", "n_codes", "n_neighbors")
        _check_non_negative_ints(self, "max_relative_position")  # 0: every neighbour reads the same table row
        codebook = ("codebook_decay", "codebook_epsilon", "commitment_weight", "dead_code_threshold")
        _check_non_negative_numbers(self, *codebook)
        if not self.codebook_decay < 1.0:
            raise ValueError(f"StructureEncoderConfig.codebook_decay must be in [0, 1), got {self.codebook_decay!r}")

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
    max_length: int = C.MODEL_CONTEXT  # tokens including BOS/EOS
    sequence_conditioning: bool = False  # stage-2 training option (paper A.1.7.3.2); off in the official file
    # Extensions of our trained tokenizers (docs/tokenizer_training.md); the official decoder has neither.
    position_features: int = 0  # > 0: sinusoidal absolute-position features (this many frequencies) added to x
    frame_mode: str = "global"  # "global": frames read as-is (official); "chain": composed along the token row

    def __post_init__(self) -> None:
        _check_positive(self, "d_model", "n_heads", "n_layers", "pairwise_dim", "max_length")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        _check_non_negative_ints(self, "position_features")
        if not isinstance(self.sequence_conditioning, bool):  # the JSON string "false" would be true
            raise ValueError(
                "StructureDecoderConfig.sequence_conditioning must be true or false, got "
                f"{self.sequence_conditioning!r}"
            )
        if self.frame_mode not in ("global", "chain"):
            raise ValueError(f"frame_mode must be 'global' or 'chain', got {self.frame_mode!r}")

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
        _check_positive(self, "d_model", "n_heads", "n_layers", "n_keywords", "n_interpro", "depth", "bits_per_token")
        most = C.FUNCTION_MAX_BITS_PER_TOKEN  # unpack_lsh_bits shifts an int64 token by up to bits - 1
        if self.bits_per_token > most:
            raise ValueError(
                f"FunctionDecoderConfig.bits_per_token must be <= {most} (an <lsh:k> function token holds k < "
                f"{C.FUNCTION_VOCAB_SIZE - C.FUNCTION_LSH_OFFSET}, {most} bits), got {self.bits_per_token!r}"
            )
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


# ------------------------------------------------------------------------------------------------------------
# Generation (paper A.1.10, Algorithm 14; spec §10.1, §10.3).
# ------------------------------------------------------------------------------------------------------------
GENERATABLE_TRACKS: tuple[str, ...] = ("sequence", "structure", "secondary_structure", "sasa", "function")
# Tracks the model reads but cannot generate (the reference answers error 500 for them, spec §10.3).
NON_GENERATABLE_TRACKS: tuple[str, ...] = ("coordinates", "residue_annotations")
GenerationTrack = Literal["sequence", "structure", "secondary_structure", "sasa", "function"]
UnmaskingSchedule = Literal["cosine", "linear"]
UnmaskingStrategy = Literal["random", "entropy", "max_logit"]


@dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """How to generate one track of one prompt by iterative masked decoding (spec §10.1 ``GenerationConfig``).

    Defaults are the reference's. Differences from the reference's class: it is frozen (the reference mutates
    ``num_steps`` when a prompt has fewer masked positions than steps; we cap a private copy), the strategy
    ``"max_logit"`` (paper A.1.10) is added, and ``seed`` gives this prompt its own random stream.

    Attributes:
        track: the track to generate; the others are the prompt (``coordinates`` and ``residue_annotations``
            cannot be generated).
        num_steps: decoding steps (forward passes); capped to the number of positions to fill.
        schedule: fraction still masked after each step: ``"cosine"`` cos(pi s / 2) or ``"linear"`` 1 - s.
        strategy: which masked positions are committed at each step: ``"random"``, ``"entropy"`` (lowest entropy
            first) or ``"max_logit"`` (highest top log-probability first).
        temperature: initial sampling temperature; 0 = argmax (greedy).
        temperature_annealing: anneal T = max(T0 - t / (num_steps - 1), 0.001)^2 over the steps (as the
            reference, squared); False keeps T0.
        top_p: nucleus sampling threshold in (0, 1]; 1 disables it.
        invalid_ids: token ids never to emit on this track (on top of the track's special ids).
        condition_on_coordinates_only: when the prompt has coordinates, drop its structure tokens so the model
            reads the backbone through geometric attention and pLDDT only (the reference's default).
        seed: seed of this prompt's random stream; None derives it from the ``generate`` call's seed and the
            prompt's index. Give it to reproduce one prompt of a batch alone. Not used by sequential decoding
            (``sequential=True`` / ``reference_compat=True``), where all prompts draw from one shared stream seeded
            by the call's ``seed``; one config with a seed shared by several prompts gives them the same stream.
    """

    track: GenerationTrack
    num_steps: int = 20
    schedule: UnmaskingSchedule = "cosine"
    strategy: UnmaskingStrategy = "random"
    temperature: float = 1.0
    temperature_annealing: bool = True
    top_p: float = 1.0
    invalid_ids: tuple[int, ...] = ()
    condition_on_coordinates_only: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.track in NON_GENERATABLE_TRACKS:
            raise InputError(
                f"GenerationConfig.track={self.track!r}: this track cannot be generated (the model reads it as a "
                f"prompt only); generatable tracks are {list(GENERATABLE_TRACKS)}"
            )
        if self.track not in GENERATABLE_TRACKS:
            raise InputError(f"GenerationConfig.track={self.track!r} is unknown; use one of {list(GENERATABLE_TRACKS)}")
        if not isinstance(self.num_steps, int) or isinstance(self.num_steps, bool) or self.num_steps <= 0:
            raise InputError(f"GenerationConfig.num_steps must be a positive int, got {self.num_steps!r}")
        if self.schedule not in ("cosine", "linear"):
            raise InputError(f"GenerationConfig.schedule={self.schedule!r}: use 'cosine' or 'linear'")
        if self.strategy not in ("random", "entropy", "max_logit"):
            raise InputError(f"GenerationConfig.strategy={self.strategy!r}: use 'random', 'entropy' or 'max_logit'")
        if isinstance(self.temperature, bool) or not (
            isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature >= 0
        ):
            raise InputError(f"GenerationConfig.temperature must be a finite number >= 0, got {self.temperature!r}")
        if isinstance(self.top_p, bool) or not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise InputError(f"GenerationConfig.top_p must lie in (0, 1], got {self.top_p!r}")
        ids = tuple(self.invalid_ids)
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise InputError(f"GenerationConfig.invalid_ids must be non-negative ints, got {self.invalid_ids!r}")
        object.__setattr__(self, "invalid_ids", tuple(sorted(set(ids))))
        if self.seed is not None:
            check_seed(self.seed, "GenerationConfig.seed")

    def replace(self, **changes: Any) -> GenerationConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def entropy_unmasking(cls, track: GenerationTrack, **changes: Any) -> GenerationConfig:
        """Cosine schedule, lowest-entropy-first, no annealing (the reference's
        ``use_entropy_based_unmasking_strategy``)."""
        return cls(track=track, **{"schedule": "cosine", "strategy": "entropy", "temperature_annealing": False,
                                   **changes})  # fmt: skip

    @classmethod
    def generative_unmasking(cls, track: GenerationTrack, **changes: Any) -> GenerationConfig:
        """Cosine schedule, random order, annealed temperature (the reference's
        ``use_generative_unmasking_strategy``)."""
        return cls(track=track, **{"schedule": "cosine", "strategy": "random", "temperature_annealing": True,
                                   **changes})  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Protein tasks (fold, inverse-fold, predict-function, generate): how many steps and how hot, per task.
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class TaskDecoding:
    """Decoding settings of one protein task; turned into a :class:`GenerationConfig` per prompt and track.

    Attributes:
        num_steps: decoding steps per generated track; None = ``ceil(steps_per_residue * L)`` (at least 1).
        steps_per_residue: the default step count as a fraction of the length (paper A.3.9 uses L/2).
        temperature, temperature_annealing, schedule, strategy, top_p: as in :class:`GenerationConfig`.
    """

    num_steps: int | None = None
    steps_per_residue: float = 0.5
    temperature: float = 0.7
    temperature_annealing: bool = True
    schedule: UnmaskingSchedule = "cosine"
    strategy: UnmaskingStrategy = "random"
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.num_steps is not None and (
            not isinstance(self.num_steps, int) or isinstance(self.num_steps, bool) or self.num_steps <= 0
        ):
            raise InputError(f"num_steps must be a positive int or None, got {self.num_steps!r}")
        if not (isinstance(self.steps_per_residue, (int, float)) and 0 < self.steps_per_residue <= 1):
            raise InputError(f"steps_per_residue must lie in (0, 1], got {self.steps_per_residue!r}")
        self.generation_config("sequence", 1)  # validates temperature, top_p, schedule and strategy

    def steps_for(self, length: int) -> int:
        """Steps for an L-residue protein (the decoder caps them to the positions to fill)."""
        if self.num_steps is not None:
            return self.num_steps
        return max(1, math.ceil(self.steps_per_residue * length))

    def generation_config(
        self,
        track: GenerationTrack,
        length: int,
        *,
        seed: int | None = None,
        invalid_ids: tuple[int, ...] = (),
        condition_on_coordinates_only: bool = True,
    ) -> GenerationConfig:
        return GenerationConfig(
            track=track,
            num_steps=self.steps_for(length),
            schedule=self.schedule,
            strategy=self.strategy,
            temperature=self.temperature,
            temperature_annealing=self.temperature_annealing,
            top_p=self.top_p,
            invalid_ids=invalid_ids,
            condition_on_coordinates_only=condition_on_coordinates_only,
            seed=seed,
        )

    def replace(self, **changes: Any) -> TaskDecoding:
        return dataclasses.replace(self, **changes)


# Folding: greedy (argmax), lowest entropy first, L/2 steps (paper A.3.4: iterative decoding beats one argmax pass).
FOLD_DECODING = TaskDecoding(temperature=0.0, temperature_annealing=False, strategy="entropy")
# Inverse folding and design: T = 0.7 annealed, random order, L/2 steps (paper A.3.9).
INVERSE_FOLD_DECODING = TaskDecoding()
DESIGN_DECODING = TaskDecoding()
# Function prediction: greedy, lowest entropy first, L/2 steps.
FUNCTION_DECODING = TaskDecoding(temperature=0.0, temperature_annealing=False, strategy="entropy")
