"""Our weight format: a directory with ``model.safetensors`` and ``config.json``.

``config.json`` holds ``{"format_version": 1, "model_type": ..., "config": {...dataclass fields...},
"dtype": ...}`` and, for a structure decoder whose training is known, ``"trained_heads"`` (and
``"calibrated_heads"``): which confidence heads were trained (calibrated), e.g. ``["plddt", "pae"]`` for a stage-2
tokenizer export and ``[]`` for a stage-1 one (:data:`HEAD_RECORDS`). A file without them loads as before.

Saving and loading round-trip bit-exactly (safetensors stores raw tensor bytes). Writes are atomic: the
directory's files appear complete or not at all, and an existing directory is only replaced once the new files are
fully written. A ``config.json`` that is not ours (another program's) is never replaced.

This module is generic over networks: each network registers its ``model_type`` in :data:`MODEL_TYPES`
(config class and model class, imported lazily so that this module stays light).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError  # type: ignore[attr-defined]  # not in the type stubs of safetensors 0.4
from safetensors.torch import load_file
from torch import nn

from openesm3.constants import CONFIDENCE_HEADS
from openesm3.errors import WeightsError
from openesm3.utils.atomic import atomic_write_text, atomic_write_with
from openesm3.utils.provenance import note_weights

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TENSOR_ALIGNMENT = 64  # bytes: PyTorch's CPU allocator, and the records of an official .pth
# Optional config.json keys recording a network's confidence heads; each is also the attribute of the model that
# holds it (StructureDecoder.trained_heads / .calibrated_heads): load_pretrained sets it, save_pretrained writes it.
HEAD_RECORDS = ("trained_heads", "calibrated_heads")


@dataclass(frozen=True)
class ModelType:
    """Where a network's classes live: ``module:Class`` for the model and for its config dataclass."""

    model: str
    config: str

    def model_class(self) -> type[nn.Module]:
        return _import(self.model)  # type: ignore[no-any-return]

    def config_class(self) -> type:
        return _import(self.config)  # type: ignore[no-any-return]


