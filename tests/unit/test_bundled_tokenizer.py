"""The tokenizer that ships with the package: stored as float16, always loaded as float32, and written from a
training run's export by ``write_bundle`` (which refuses weights float16 cannot hold)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openesm3.checkpoints.bundled import bundled_tokenizer_dir, load_structure_tokenizer, write_bundle
from openesm3.checkpoints.format import save_pretrained
from openesm3.checkpoints.vqvae_weights import load_vqvae_network
from openesm3.config import StructureDecoderConfig, StructureEncoderConfig
from openesm3.errors import WeightsError
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder


def _export(root: Path, seed: int = 0) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    encoder_config = StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=8, n_codes=64)
    decoder_config = StructureDecoderConfig(d_model=32, n_heads=2, n_layers=1, pairwise_dim=8)
    models = {
        "structure_encoder": StructureEncoder(encoder_config),
        "structure_decoder": StructureDecoder(decoder_config),
    }
    with torch.no_grad():  # weights with a full float32 mantissa, so rounding to float16 shows
        for model in models.values():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 1e-3)
    for (name, model), config in zip(models.items(), (encoder_config, decoder_config), strict=True):
        save_pretrained(model, config, root / name, model_type=name)
    return models


def test_write_bundle_stores_half_and_loads_float32(tmp_path: Path) -> None:
    models = _export(tmp_path / "export")
    out = write_bundle(tmp_path / "export", tmp_path / "bundle")
    for name in models:
        stored = load_file(out / name / "model.safetensors")
        assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
        size = (out / name / "model.safetensors").stat().st_size
        assert size < 0.6 * (tmp_path / "export" / name / "model.safetensors").stat().st_size
    encoder, decoder = load_structure_tokenizer(out)
    for name, loaded in (("structure_encoder", encoder), ("structure_decoder", decoder)):
        assert {p.dtype for p in loaded.state_dict().values() if p.is_floating_point()} == {torch.float32}
        original = models[name].state_dict()
        for key, value in loaded.state_dict().items():
            torch.testing.assert_close(value, original[key].half().float(), rtol=0, atol=0)
        assert any(not torch.equal(v, original[k]) for k, v in loaded.state_dict().items())  # it was rounded
    # The CLIs' loader reads the same files as float32 too.
    network, place = load_vqvae_network(out, "structure_decoder")
    assert place == out / "structure_decoder" and next(network.parameters()).dtype == torch.float32


def test_write_bundle_refuses_weights_float16_cannot_hold(tmp_path: Path) -> None:
    models = _export(tmp_path / "export")
    decoder = models["structure_decoder"]
    with torch.no_grad():
        decoder.embed.weight[3, 0] = 1e6
    save_pretrained(decoder, decoder.config, tmp_path / "export" / "structure_decoder", model_type="structure_decoder")
    with pytest.raises(WeightsError, match=r"structure_decoder: embed\.weight does not fit torch\.float16"):
        write_bundle(tmp_path / "export", tmp_path / "bundle")


def test_the_shipped_tokenizer_loads_as_float32() -> None:
    encoder, decoder = load_structure_tokenizer()
    assert bundled_tokenizer_dir().is_dir()
    for model in (encoder, decoder):
        assert {p.dtype for p in model.state_dict().values() if p.is_floating_point()} == {torch.float32}


def test_the_shipped_tokenizer_fits_the_weight_budget() -> None:
    """Issue #8 allows the shipped tokenizer at most 30 MB of weights (encoder and decoder together)."""
    files = sorted(bundled_tokenizer_dir().rglob("*.safetensors"))
    assert {f.parent.name for f in files} == {"structure_encoder", "structure_decoder"}
    assert sum(f.stat().st_size for f in files) <= 30_000_000
