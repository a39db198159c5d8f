"""ESM3 weights: the official key map, strict official loading, our format round trip, resolve_weights, convert."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import openesm3.checkpoints.format as weight_format
from openesm3.checkpoints.format import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    load_pretrained,
    read_config,
    save_pretrained,
)
from openesm3.checkpoints.loading import WEIGHTS_ENV, load_model, resolve_weights
from openesm3.checkpoints.official import (
    OFFICIAL_KEY_MAPS,
    OFFICIAL_PRESETS,
    detect_model_type,
    esm3_key_map,
    load_official_state_dict,
    to_official_state_dict,
)
from openesm3.cli.main import main
from openesm3.config import ESM3_SM_OPEN_V1, ESM3_TINY
from openesm3.errors import WeightsError
from openesm3.models.esm3 import ESM3
from tests.unit.test_esm3_model import randomized, tokens

CONFIG = ESM3_TINY.replace(n_layers=3, v_heads=8)


def write_official(model: ESM3, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(to_official_state_dict(model.state_dict(), esm3_key_map(model.config)), path)
    return path


def outputs(model: ESM3):
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        return model(sequence_tokens=tokens(2, 15, g), structure_coords=torch.randn(2, 15, 3, 3, generator=g) * 6)


def test_key_map_covers_every_parameter_and_names_the_official_keys() -> None:
    with torch.device("meta"):
        model = ESM3(ESM3_SM_OPEN_V1)
    key_map = esm3_key_map(ESM3_SM_OPEN_V1)
    assert set(key_map) == set(model.state_dict())
    assert len(set(key_map.values())) == len(key_map) == 539  # one-to-one, spec §9
    official = set(key_map.values())
    for key in (
        "encoder.structure_per_res_plddt_projection.bias", "encoder.function_embed.7.weight",
        "encoder.residue_embed.weight", "transformer.blocks.47.attn.layernorm_qkv.1.weight",
        "transformer.blocks.0.geom_attn.distance_scale_per_head", "transformer.blocks.0.geom_attn.s_norm.weight",
        "transformer.norm.weight", "output_heads.function_head.3.bias", "transformer.blocks.5.ffn.3.weight",
    ):  # fmt: skip
        assert key in official, key
    assert "transformer.blocks.1.geom_attn.proj.weight" not in official
    assert OFFICIAL_KEY_MAPS["esm3"] is esm3_key_map and OFFICIAL_PRESETS["esm3"] == ESM3_SM_OPEN_V1
    with pytest.raises(WeightsError, match="taxonomy"):
        esm3_key_map(ESM3_TINY.replace(n_taxonomy_terms=10))


def test_official_file_loads_strictly_and_lists_every_problem(tmp_path) -> None:
    model = randomized(CONFIG, seed=1)
    path = write_official(model, tmp_path / "esm3_sm_open_v1.pth")
    loaded, config = load_model(path, "esm3", config=CONFIG)
    assert config == CONFIG and not any(p.is_meta for p in loaded.parameters())
    assert torch.equal(outputs(loaded).structure_logits, outputs(model).structure_logits)

    state = torch.load(path, weights_only=True)
    del state["transformer.blocks.2.ffn.1.weight"]
    state["transformer.blocks.9.attn.bogus"] = torch.zeros(1)
    state["encoder.ss8_embed.weight"] = torch.zeros(12, CONFIG.d_model)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsError) as info:
        load_model(tmp_path / "broken.pth", "esm3", config=CONFIG)
    msg = str(info.value)
    assert "broken.pth" in msg
    assert "1 missing key(s): transformer.blocks.2.ffn.1.weight" in msg
    assert "1 unexpected key(s): transformer.blocks.9.attn.bogus" in msg
    assert "encoder.ss8_embed.weight: file (12, 64) vs model (11, 64)" in msg
    # The release preset is the default config: a tiny file does not load as the 1.4B model.
    with pytest.raises(WeightsError, match="mis-shaped"):
        load_model(path, "esm3")


def test_our_format_round_trips_bit_exactly_in_fp32_and_bf16(tmp_path) -> None:
    model = randomized(CONFIG, seed=2)
    save_pretrained(model, CONFIG, tmp_path / "fp32", model_type="esm3")
    meta = json.loads((tmp_path / "fp32" / CONFIG_FILE).read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["model_type"] == "esm3" and meta["dtype"] == "float32"
    loaded, config = load_model(tmp_path / "fp32", "esm3")
    assert config == CONFIG and not loaded.training  # ready for inference: eval mode
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(outputs(loaded).embeddings, outputs(model).embeddings)

    model_bf16 = randomized(CONFIG, seed=2).to(torch.bfloat16)
    save_pretrained(model_bf16, CONFIG, tmp_path / "bf16", model_type="esm3")
    again, _ = load_model(tmp_path / "bf16", "esm3")
    assert all(p.dtype == torch.bfloat16 for p in again.parameters())
    for key, value in model_bf16.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    with pytest.raises(WeightsError, match="holds a 'esm3' model"):
        load_pretrained(tmp_path / "fp32", expected_type="structure_decoder")


def test_resolve_weights_order_and_error(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsError) as info:
        resolve_weights(None, "esm3")
    msg = str(info.value)
    assert "esm3_sm_open_v1.pth" in msg and CONFIG_FILE in msg and WEIGHTS_FILE in msg
    assert str(home / ".cache/openesm3/weights/data/weights/esm3_sm_open_v1.pth") in msg
    assert WEIGHTS_ENV in msg

    model = randomized(CONFIG, seed=3)
    default = home / ".cache" / "openesm3" / "weights"
    save_pretrained(model, CONFIG, default / "esm3", model_type="esm3")  # ROOT/<model_type>/ layout
    assert resolve_weights(None, "esm3") == default / "esm3"
    env_root = tmp_path / "env"
    official = write_official(model, env_root / "data" / "weights" / "esm3_sm_open_v1.pth")  # release layout
    monkeypatch.setenv(WEIGHTS_ENV, str(env_root))
    assert resolve_weights(None, "esm3") == official  # env beats the default
    explicit = tmp_path / "explicit"
    save_pretrained(model, CONFIG, explicit, model_type="esm3")
    assert resolve_weights(explicit, "esm3") == explicit  # an explicit path beats both
    save_pretrained(model, CONFIG, explicit / "esm3", model_type="esm3")
    assert resolve_weights(explicit, "esm3") == explicit  # the directory itself before its esm3/ sub-directory
    assert resolve_weights(official, "esm3") == official
    with pytest.raises(WeightsError, match="unknown model type"):
        resolve_weights(explicit, "esm4")


def test_convert_cli_official_to_ours(tmp_path, capsys) -> None:
    model = randomized(CONFIG, seed=4)
    release = tmp_path / "release"
    file = write_official(model, release / "data" / "weights" / "esm3_sm_open_v1.pth")
    assert detect_model_type(torch.load(file, weights_only=True)) == "esm3"
    stray = {"pre_vq_proj.weight": torch.ones(1), **{f"other.{i}": torch.ones(1) for i in range(5)}}
    with pytest.raises(WeightsError, match="match no known official network"):
        detect_model_type(stray)  # one key in common is not enough to name a network
    config_json = tmp_path / "tiny.json"
    config_json.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 3, "v_heads": 8}))

    assert main(["convert", str(file), str(tmp_path / "ours"), "--config", str(config_json)]) == 0
    converted, _ = load_model(tmp_path / "ours", "esm3")
    assert torch.equal(outputs(converted).function_logits, outputs(model).function_logits)

    # A release directory: every official file found goes to OUT/<model_type>/, here in bf16.
    assert main(["convert", str(release), str(tmp_path / "all"), "--dtype", "bf16", "--config", str(config_json)]) == 0
    half, _ = load_model(tmp_path / "all", "esm3")  # found through ROOT/esm3/
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert "esm3" in capsys.readouterr().out

    # Errors are one line, exit code 2.
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "x")]) == 2
    assert main(["convert", str(file), str(tmp_path / "y")]) == 2  # tiny file vs the 1.4B preset: mis-shaped
    assert main(["convert", str(file), str(tmp_path / "z"), "--config", str(file)]) == 2  # the weights as config
    err = capsys.readouterr().err
    assert "no such file or directory" in err and "mis-shaped" in err
    assert "esm3_sm_open_v1.pth: not a text file" in err and "internal error" not in err
    for text in ("[64, 4, 3, 8]", '"d_model"', '{"config": [64]}'):  # valid JSON, but not an object of fields
        config_json.write_text(text)
        assert main(["convert", str(file), str(tmp_path / "w"), "--config", str(config_json)]) == 2
        err = capsys.readouterr().err
        assert "tiny.json: the config must be a JSON object of config fields" in err and "internal error" not in err
    assert not (tmp_path / "w").exists()


def test_saved_weight_files_are_readable_by_others_like_any_new_file(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        save_pretrained(ESM3(CONFIG), CONFIG, tmp_path / "w", model_type="esm3")
    finally:
        os.umask(old)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        assert (tmp_path / "w" / name).stat().st_mode & 0o777 == 0o644, name


def test_half_precision_official_file_loads_into_fp32_like_the_reference(tmp_path) -> None:
    # The reference builds its model in fp32 and copies the file into it (load_state_dict): an fp16 file, or one
    # mixing dtypes, computes in fp32 on the file's values; a dtype asked for still wins.
    model = randomized(CONFIG, seed=5)
    state = to_official_state_dict(model.state_dict(), esm3_key_map(CONFIG))
    torch.save({k: v.half() for k, v in state.items()}, tmp_path / "fp16.pth")
    torch.save({k: v.half() if i % 2 else v for i, (k, v) in enumerate(state.items())}, tmp_path / "mixed.pth")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half())  # what the reference's fp32 parameters hold after loading the fp16 file
    for name in ("fp16.pth", "mixed.pth"):
        loaded, _ = load_model(tmp_path / name, "esm3", config=CONFIG)
        assert {p.dtype for p in loaded.parameters()} == {torch.float32}, name
    loaded, _ = load_model(tmp_path / "fp16.pth", "esm3", config=CONFIG)
    assert torch.equal(outputs(loaded).sequence_logits, outputs(model).sequence_logits)
    bf16, _ = load_model(tmp_path / "fp16.pth", "esm3", config=CONFIG, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_resolve_weights_says_which_file_of_a_model_directory_is_missing(tmp_path) -> None:
    save_pretrained(ESM3(CONFIG), CONFIG, tmp_path / "a", model_type="esm3")
    save_pretrained(ESM3(CONFIG), CONFIG, tmp_path / "b", model_type="esm3")
    (tmp_path / "a" / WEIGHTS_FILE).unlink()  # e.g. a copy interrupted before the weights
    (tmp_path / "b" / CONFIG_FILE).unlink()
    with pytest.raises(WeightsError, match=f"{tmp_path / 'a'}: {CONFIG_FILE} but no {WEIGHTS_FILE}"):
        resolve_weights(tmp_path / "a", "esm3")
    with pytest.raises(WeightsError, match=f"{tmp_path / 'b'}: {WEIGHTS_FILE} but no {CONFIG_FILE}"):
        resolve_weights(tmp_path / "b", "esm3")


def test_convert_refuses_an_official_file_whose_tensor_bytes_are_damaged(tmp_path, capsys) -> None:
    # torch.load does not check the zip CRCs, so a damaged download loads with wrong values; convert, which would
    # bake them into a safetensors file (no checksum), checks them first.
    file = write_official(randomized(CONFIG, seed=6), tmp_path / "esm3_sm_open_v1.pth")
    config_json = tmp_path / "tiny.json"
    config_json.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 3, "v_heads": 8}))
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    file.write_bytes(bytes(data))
    assert main(["convert", str(file), str(tmp_path / "out"), "--config", str(config_json)]) == 2
    err = capsys.readouterr().err
    assert "esm3_sm_open_v1.pth: damaged" in err and "CRC" in err
    assert not (tmp_path / "out").exists()


def test_convert_replaces_its_own_output_but_not_another_programs_config_json(tmp_path, capsys) -> None:
    model = randomized(CONFIG, seed=7)
    file = write_official(model, tmp_path / "esm3_sm_open_v1.pth")
    config_json = tmp_path / "tiny.json"
    config_json.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 3, "v_heads": 8}))
    for _ in range(2):  # converting twice replaces the first output
        assert main(["convert", str(file), str(tmp_path / "ours"), "--config", str(config_json)]) == 0
    converted, _ = load_model(tmp_path / "ours", "esm3")
    assert torch.equal(outputs(converted).sequence_logits, outputs(model).sequence_logits)

    project = tmp_path / "project"  # e.g. a Hugging Face model directory: same file names, not ours
    project.mkdir()
    (project / CONFIG_FILE).write_text('{"architectures": ["BertModel"]}')
    (project / WEIGHTS_FILE).write_bytes(b"their weights")
    assert main(["convert", str(file), str(project), "--config", str(config_json)]) == 2
    assert f"{project / CONFIG_FILE}: not an OpenESM3 model config" in capsys.readouterr().err
    assert (project / CONFIG_FILE).read_text() == '{"architectures": ["BertModel"]}'
    assert (project / WEIGHTS_FILE).read_bytes() == b"their weights"


def test_official_file_saved_from_a_ddp_or_compiled_wrapper_loads(tmp_path) -> None:
    # DistributedDataParallel prefixes every key with "module.", torch.compile with "_orig_mod."; the keys under
    # the prefix are still checked strictly.
    model = randomized(CONFIG, seed=8)
    state = to_official_state_dict(model.state_dict(), esm3_key_map(CONFIG))
    torch.save({f"module._orig_mod.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")
    assert detect_model_type(load_official_state_dict(tmp_path / "ddp.pth")) == "esm3"
    loaded, _ = load_model(tmp_path / "ddp.pth", "esm3", config=CONFIG)
    assert torch.equal(outputs(loaded).sequence_logits, outputs(model).sequence_logits)
    partly = {(f"module.{k}" if i else k): v for i, (k, v) in enumerate(state.items())}  # not a uniform prefix
    torch.save(partly, tmp_path / "partly.pth")
    with pytest.raises(WeightsError, match="partly.pth: does not match the expected official layout"):
        load_model(tmp_path / "partly.pth", "esm3", config=CONFIG)


def test_convert_to_fp16_refuses_weights_that_fp16_cannot_hold(tmp_path, capsys) -> None:
    model = randomized(CONFIG, seed=9)
    with torch.no_grad():
        model.blocks[1].ffn.w_out.weight[0, 0] = 1e6  # fp16's largest finite value is 65504
    file = write_official(model, tmp_path / "esm3_sm_open_v1.pth")
    config_json = tmp_path / "tiny.json"
    config_json.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 3, "v_heads": 8}))
    assert main(["convert", str(file), str(tmp_path / "out"), "--config", str(config_json), "--dtype", "fp16"]) == 2
    assert "transformer.blocks.1.ffn.3.weight" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(file), str(tmp_path / "out"), "--config", str(config_json), "--dtype", "bf16"]) == 0


def test_convert_says_when_its_input_is_already_in_our_format(tmp_path, capsys) -> None:
    save_pretrained(ESM3(CONFIG), CONFIG, tmp_path / "ours", model_type="esm3")
    for src in (tmp_path / "ours", tmp_path / "ours" / WEIGHTS_FILE):
        assert main(["convert", str(src), str(tmp_path / "again")]) == 2
        assert f"{tmp_path / 'ours'}: already in the OpenESM3 format" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()


def test_an_interrupted_save_leaves_the_previous_weights_whole(tmp_path, monkeypatch) -> None:
    model = randomized(CONFIG, seed=2)
    save_pretrained(model, CONFIG, tmp_path, model_type="esm3")

    def disk_full(state, path, metadata) -> None:  # noqa: ANN001
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weight_format, "write_aligned_safetensors", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(randomized(CONFIG, seed=3), CONFIG, tmp_path, model_type="esm3")
    loaded, _ = load_model(tmp_path, "esm3")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temporary left behind


def test_config_json_lists_every_dtype_of_a_mixed_precision_model(tmp_path) -> None:
    model = randomized(CONFIG, seed=2)
    model.embedding.sequence.to(torch.bfloat16)
    save_pretrained(model, CONFIG, tmp_path, model_type="esm3")
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["dtype"] == ["bfloat16", "float32"]


def test_a_dangling_config_json_link_is_not_replaced(tmp_path) -> None:
    (tmp_path / CONFIG_FILE).symlink_to(tmp_path / "elsewhere" / "config.json")  # e.g. a link into another project
    with pytest.raises(WeightsError, match="not an OpenESM3 model config; refusing to replace it"):
        save_pretrained(randomized(CONFIG, seed=2), CONFIG, tmp_path, model_type="esm3")
    assert (tmp_path / CONFIG_FILE).is_symlink()


def test_convert_names_what_it_did_not_find_or_could_not_read(tmp_path, capsys) -> None:
    empty = tmp_path / "downloads"
    empty.mkdir()
    assert main(["convert", str(empty), str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"{empty}: no official weight file found (esm3_sm_open_v1.pth, " in err and "data/weights/" in err
    assert main(["convert", str(empty), str(tmp_path / "b"), "--model-type", "structure_decoder"]) == 2
    assert f"{empty}: no esm3_structure_decoder_v0.pth found" in capsys.readouterr().err
    assert main(["convert", str(empty), str(tmp_path / "c"), "--model-type", "esm4"]) == 2
    assert "--model-type 'esm4' is not convertible; choose auto or one of ['esm3', " in capsys.readouterr().err
    file = write_official(randomized(CONFIG, seed=5), tmp_path / "esm3_sm_open_v1.pth")
    config_json = tmp_path / "tiny.json"
    config_json.write_text('{"d_model": 64,')
    assert main(["convert", str(file), str(tmp_path / "d"), "--config", str(config_json)]) == 2
    assert f"{config_json}: unreadable config JSON (" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_convert_checks_its_config_before_touching_the_weights(tmp_path, monkeypatch, capsys) -> None:
    # checksumming the official trunk (5.6 GB) takes minutes: a typo in --config must show before it
    import openesm3.checkpoints.official as official

    file = write_official(randomized(CONFIG, seed=5), tmp_path / "release" / "data" / "weights" / "esm3_sm_open_v1.pth")

    def touched(path) -> None:  # noqa: ANN001
        raise WeightsError(f"{path}: weights touched")

    monkeypatch.setattr(official, "check_official_file_checksums", touched)
    monkeypatch.setattr(official, "load_official_state_dict", touched)
    config_json = tmp_path / "tiny.json"
    config_json.write_text(json.dumps({"d_modle": 64, "n_heads": 4, "n_layers": 3, "v_heads": 8}))
    for src, extra in ((file, ["--model-type", "esm3"]), (tmp_path / "release", []), (file, [])):
        assert main(["convert", str(src), str(tmp_path / "out"), "--config", str(config_json), *extra]) == 2
        err = capsys.readouterr().err
        assert f"{config_json}: " in err and "'d_modle'" in err and "weights touched" not in err, err
    # a file to be recognised by its keys: the fields fit no convertible network's config
    assert "not the config of any convertible network (as esm3: unknown ESM3Config field(s) ['d_modle']" in err
    config_json.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 3, "v_heads": 8}))
    assert main(["convert", str(file), str(tmp_path / "out"), "--config", str(config_json)]) == 2
    assert "weights touched" in capsys.readouterr().err  # a valid config goes on to the weights
    assert not (tmp_path / "out").exists()


def test_convert_auto_checks_its_config_against_the_files_network_before_the_checksums(
    tmp_path, monkeypatch, capsys
) -> None:
    """With --model-type auto, a --config that fits another network than the file's (here a structure decoder's
    fields for an ESM3 file) was refused only after the file's checksums: minutes for the official trunk."""
    import openesm3.checkpoints.official as official

    file = write_official(randomized(CONFIG, seed=6), tmp_path / "tiny_esm3.pth")  # not an official file name

    def checksummed(path) -> None:  # noqa: ANN001
        raise WeightsError(f"{path}: checksummed before the config was checked")

    monkeypatch.setattr(official, "check_official_file_checksums", checksummed)
    config_json = tmp_path / "decoder.json"
    config_json.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 3, "pairwise_dim": 32}))
    assert main(["convert", str(file), str(tmp_path / "out"), "--config", str(config_json)]) == 2
    err = capsys.readouterr().err
    assert f"{config_json}: " in err and "'pairwise_dim'" in err and "checksummed" not in err, err
    assert f"({file} holds esm3 weights, recognised by their key names)" in err, err
    assert not (tmp_path / "out").exists()
    # the right config goes on to the checksums, and a damaged file is still named as one, not as unreadable
    config_json.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 3, "v_heads": 8}))
    assert main(["convert", str(file), str(tmp_path / "out"), "--config", str(config_json)]) == 2
    assert "checksummed before the config was checked" in capsys.readouterr().err
    monkeypatch.undo()
    damaged = tmp_path / "damaged.pth"
    data = bytearray(file.read_bytes())
    start = data.index(b"data.pkl") + 200  # inside the pickle record of key names
    data[start : start + 16] = bytes(16)
    damaged.write_bytes(bytes(data))
    assert main(["convert", str(damaged), str(tmp_path / "out"), "--config", str(config_json)]) == 2
    assert "fails its CRC-32 check" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_convert_of_a_release_with_several_files_says_config_is_one_networks(tmp_path, capsys) -> None:
    # --config holds one network's fields; a release directory holds up to four official files. Each was converted
    # with it: the trunk was written, then the encoder, built to the trunk's fields (they fit its config), failed as
    # 14 missing keys. Now refused before any weight is touched, naming the files and the way out.
    from openesm3.checkpoints.official import VQVAE_KEY_MAP_FUNCTIONS, ours_to_official
    from openesm3.config import STRUCTURE_ENCODER_TINY
    from openesm3.models.structure_encoder import StructureEncoder

    weights = tmp_path / "release" / "data" / "weights"
    write_official(randomized(CONFIG, seed=5), weights / "esm3_sm_open_v1.pth")
    encoder = StructureEncoder(STRUCTURE_ENCODER_TINY)
    key_map = VQVAE_KEY_MAP_FUNCTIONS["structure_encoder"](STRUCTURE_ENCODER_TINY)
    torch.save(ours_to_official(encoder.state_dict(), key_map), weights / "esm3_structure_encoder_v0.pth")
    config_json = tmp_path / "tiny.json"
    config_json.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 3, "v_heads": 8}))
    release, out = tmp_path / "release", tmp_path / "out"
    assert main(["convert", str(release), str(out), "--config", str(config_json)]) == 2
    err = capsys.readouterr().err
    assert f"{config_json}: --config is one network's config, but {release} holds 2 official files" in err, err
    assert "(esm3_sm_open_v1.pth, esm3_structure_encoder_v0.pth): give --model-type NAME to convert only" in err, err
    assert not out.exists()
    assert main(["convert", str(release), str(out), "--config", str(config_json), "--model-type", "esm3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["esm3"]


def test_convert_says_when_its_input_is_already_a_weights_root_of_ours(tmp_path, capsys) -> None:
    root = tmp_path / "weights"  # what 'convert RELEASE OUT' writes: OUT/esm3/, OUT/structure_encoder/, ...
    save_pretrained(ESM3(CONFIG), CONFIG, root / "esm3", model_type="esm3")
    for extra in ([], ["--model-type", "esm3"]):
        assert main(["convert", str(root), str(tmp_path / "again"), *extra]) == 2
        err = capsys.readouterr().err
        assert f"{root}: already holds OpenESM3-format weights (esm3/); give it as it is to --weights" in err, err
    assert main(["convert", str(root), str(tmp_path / "again"), "--model-type", "structure_decoder"]) == 2
    assert f"{root}: no esm3_structure_decoder_v0.pth found" in capsys.readouterr().err  # not the one asked for
    assert not (tmp_path / "again").exists()


def test_the_dtype_of_config_json_is_checked_not_ignored(tmp_path) -> None:
    # 'dtype' records how model.safetensors is stored; loading never casts to it, so an edited value ("int4", or
    # "bfloat16" over fp32 tensors) would silently change nothing: it is refused, naming the file and the key.
    save_pretrained(randomized(CONFIG, seed=2), CONFIG, tmp_path, model_type="esm3")
    path = tmp_path / CONFIG_FILE
    meta = json.loads(path.read_text())
    assert meta["dtype"] == "float32"
    for bad in ("int4", ["float32", "int4"], 16, None):
        path.write_text(json.dumps({**meta, "dtype": bad}))
        with pytest.raises(WeightsError, match=f"{CONFIG_FILE}: 'dtype' .* is not a dtype of stored weights"):
            read_config(tmp_path)
        with pytest.raises(WeightsError, match=f"{CONFIG_FILE}: 'dtype' .* is not a dtype of stored weights"):
            load_model(tmp_path, "esm3")  # the reason is named in the 'no weights found' message
    path.write_text(json.dumps({**meta, "dtype": "bfloat16"}))
    with pytest.raises(WeightsError, match=r"'dtype' \"bfloat16\" does not match the tensors of model.safetensors"):
        load_model(tmp_path, "esm3")
    for good in ("float32", ["float32"]):
        path.write_text(json.dumps({**meta, "dtype": good}))
        assert load_model(tmp_path, "esm3")[1] == CONFIG
    del meta["dtype"]  # a config.json written by hand without it
    path.write_text(json.dumps(meta))
    assert load_model(tmp_path, "esm3")[1] == CONFIG


def test_convert_refuses_an_output_it_may_not_write_before_converting_anything(tmp_path, monkeypatch, capsys) -> None:
    """Another program's config.json in OUT/<network>/, or a file where OUT goes, was found only when that network
    was written: after the checksums and the load of its file and, for a release, after the networks before it."""
    import openesm3.checkpoints.official as official
    from openesm3.checkpoints.official import VQVAE_KEY_MAP_FUNCTIONS, ours_to_official
    from openesm3.config import STRUCTURE_ENCODER_TINY
    from openesm3.models.structure_encoder import StructureEncoder

    weights = tmp_path / "release" / "data" / "weights"
    file = write_official(randomized(CONFIG, seed=5), weights / "esm3_sm_open_v1.pth")
    key_map = VQVAE_KEY_MAP_FUNCTIONS["structure_encoder"](STRUCTURE_ENCODER_TINY)
    encoder = StructureEncoder(STRUCTURE_ENCODER_TINY)
    torch.save(ours_to_official(encoder.state_dict(), key_map), weights / "esm3_structure_encoder_v0.pth")

    def checksummed(path) -> None:  # noqa: ANN001
        raise WeightsError(f"{path}: checksummed before OUT was checked")

    monkeypatch.setattr(official, "check_official_file_checksums", checksummed)
    out = tmp_path / "out"
    (out / "structure_encoder").mkdir(parents=True)  # converted after esm3
    (out / "structure_encoder" / CONFIG_FILE).write_text('{"architectures": ["BertModel"]}')
    assert main(["convert", str(tmp_path / "release"), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'structure_encoder' / CONFIG_FILE}: not an OpenESM3 model config" in err, err
    assert "checksummed" not in err and not (out / "esm3").exists(), err
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["convert", str(file), str(tmp_path / "notes.txt")]) == 2
    err = capsys.readouterr().err
    assert f"OUT {tmp_path / 'notes.txt'}: exists and is not a directory" in err and "checksummed" not in err, err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_damaged_record_name_is_shown_printably(tmp_path) -> None:
    # Damage in the zip's central directory can turn a record's name into NUL bytes; zipfile cuts the name at the
    # first one, so the message named no record at all ("damaged ( fails its CRC-32 check ...").
    import zipfile  # noqa: PLC0415

    from openesm3.checkpoints.official import check_official_file_checksums  # noqa: PLC0415

    file = tmp_path / "w.pth"
    with zipfile.ZipFile(file, "w") as archive:
        archive.writestr("archive/data/0", b"x" * 64)
    data = bytearray(file.read_bytes())
    central = data.rindex(b"archive/data/0")  # the central directory's copy of the name, not the local header's
    data[central : central + 7] = bytes(7)
    file.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as info:
        check_official_file_checksums(file)
    message = str(info.value)
    assert message.isprintable(), message
    assert "'\\x00\\x00\\x00\\x00\\x00\\x00\\x00/data/0' fails its CRC-32 check" in message, message