def _import(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


# model_type -> classes. Networks add themselves here.
MODEL_TYPES: dict[str, ModelType] = {
    "esm3": ModelType(model="openesm3.models.esm3:ESM3", config="openesm3.config:ESM3Config"),
    "structure_encoder": ModelType(
        model="openesm3.models.structure_encoder:StructureEncoder", config="openesm3.config:StructureEncoderConfig"
    ),
    "structure_decoder": ModelType(
        model="openesm3.models.structure_decoder:StructureDecoder", config="openesm3.config:StructureDecoderConfig"
    ),
    "function_decoder": ModelType(
        model="openesm3.models.function_decoder:FunctionDecoder", config="openesm3.config:FunctionDecoderConfig"
    ),
}


def config_to_dict(config: Any) -> dict[str, Any]:
    """The fields of a config dataclass instance as a JSON-ready dict (``TypeError`` for anything else)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def config_from_dict(model_type: str, data: dict[str, Any], source: str = "config") -> Any:
    """The config of registered ``model_type`` built from ``data``; unknown fields, an unknown model type or invalid
    values raise :class:`WeightsError` naming ``source``."""
    cls = _model_type(model_type, source).config_class()
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise WeightsError(f"{source}: unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{source}: invalid {cls.__name__}: {exc}") from exc


def _model_type(model_type: str, source: str) -> ModelType:
    try:
        return MODEL_TYPES[model_type]
    except KeyError:
        raise WeightsError(f"{source}: unknown model_type {model_type!r}; known: {sorted(MODEL_TYPES)}") from None


def save_pretrained(model: nn.Module, config: Any, directory: str | os.PathLike[str], *, model_type: str) -> Path:
    """Write ``model``'s state_dict and ``config`` to ``directory`` (created if needed), atomically per file.

    The weights are written first and the config last, so a directory with a config always has its weights.
    Tensors keep their dtype; shared or non-contiguous tensors are stored as contiguous copies.
    """
    _model_type(model_type, str(directory))
    out = Path(directory)
    refuse_foreign_config(out / CONFIG_FILE)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write_with(out / WEIGHTS_FILE, lambda tmp: write_aligned_safetensors(state, tmp, {"format_version": "1"}))
    meta = {
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "config": config_to_dict(config),
        "dtype": _dtype_names(state),
    }
    for key in HEAD_RECORDS:  # only when recorded: a config without them reads as before (trained, not calibrated)
        heads = getattr(model, key, None)
        if heads is not None:
            meta[key] = [h for h in CONFIDENCE_HEADS if h in heads]
    atomic_write_text(out / CONFIG_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def write_aligned_safetensors(state: dict[str, torch.Tensor], path: str, metadata: dict[str, str]) -> None:
    """Write ``state`` as a standard safetensors file whose tensors start at multiples of 64 bytes.

    safetensors places the data right after its header and each tensor right after the previous one, so a
    library-written file puts tensors at 8-byte offsets, which :func:`read_state_dict` must copy (see there).
    Here the header is padded with spaces (which the format allows) to end on a 64-byte boundary and the tensors
    whose size is a multiple of 64 bytes (all the large ones) come first, so they load memory-mapped and aligned;
    only the few odd-sized ones after them are copied on load. Any safetensors reader reads the file.
    """
    order = sorted(state, key=lambda k: (state[k].numel() * state[k].element_size() % TENSOR_ALIGNMENT != 0, k))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key in order:
        tensor = state[key]
        if tensor.dtype not in _SAFETENSORS_DTYPES:
            raise WeightsError(f"{key}: dtype {tensor.dtype} cannot be stored in safetensors")
        size = tensor.numel() * tensor.element_size()
        header[key] = {"dtype": _SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape),
                       "data_offsets": [offset, offset + size]}  # fmt: skip
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % TENSOR_ALIGNMENT)
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little"))
        handle.write(text)
        for key in order:  # one tensor at a time: no second copy of the whole model in memory
            tensor = state[key].detach().to("cpu").contiguous()
            handle.write(tensor.reshape(-1).view(torch.uint8).numpy().data)


def refuse_foreign_config(path: Path) -> None:
    """Raise :class:`WeightsError` when ``path`` exists and is not one of our model configs: ``config.json`` and
    ``model.safetensors`` are common names (a Hugging Face model directory has both), and replacing another
    program's files would lose them. Our own config, of any model or version, may be replaced."""
    if not path.exists() and not path.is_symlink():
        return
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not (isinstance(meta, dict) and "format_version" in meta and "model_type" in meta):
        raise WeightsError(
            f"{path}: not an OpenESM3 model config; refusing to replace it and the {WEIGHTS_FILE} beside it "
            "(write to another directory)"
        )


def read_config(directory: str | os.PathLike[str]) -> tuple[str, Any]:
    """``(model_type, config)`` of a saved model directory, with clear errors for anything off."""
    model_type, config, _ = _read_config_and_dtype(directory)
    return model_type, config


def _read_config_and_dtype(directory: str | os.PathLike[str]) -> tuple[str, Any, Any]:
    """:func:`read_config`, with the ``dtype`` field (None when the config has none)."""
    path, meta = _read_meta(directory)
    return meta["model_type"], config_from_dict(meta["model_type"], meta["config"], str(path)), meta.get("dtype")


def _read_meta(directory: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """The path and checked contents of a model directory's ``config.json``."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"{directory}: no {CONFIG_FILE} (not an OpenESM3 model directory)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{path}: format_version {version!r} is not supported (this OpenESM3 reads {FORMAT_VERSION})"
        )
    for key, kind in (("model_type", str), ("config", dict)):
        if key not in meta:
            raise WeightsError(f"{path}: missing key {key!r}")
        if not isinstance(meta[key], kind):
            expected = "a string" if kind is str else "a JSON object of config fields"
            raise WeightsError(f"{path}: {key!r} must be {expected}, not {json.dumps(meta[key])}")
    _check_dtype_field(path, meta)
    _check_head_records(path, meta)
    return path, meta


def _check_head_records(path: Path, meta: dict[str, Any]) -> None:
    """Refuse a ``trained_heads`` / ``calibrated_heads`` that is not a list of confidence head names, or that is
    written for a network without confidence heads."""
    for key in HEAD_RECORDS:
        if key not in meta:
            continue
        value = meta[key]
        if not isinstance(value, list) or any(h not in CONFIDENCE_HEADS for h in value):
            raise WeightsError(
                f"{path}: {key!r} {json.dumps(value)} must be a list of confidence heads (of {list(CONFIDENCE_HEADS)})"
            )
        if meta["model_type"] != "structure_decoder":
            raise WeightsError(
                f"{path}: {key!r} is recorded for structure_decoder weights only, not {meta['model_type']}"
            )


def read_head_records(directory: str | os.PathLike[str]) -> dict[str, tuple[str, ...] | None]:
    """``{"trained_heads": ..., "calibrated_heads": ...}`` of a saved model directory (None: not recorded)."""
    _, meta = _read_meta(directory)
    return {key: tuple(meta[key]) if key in meta else None for key in HEAD_RECORDS}


def _dtype_names(state: dict[str, torch.Tensor]) -> str | list[str]:
    """What ``config.json``'s ``dtype`` records for ``state``: its one dtype, or the sorted list of its dtypes."""
    names = sorted({str(v.dtype).removeprefix("torch.") for v in state.values()})
    return names[0] if len(names) == 1 else names


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


_STORABLE_DTYPE_NAMES = sorted(str(d).removeprefix("torch.") for d in _SAFETENSORS_DTYPES)


def _check_dtype_field(path: Path, meta: dict[str, Any]) -> None:
    """Refuse a ``dtype`` that names no dtype the weights can be stored in (e.g. "int4"): the field records how the
    tensors are stored, and loading never casts to it, so a value edited in by hand would silently change nothing.
    A config written without the field (by hand) is accepted."""
    if "dtype" not in meta:
        return
    value = meta["dtype"]
    bad = [n for n in _as_list(value) if not isinstance(n, str) or n not in _STORABLE_DTYPE_NAMES]
    if bad:
        raise WeightsError(
            f"{path}: 'dtype' {json.dumps(value)} is not a dtype of stored weights (one of {_STORABLE_DTYPE_NAMES}, "
            f"or a list of them); it records how {WEIGHTS_FILE} is stored: to load in another dtype use --dtype "
            "(dtype= in Python)"
        )


def read_state_dict(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of ``directory/model.safetensors`` on ``device``, in the file's dtypes.

    On the CPU, tensors at 64-byte-aligned offsets stay memory-mapped; the others are copied (see the comment in
    the body). Raises :class:`WeightsError` when the file is missing or unreadable.
    """
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"{directory}: no {WEIGHTS_FILE}")
    try:
        state = load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: unreadable safetensors file ({exc})") from exc
    # CPU tensors come at the file's byte offsets (8-byte aligned); CPU matmul kernels round differently on such
    # memory (~1e-7), so the same weights would not give the outputs of an official-file load (64-byte aligned, as
    # every allocation is). One tensor at a time: the peak is the weights plus the largest tensor. Files written by
    # save_pretrained put all but a few small tensors at 64-byte offsets, so those stay memory-mapped.
    for key, tensor in state.items():
        if tensor.data_ptr() % TENSOR_ALIGNMENT:
            state[key] = tensor.clone()
    return state


def load_pretrained(
    directory: str | os.PathLike[str],
    *,
    expected_type: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> tuple[nn.Module, Any]:
    """Build the model described by ``directory`` on the meta device and load its weights strictly.

    Returns ``(model, config)``; the model is in eval mode. ``dtype`` casts floating-point tensors. A recorded
    ``trained_heads`` / ``calibrated_heads`` is set on the model (the attribute of that name).
    """
    model_type, config, recorded = _read_config_and_dtype(directory)
    heads = read_head_records(directory)
    if expected_type is not None and model_type != expected_type:
        raise WeightsError(f"{directory}: holds a {model_type!r} model, expected {expected_type!r}")
    with torch.device("meta"):
        model = MODEL_TYPES[model_type].model_class()(config)
    state = read_state_dict(directory, device=device)
    stored = _dtype_names(state)
    if recorded is not None and set(_as_list(recorded)) != set(_as_list(stored)):  # edited, expecting a cast
        raise WeightsError(
            f"{Path(directory) / CONFIG_FILE}: 'dtype' {json.dumps(recorded)} does not match the tensors of "
            f"{WEIGHTS_FILE} ({json.dumps(stored)}); the field records how they are stored: to load in another dtype "
            "use --dtype (dtype= in Python)"
        )
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    load_state_dict_strict(model, state, source=str(Path(directory) / WEIGHTS_FILE))
    for key, value in heads.items():
        if value is not None:
            setattr(model, key, value)
    note_weights(Path(directory) / WEIGHTS_FILE, model_type, config=Path(directory) / CONFIG_FILE)
    return model.eval(), config


def raise_key_problems(
    what: str, missing: list[str], unexpected: list[str], misshaped: list[str] | None = None, *, shown: int = 20
) -> None:
    """Raise one :class:`WeightsError` ``"{what}: N missing key(s): ...; ..."`` listing every kind of key problem
    (the first ``shown`` of each), or return if there is none."""
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped or [])):
        if items:
            listed = ", ".join(items[:shown]) + (f", ... ({len(items) - shown} more)" if len(items) > shown else "")
            problems.append(f"{len(items)} {title} key(s): {listed}")
    if problems:
        raise WeightsError(f"{what}: " + "; ".join(problems))


def check_state_fits(
    what: str,
    expected: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    *,
    labels: tuple[str, str] = ("file", "model"),
    shown: int = 20,
) -> None:
    """Raise one :class:`WeightsError` (:func:`raise_key_problems`) when ``state`` does not fit ``expected``: keys
    missing, unexpected, or of another shape (``labels`` name the two sides in the shape lines)."""
    misshaped = sorted(
        f"{k}: {labels[0]} {tuple(state[k].shape)} vs {labels[1]} {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    raise_key_problems(what, missing, unexpected, misshaped, shown=shown)


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``model`` (possibly on the meta device) with ``assign=True``, strictly.

    Missing, unexpected and mis-shaped keys are all listed in one :class:`WeightsError`. Non-persistent
    buffers (e.g. rotary frequencies) are re-materialised on the weights' device.
    """
    check_state_fits(f"{source}: does not match the model", model.state_dict(), state)
    model.load_state_dict(state, strict=True, assign=True)
    materialize_non_persistent_buffers(model, device=next(iter(state.values())).device if state else "cpu")


def materialize_non_persistent_buffers(model: nn.Module, device: str | torch.device) -> None:
    """Re-create buffers left on the meta device (non-persistent ones are not in any state_dict).

    Modules that own such buffers implement ``reset_non_persistent_buffers(device)``.
    """
    for module in model.modules():
        has_meta = any(b.is_meta for b in module.buffers(recurse=False))
        if has_meta:
            reset = getattr(module, "reset_non_persistent_buffers", None)
            if reset is None:
                raise RuntimeError(f"{type(module).__name__} has meta buffers but no reset_non_persistent_buffers")
            reset(device)
