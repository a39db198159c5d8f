"""Finding and loading the structure encoder / decoder / function decoder weights, for the CLIs.

Interim module: the generic ``checkpoints.loading`` (``resolve_weights`` / ``load_model``) was not on main when
this was written; this follows the same rules (explicit path, else ``$OPENESM3_WEIGHTS``, else
``~/.cache/openesm3/weights``; our format or the official files) for the three VQ-VAE-side networks only, and is
meant to be replaced by it. Exception: with no path and no ``$OPENESM3_WEIGHTS``, the structure encoder and decoder
are the small tokenizer bundled with the package (``checkpoints.bundled``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from openesm3.checkpoints.bundled import BUNDLED_MODEL_TYPES, bundled_tokenizer_dir
from openesm3.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE, load_pretrained, read_config
from openesm3.checkpoints.official import (
    OFFICIAL_WEIGHT_FILES,
    OFFICIAL_WEIGHTS_SUBDIR,
    load_official_vqvae_network,
)
from openesm3.errors import WeightsError

WEIGHTS_ENV = "OPENESM3_WEIGHTS"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/openesm3/weights")
MODEL_TYPES = ("structure_encoder", "structure_decoder", "function_decoder")


def _ours(place: Path, model_type: str) -> bool:
    if not ((place / CONFIG_FILE).is_file() and (place / WEIGHTS_FILE).is_file()):
        return False
    try:
        return read_config(place)[0] == model_type
    except WeightsError:
        return False


def resolve_vqvae_weights(path: str | os.PathLike[str] | None, model_type: str) -> Path:
    """Where ``model_type``'s weights are: an official ``.pth``, our format directory, a directory holding one
    of them (``ROOT/<model_type>/``, ``ROOT/data/weights/<file>``, ``ROOT/weights/<file>``, ``ROOT/<file>``)."""
    if model_type not in MODEL_TYPES:
        raise WeightsError(f"unknown model type {model_type!r}; known: {list(MODEL_TYPES)}")
    if path is not None:
        root, origin = Path(path).expanduser(), "given path"
    elif os.environ.get(WEIGHTS_ENV):
        root, origin = Path(os.environ[WEIGHTS_ENV]).expanduser(), f"${WEIGHTS_ENV}"
    elif model_type in BUNDLED_MODEL_TYPES:
        # No weights given: the small tokenizer that ships with the package (docs/tokenizer_training.md).
        root, origin = bundled_tokenizer_dir(), "bundled tokenizer"
    else:
        root, origin = DEFAULT_WEIGHTS_DIR.expanduser(), "default location"
    if root.is_file():
        return root
    name = OFFICIAL_WEIGHT_FILES[model_type]
    looked = [root, root / model_type, root / OFFICIAL_WEIGHTS_SUBDIR / name, root / "weights" / name, root / name]
    for place in looked:
        if place.is_file() and place.suffix == ".pth":
            return place
        if place.is_dir() and _ours(place, model_type):
            return place
    raise WeightsError(
        f"no {model_type} weights found ({origin} {root}): need the official file {name} (Hugging Face "
        f"EvolutionaryScale/esm3-sm-open-v1, data/weights/) or an OpenESM3 directory ({CONFIG_FILE} + "
        f"{WEIGHTS_FILE}); looked in " + ", ".join(str(p) for p in looked) + f". Pass --weights or set ${WEIGHTS_ENV}."
    )


def load_vqvae_network(
    path: str | os.PathLike[str] | None, model_type: str, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Path]:
    """(model in eval mode, where it came from) for ``model_type``, from our format or the official file."""
    place = resolve_vqvae_weights(path, model_type)
    if place.is_dir():
        # fp32 whatever the file stores (the bundled tokenizer's files are float16; these networks run in fp32).
        model, _ = load_pretrained(place, expected_type=model_type, device=device, dtype=torch.float32)
        return model, place
    return load_official_vqvae_network(place, model_type, device=device), place


def weights_identity(place: Path, model_type: str) -> dict[str, str]:
    """What identifies the weights in an output file: model type, format, path and the weights' SHA-256."""
    file = place / WEIGHTS_FILE if place.is_dir() else place
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return {
        "model_type": model_type,
        "format": "openesm3" if place.is_dir() else "official",
        "weights": str(place),
        "sha256": digest.hexdigest(),
    }
