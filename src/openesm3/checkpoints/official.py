"""The one place that knows the official checkpoints' parameter names (spec §9).

Our modules are named after the paper; the official files use the reference's module names. This module maps
our state_dict keys to theirs, explicitly, piece by piece: the per-block renames below are shared by every
network, and each network adds the renames of its own top-level modules.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from openesm3.errors import WeightsError

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


def load_official_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read an official ``.pth`` state_dict safely: ``weights_only=True`` (no arbitrary unpickling), memory
    mapped so that a multi-GB file is not copied into RAM."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise WeightsError(f"{p}: no such file") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{p}: not a readable PyTorch state_dict ({first})") from exc
    is_state_dict = isinstance(state, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    )
    if not is_state_dict:
        raise WeightsError(f"{p}: expected a state_dict (a dict of name -> tensor), got {type(state).__name__}")
    return state
