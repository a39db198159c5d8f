"""The one place that knows the official checkpoints' parameter names (spec §9).

Our modules are named after the paper; the official files use the reference's module names. This module maps
our state_dict keys to theirs, explicitly, piece by piece: the per-block renames below are shared by every
network, and each network adds the renames of its own top-level modules.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from openesm3 import constants as C
from openesm3.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE, raise_key_problems
from openesm3.config import ESM3_SM_OPEN_V1, ESM3Config
from openesm3.errors import WeightsError
from openesm3.utils.provenance import note_weights

# File names of the official release, under data/weights/ of the Hugging Face repository (spec §0).
OFFICIAL_WEIGHT_FILES: dict[str, str] = {
    "esm3": "esm3_sm_open_v1.pth",
    "structure_encoder": "esm3_structure_encoder_v0.pth",
    "structure_decoder": "esm3_structure_decoder_v0.pth",
    "function_decoder": "esm3_function_decoder_v0.pth",
}
OFFICIAL_WEIGHTS_SUBDIR = Path("data") / "weights"

# Our key suffix inside a TransformerBlock -> the official suffix (spec §9).
BLOCK_KEY_MAP: dict[str, str] = {
    "attn.norm.weight": "attn.layernorm_qkv.0.weight",
    "attn.norm.bias": "attn.layernorm_qkv.0.bias",
    "attn.qkv.weight": "attn.layernorm_qkv.1.weight",
    "attn.qkv.bias": "attn.layernorm_qkv.1.bias",
    "attn.q_norm.weight": "attn.q_ln.weight",
    "attn.q_norm.bias": "attn.q_ln.bias",
    "attn.k_norm.weight": "attn.k_ln.weight",
    "attn.k_norm.bias": "attn.k_ln.bias",
    "attn.out.weight": "attn.out_proj.weight",
    "attn.out.bias": "attn.out_proj.bias",
    "geom_attn.norm.weight": "geom_attn.s_norm.weight",
    "geom_attn.norm.bias": "geom_attn.s_norm.bias",
    "geom_attn.proj.weight": "geom_attn.proj.weight",
    "geom_attn.proj.bias": "geom_attn.proj.bias",
    "geom_attn.out.weight": "geom_attn.out_proj.weight",
    "geom_attn.out.bias": "geom_attn.out_proj.bias",
    "geom_attn.distance_scale": "geom_attn.distance_scale_per_head",
    "geom_attn.rotation_scale": "geom_attn.rotation_scale_per_head",
    "ffn.norm.weight": "ffn.0.weight",
    "ffn.norm.bias": "ffn.0.bias",
    "ffn.w_in.weight": "ffn.1.weight",
    "ffn.w_in.bias": "ffn.1.bias",
    "ffn.w_out.weight": "ffn.3.weight",
    "ffn.w_out.bias": "ffn.3.bias",
}

# Our key suffix inside a RegressionHead -> the official nn.Sequential index (spec §4.5).
HEAD_KEY_MAP: dict[str, str] = {
    "proj_in.weight": "0.weight",
    "proj_in.bias": "0.bias",
    "norm.weight": "2.weight",
    "norm.bias": "2.bias",
    "proj_out.weight": "3.weight",
    "proj_out.bias": "3.bias",
}


def map_block_key(suffix: str) -> str:
    """Official name of a key inside one block; raises KeyError for a key the map does not know."""
    return BLOCK_KEY_MAP[suffix]


def map_head_key(suffix: str) -> str:
    return HEAD_KEY_MAP[suffix]


def resolve_official_file(path: str | os.PathLike[str], model_type: str) -> Path:
    """The official weight file of ``model_type`` given either the file itself or a directory laid out like
    the official release (``DIR/data/weights/<file>``, or ``DIR/<file>``)."""
    name = OFFICIAL_WEIGHT_FILES[model_type]
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        for candidate in (p / OFFICIAL_WEIGHTS_SUBDIR / name, p / "weights" / name, p / name):
            if candidate.is_file():
                return candidate
        raise WeightsError(
            f"{p}: no {name} found (looked in {p / OFFICIAL_WEIGHTS_SUBDIR}, {p / 'weights'} and {p}); "
            "download it from the Hugging Face repository EvolutionaryScale/esm3-sm-open-v1"
        )
    raise WeightsError(f"{p}: no such file or directory")


def load_official_state_dict(path: str | os.PathLike[str], *, role: str | None = None) -> dict[str, torch.Tensor]:
    """Read an official ``.pth`` state_dict safely: ``weights_only=True`` (no arbitrary unpickling), memory
    mapped so that a multi-GB file is not copied into RAM. ``role`` (the network, when known) names the file in
    the run's provenance (:mod:`openesm3.utils.provenance`)."""
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            head = handle.read(9)
        # Only the zip format (torch >= 1.6, the release's) can be memory-mapped; the legacy one is read whole.
        mmap = zipfile.is_zipfile(p)
    except FileNotFoundError:
        raise WeightsError(f"{p}: no such file") from None
    except OSError as exc:
        raise WeightsError(f"{p}: cannot read ({exc.strerror or exc})") from None
    # torch.load fails on other files with whatever its parsers meet first (a KeyError for a text file), or EOFError
    if not head:
        raise WeightsError(f"{p}: not a readable PyTorch state_dict (empty file)")
    if _is_safetensors(head, p):  # our model.safetensors given alone, or renamed: read as a .pth, it is no pickle
        raise WeightsError(
            f"{p}: a safetensors file, not an official .pth: OpenESM3 reads one as {WEIGHTS_FILE} beside its "
            f"{CONFIG_FILE}, in a model directory made by 'openesm3 convert'"
        )
    # the legacy format is a pickle, which starts with its PROTO opcode; a zip cut short (no central directory, so
    # not is_zipfile) is left to torch.load, whose error says so
    if not mmap and not head.startswith((b"\x80", b"PK")):
        raise WeightsError(
            f"{p}: not a readable PyTorch state_dict (neither a zip archive, as torch.save writes, "
            "nor a pickle, its legacy format)"
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on a damaged file
        raise WeightsError(f"{p}: not a readable PyTorch state_dict ({_load_failure(exc)})") from exc
    expected = f"{p}: expected a state_dict (a dict of name -> tensor)"
    if not isinstance(state, dict):
        raise WeightsError(f"{expected}, got {type(state).__name__}")
    # a wrapped one ({"model": state_dict, "step": n}) is a dict too: the entry that is not a tensor is the fault
    for key, value in state.items():
        if not isinstance(key, str):
            raise WeightsError(f"{expected}, but it has a key that is no name: {key!r} ({type(key).__name__})")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{expected}, but its entry {key!r} is a {type(value).__name__}")
    note_weights(p, role)
    return strip_wrapper_prefixes(state)


def _is_safetensors(head: bytes, path: Path) -> bool:
    """Whether a file starting with ``head`` (9 bytes or fewer) is a safetensors file: the length of its JSON header
    (8 bytes, little-endian, within the file) and the header's opening brace."""
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _load_failure(exc: Exception) -> str:
    """One line saying why ``torch.load`` failed. When its weights-only unpickler refuses something, torch's message
    is lines of advice (with terminal escape codes) on loading the file unsafely; only the unpickler's own line,
    what it refused, is kept, without its advice on allow-listing the object."""
    text = str(exc)
    _, found, refused = text.partition("WeightsUnpickler error:")
    if found and refused.strip():
        reason = refused.strip().splitlines()[0].split(" Please use ")[0].rstrip(".")
        return f"the weights-only loader refused it: {reason}"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


# Prefixes that wrappers put before every key of the module they wrap: DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without the wrapper prefixes (:data:`WRAPPER_PREFIXES`) that *every* key carries; a prefix on only
    some keys is left for the strict key check to report."""
    while state:
        prefix = next((w for w in WRAPPER_PREFIXES if all(k.startswith(w) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def check_official_file_checksums(path: str | os.PathLike[str]) -> None:
    """Raise :class:`WeightsError` when a record of an official ``.pth`` (a zip archive) fails its CRC-32.

    ``torch.load`` never checks them, so a damaged download loads with wrong values without a word. This reads the
    whole file once (seconds for the 5.6 GB trunk). A file that is not a zip archive is left to
    :func:`load_official_state_dict` to refuse; records written without a checksum (CRC 0) are skipped.
    """
    p = Path(path)
    try:
        archive = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError):
        return
    with archive:
        for info in archive.infolist():
            if info.CRC == 0:
                continue
            try:
                with archive.open(info) as handle:
                    while handle.read(1 << 24):
                        pass
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                # a damaged directory entry may name the record with NUL bytes: zipfile cuts the name at the first
                # one (often to nothing), and a terminal would not show them
                name = info.orig_filename
                name = name if name and name.isprintable() else repr(name)
                raise WeightsError(f"{p}: damaged ({name} fails its CRC-32 check: {exc}); download it again") from exc


# --------------------------------------------------------------------------------------------------------
# ESM3 trunk (spec §9, "ESM3 (539 entries)").
# --------------------------------------------------------------------------------------------------------

# Our key -> official key for the input embedding (spec §4.2).
ESM3_EMBEDDING_KEY_MAP: dict[str, str] = {
    "embedding.sequence.weight": "encoder.sequence_embed.weight",
    "embedding.average_plddt.weight": "encoder.plddt_projection.weight",
    "embedding.average_plddt.bias": "encoder.plddt_projection.bias",
    "embedding.per_residue_plddt.weight": "encoder.structure_per_res_plddt_projection.weight",
    "embedding.per_residue_plddt.bias": "encoder.structure_per_res_plddt_projection.bias",
    "embedding.structure.weight": "encoder.structure_tokens_embed.weight",
    "embedding.ss8.weight": "encoder.ss8_embed.weight",
    "embedding.sasa.weight": "encoder.sasa_embed.weight",
    **{f"embedding.function.{k}.weight": f"encoder.function_embed.{k}.weight" for k in range(C.FUNCTION_DEPTH)},
    "embedding.residue.weight": "encoder.residue_embed.weight",
}

# Our output head module -> the official one (spec §4.5); keys inside follow HEAD_KEY_MAP.
ESM3_HEAD_NAMES: dict[str, str] = {
    "sequence_head": "output_heads.sequence_head",
    "structure_head": "output_heads.structure_head",
    "ss8_head": "output_heads.ss8_head",
    "sasa_head": "output_heads.sasa_head",
    "function_head": "output_heads.function_head",
    "residue_head": "output_heads.residue_head",
}

# Block keys present in every ESM3 block (no biases in the trunk's Linear layers or in q/k norms), and the
# geometric-attention keys of block 0 only (spec §9).
_ESM3_BLOCK_SUFFIXES: tuple[str, ...] = (
    "attn.norm.weight", "attn.norm.bias", "attn.qkv.weight", "attn.out.weight", "attn.q_norm.weight",
    "attn.k_norm.weight", "ffn.norm.weight", "ffn.norm.bias", "ffn.w_in.weight", "ffn.w_out.weight",
)  # fmt: skip
_ESM3_GEOMETRIC_SUFFIXES: tuple[str, ...] = (
    "geom_attn.norm.weight", "geom_attn.proj.weight", "geom_attn.out.weight", "geom_attn.distance_scale",
    "geom_attn.rotation_scale",
)  # fmt: skip


def esm3_key_map(config: ESM3Config) -> dict[str, str]:
    """Our ESM3 state_dict key -> the official key, for every parameter of a model built from ``config``.

    The official format has no taxonomy track: configs with one have no official counterpart.
    """
    if config.n_taxonomy_terms:
        raise WeightsError("the official ESM3 format has no taxonomy track; save such models in our format")
    mapping = dict(ESM3_EMBEDDING_KEY_MAP)
    for i in range(config.n_layers):
        suffixes = _ESM3_BLOCK_SUFFIXES + (_ESM3_GEOMETRIC_SUFFIXES if i == 0 else ())
        mapping.update({f"blocks.{i}.{k}": f"transformer.blocks.{i}.{map_block_key(k)}" for k in suffixes})
    mapping["norm.weight"] = "transformer.norm.weight"
    for ours, theirs in ESM3_HEAD_NAMES.items():
        mapping.update({f"{ours}.{k}": f"{theirs}.{v}" for k, v in HEAD_KEY_MAP.items()})
    return mapping


# --------------------------------------------------------------------------------------------------------
# Registries: every network with an official file registers its key map and the config of that file.
# --------------------------------------------------------------------------------------------------------

# model_type -> function(config) -> {our key: official key}
OFFICIAL_KEY_MAPS: dict[str, Callable[[Any], dict[str, str]]] = {
    "esm3": esm3_key_map,
}
# model_type -> the config of the official release file
OFFICIAL_PRESETS: dict[str, Any] = {
    "esm3": ESM3_SM_OPEN_V1,
}


def official_key_map(model_type: str, config: Any | None = None) -> dict[str, str]:
    """The key map of ``model_type`` for ``config`` (default: the official release's config)."""
    if model_type not in OFFICIAL_KEY_MAPS:
        raise WeightsError(f"no official key map for model type {model_type!r}; known: {sorted(OFFICIAL_KEY_MAPS)}")
    return OFFICIAL_KEY_MAPS[model_type](OFFICIAL_PRESETS[model_type] if config is None else config)


def detect_model_type(state: dict[str, torch.Tensor], *, source: str = "state_dict") -> str:
    """The registered model type whose official key set (for its release config) best matches ``state``.

    Matching is by key names only, so a file with a different depth still resolves to its network; a
    strict load then reports any difference.
    """
    keys = set(state)
    best, best_score = None, 0.0
    for model_type in OFFICIAL_KEY_MAPS:
        expected = set(official_key_map(model_type).values())
        score = len(keys & expected) / len(keys | expected)
        if score > best_score:
            best, best_score = model_type, score
    if best is None or best_score < 0.05:
        raise WeightsError(
            f"{source}: its keys match no known official network ({sorted(OFFICIAL_KEY_MAPS)}); "
            f"first keys: {sorted(keys)[:5]}"
        )
    return best


def official_tensors_as(
    state: dict[str, torch.Tensor], *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """``state`` moved to ``device``, its floating-point tensors cast to ``dtype``, fp32 when None.

    The reference builds its networks in fp32 and copies an official file into them (``load_state_dict``), so an
    fp16 or bf16 file, or one mixing dtypes, computes in fp32 on the file's values. Tensors already right are
    returned as they are (an fp32 file on the CPU stays memory-mapped).
    """
    target = torch.float32 if dtype is None else dtype
    return {k: v.to(device=device, dtype=target if v.is_floating_point() else v.dtype) for k, v in state.items()}


def raise_if_another_network(state: dict[str, torch.Tensor], model_type: str, *, source: str) -> None:
    """Raise :class:`WeightsError` when ``state``'s keys are those of another registered network than
    ``model_type`` (e.g. the structure encoder's file given for the trunk), naming it; else return."""
    try:
        found = detect_model_type(state, source=source)
    except WeightsError:
        return
    if found != model_type:
        raise WeightsError(
            f"{source}: holds {found} weights ({OFFICIAL_WEIGHT_FILES.get(found, 'official format')}), "
            f"not {model_type} ({OFFICIAL_WEIGHT_FILES.get(model_type, 'official format')})"
        )


def to_our_state_dict(
    state: dict[str, torch.Tensor], key_map: dict[str, str], *, source: str, expected_shapes: dict[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """Rename an official state_dict to our keys, strictly.

    Missing, unexpected and mis-shaped keys are listed, by their official names, in one :class:`WeightsError`.
    ``expected_shapes`` maps our keys to the shapes of the model being loaded.
    """
    official = set(key_map.values())
    missing = sorted(official - set(state))
    unexpected = sorted(set(state) - official)
    misshaped = sorted(
        f"{theirs}: file {tuple(state[theirs].shape)} vs model {expected_shapes[ours]}"
        for ours, theirs in key_map.items()
        if theirs in state and tuple(state[theirs].shape) != tuple(expected_shapes[ours])
    )
    raise_key_problems(f"{source}: does not match the expected official layout", missing, unexpected, misshaped)
    return {ours: state[theirs] for ours, theirs in key_map.items()}


def to_official_state_dict(state: dict[str, torch.Tensor], key_map: dict[str, str]) -> dict[str, torch.Tensor]:
    """Our state_dict renamed to the official keys (for writing official-format files, e.g. in tests)."""
    missing = sorted(set(key_map) - set(state))
    unexpected = sorted(set(state) - set(key_map))
    if missing or unexpected:
        raise WeightsError(
            f"state_dict does not match the key map: missing {missing[:10]}, unexpected {unexpected[:10]}"
        )
    return {key_map[k]: v for k, v in state.items()}


# Structure VQ-VAE (encoder, decoder) and function decoder: key maps and loading (spec §9).
# Each map is {our key: official key}, derived from our module tree by explicit prefix renames; a key without a
# rule raises, so a new parameter can never be silently left out of the map.
# --------------------------------------------------------------------------------------------------------

# (our prefix, official prefix, per-suffix map or None for "same suffix"). "{i}" is a block index.
_PrefixRules = tuple[tuple[str, str, "dict[str, str] | None"], ...]

_STRUCTURE_ENCODER_RULES: _PrefixRules = (
    ("relative_position.", "relative_positional_embedding.embedding.", None),
    ("blocks.{i}.", "transformer.blocks.{i}.", BLOCK_KEY_MAP),
    ("pre_vq_proj.", "pre_vq_proj.", None),
    ("codebook.", "codebook.", None),  # buffers embeddings, N, z_avg keep their official names
)
_STRUCTURE_DECODER_RULES: _PrefixRules = (
    ("embed.", "embed.", None),
    ("blocks.{i}.", "decoder_stack.blocks.{i}.", BLOCK_KEY_MAP),
    ("norm.", "decoder_stack.norm.", None),
    ("affine_head.mlp.", "affine_output_projection.", {
        "proj_in.weight": "ffn1.weight", "proj_in.bias": "ffn1.bias",
        "norm.weight": "norm.weight", "norm.bias": "norm.bias",
        "proj_out.weight": "proj.weight", "proj_out.bias": "proj.bias",
    }),
    ("pairwise_head.", "pairwise_classification_head.", {
        "down.weight": "downproject.weight", "linear1.weight": "linear1.weight",
        "norm.weight": "norm.weight", "norm.bias": "norm.bias", "linear2.weight": "linear2.weight",
    }),
    ("plddt_head.", "plddt_head.", {
        "proj_in.weight": "dense.weight", "proj_in.bias": "dense.bias",
        "norm.weight": "norm.weight", "norm.bias": "norm.bias",
        "proj_out.weight": "output.weight", "proj_out.bias": "output.bias",
    }),
)  # fmt: skip
_FUNCTION_DECODER_RULES: _PrefixRules = (
    ("embedding.", "embedding.", None),
    ("blocks.{i}.", "decoder.blocks.{i}.", BLOCK_KEY_MAP),
    ("norm.", "decoder.norm.", None),
    ("keyword_head.", "heads.keyword_logits.", HEAD_KEY_MAP),
    ("tfidf_head.", "heads.keyword_tfidf.", HEAD_KEY_MAP),
    ("interpro_head.", "heads.interpro_logits.", HEAD_KEY_MAP),
)


def _apply_prefix_rules(keys: list[str], rules: _PrefixRules, what: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for key in keys:
        for ours, theirs, suffix_map in rules:
            if "{i}" in ours:
                head, tail = ours.split("{i}")
                if not key.startswith(head):
                    continue
                index, _, rest = key[len(head) :].partition(".")
                if not index.isdigit() or tail != ".":
                    continue
                prefix_theirs = theirs.replace("{i}", index)
                suffix = rest
            elif key.startswith(ours):
                prefix_theirs = theirs
                suffix = key[len(ours) :]
            else:
                continue
            if suffix_map is not None:
                if suffix not in suffix_map:
                    raise KeyError(f"{what} key map: no official name for {key!r}")
                suffix = suffix_map[suffix]
            mapping[key] = prefix_theirs + suffix
            break
        else:
            raise KeyError(f"{what} key map: no rule for {key!r}")
    return mapping


def _model_keys(model_type: str, config: object) -> list[str]:
    from openesm3.checkpoints.format import MODEL_TYPES  # noqa: PLC0415 - avoids importing models at import time

    with torch.device("meta"):
        model = MODEL_TYPES[model_type].model_class()(config)
    return list(model.state_dict())


def structure_encoder_key_map(config: object) -> dict[str, str]:
    """{our key: official key} of the structure encoder with ``config`` (StructureEncoderConfig)."""
    return _apply_prefix_rules(_model_keys("structure_encoder", config), _STRUCTURE_ENCODER_RULES, "structure_encoder")


def structure_decoder_key_map(config: object) -> dict[str, str]:
    """{our key: official key} of the structure decoder with ``config`` (StructureDecoderConfig)."""
    return _apply_prefix_rules(_model_keys("structure_decoder", config), _STRUCTURE_DECODER_RULES, "structure_decoder")


def function_decoder_key_map(config: object) -> dict[str, str]:
    """{our key: official key} of the function decoder with ``config`` (FunctionDecoderConfig)."""
    return _apply_prefix_rules(_model_keys("function_decoder", config), _FUNCTION_DECODER_RULES, "function_decoder")


VQVAE_KEY_MAP_FUNCTIONS = {
    "structure_encoder": structure_encoder_key_map,
    "structure_decoder": structure_decoder_key_map,
    "function_decoder": function_decoder_key_map,
}


def official_to_ours(
    official: dict[str, torch.Tensor], key_map: dict[str, str], *, source: str
) -> dict[str, torch.Tensor]:
    """Rename an official state_dict to our keys; every official key must be used and every one of ours found.

    Raises :class:`WeightsError` listing missing and unexpected keys (e.g. the wrong file for this network).
    """
    wanted = set(key_map.values())
    missing = sorted(wanted - set(official))
    unexpected = sorted(set(official) - wanted)
    raise_key_problems(f"{source}: not the expected official checkpoint", missing, unexpected, shown=10)
    return {ours: official[theirs] for ours, theirs in key_map.items()}


def ours_to_official(state: dict[str, torch.Tensor], key_map: dict[str, str]) -> dict[str, torch.Tensor]:
    """Our state_dict under the official key names (for writing files the official package can load)."""
    return {key_map[k]: v for k, v in state.items()}


def load_official_vqvae_network(
    path: str | os.PathLike[str],
    model_type: str,
    config: object | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.nn.Module:
    """Build ``model_type`` ("structure_encoder", "structure_decoder" or "function_decoder") on the meta device
    and load an official ``.pth`` into it (``weights_only``, memory mapped, strict). ``config`` defaults to the
    released V0 shapes; ``dtype`` None gives fp32 parameters (see :func:`official_tensors_as`). Returns the model in
    eval mode."""
    from openesm3 import config as cfg  # noqa: PLC0415
    from openesm3.checkpoints.format import MODEL_TYPES, load_state_dict_strict  # noqa: PLC0415

    presets = {
        "structure_encoder": cfg.STRUCTURE_ENCODER_V0,
        "structure_decoder": cfg.STRUCTURE_DECODER_V0,
        "function_decoder": cfg.FUNCTION_DECODER_V0,
    }
    if model_type not in presets:
        raise WeightsError(f"{path}: {model_type!r} is not one of {sorted(presets)}")
    config = presets[model_type] if config is None else config
    file = resolve_official_file(path, model_type)
    official = load_official_state_dict(file, role=model_type)
    try:
        state = official_to_ours(official, VQVAE_KEY_MAP_FUNCTIONS[model_type](config), source=str(file))
    except WeightsError:
        raise_if_another_network(official, model_type, source=str(file))
        raise
    state = official_tensors_as(state, device=device, dtype=dtype)
    with torch.device("meta"):
        model = MODEL_TYPES[model_type].model_class()(config)
    load_state_dict_strict(model, state, source=str(file))
    return model.eval()


# The VQ-VAE networks and the function decoder join the registry, so that load_model, resolve_weights and
# ``openesm3 convert`` handle their official files like the trunk's.
def _register_vqvae_networks() -> None:
    from openesm3 import config as cfg  # noqa: PLC0415

    OFFICIAL_KEY_MAPS.update(VQVAE_KEY_MAP_FUNCTIONS)
    OFFICIAL_PRESETS.update(
        structure_encoder=cfg.STRUCTURE_ENCODER_V0,
        structure_decoder=cfg.STRUCTURE_DECODER_V0,
        function_decoder=cfg.FUNCTION_DECODER_V0,
    )


_register_vqvae_networks()
