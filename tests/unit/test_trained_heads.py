"""The record of a structure decoder's trained confidence heads (``trained_heads`` / ``calibrated_heads`` in
``config.json``): it survives save/load, the bundle copy and calibration; files without it load as before; a bad
record is refused by name; decoding withholds (NaN, B-factors 0) what untrained heads would give."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3.checkpoints.bundled import load_structure_tokenizer, write_bundle
from openesm3.checkpoints.format import load_pretrained, save_pretrained
from openesm3.config import StructureDecoderConfig, StructureEncoderConfig
from openesm3.errors import WeightsError
from openesm3.generation.all_atom_decoding import decode_all_atom
from openesm3.generation.structure_tokens import StructureTokens, decode_structure
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.training.checkpointing import STATE_FILE
from openesm3.training.config import config_to_dict, load_config
from openesm3.training.tokenizer.calibrate import CalibrationConfig, calibrate, decode_records
from openesm3.training.tokenizer.config import TokenizerTrainConfig
from openesm3.training.tokenizer.run import trained_heads
from tests.unit.test_tokenizer_model import _record

DECODER = StructureDecoderConfig(d_model=32, n_heads=2, n_layers=1, pairwise_dim=8, sequence_conditioning=True)


def _decoder(heads: tuple[str, ...] | None) -> StructureDecoder:
    torch.manual_seed(0)
    decoder = StructureDecoder(DECODER).eval()
    decoder.trained_heads = heads
    return decoder


def _tokens() -> StructureTokens:
    item = StructureTokens.from_token_row([4098, 3, 15, 0, 7, 7, 12, 4097])
    return StructureTokens(tuple(replace(c, sequence="WGKDAF") for c in item.chains), "t")


def test_the_record_round_trips_through_save_load_and_the_bundle_copy(tmp_path: Path) -> None:
    decoder = _decoder(("pae",))
    decoder.calibrated_heads = ("pae",)
    save_pretrained(decoder, decoder.config, tmp_path / "dec", model_type="structure_decoder")
    meta = json.loads((tmp_path / "dec" / "config.json").read_text())
    assert meta["trained_heads"] == ["pae"] and meta["calibrated_heads"] == ["pae"]
    loaded, _ = load_pretrained(tmp_path / "dec", expected_type="structure_decoder")
    assert isinstance(loaded, StructureDecoder)
    assert loaded.trained_heads == ("pae",) and loaded.calibrated_heads == ("pae",)
    assert loaded.untrained_heads() == ("plddt",)
    # the package's float16 copy (write_bundle) keeps it, and a second save writes the same config
    encoder = StructureEncoder(StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=8, n_codes=16))
    save_pretrained(encoder, encoder.config, tmp_path / "export" / "structure_encoder", model_type="structure_encoder")
    save_pretrained(loaded, loaded.config, tmp_path / "export" / "structure_decoder", model_type="structure_decoder")
    write_bundle(tmp_path / "export", tmp_path / "bundle")
    _, bundled = load_structure_tokenizer(tmp_path / "bundle")
    assert bundled.trained_heads == ("pae",) and bundled.calibrated_heads == ("pae",)


def test_a_config_without_the_record_loads_and_decodes_as_before(tmp_path: Path) -> None:
    decoder = _decoder(None)
    save_pretrained(decoder, decoder.config, tmp_path / "dec", model_type="structure_decoder")
    assert "trained_heads" not in json.loads((tmp_path / "dec" / "config.json").read_text())
    loaded, _ = load_pretrained(tmp_path / "dec")
    assert isinstance(loaded, StructureDecoder)
    assert loaded.trained_heads is None and loaded.untrained_heads() == ()
    out = decode_structure(_tokens(), loaded)
    assert out.untrained_heads == () and 0 < out.ptm < 1 and np.isfinite(out.plddt).all()
    same = decode_structure(_tokens(), _decoder(("plddt", "pae")))  # recorded as trained: the very same numbers
    assert same.ptm == out.ptm and np.array_equal(same.plddt, out.plddt) and np.array_equal(same.pae, out.pae)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"trained_heads": "plddt"}, r"'trained_heads' \"plddt\" must be a list of confidence heads"),
        ({"calibrated_heads": ["ptm"]}, r"'calibrated_heads' \[\"ptm\"\] must be a list of confidence heads"),
    ],
)
def test_a_bad_record_is_refused_by_name(tmp_path: Path, edit: dict, message: str) -> None:
    decoder = _decoder(None)
    save_pretrained(decoder, decoder.config, tmp_path / "dec", model_type="structure_decoder")
    path = tmp_path / "dec" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(WeightsError, match=message):
        load_pretrained(tmp_path / "dec")


def test_the_record_is_refused_on_a_network_without_confidence_heads(tmp_path: Path) -> None:
    encoder = StructureEncoder(StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=8, n_codes=16))
    save_pretrained(encoder, encoder.config, tmp_path / "enc", model_type="structure_encoder")
    path = tmp_path / "enc" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "trained_heads": []}))
    with pytest.raises(WeightsError, match="'trained_heads' is recorded for structure_decoder weights only"):
        load_pretrained(tmp_path / "enc")


def test_the_bundled_decoder_records_trained_and_calibrated_heads() -> None:
    _, decoder = load_structure_tokenizer()
    assert decoder.trained_heads == ("plddt", "pae") and decoder.calibrated_heads == ("plddt", "pae")
    assert decoder.untrained_heads() == ()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], ()),
        (["stage=2", "init_from=x"], ("plddt", "pae")),
        (["stage=2", "init_from=x", "losses.pae=0"], ("plddt",)),
        (["stage=2", "init_from=x", "losses.pae=0", "losses.plddt=0"], ()),
        (["stage=2", "init_from=x", "losses.pae=0", "losses.plddt=0", "decoder_init=checkpoint"], ("plddt", "pae")),
    ],
)
def test_a_run_records_the_heads_it_trains(overrides: list[str], expected: tuple[str, ...]) -> None:
    assert trained_heads(load_config(TokenizerTrainConfig, None, ["data.path=x", *overrides])) == expected


def test_decoding_withholds_what_untrained_heads_give() -> None:
    for decode in (decode_structure, lambda t, d: decode_all_atom(t, d)[0]):
        trained = decode(_tokens(), _decoder(None))
        none = decode(_tokens(), _decoder(()))
        assert none.untrained_heads == ("plddt", "pae")
        assert np.isnan(none.ptm) and np.isnan(none.plddt).all() and np.isnan(none.pae).all()
        b_factors = none.structure.chains[0].b_factor
        assert np.all(np.nan_to_num(b_factors) == 0) and np.isfinite(trained.structure.chains[0].b_factor).any()
        present = ~np.isnan(none.structure.chains[0].atom37).any(-1)  # the atoms written: 0, not NaN, beside them
        assert present.any() and np.all(b_factors[present] == 0)
        # the geometry is the decoder's all the same
        np.testing.assert_array_equal(none.structure.chains[0].atom37, trained.structure.chains[0].atom37)
        pae_only = decode(_tokens(), _decoder(("plddt",)))  # PAE (and pTM) untrained, pLDDT kept
        assert pae_only.untrained_heads == ("pae",) and np.isnan(pae_only.ptm)
        np.testing.assert_array_equal(pae_only.plddt, trained.plddt)


def test_calibration_records_the_heads_it_fits() -> None:
    encoder = StructureEncoder(StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=8, n_codes=16)).eval()
    decoder = _decoder(())  # a stage-1 export: nothing trained
    records = [replace(_record(f), name=f, cluster=f) for f in ("1igd.pdb.gz", "structures/1PIN.pdb.gz")]
    chains, _ = decode_records(encoder, decoder, records, progress=False)
    result = calibrate(decoder, chains, CalibrationConfig(heads=("plddt",), steps=1, cross_fit=0), progress=False)
    assert result.decoder.trained_heads == ("plddt",) and result.decoder.calibrated_heads == ("plddt",)
    assert decoder.trained_heads == () and decoder.calibrated_heads is None  # the input is left as it was
    # what was recorded before stays; weights without a record (read as trained) keep none
    earlier = _decoder(("pae",))
    earlier.calibrated_heads = ("pae",)
    result = calibrate(earlier, chains, CalibrationConfig(heads=("plddt",), steps=1, cross_fit=0), progress=False)
    assert result.decoder.trained_heads == ("plddt", "pae") and result.decoder.calibrated_heads == ("plddt", "pae")
    result = calibrate(
        _decoder(None), chains, CalibrationConfig(heads=("plddt",), steps=1, cross_fit=0), progress=False
    )
    assert result.decoder.trained_heads is None and result.decoder.calibrated_heads == ("plddt",)


def _run_config(*overrides: str) -> TokenizerTrainConfig:
    return load_config(TokenizerTrainConfig, None, ["data.path=x", *overrides])


def _fake_checkpoint(path: Path, config: TokenizerTrainConfig) -> str:
    """A checkpoint directory as far as trained_heads reads it: the run's config in its trainer state."""
    path.mkdir(parents=True)
    (path / STATE_FILE).write_text(json.dumps({"config": config_to_dict(config)}))
    return str(path)


