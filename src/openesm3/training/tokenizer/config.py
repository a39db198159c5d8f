"""Configuration of structure-tokenizer training (paper A.1.7.3; ``openesm3 train-tokenizer``).

:class:`TokenizerTrainConfig` extends the generic :class:`~openesm3.training.config.TrainConfig` with the two
networks' own configs (the same dataclasses the official weights load into), the stage, the loss weights and the
stage-specific settings. Everything is overridable from the command line (``encoder.n_codes=512``,
``losses.distogram=0.5``, ``stage=2``).

Loss weights are not given by the paper (PAPER_NOTES §2.10 "relative weights NOT given"); the defaults weigh
every term 1, which with the clamps of Algorithms 10-11 keeps each term's gradient of the same order. See
``docs/tokenizer_training.md`` for the reasons behind every default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from openesm3.config import StructureDecoderConfig, StructureEncoderConfig
from openesm3.constants import MODEL_CONTEXT
from openesm3.training.config import DataConfig, OptimConfig, Precision, SplitConfig, TrainConfig, _require

# The shipped tokenizer's networks (v2, docs/tokenizer_training.md): a 2-block geometric encoder of width 128, 2048
# codes of width 64, a 4-block stage-1 decoder of width 128 and an 8-block sequence-conditioned stage-2 decoder of
# width 256, both with position features.
SMALL_ENCODER = StructureEncoderConfig(
    d_model=128, v_heads=16, n_layers=2, d_out=64, n_codes=2048, dead_code_threshold=0.1
)
SMALL_STAGE1_DECODER = StructureDecoderConfig(
    d_model=128, n_heads=4, n_layers=4, pairwise_dim=32, max_length=MODEL_CONTEXT, position_features=16
)
SMALL_STAGE2_DECODER = StructureDecoderConfig(
    d_model=256,
    n_heads=8,
    n_layers=8,
    pairwise_dim=32,
    max_length=MODEL_CONTEXT,
    sequence_conditioning=True,
    position_features=16,
)


@dataclass(frozen=True, kw_only=True)
class TokenizerLossConfig:
    """Weights of the loss terms (0 switches a term off). Stage 1 uses the first six, stage 2 all but
    ``commitment`` (the codebook is frozen) and ``inverse_folding`` (the decoder sees the sequence)."""

    backbone_distance: float = 1.0  # Algorithm 10
    backbone_direction: float = 1.0  # Algorithm 11
    backbone_fape: float = 0.0  # frame-aligned point error (AlphaFold2; not in the paper): breaks mirror symmetry
    binned_direction: float = 1.0  # 16 bins x 6 pairs of frame-vector dot products
    distogram: float = 1.0  # 64 bins of virtual C-beta distance
    inverse_folding: float = 1.0  # amino-acid cross-entropy from the decoder's final features
    local_structure: float = 0.0  # stage 1, ours: each code predicts its residue's local backbone window
    commitment: float = 1.0  # multiplies the codebook's own beta (encoder.commitment_weight)
    plddt: float = 1.0  # stage 2 (distogram and binned_direction apply to both stages)
    pae: float = 1.0  # stage 2
    all_atom_distance: float = 1.0  # stage 2
    all_atom_direction: float = 1.0  # stage 2
    torsion: float = 1.0  # stage 2: side-chain / psi torsion angles (sin, cos), pi-periodic ones symmetrised
    distance_clamp: float = 25.0  # Algorithm 10: squared distance error clamped at (5 A)^2
    direction_clamp: float = 20.0  # Algorithm 11
    fape_clamp: float = 10.0  # Angstrom (AlphaFold2's)
    all_atom_max_points: int = 1024  # atoms per protein in the all-atom distance loss (random subset)
    all_atom_max_vectors: int = 1024  # vectors per protein in the all-atom direction loss (paper: 10,000)

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            _require(value >= 0, f"losses.{name} must be >= 0, got {value}")


@dataclass(frozen=True, kw_only=True)
class TokenizerTrainConfig(TrainConfig):
    """A structure-tokenizer training run (stage 1 or 2)."""

    stage: int = 1  # 1: encoder + codebook + small decoder; 2: frozen encoder/codebook, new larger decoder
    encoder: StructureEncoderConfig = field(default_factory=lambda: SMALL_ENCODER)
    decoder: StructureDecoderConfig = field(default_factory=lambda: SMALL_STAGE1_DECODER)
    losses: TokenizerLossConfig = field(default_factory=TokenizerLossConfig)
    # stage 2: where the frozen encoder + codebook come from: a stage-1 run or checkpoint directory, or a trained
    # tokenizer's weights directory (a run's export/, or "bundled" for the shipped one)
    init_from: str = ""
    # stage 2: "random" (the paper: a re-initialised decoder), "stage1" (a deeper decoder that starts as the
    # stage-1 one; same width; see training/tokenizer/warm_start.py) or "checkpoint" (the decoder of a stage-2
    # checkpoint, same shapes: a later sub-stage such as the paper's 2A -> 2B, with its own losses and schedule) or
    # "weights" (init_from is a trained tokenizer in our weight format, e.g. a run's export/ or "bundled" for the
    # shipped one: its encoder, codebook and decoder, to continue training when the checkpoints are gone)
    decoder_init: Literal["random", "stage1", "checkpoint", "weights"] = "random"
    # dropout on the residual branches of the decoder's blocks, in training only (ours; the paper is silent; the
    # exported decoder is unaffected): against overfitting a small training set
    decoder_dropout: float = 0.0
    cache_tokens: bool = True  # stage 2: encode the dataset once with the frozen encoder, train on those tokens
    sequence_dropout: float = 0.5  # stage 2 (sequence-conditioned decoder): fraction of proteins decoded without it
    # stage 2 with cache_tokens, token augmentation (ours): every record is encoded token_renditions times, the clean
    # coordinates first, then coordinates with Gaussian noise of token_noise A per coordinate; each training
    # example decodes one rendition drawn at random (validation and export read the clean one). 0.1 A of noise
    # changes about half of the v2 codes (docs/tokenizer_training.md), so one structure teaches many token rows.
    token_renditions: int = 1
    token_noise: float = 0.1
    codebook_init_from_data: bool = True  # stage 1: the first batch's encoder outputs become the codes
    # residue numbers of the encoder's relative positions: "sequential" (1..L, as encode_structure and the official
    # SDK number residues) or "residue_index" (the file's numbers, gap-aware)
    encoder_positions: Literal["sequential", "residue_index"] = "sequential"
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=100))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(
            crop_length=128,
            batch_size=8,
            bucket_boundaries=(64, 96, 128),
            split=SplitConfig(method="column"),
        )
    )
    precision: Precision = "fp32"  # bf16 autocast is not faster on CPUs without AMX
    out_dir: str = "runs/tokenizer_stage1"

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.stage in (1, 2), f"stage must be 1 or 2, got {self.stage}")
        _require(0 <= self.sequence_dropout <= 1, f"sequence_dropout must lie in [0, 1], got {self.sequence_dropout}")
        _require(0 <= self.decoder_dropout < 1, f"decoder_dropout must lie in [0, 1), got {self.decoder_dropout}")
        _require(
            self.decoder_init != "weights" or self.stage == 2,
            "decoder_init=weights continues a stage-2 decoder; stage 1 trains its networks from scratch",
        )
        _require(self.token_renditions >= 1, f"token_renditions must be >= 1, got {self.token_renditions}")
        _require(self.token_noise >= 0, f"token_noise must be >= 0 (Angstrom), got {self.token_noise}")
        _require(
            self.token_renditions == 1 or (self.stage == 2 and self.cache_tokens),
            "token_renditions > 1 needs stage 2 with cache_tokens (the renditions are encoded once, before training)",
        )
        _require(
            self.stage == 1 or bool(self.init_from),
            "stage 2 needs init_from: the stage-1 run (or checkpoint) whose encoder and codebook it freezes",
        )
