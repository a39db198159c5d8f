"""Finding and loading the structure encoder / decoder / function decoder weights, for the CLIs.

Weights are found as :func:`openesm3.checkpoints.loading.resolve_weights` finds them (explicit path, else
``$OPENESM3_WEIGHTS``, else ``~/.cache/openesm3/weights``; our format or the official files), with one exception:
with no path and no ``$OPENESM3_WEIGHTS``, the structure encoder and decoder are the small tokenizer bundled with the
package (``checkpoints.bundled``). These networks are always loaded in fp32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from openesm3.checkpoints.bundled import BUNDLED_MODEL_TYPES, bundled_tokenizer_dir
from openesm3.checkpoints.format import WEIGHTS_FILE, load_pretrained
from openesm3.checkpoints.loading import WEIGHTS_ENV, resolve_weights
from openesm3.checkpoints.official import load_official_vqvae_network
from openesm3.errors import WeightsError
from openesm3.utils.provenance import loaded_weights_sha256, sha256_file

MODEL_TYPES = ("structure_encoder", "structure_decoder", "function_decoder")


def resolve_vqvae_weights(path: str | os.PathLike[str] | None, model_type: str) -> Path:
    """Where ``model_type``'s weights are, found as :func:`openesm3.checkpoints.loading.resolve_weights` finds them
    (an official ``.pth``, a directory in our format or its ``model.safetensors``, a directory holding one of them;
    the error says why a model directory found there does not do), except that with no path and no
    ``$OPENESM3_WEIGHTS`` the structure encoder and decoder are the bundled tokenizer."""
    if model_type not in MODEL_TYPES:
        raise WeightsError(f"unknown model type {model_type!r}; known: {list(MODEL_TYPES)}")
    if path is None and not os.environ.get(WEIGHTS_ENV) and model_type in BUNDLED_MODEL_TYPES:
        # No weights given: the small tokenizer that ships with the package (docs/tokenizer_training.md).
        return resolve_weights(bundled_tokenizer_dir(), model_type)
    return resolve_weights(path, model_type)


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
    """What identifies the weights in an output file: model type, format, path and the weights' SHA-256 (of the
    file as it is now, hashed once per run however often asked; :func:`loaded_weights_identity` for weights this run
    loaded)."""
    return {**_described(place, model_type), "sha256": sha256_file(_weights_file(place))}


def loaded_weights_identity(place: Path, model_type: str) -> dict[str, str | None]:
    """:func:`weights_identity` of weights the run loaded, as loaded: the SHA-256 of the file the open run opened
    when it loaded it (:func:`openesm3.utils.provenance.loaded_weights_sha256`), even if another file has replaced
    it since; None when it was changed in place before its hash could read it. With no run hashing its weights, the
    file as it is now: ask right after loading then."""
    return {**_described(place, model_type), "sha256": loaded_weights_sha256(_weights_file(place))}


def _weights_file(place: Path) -> Path:
    return place / WEIGHTS_FILE if place.is_dir() else place


def _described(place: Path, model_type: str) -> dict[str, str]:
    return {"model_type": model_type, "format": "openesm3" if place.is_dir() else "official", "weights": str(place)}
