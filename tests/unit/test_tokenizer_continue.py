"""Continuing stage-2 training from exported weights (``decoder_init=weights``) and the training-only decoder
dropout (``decoder_dropout``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openesm3 import constants as C
from openesm3.checkpoints.bundled import load_structure_tokenizer
from openesm3.checkpoints.format import save_pretrained
from openesm3.config import StructureDecoderConfig, StructureEncoderConfig
from openesm3.errors import WeightsError
from openesm3.layers.block import BlockConfig, TransformerBlock
from openesm3.training.config import ConfigError, load_config
from openesm3.training.tokenizer.config import TokenizerTrainConfig
from openesm3.training.tokenizer.export import bake_code_projection, export_networks
from openesm3.training.tokenizer.model import StructureTokenizerModel
from openesm3.training.tokenizer.run import build_model
from openesm3.training.tokenizer.warm_start import load_exported_tokenizer

ENCODER = StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=8, n_codes=16)
DECODER = StructureDecoderConfig(d_model=32, n_heads=2, n_layers=2, pairwise_dim=8, sequence_conditioning=True)


def _trained_model(seed: int = 0) -> StructureTokenizerModel:
    """A stage-2 model whose every weight is random (not the initial values), as after training."""
    torch.manual_seed(seed)
    model = StructureTokenizerModel(ENCODER, DECODER, stage=2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
        model.encoder.codebook.embeddings.normal_()
    return model


def _tokens() -> torch.Tensor:
    return torch.tensor([[C.STRUCTURE_BOS, 3, 15, 0, 7, 7, 12, C.STRUCTURE_EOS]])


def test_weights_init_decodes_as_the_export(tmp_path: Path) -> None:
    source = _trained_model()
    export_networks(source, tmp_path / "export")
    fresh = StructureTokenizerModel(ENCODER, DECODER, stage=2)
    assert load_exported_tokenizer(fresh, tmp_path / "export") == tmp_path / "export"
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(fresh.encoder.state_dict()[key], value), key
    # code_proj is recovered from the baked rows: the training model decodes exactly as the one that was exported
    torch.testing.assert_close(fresh.code_proj.weight, source.code_proj.weight, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fresh.code_proj.bias, source.code_proj.bias, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        a = bake_code_projection(fresh).eval()(_tokens())
        b = bake_code_projection(source).eval()(_tokens())
    torch.testing.assert_close(a.backbone, b.backbone, atol=1e-4, rtol=1e-4)


def test_the_run_record_lists_the_exported_files_where_they_are(tmp_path: Path) -> None:
    """The networks are written in a staging folder and renamed into place: the run record listed the vanished
    staging paths (so no output at all). Exported twice in one run, each file is listed once, as last written."""
    import hashlib  # noqa: PLC0415

    from openesm3.utils import provenance  # noqa: PLC0415

    with provenance.running(provenance.Run("train-tokenizer", hash_outputs=True)) as run:
        export_networks(_trained_model(), tmp_path / "export")
        export_networks(_trained_model(), tmp_path / "export")
    files = sorted(p for p in (tmp_path / "export").rglob("*") if p.is_file())
    assert len(files) == 4 and sorted(run.outputs) == files
    assert all(run.outputs[f].sha256 == hashlib.sha256(f.read_bytes()).hexdigest() for f in files)


def test_an_export_that_fails_part_way_leaves_no_staged_file_in_the_run_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder is staged before the decoder: a failure writing the decoder (disk full) removes the staging
    folder, and the encoder's staged files with it from the run's outputs (a record would list files never kept)."""
    import openesm3.training.tokenizer.export as export  # noqa: PLC0415
    from openesm3.utils import provenance  # noqa: PLC0415

    real = export.save_pretrained

    def disk_full_at_the_decoder(module: torch.nn.Module, config: object, path: Path, **kwargs: object) -> None:
        if Path(path).name == export.DECODER_DIR:
            raise OSError(28, "No space left on device")
        real(module, config, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(export, "save_pretrained", disk_full_at_the_decoder)
    with provenance.running(provenance.Run("train-tokenizer", hash_outputs=True)) as run:
        with pytest.raises(OSError, match="No space left on device"):
            export_networks(_trained_model(), tmp_path / "export")
    assert run.outputs == {} and not list((tmp_path / "export").rglob("*"))


def test_weights_init_refuses_free_embedding_rows(tmp_path: Path) -> None:
    source = _trained_model()
    export_networks(source, tmp_path / "export")
    decoder_dir = tmp_path / "export" / "structure_decoder"
    decoder = bake_code_projection(source)
    with torch.no_grad():
        decoder.embed.weight.normal_()  # rows unrelated to the codebook (like the official decoder's)
    save_pretrained(decoder, DECODER, decoder_dir, model_type="structure_decoder")
    with pytest.raises(WeightsError, match=r"structure_decoder: its token embedding rows are not code_proj"):
        load_exported_tokenizer(StructureTokenizerModel(ENCODER, DECODER, stage=2), tmp_path / "export")


def test_weights_init_names_the_config_fields_that_differ(tmp_path: Path) -> None:
    export_networks(_trained_model(), tmp_path / "export")
    other = StructureDecoderConfig(d_model=32, n_heads=2, n_layers=3, pairwise_dim=8, sequence_conditioning=True)
    with pytest.raises(WeightsError, match=r"structure_decoder: its config differs from this run's in n_layers"):
        load_exported_tokenizer(StructureTokenizerModel(ENCODER, other, stage=2), tmp_path / "export")


def test_weights_init_from_the_bundled_tokenizer() -> None:
    """``init_from=bundled`` with the shipped recipe's config continues the shipped tokenizer: the encoder is the
    shipped one and the re-baked decoder decodes as the shipped decoder (up to its float16 storage)."""
    config = load_config(
        TokenizerTrainConfig,
        Path(__file__).resolve().parents[2] / "configs" / "tokenizer_v6_stage2b_long.toml",
        ["init_from=bundled", "decoder_init=weights"],
    )
    model = build_model(config).eval()
    encoder, decoder = load_structure_tokenizer()
    for key, value in encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    tokens = torch.tensor([[C.STRUCTURE_BOS, *range(5, 205, 2), C.STRUCTURE_EOS]])
    with torch.no_grad():
        rebaked = bake_code_projection(model).eval()(tokens)
        shipped = decoder(tokens)
    assert (rebaked.backbone - shipped.backbone).abs().max() < 0.05  # Angstrom; float16 rows (spacing 2^-6 at 23)


def test_weights_init_needs_stage2() -> None:
    with pytest.raises(ConfigError, match="decoder_init=weights continues a stage-2 decoder"):
        TokenizerTrainConfig(stage=1, decoder_init="weights", init_from="bundled")


def test_decoder_dropout_is_training_only() -> None:
    torch.manual_seed(0)
    block = TransformerBlock(BlockConfig(d_model=16, n_heads=2, ffn_dim=32))
    x = torch.randn(2, 5, 16)
    block.train()
    plain = block(x)
    block.dropout = 0.5
    dropped = block(x)
    assert not torch.allclose(dropped, plain)
    block.eval()
    torch.testing.assert_close(block(x), plain, atol=0, rtol=0)  # eval mode: no dropout


def test_decoder_dropout_reaches_the_decoder_blocks_not_the_export() -> None:
    model = StructureTokenizerModel(ENCODER, DECODER, stage=2, decoder_dropout=0.2)
    assert [b.dropout for b in model.decoder.blocks] == [0.2, 0.2]
    assert [b.dropout for b in model.encoder.blocks] == [0.0]  # the frozen encoder is untouched
    assert [b.dropout for b in bake_code_projection(model).blocks] == [0.0, 0.0]
    with pytest.raises(ConfigError, match="decoder_dropout must lie in"):
        TokenizerTrainConfig(decoder_dropout=1.0)


def _stage2_config(tmp_path: Path, *overrides: str) -> TokenizerTrainConfig:
    tiny = [f"encoder.{k}={v}" for k, v in (("d_model", 32), ("v_heads", 4), ("n_layers", 1), ("d_out", 8),
                                               ("n_codes", 16))]  # fmt: skip
    tiny += [f"decoder.{k}={v}" for k, v in (("d_model", 32), ("n_heads", 2), ("n_layers", 2), ("pairwise_dim", 8),
                                               ("sequence_conditioning", "true"))]  # fmt: skip
    return load_config(TokenizerTrainConfig, None, ["stage=2", f"data.path={tmp_path}", *tiny, *overrides])


def test_random_decoder_on_an_exported_encoder(tmp_path: Path) -> None:
    source = _trained_model()
    export_networks(source, tmp_path / "export")
    model = build_model(_stage2_config(tmp_path, f"init_from={tmp_path / 'export'}", "decoder_init=random"))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    assert not torch.allclose(model.code_proj.weight, source.code_proj.weight)  # the decoder side starts fresh


def test_init_from_kinds_that_do_not_fit(tmp_path: Path) -> None:
    export_networks(_trained_model(), tmp_path / "export")
    with pytest.raises(ConfigError, match="a weights directory, which decoder_init=checkpoint cannot start from"):
        build_model(_stage2_config(tmp_path, f"init_from={tmp_path / 'export'}", "decoder_init=checkpoint"))
    with pytest.raises(ConfigError, match="decoder_init=weights needs a trained tokenizer's weights directory"):
        build_model(_stage2_config(tmp_path, f"init_from={tmp_path / 'nowhere'}", "decoder_init=weights"))


def test_stage2_encodes_its_dataset_on_the_runs_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage 2 encodes the whole dataset once with the frozen encoder before training. That pass ran on the CPU
    even in a GPU run (the model was moved to the device only by the loop, after it). "meta" stands in for the GPU."""
    from openesm3.training import distributed as D  # noqa: PLC0415
    from openesm3.training.tokenizer import run  # noqa: PLC0415

    seen: list[torch.device] = []

    class Stop(Exception):
        pass

    def encode(model: torch.nn.Module, *args: object, **kwargs: object) -> None:
        seen.append(next(model.parameters()).device)
        raise Stop

    monkeypatch.setattr(run.D, "setup_distributed", lambda device: D.DistInfo(device=torch.device("meta")))
    monkeypatch.setattr(run, "build_model", lambda config: torch.nn.Linear(2, 2))
    monkeypatch.setattr(run, "tokenized_dataset", encode)
    monkeypatch.setattr(run, "ProteinDataset", lambda path: None)
    config = TokenizerTrainConfig(stage=2, init_from="x", out_dir=str(tmp_path / "run"))
    with pytest.raises(Stop):
        run.train_tokenizer(config)
    assert seen == [torch.device("meta")]