def test_a_continued_decoder_inherits_only_the_heads_its_source_trained(tmp_path: Path) -> None:
    zero = ["losses.pae=0", "losses.plddt=0"]
    # configs/tokenizer_v3_stage2a.toml: decoder_init=checkpoint from a stage-2A run that trained neither head
    run_2a = _fake_checkpoint(tmp_path / "2a", _run_config("stage=2", "init_from=s1", *zero))
    assert trained_heads(_run_config("stage=2", f"init_from={run_2a}", "decoder_init=checkpoint", *zero)) == ()
    # a stage-1 checkpoint (of the same shapes) gives untrained heads; a source that trained PAE passes PAE on
    stage1 = _fake_checkpoint(tmp_path / "s1", _run_config())
    assert trained_heads(_run_config("stage=2", f"init_from={stage1}", "decoder_init=checkpoint", *zero)) == ()
    pae_run = _fake_checkpoint(tmp_path / "pae", _run_config("stage=2", "init_from=s1", "losses.plddt=0"))
    continued = _run_config("stage=2", f"init_from={pae_run}", "decoder_init=checkpoint", *zero)
    assert trained_heads(continued) == ("pae",)
    # and further back: a run continuing the one that trained PAE, continued again with weights 0
    middle = _fake_checkpoint(tmp_path / "mid", continued)
    assert trained_heads(_run_config("stage=2", f"init_from={middle}", "decoder_init=checkpoint", *zero)) == ("pae",)


