"""One entry point for weights: our format or the official release, found the same way by every CLI.

- :func:`resolve_weights` finds where a model's weights are: an explicit path, else ``$OPENESM3_WEIGHTS``,
  else ``~/.cache/openesm3/weights``.
- :func:`load_model` loads them, whichever format they are in: a directory of ours (``config.json`` +
  ``model.safetensors``), an official ``.pth`` file, or a directory laid out like the official release
  (``data/weights/<file>.pth``).

Both build the model on the meta device and assign the loaded tensors (no random init, no second copy).
Official files are opened with ``weights_only=True`` and ``mmap=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from openesm3.checkpoints.format import (
    CONFIG_FILE,
    MODEL_TYPES,
    WEIGHTS_FILE,
    load_pretrained,
    load_state_dict_strict,
    read_config,
)
from openesm3.checkpoints.official import (
    OFFICIAL_KEY_MAPS,
    OFFICIAL_PRESETS,
    OFFICIAL_WEIGHT_FILES,
    OFFICIAL_WEIGHTS_SUBDIR,
    load_official_state_dict,
    official_key_map,
    official_tensors_as,
    raise_if_another_network,
    to_our_state_dict,
)
from openesm3.errors import WeightsError

WEIGHTS_ENV = "OPENESM3_WEIGHTS"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/openesm3/weights")


def _candidates(root: Path, model_type: str) -> list[Path]:
    """Places under a weights root where ``model_type`` may live, in the order they are tried."""
    places = [root, root / model_type]  # our format: the directory itself, or one sub-directory per model
    name = OFFICIAL_WEIGHT_FILES.get(model_type)
    if name is not None:
        places += [root / OFFICIAL_WEIGHTS_SUBDIR / name, root / "weights" / name, root / name]
    return places


def _holds(place: Path, model_type: str) -> tuple[bool, str | None]:
    """Whether ``place`` holds ``model_type``'s weights; if not, why, when it is a model directory of ours."""
    if place.is_file():
        return place.suffix == ".pth", None
    has_config, has_weights = (place / CONFIG_FILE).is_file(), (place / WEIGHTS_FILE).is_file()
    if has_config and has_weights:
        try:
            found, _ = read_config(place)
        except WeightsError as exc:
            return False, str(exc)
        if found != model_type:
            return False, f"{place} holds {found} weights, not {model_type}"
        return True, None
    if has_config or has_weights:  # half a model directory (e.g. an interrupted copy)
        present, absent = (CONFIG_FILE, WEIGHTS_FILE) if has_config else (WEIGHTS_FILE, CONFIG_FILE)
        return False, f"{place}: {present} but no {absent}"
    return False, None


def model_directory_of(path: Path) -> Path:
    """A file of one of our model directories (its ``model.safetensors`` or ``config.json``) stands for the
    directory; any other path is returned as it is."""
    if path.is_file() and path.name in (WEIGHTS_FILE, CONFIG_FILE) and (path.parent / CONFIG_FILE).is_file():
        return path.parent
    return path


def resolve_weights(path: str | os.PathLike[str] | None, model_type: str) -> Path:
    """Where the weights of ``model_type`` are: ``path`` if given, else ``$OPENESM3_WEIGHTS``, else
    ``~/.cache/openesm3/weights``.

    ``path`` (or the root) may be an official ``.pth`` file, a directory in our format (or its
    ``model.safetensors``), a directory with one sub-directory per model type in our format
    (``ROOT/esm3/config.json``), or a directory laid out like the official release
    (``ROOT/data/weights/esm3_sm_open_v1.pth``). Raises :class:`WeightsError` naming the files needed and every
    place looked, and why a model directory found there does not do (unreadable config, another network).
    """
    if model_type not in MODEL_TYPES:
        raise WeightsError(f"unknown model type {model_type!r}; known: {sorted(MODEL_TYPES)}")
    if path is not None:
        root, origin = Path(path).expanduser(), "given path"
    elif os.environ.get(WEIGHTS_ENV):
        root, origin = Path(os.environ[WEIGHTS_ENV]).expanduser(), f"${WEIGHTS_ENV}"
    else:
        root, origin = DEFAULT_WEIGHTS_DIR.expanduser(), "default location"
    root = model_directory_of(root)
    if path is not None and root.is_file():
        return root
    looked = _candidates(root, model_type)
    notes = []
    for place in looked:
        found, note = _holds(place, model_type)
        if found:
            return place
        if note is not None:
            notes.append(note)
    official = OFFICIAL_WEIGHT_FILES.get(model_type)
    needs = f"the official file {official} or " if official else ""
    raise WeightsError(
        f"no {model_type} weights found ({origin} {root}): need {needs}a directory in OpenESM3 format "
        f"({CONFIG_FILE} + {WEIGHTS_FILE}, made by 'openesm3 convert'); looked in "
        + ", ".join(str(p) for p in looked)
        + "".join(f"; {note}" for note in notes)
        + f". Pass the path explicitly or set ${WEIGHTS_ENV}."
    )


def load_model(
    path: str | os.PathLike[str] | None,
    model_type: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    config: Any | None = None,
) -> tuple[nn.Module, Any]:
    """Load ``model_type`` from our format or from an official file; returns ``(model, config)`` in eval mode.

    Args:
        path: see :func:`resolve_weights` (None: ``$OPENESM3_WEIGHTS`` or the default location).
        model_type: a key of :data:`openesm3.checkpoints.format.MODEL_TYPES` (``"esm3"``, ...).
        device: where the weights end up. Official files are read on the CPU (memory-mapped) and moved.
        dtype: cast floating-point weights (e.g. ``torch.bfloat16``). None keeps the dtype of a directory in our
            format, and loads an official file in fp32 as the reference does (it copies the file into fp32
            parameters, so an fp16 file computes in fp32). Casting an official fp32 file holds both copies for a
            moment: for the smallest footprint convert once with ``openesm3 convert --dtype bf16`` and load that.
        config: the network's config for official-format files that are not the release (e.g. test models);
            None uses the release preset. Ignored for our format, whose directory carries its config.
    """
    place = resolve_weights(path, model_type)
    if place.is_dir():
        model, cfg = load_pretrained(place, expected_type=model_type, device=device, dtype=dtype)
        return model, cfg
    return load_official(place, model_type, device=device, dtype=dtype, config=config)


def load_official(
    file: str | os.PathLike[str],
    model_type: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    config: Any | None = None,
) -> tuple[nn.Module, Any]:
    """Load an official ``.pth`` state_dict through the registered key map (strict, meta-device build); ``dtype``
    None gives fp32 parameters, as the reference's ``load_state_dict`` into its fp32 model does."""
    if model_type not in OFFICIAL_KEY_MAPS:
        raise WeightsError(f"{file}: no official format known for model type {model_type!r}")
    cfg = OFFICIAL_PRESETS[model_type] if config is None else config
    with torch.device("meta"):
        model = MODEL_TYPES[model_type].model_class()(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    key_map = official_key_map(model_type, cfg)
    official = load_official_state_dict(file, role=model_type)
    try:
        state = to_our_state_dict(official, key_map, source=str(file), expected_shapes=expected)
    except WeightsError:
        raise_if_another_network(official, model_type, source=str(file))  # say so rather than list every key
        raise
    state = official_tensors_as(state, device=device, dtype=dtype)
    load_state_dict_strict(model, state, source=str(file))
    return model.eval(), cfg
