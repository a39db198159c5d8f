"""Weights that ship inside the package: the small structure tokenizer trained by ``openesm3 train-tokenizer``
(``docs/tokenizer_training.md``). Commands that tokenize or detokenize structures use it when no weights are given.
"""

from __future__ import annotations

from pathlib import Path

import torch

from openesm3.checkpoints.format import load_pretrained
from openesm3.errors import WeightsError
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder

BUNDLED_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "tokenizer"
BUNDLED_MODEL_TYPES = ("structure_encoder", "structure_decoder")  # one subdirectory each, in our weight format


def bundled_tokenizer_dir() -> Path:
    """The directory of the shipped tokenizer (``structure_encoder/`` and ``structure_decoder/``, our format)."""
    for part in BUNDLED_MODEL_TYPES:
        if not (BUNDLED_TOKENIZER_DIR / part / "config.json").is_file():
            raise WeightsError(f"{BUNDLED_TOKENIZER_DIR / part}: the bundled tokenizer is missing from this install")
    return BUNDLED_TOKENIZER_DIR


def load_structure_tokenizer(
    directory: str | Path | None = None, *, device: str | torch.device = "cpu"
) -> tuple[StructureEncoder, StructureDecoder]:
    """Encoder and decoder (eval mode) from a directory with ``structure_encoder/`` and ``structure_decoder/``
    (a training run's ``export/``; default: the bundled tokenizer)."""
    root = bundled_tokenizer_dir() if directory is None else Path(directory)
    encoder, _ = load_pretrained(root / "structure_encoder", expected_type="structure_encoder", device=device)
    decoder, _ = load_pretrained(root / "structure_decoder", expected_type="structure_decoder", device=device)
    if not isinstance(encoder, StructureEncoder) or not isinstance(decoder, StructureDecoder):
        raise WeightsError(f"{root}: not a structure tokenizer")  # pragma: no cover - guarded by expected_type
    return encoder, decoder