def test_a_decoder_continued_from_weights_inherits_their_record(tmp_path: Path) -> None:
    zero = ["losses.pae=0", "losses.plddt=0"]
    for record, expected in [((), ()), (("plddt",), ("plddt",)), (None, ("plddt", "pae"))]:
        save_pretrained(_decoder(record), DECODER, tmp_path / "w" / "structure_decoder", model_type="structure_decoder")
        config = _run_config("stage=2", f"init_from={tmp_path / 'w'}", "decoder_init=weights", *zero)
        assert trained_heads(config) == expected
    bundled = _run_config("stage=2", "init_from=bundled", "decoder_init=weights", *zero)
    assert trained_heads(bundled) == ("plddt", "pae")


@pytest.mark.parametrize(
    ("pair_fit", "trained"),
    [("head", ("pae",)), ("pae", ("pae",)), ("ptm", ()), ("temperature", ()), ("ptm-temperature", ())],
)
def test_a_scale_of_random_pae_outputs_does_not_make_the_head_trained(pair_fit: str, trained: tuple[str, ...]) -> None:
    """pair_fit=ptm / temperature fit one or two factors of the PAE outputs: on a stage-1 export they stay random."""
    encoder = StructureEncoder(StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=8, n_codes=16)).eval()
    decoder = _decoder(())
    records = [replace(_record(f), name=f, cluster=f) for f in ("1igd.pdb.gz", "structures/1PIN.pdb.gz")]
    chains, _ = decode_records(encoder, decoder, records, progress=False)
    config = CalibrationConfig(heads=("pae",), steps=1, cross_fit=0, pair_fit=pair_fit, crop_length=16, batch=1)
    result = calibrate(decoder, chains, config, progress=False)
    assert result.decoder.trained_heads == trained and result.decoder.calibrated_heads == ("pae",)
