"""Weights that ship inside the package: the small structure tokenizer trained by ``openesm3 train-tokenizer``
(``docs/tokenizer_training.md``). Commands that tokenize or detokenize structures use it when no weights are given.
"""

from __future__ import annotations

from pathlib import Path

import torch

from openesm3.checkpoints.format import load_pretrained, save_pretrained
from openesm3.errors import WeightsError
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder

BUNDLED_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "tokenizer"
BUNDLED_MODEL_TYPES = ("structure_encoder", "structure_decoder")  # one subdirectory each, in our weight format
# The shipped files store float16 (half the size in the wheel and the repository); every loader here computes in
# float32, so the files' rounding (relative 2^-11) is part of the shipped weights and of the figures measured on them.
BUNDLED_STORAGE_DTYPE = torch.float16


def bundled_tokenizer_dir() -> Path:
    """The directory of the shipped tokenizer (``structure_encoder/`` and ``structure_decoder/``, our format)."""
    for part in BUNDLED_MODEL_TYPES:
        if not (BUNDLED_TOKENIZER_DIR / part / "config.json").is_file():
            raise WeightsError(f"{BUNDLED_TOKENIZER_DIR / part}: the bundled tokenizer is missing from this install")
    return BUNDLED_TOKENIZER_DIR


def load_structure_tokenizer(
    directory: str | Path | None = None, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[StructureEncoder, StructureDecoder]:
    """Encoder and decoder (eval mode, ``dtype``) from a directory with ``structure_encoder/`` and
    ``structure_decoder/`` (a training run's ``export/``; default: the bundled tokenizer)."""
    root = bundled_tokenizer_dir() if directory is None else Path(directory)
    encoder, _ = load_pretrained(
        root / "structure_encoder", expected_type="structure_encoder", device=device, dtype=dtype
    )
    decoder, _ = load_pretrained(
        root / "structure_decoder", expected_type="structure_decoder", device=device, dtype=dtype
    )
    if not isinstance(encoder, StructureEncoder) or not isinstance(decoder, StructureDecoder):
        raise WeightsError(f"{root}: not a structure tokenizer")  # pragma: no cover - guarded by expected_type
    return encoder, decoder


def write_bundle(export_dir: str | Path, out_dir: str | Path, *, dtype: torch.dtype = BUNDLED_STORAGE_DTYPE) -> Path:
    """Copy a training run's ``export/`` (``structure_encoder/`` + ``structure_decoder/``) to ``out_dir`` with its
    floating-point weights stored as ``dtype`` (the package's copy: ``write_bundle(run / "export",
    BUNDLED_TOKENIZER_DIR)``). Refuses weights that ``dtype`` cannot hold (non-finite or out of range)."""
    out = Path(out_dir)
    for part in BUNDLED_MODEL_TYPES:
        model, config = load_pretrained(Path(export_dir) / part, expected_type=part)
        limit = torch.finfo(dtype).max
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not (torch.isfinite(tensor).all() and tensor.abs().max() <= limit):
                raise WeightsError(f"{Path(export_dir) / part}: {name} does not fit {dtype} (non-finite or > {limit})")
        save_pretrained(model.to(dtype), config, out / part, model_type=part)
    return out
