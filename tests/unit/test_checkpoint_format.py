import argparse
import dataclasses
import json

import pytest
import torch
from torch import nn

from openesm3.checkpoints.format import CONFIG_FILE, MODEL_TYPES, config_to_dict, load_state_dict_strict, read_config
from openesm3.checkpoints.official import load_official_state_dict, resolve_official_file, strip_wrapper_prefixes
from openesm3.config import ESM3_TINY, FUNCTION_DECODER_TINY, STRUCTURE_DECODER_TINY, STRUCTURE_ENCODER_TINY
from openesm3.errors import WeightsError

TINY_CONFIGS = {
    "esm3": ESM3_TINY,
    "structure_encoder": STRUCTURE_ENCODER_TINY,
    "structure_decoder": STRUCTURE_DECODER_TINY,
    "function_decoder": FUNCTION_DECODER_TINY,
}


def test_strict_load_lists_missing_unexpected_and_misshaped_keys() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = {
        "0.weight": torch.zeros(4, 3),
        "0.bias": torch.zeros(5),
        "1.weight": torch.zeros(2, 4),
        "extra": torch.ones(1),
    }
    with pytest.raises(WeightsError) as info:
        load_state_dict_strict(model, state, source="x.safetensors")
    msg = str(info.value)
    assert "x.safetensors" in msg
    assert "1 missing key(s): 1.bias" in msg
    assert "1 unexpected key(s): extra" in msg
    assert "0.bias: file (5,) vs model (4,)" in msg


def test_strict_load_assigns_real_tensors_onto_meta_model() -> None:
    with torch.device("meta"):
        model = nn.Linear(3, 2)
    state = {"weight": torch.randn(2, 3), "bias": torch.randn(2)}
    load_state_dict_strict(model, state, source="mem")
    assert not model.weight.is_meta
    assert torch.equal(model.weight, state["weight"])


def test_read_config_rejects_bad_version_and_unknown_fields(tmp_path) -> None:
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format_version": 99, "model_type": "esm3", "config": {}}))
    with pytest.raises(WeightsError, match="format_version 99"):
        read_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(
        json.dumps({"format_version": 1, "model_type": "esm3", "config": {"d_model": 8, "bogus": 1}})
    )
    with pytest.raises(WeightsError, match="bogus"):
        read_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        read_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(
        json.dumps(
            {
                "format_version": 1,
                "model_type": "esm3",
                "config": {"d_model": 64, "n_heads": 4, "n_layers": 2, "v_heads": 4},
            }
        )
    )
    model_type, cfg = read_config(tmp_path)
    assert model_type == "esm3" and cfg.d_model == 64


def test_official_loader_refuses_pickled_objects_and_finds_release_layout(tmp_path) -> None:
    bad = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(1), "obj": argparse.Namespace(a=1)}, bad)  # arbitrary objects are refused
    with pytest.raises(WeightsError, match="evil.pth"):
        load_official_state_dict(bad)
    numbers = tmp_path / "numbers.pth"
    torch.save({"w": torch.ones(1), "step": 3}, numbers)  # loads with weights_only, but is no state_dict
    with pytest.raises(WeightsError, match=r"numbers\.pth: expected a state_dict"):
        load_official_state_dict(numbers)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(WeightsError, match="garbage.pth"):
        load_official_state_dict(garbage)
    release = tmp_path / "release" / "data" / "weights"
    release.mkdir(parents=True)
    torch.save({"w": torch.ones(2)}, release / "esm3_sm_open_v1.pth")
    path = resolve_official_file(tmp_path / "release", "esm3")
    assert path == release / "esm3_sm_open_v1.pth"
    assert torch.equal(load_official_state_dict(path)["w"], torch.ones(2))
    with pytest.raises(WeightsError, match="esm3_structure_encoder_v0.pth"):
        resolve_official_file(tmp_path / "release", "structure_encoder")
    (tmp_path / "flat" / "weights").mkdir(parents=True)  # DIR/weights/<file>, the other layout looked in
    torch.save({"w": torch.ones(2)}, tmp_path / "flat" / "weights" / "esm3_sm_open_v1.pth")
    assert resolve_official_file(tmp_path / "flat", "esm3") == tmp_path / "flat" / "weights" / "esm3_sm_open_v1.pth"


def test_wrapper_prefixes_are_stripped_only_when_every_key_carries_them() -> None:
    w = torch.ones(1)
    assert list(strip_wrapper_prefixes({"module._orig_mod.a": w, "module._orig_mod.b": w})) == ["a", "b"]
    mixed = {"module.a": w, "b": w}  # left for the strict key check to report
    assert list(strip_wrapper_prefixes(mixed)) == ["module.a", "b"]


