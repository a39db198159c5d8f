"""Key maps of the structure encoder, structure decoder and function decoder (exact official key sets of spec §9),
official-file loading (strict, clear errors) and our safetensors format round trip."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from openesm3 import config as cfg
from openesm3.checkpoints.format import load_pretrained, save_pretrained
from openesm3.checkpoints.official import (
    VQVAE_KEY_MAP_FUNCTIONS,
    load_official_vqvae_network,
    ours_to_official,
)
from openesm3.cli.main import main
from openesm3.errors import WeightsError
from openesm3.models.function_decoder import FunctionDecoder
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder

V0 = {
    "structure_encoder": cfg.STRUCTURE_ENCODER_V0,
    "structure_decoder": cfg.STRUCTURE_DECODER_V0,
    "function_decoder": cfg.FUNCTION_DECODER_V0,
}
TINY = {
    "structure_encoder": (StructureEncoder, cfg.STRUCTURE_ENCODER_TINY),
    "structure_decoder": (StructureDecoder, cfg.STRUCTURE_DECODER_TINY),
    "function_decoder": (FunctionDecoder, cfg.FUNCTION_DECODER_TINY),
}


def _official_keys_from_spec(model_type: str) -> set[str]:
    """The official key names of spec §9, written out independently of our key map."""
    keys: set[str] = set()
    if model_type == "structure_encoder":
        for i in range(2):
            p = f"transformer.blocks.{i}."
            keys |= {p + "geom_attn." + s for s in ("distance_scale_per_head", "rotation_scale_per_head")}
            keys |= {p + f"geom_attn.{m}.{w}" for m in ("s_norm", "proj", "out_proj") for w in ("weight", "bias")}
            keys |= {p + f"ffn.{j}.{w}" for j in (0, 1, 3) for w in ("weight", "bias")}
        keys |= {"pre_vq_proj.weight", "pre_vq_proj.bias", "codebook.embeddings", "codebook.N", "codebook.z_avg"}
        keys |= {"relative_positional_embedding.embedding.weight"}
    elif model_type == "structure_decoder":
        keys |= {"embed.weight", "decoder_stack.norm.weight"}
        for i in range(30):
            p = f"decoder_stack.blocks.{i}."
            names = ("attn.layernorm_qkv.0.weight", "attn.layernorm_qkv.0.bias", "attn.layernorm_qkv.1.weight",
                     "attn.out_proj.weight", "attn.q_ln.weight", "attn.k_ln.weight", "ffn.0.weight", "ffn.0.bias",
                     "ffn.1.weight", "ffn.3.weight")  # fmt: skip
            keys |= {p + s for s in names}
        a = "affine_output_projection."
        keys |= {a + f"{m}.{w}" for m in ("ffn1", "norm", "proj") for w in ("weight", "bias")}
        h = "pairwise_classification_head."
        keys |= {
            h + "downproject.weight",
            h + "linear1.weight",
            h + "norm.weight",
            h + "norm.bias",
            h + "linear2.weight",
        }
        keys |= {f"plddt_head.{m}.{w}" for m in ("dense", "norm", "output") for w in ("weight", "bias")}
    else:
        keys |= {"embedding.weight", "decoder.norm.weight"}
        for i in range(3):
            p = f"decoder.blocks.{i}."
            modules = ("layernorm_qkv.0", "layernorm_qkv.1", "out_proj")
            keys |= {p + f"attn.{m}.{w}" for m in modules for w in ("weight", "bias")}
            keys |= {p + f"ffn.{j}.{w}" for j in (0, 1, 3) for w in ("weight", "bias")}
        for head in ("keyword_logits", "keyword_tfidf", "interpro_logits"):
            keys |= {f"heads.{head}.{j}.{w}" for j in (0, 2, 3) for w in ("weight", "bias")}
    return keys


@pytest.mark.parametrize(("model_type", "n_keys"), [("structure_encoder", 34), ("structure_decoder", 319),
                                                    ("function_decoder", 56)])  # fmt: skip
def test_key_maps_match_the_official_key_sets(model_type: str, n_keys: int) -> None:
    key_map = VQVAE_KEY_MAP_FUNCTIONS[model_type](V0[model_type])
    assert len(key_map) == n_keys
    assert len(set(key_map.values())) == n_keys  # injective
    assert set(key_map.values()) == _official_keys_from_spec(model_type)


def _randomized(model_type: str, seed: int = 0) -> torch.nn.Module:
    cls, config = TINY[model_type]
    torch.manual_seed(seed)
    model = cls(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():  # parameters and persistent buffers (the codebook)
            t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t.shape[-1]))
    return model


def _probe(model_type: str, model: torch.nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        if model_type == "structure_encoder":
            ca = torch.cumsum(torch.randn(1, 20, 3, generator=g) * 2, 1)
            coords = torch.stack([ca + torch.randn(1, 20, 3, generator=g), ca, ca - 1.5], 2)
            return model(coords).z
        if model_type == "structure_decoder":
            t = torch.randint(0, 4096, (1, 12), generator=g)
            t[0, 0], t[0, -1] = 4098, 4097
            return model(t).backbone
        return model(torch.randint(4, 260, (5, 8), generator=g)).interpro_logits


@pytest.mark.parametrize("model_type", list(TINY))
def test_official_file_and_our_format_round_trip(model_type: str, tmp_path: Path) -> None:
    model = _randomized(model_type)
    config = TINY[model_type][1]
    expected = _probe(model_type, model)
    official = ours_to_official(model.state_dict(), VQVAE_KEY_MAP_FUNCTIONS[model_type](config))
    torch.save(official, tmp_path / "official.pth")
    loaded = load_official_vqvae_network(tmp_path / "official.pth", model_type, config)
    assert torch.equal(_probe(model_type, loaded), expected)
    save_pretrained(loaded, config, tmp_path / "ours", model_type=model_type)
    again, again_config = load_pretrained(tmp_path / "ours", expected_type=model_type)
    assert again_config == config
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())
    assert torch.equal(_probe(model_type, again), expected)


def test_official_loader_errors(tmp_path: Path) -> None:
    enc = _randomized("structure_encoder")
    official = ours_to_official(
        enc.state_dict(), VQVAE_KEY_MAP_FUNCTIONS["structure_encoder"](cfg.STRUCTURE_ENCODER_TINY)
    )
    torch.save(official, tmp_path / "enc.pth")
    with pytest.raises(WeightsError, match=r"enc\.pth: holds structure_encoder weights .*not structure_decoder"):
        load_official_vqvae_network(tmp_path / "enc.pth", "structure_decoder", cfg.STRUCTURE_DECODER_TINY)
    with pytest.raises(WeightsError, match="mis-shaped"):
        load_official_vqvae_network(
            tmp_path / "enc.pth", "structure_encoder", cfg.STRUCTURE_ENCODER_TINY.replace(d_out=8)
        )
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable PyTorch state_dict"):
        load_official_vqvae_network(tmp_path / "junk.pth", "structure_encoder", cfg.STRUCTURE_ENCODER_TINY)
    with pytest.raises(WeightsError, match="esm3_structure_decoder_v0.pth found"):
        load_official_vqvae_network(tmp_path, "structure_decoder")
    # the official directory layout is found
    (tmp_path / "rel" / "data" / "weights").mkdir(parents=True)
    torch.save(official, tmp_path / "rel" / "data" / "weights" / "esm3_structure_encoder_v0.pth")
    model = load_official_vqvae_network(tmp_path / "rel", "structure_encoder", cfg.STRUCTURE_ENCODER_TINY)
    assert isinstance(model, StructureEncoder) and not model.training  # eval mode, ready for inference


@pytest.mark.parametrize("model_type", list(TINY))
def test_half_precision_official_file_loads_into_fp32(model_type: str, tmp_path: Path) -> None:
    # As the reference (fp32 networks, load_state_dict copies the file in) and as our format's loader does.
    model = _randomized(model_type)
    config = TINY[model_type][1]
    official = ours_to_official(model.state_dict(), VQVAE_KEY_MAP_FUNCTIONS[model_type](config))
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in official.items()}, tmp_path / "fp16.pth")
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half())
    loaded = load_official_vqvae_network(tmp_path / "fp16.pth", model_type, config)
    assert {t.dtype for t in loaded.state_dict().values() if t.is_floating_point()} == {torch.float32}
    assert torch.equal(_probe(model_type, loaded), _probe(model_type, model))


def test_cli_loader_takes_model_safetensors_and_says_why_a_directory_does_not_do(tmp_path: Path) -> None:
    from openesm3.checkpoints.vqvae_weights import load_vqvae_network  # noqa: PLC0415

    model = _randomized("structure_encoder")
    save_pretrained(model, TINY["structure_encoder"][1], tmp_path / "enc", model_type="structure_encoder")
    loaded, place = load_vqvae_network(tmp_path / "enc" / "model.safetensors", "structure_encoder")  # as load_model
    assert place == tmp_path / "enc" and torch.equal(
        _probe("structure_encoder", loaded), _probe("structure_encoder", model)
    )
    with pytest.raises(WeightsError, match="holds structure_encoder weights, not structure_decoder"):
        load_vqvae_network(tmp_path / "enc", "structure_decoder")
    (tmp_path / "enc" / "config.json").write_text("{")
    with pytest.raises(WeightsError, match=r"config\.json: not valid JSON"):
        load_vqvae_network(tmp_path / "enc", "structure_encoder")


def test_weights_named_by_the_environment_beat_the_bundled_tokenizer(tmp_path: Path, monkeypatch) -> None:
    from openesm3.checkpoints.bundled import bundled_tokenizer_dir  # noqa: PLC0415
    from openesm3.checkpoints.loading import WEIGHTS_ENV  # noqa: PLC0415
    from openesm3.checkpoints.vqvae_weights import resolve_vqvae_weights  # noqa: PLC0415

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert resolve_vqvae_weights(None, "structure_encoder") == bundled_tokenizer_dir() / "structure_encoder"
    save_pretrained(
        _randomized("structure_encoder"), TINY["structure_encoder"][1], tmp_path / "structure_encoder",
        model_type="structure_encoder",
    )  # fmt: skip
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert resolve_vqvae_weights(None, "structure_encoder") == tmp_path / "structure_encoder"


def test_another_networks_official_file_is_named_as_such(tmp_path: Path) -> None:
    from openesm3.checkpoints.loading import load_model  # noqa: PLC0415

    model = _randomized("structure_encoder")
    config = TINY["structure_encoder"][1]
    torch.save(
        ours_to_official(model.state_dict(), VQVAE_KEY_MAP_FUNCTIONS["structure_encoder"](config)), tmp_path / "w.pth"
    )
    for load in (
        lambda: load_model(tmp_path / "w.pth", "esm3"),
        lambda: load_model(tmp_path / "w.pth", "structure_decoder"),
        lambda: load_official_vqvae_network(tmp_path / "w.pth", "function_decoder"),
    ):
        with pytest.raises(WeightsError, match=r"w\.pth: holds structure_encoder weights \(esm3_structure_encoder_v0"):
            load()


def test_convert_config_with_a_json_nan_codebook_number_is_refused_naming_file_and_key(tmp_path: Path, capsys) -> None:
    # Python's json reads NaN: `convert --config` built an encoder whose codebook training smooths counts by NaN.
    config = TINY["structure_encoder"][1]
    key_map = VQVAE_KEY_MAP_FUNCTIONS["structure_encoder"](config)
    official = ours_to_official(_randomized("structure_encoder").state_dict(), key_map)
    torch.save(official, tmp_path / "esm3_structure_encoder_v0.pth")
    fields = json.dumps(dataclasses.asdict(config))
    (tmp_path / "tiny.json").write_text(fields.replace('"codebook_epsilon": 1e-05', '"codebook_epsilon": NaN'))
    args = ["convert", str(tmp_path / "esm3_structure_encoder_v0.pth"), str(tmp_path / "out"), "--model-type",
            "structure_encoder", "--config", str(tmp_path / "tiny.json")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        f"{tmp_path / 'tiny.json'}: invalid StructureEncoderConfig: StructureEncoderConfig.codebook_epsilon must "
        in err
    )
    assert "got nan" in err and "internal error" not in err and not (tmp_path / "out").exists()
    (tmp_path / "tiny.json").write_text(fields)
    assert main(args) == 0  # the same file with a number converts