def test_read_config_names_the_file_for_fields_of_the_wrong_json_type(tmp_path) -> None:
    config = {"d_model": 64, "n_heads": 4, "n_layers": 2, "v_heads": 4}
    for bad in ({"config": None}, {"config": 3}, {"config": [64]}, {"model_type": ["esm3"]}, {"model_type": None}):
        meta = {"format_version": 1, "model_type": "esm3", "config": config, **bad}
        (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
        with pytest.raises(WeightsError, match=f"{CONFIG_FILE}: ") as info:
            read_config(tmp_path)
        assert str(tmp_path) in str(info.value), bad


class _Payload:
    """Unpickling this would create a file: the official loader must refuse it without running it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_official_loader_never_runs_a_pickled_payload(tmp_path) -> None:
    marker = tmp_path / "payload_ran"
    torch.save({"encoder.sequence_embed.weight": torch.ones(2), "x": _Payload(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="evil.pth: not a readable PyTorch state_dict"):
        load_official_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_loaded_weights_are_aligned_like_any_tensor_so_outputs_match_the_official_load(tmp_path) -> None:
    # safetensors hands out CPU tensors at the file's byte offsets (8-byte aligned); matmul kernels take another
    # path for such memory and round differently (~1e-7), so a converted model would not reproduce the official
    # file's outputs bit for bit, and near-tie structure codes could flip. The allocator's alignment is 64 bytes.
    from safetensors.torch import save_file  # noqa: PLC0415

    from openesm3.checkpoints.format import load_pretrained, save_pretrained  # noqa: PLC0415
    from openesm3.config import STRUCTURE_ENCODER_TINY  # noqa: PLC0415
    from openesm3.models.structure_encoder import StructureEncoder  # noqa: PLC0415

    config = STRUCTURE_ENCODER_TINY.replace(d_model=128)  # its header puts every tensor 24 or 56 bytes past 64
    torch.manual_seed(0)
    model = StructureEncoder(config).eval()
    save_pretrained(model, config, tmp_path, model_type="structure_encoder")
    # Files written by the safetensors library itself (by other tools, or by OpenESM3 before its aligned writer).
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    for dtype in (None, torch.float32):
        loaded, _ = load_pretrained(tmp_path, dtype=dtype)
        assert all(t.data_ptr() % 64 == 0 for t in loaded.state_dict().values()), dtype
        g = torch.Generator().manual_seed(5)
        ca = torch.cumsum(torch.randn(1, 20, 3, generator=g) * 2, 1)
        coords = torch.stack([ca + torch.randn(1, 20, 3, generator=g), ca, ca - 1.5], 2)
        with torch.no_grad():
            assert torch.equal(loaded(coords).z, model(coords).z)


def test_official_loader_reads_the_legacy_non_zip_format_safely(tmp_path) -> None:
    # torch.save(..., _use_new_zipfile_serialization=False) files cannot be memory-mapped; they are still state_dicts
    torch.save({"w": torch.arange(3.0)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert torch.equal(load_official_state_dict(tmp_path / "legacy.pth")["w"], torch.arange(3.0))
    marker = tmp_path / "payload_ran"
    torch.save({"x": _Payload(str(marker))}, tmp_path / "evil.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="evil.pth: not a readable PyTorch state_dict"):
        load_official_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_saved_weights_sit_at_64_byte_offsets_and_read_back_exactly_in_any_reader(tmp_path) -> None:
    # The aligned writer lets the tensors load memory-mapped, without the copy read_state_dict makes of misaligned
    # ones; the file stays a standard safetensors file (the library reads it back bit for bit, every dtype).
    from safetensors.torch import load_file  # noqa: PLC0415

    from openesm3.checkpoints.format import write_aligned_safetensors  # noqa: PLC0415

    g = torch.Generator().manual_seed(0)
    state = {
        "odd": torch.randn(19, generator=g),  # 76 bytes: goes last
        "w": torch.randn(64, 48, generator=g),
        "bf": torch.randn(32, 64, generator=g).to(torch.bfloat16),
        "half": torch.randn(7, 3, generator=g).half(),
        "idx": torch.arange(16, dtype=torch.int64),
        "flags": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
        "i8": torch.arange(-3, 61, dtype=torch.int8),
    }
    path = tmp_path / "x.safetensors"
    write_aligned_safetensors(state, str(path), {"format_version": "1"})
    back = load_file(path)
    assert set(back) == set(state)
    for key, tensor in state.items():
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key
    for key in ("w", "bf", "idx", "i8"):  # sizes that are multiples of 64 bytes: mapped at 64-byte offsets
        assert back[key].data_ptr() % 64 == 0, key
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    assert (8 + header_length) % 64 == 0
    with pytest.raises(WeightsError, match="c: dtype torch.complex64"):
        write_aligned_safetensors({"c": torch.zeros(2, dtype=torch.complex64)}, str(path), {})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ([torch.ones(1)], "expected a state_dict (a dict of name -> tensor), got list"),
        (
            {1: torch.ones(1)},
            "expected a state_dict (a dict of name -> tensor), but it has a key that is no name: 1 (int)",
        ),
    ],
)
def test_official_loader_names_what_is_no_state_dict(tmp_path, content, problem) -> None:
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(WeightsError) as info:
        load_official_state_dict(path)
    assert str(info.value) == f"{path}: {problem}"


def test_official_loader_names_a_missing_or_unreadable_file(tmp_path) -> None:
    with pytest.raises(WeightsError) as info:
        load_official_state_dict(tmp_path / "missing.pth")
    assert str(info.value) == f"{tmp_path / 'missing.pth'}: no such file"
    with pytest.raises(WeightsError) as info:
        load_official_state_dict(tmp_path)  # a directory: open() fails with an OSError that is no FileNotFoundError
    assert str(info.value).startswith(f"{tmp_path}: cannot read (") and str(info.value) != f"{tmp_path}: cannot read"


@pytest.mark.parametrize(
    "head",
    [
        (5).to_bytes(8, "little") + b"[" + bytes(20),  # a header length within the file, but no JSON object after it
        (1 << 40).to_bytes(8, "little") + b"{" + bytes(20),  # a JSON brace, but a header longer than the file
    ],
)
def test_official_loader_calls_a_file_safetensors_only_by_its_whole_header(tmp_path, head) -> None:
    path = tmp_path / "odd.pth"
    path.write_bytes(head)
    with pytest.raises(WeightsError, match="neither a zip archive"):
        load_official_state_dict(path)


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "Weights only load failed. Advice.\n\tWeightsUnpickler error: Unsupported global: GLOBAL a.B was not "
            "an allowed global by default. Please use `add_safe_globals([a.B])` to allowlist it.\n\nDocs.",
            "the weights-only loader refused it: Unsupported global: GLOBAL a.B was not an allowed global by default",
        ),
        (
            "Advice.\nWeightsUnpickler error: Unsupported operand 7\n\nDocs.",
            "the weights-only loader refused it: Unsupported operand 7",
        ),
        ("first line\nWeightsUnpickler error:  \n", "first line"),  # nothing said after the marker
        ("first line\nsecond line", "first line"),
        ("", "RuntimeError"),
    ],
)
def test_official_loader_shows_one_line_of_a_load_failure(tmp_path, monkeypatch, message, shown) -> None:
    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(1)}, path)

    def failing_load(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "load", failing_load)
    with pytest.raises(WeightsError) as info:
        load_official_state_dict(path)
    assert str(info.value) == f"{path}: not a readable PyTorch state_dict ({shown})"


def test_official_loader_memory_maps_a_zip_file_and_notes_it_in_the_run(tmp_path, monkeypatch) -> None:
    from openesm3.utils import provenance

    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(1)}, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with provenance.running(provenance.Run("test")) as run:
        load_official_state_dict(path, role="esm3")
    assert calls[0]["mmap"] is True and calls[0]["weights_only"] is True
    assert run.weights[path.resolve()].role == "esm3"


_REQUIRED = {"esm3": {"d_model": 64, "n_heads": 4, "n_layers": 2, "v_heads": 4}}


@pytest.mark.parametrize(
    ("model_type", "key", "text", "shown"),
    [
        ("structure_encoder", "codebook_epsilon", "NaN", "nan"),
        ("structure_encoder", "dead_code_threshold", "Infinity", "inf"),
        ("structure_encoder", "commitment_weight", "-Infinity", "-inf"),
        ("structure_encoder", "codebook_epsilon", "-1e-05", "-1e-05"),
        ("structure_encoder", "commitment_weight", '"0.25"', "'0.25'"),
        ("structure_encoder", "codebook_decay", "NaN", "nan"),
        ("structure_decoder", "d_model", "true", "True"),
        ("structure_decoder", "sequence_conditioning", '"false"', "'false'"),
        ("structure_encoder", "commitment_weight", "true", "True"),  # a bool is no weight
        ("structure_encoder", "codebook_decay", "1.0", "1.0"),  # a decay of 1 never moves the codebook
        # sizes: NaN or 2.5 reached torch ("empty(): argument 'size' ...", a negative dimension) as an internal error
        # naming neither file nor field; true built a model of another shape, refused later as mis-shaped weights
        ("structure_encoder", "max_relative_position", "NaN", "nan"),
        ("structure_encoder", "max_relative_position", "2.5", "2.5"),
        ("structure_encoder", "max_relative_position", "-3", "-3"),
        ("structure_decoder", "position_features", "true", "True"),
        ("structure_decoder", "position_features", "16.0", "16.0"),
        ("structure_decoder", "position_features", "NaN", "nan"),
        ("esm3", "n_taxonomy_terms", "NaN", "nan"),
        ("esm3", "taxonomy_embed_dim", "-1", "-1"),
        ("function_decoder", "bits_per_token", "0", "0"),
        # an <lsh:k> token holds 8 bits (k < 256): 64 shifted past int64 in unpack_lsh_bits, 9..63 unpacked zeros
        ("function_decoder", "bits_per_token", "64", "64"),
        ("function_decoder", "bits_per_token", "9", "9"),
    ],
)
def test_read_config_refuses_non_finite_and_ill_typed_numbers_naming_file_and_key(
    tmp_path, model_type: str, key: str, text: str, shown: str
) -> None:
    # Python's json reads NaN and Infinity: a config.json holding them (or a negative epsilon, a string) built a
    # config whose codebook training divides by NaN; the same reader serves `convert --config`.
    meta = {"format_version": 1, "model_type": model_type, "config": {**_REQUIRED.get(model_type, {}), key: "X"}}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta).replace('"X"', text))
    with pytest.raises(WeightsError) as info:
        read_config(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / CONFIG_FILE}: invalid ") and f".{key} must be " in message, message
    assert message.endswith(f", got {shown}"), message


def _int_field_cases() -> list[tuple[str, str, str, str]]:
    """(model_type, field, JSON text, shown value) for every int field of every registered model config."""
    cases = []
    for model_type, entry in sorted(MODEL_TYPES.items()):
        for field in dataclasses.fields(entry.config_class()):
            if field.type == "int":
                for text, shown in (("2.5", "2.5"), ('"8"', "'8'"), ("true", "True"), ("-1", "-1")):
                    cases.append((model_type, field.name, text, shown))
    return cases


@pytest.mark.parametrize(("model_type", "key", "text", "shown"), _int_field_cases())
def test_read_config_refuses_every_int_field_of_the_wrong_type_or_range(
    tmp_path, model_type: str, key: str, text: str, shown: str
) -> None:
    # A float, a string or JSON true in config.json got through for taxonomy_embed_dim, n_taxonomy_terms,
    # position_features, bits_per_token, max_relative_position and the encoder's n_heads (and failed later, or
    # silently made a different network); a negative taxonomy_embed_dim or bits_per_token too.
    config = config_to_dict(TINY_CONFIGS[model_type])
    meta = {"format_version": 1, "model_type": model_type, "config": {**config, key: "PLACEHOLDER"}}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta).replace('"PLACEHOLDER"', text))
    with pytest.raises(WeightsError) as info:
        read_config(tmp_path)
    cls = MODEL_TYPES[model_type].config_class().__name__
    message = str(info.value)
    assert message.startswith(f"{tmp_path / CONFIG_FILE}: invalid {cls}: {cls}.{key} must be "), message
    assert message.endswith(f", got {shown}"), message


def test_zero_is_refused_for_a_size_and_kept_where_it_turns_a_feature_off() -> None:
    for cfg, key in ((ESM3_TINY, "taxonomy_embed_dim"), (STRUCTURE_ENCODER_TINY, "n_heads")):
        with pytest.raises(ValueError, match=rf"^{type(cfg).__name__}\.{key} must be a positive int, got 0$"):
            dataclasses.replace(cfg, **{key: 0})
    off = ((ESM3_TINY, "n_taxonomy_terms"), (STRUCTURE_ENCODER_TINY, "max_relative_position"))
    for cfg, key in (*off, (STRUCTURE_DECODER_TINY, "position_features")):
        assert getattr(dataclasses.replace(cfg, **{key: 0}), key) == 0
    assert dataclasses.replace(STRUCTURE_ENCODER_TINY, max_relative_position=0).n_relative_positions == 2


def test_every_int_field_case_is_generated() -> None:
    fields = {(model_type, key) for model_type, key, _, _ in _int_field_cases()}
    assert {("esm3", "taxonomy_embed_dim"), ("function_decoder", "bits_per_token")} <= fields
    assert len(fields) >= 24


def test_read_config_takes_zero_for_a_codebook_number(tmp_path) -> None:
    # 0 is a number a config may hold: no commitment loss, no smoothing, no decay, no dead-code restart.
    fields = {"codebook_decay": 0, "codebook_epsilon": 0.0, "commitment_weight": 0.0, "dead_code_threshold": 0}
    meta = {"format_version": 1, "model_type": "structure_encoder", "config": fields}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    model_type, config = read_config(tmp_path)
    assert model_type == "structure_encoder" and {k: getattr(config, k) for k in fields} == fields
