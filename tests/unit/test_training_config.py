"""Training configs: paper defaults, JSON/TOML files, dotted overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pytest

from openesm3.training.config import (
    ConfigError,
    DataConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)


def test_defaults_follow_the_paper() -> None:
    cfg = TrainConfig()
    # PAPER_NOTES §3.7 (A.2.3): AdamW (0.9, 0.95), wd 0.01, clip 1.0, cosine to 10 %; §2.10: crops of 512
    assert cfg.optim.betas == (0.9, 0.95)
    assert cfg.optim.weight_decay == 0.01
    assert cfg.optim.grad_clip == 1.0
    assert cfg.optim.min_lr_ratio == 0.1
    assert cfg.data.crop_length == 512
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_steps = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        OptimConfig(1e-3)  # type: ignore[misc]  # keyword-only


def test_json_file_then_overrides(tmp_path) -> None:
    path = tmp_path / "run.json"
    path.write_text(
        json.dumps(
            {"max_steps": 50, "optim": {"lr": 1e-3, "betas": [0.8, 0.9]}, "data": {"split": {"method": "identity"}}}
        )
    )
    cfg = load_config(
        TrainConfig,
        path,
        [
            "optim.lr=1e-4",
            "data.crop_length=256",
            "data.bucket_boundaries=32,64,128",
            "tensorboard=no",
            "precision=fp32",
            "data.split.valid_fraction=0.1",
        ],
    )
    assert cfg.max_steps == 50 and cfg.optim.lr == 1e-4 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.data.crop_length == 256 and cfg.data.bucket_boundaries == (32, 64, 128)
    assert cfg.tensorboard is False and cfg.precision == "fp32"
    assert cfg.data.split.method == "identity" and cfg.data.split.valid_fraction == 0.1
    assert cfg.data.batch_size == DataConfig().batch_size  # untouched keys keep their defaults
    assert apply_overrides(cfg, ["optim.betas=[0.9, 0.99]"]).optim.betas == (0.9, 0.99)


def test_toml_file(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("max_steps = 7\n[optim]\nlr = 0.002\nwarmup_steps = 3\n[data]\ncrop_length = 128\n")
    cfg = load_config(TrainConfig, path)
    assert (cfg.max_steps, cfg.optim.lr, cfg.optim.warmup_steps, cfg.data.crop_length) == (7, 0.002, 3, 128)


def test_round_trip_through_dict() -> None:
    cfg = apply_overrides(TrainConfig(), ["optim.lr=3e-4", "data.max_tokens=4096", "out_dir=/x"])
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert config_from_dict(TrainConfig, data) == cfg


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["optim.lrr=1"], "'optim.lrr' (did you mean 'lr'?)"),
        (["nonsense=1"], "'nonsense'"),
        (["optim.lr=fast"], "'optim.lr': expected float, got 'fast'"),
        (["max_steps=1.5"], "'max_steps': expected int"),
        (["precision=fp16"], "'precision': expected one of 'fp32', 'bf16'"),
        (["optim.betas=0.9"], "'optim.betas': expected 2 values"),
        (["tensorboard=maybe"], "'tensorboard': expected bool"),
        (["optim=3"], "'optim' is a section"),
        (["max_steps.x=3"], "'max_steps' is a value, not a section"),
        (["optim.lr"], "not of the form key=value"),
        (["optim.lr=-1"], "config section 'optim': lr must be > 0"),
        (["data.bucket_boundaries=64,32"], "strictly increasing"),
        # negative seeds failed only once the run had started, inside NumPy's generator
        (["seed=-1"], "config: seed must be an int in [0, 2**64), got -1"),
        (["seed=18446744073709551616"], "seed must be an int in [0, 2**64)"),
        (["data.split.seed=-3"], "config section 'data.split': seed must be an int in [0, 2**64), got -3"),
    ],
)
def test_override_errors_name_the_key(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, None, overrides)
    assert needle in str(info.value)


def test_file_errors_name_the_key(tmp_path) -> None:
    bad_key = tmp_path / "a.json"
    bad_key.write_text(json.dumps({"optim": {"learning_rate": 1}}))
    with pytest.raises(ConfigError, match="^.*a.json: unknown config key 'optim.learning_rate'"):
        load_config(TrainConfig, bad_key)  # the file is named: the overrides are named 'command-line override'
    bad_value = tmp_path / "g.toml"
    bad_value.write_text("max_steps = 0\n")
    with pytest.raises(ConfigError, match="^.*g.toml: config: max_steps must be > 0"):
        load_config(TrainConfig, bad_value)
    bad_type = tmp_path / "b.json"
    bad_type.write_text(json.dumps({"data": {"crop_length": "long"}}))
    with pytest.raises(ConfigError, match="'data.crop_length': expected int, got 'long'"):
        load_config(TrainConfig, bad_type)
    bad_bool = tmp_path / "c.json"
    bad_bool.write_text(json.dumps({"resume": 1}))  # JSON must use true/false, not 1
    with pytest.raises(ConfigError, match="'resume': expected bool"):
        load_config(TrainConfig, bad_bool)
    broken = tmp_path / "d.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="d.json: invalid JSON"):
        load_config(TrainConfig, broken)
    with pytest.raises(ConfigError, match="must end in .json or .toml"):
        load_config(TrainConfig, tmp_path / "e.yaml")
    with pytest.raises(ConfigError, match="^config file .*missing.json: no such file"):
        load_config(TrainConfig, tmp_path / "missing.json")
    binary = tmp_path / "f.toml"
    binary.write_bytes(b"\x00\xff\xfe binary")  # e.g. a weight file given as --config
    with pytest.raises(ConfigError, match="^config file .*f.toml: not a text file"):
        load_config(TrainConfig, binary)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('{"optim": {"eps": Infinity}}', "inf"),  # Adam's update m / (sqrt(v) + inf): a run that never learns
        ('{"optim": {"lr": Infinity}}', "inf"),
        ('{"optim": {"betas": [0.9, NaN]}}', "nan"),
        ('{"data": {"interface_distance": -Infinity}}', "-inf"),
        ('{"optim": {"grad_clip": 1' + "0" * 400 + "}}", "1" + "0" * 400),  # was an OverflowError traceback
    ],
)
def test_a_non_finite_number_in_a_config_file_is_refused(tmp_path, text: str, shown: str) -> None:
    # Python's json module reads NaN and Infinity; Infinity passed every "must be > 0" check and was trained with.
    path = tmp_path / "c.json"
    path.write_text(text)
    key = next(k for k in ("eps", "lr", "betas", "interface_distance", "grad_clip") if f'"{k}"' in text)
    section = "data" if key == "interface_distance" else "optim"
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, path)
    assert str(info.value) == f"{path}: config key '{section}.{key}': expected a finite number, got {shown}"


def test_a_bool_is_not_taken_for_a_float(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"optim": {"lr": true}}')
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, path)
    assert str(info.value) == f"{path}: config key 'optim.lr': expected float, got True"


def test_a_non_finite_number_is_refused_in_toml_and_on_the_command_line(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[optim]\nweight_decay = inf\n")
    with pytest.raises(
        ConfigError, match=r"c.toml: config key 'optim.weight_decay': expected a finite number, got inf"
    ):
        load_config(TrainConfig, path)
    with pytest.raises(ConfigError, match=r"'optim.lr': expected a finite number, got 'inf'"):
        load_config(TrainConfig, None, ["optim.lr=inf"])
    assert load_config(TrainConfig, None, ["optim.lr=1e-3"]).optim.lr == 1e-3


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    d_model: int = 64
    dropout: float | None = None


@dataclass(frozen=True, kw_only=True)
class MethodConfig(TrainConfig):
    model: ModelSection = field(default_factory=ModelSection)


def test_a_method_extends_the_config_by_subclassing() -> None:
    cfg = load_config(MethodConfig, None, ["model.d_model=128", "model.dropout=0.1", "optim.lr=1e-3"])
    assert cfg.model.d_model == 128 and cfg.model.dropout == 0.1 and cfg.optim.lr == 1e-3
    assert apply_overrides(cfg, ["model.dropout=none"]).model.dropout is None


def test_command_line_arguments(tmp_path) -> None:
    import argparse

    from openesm3.training.config import add_config_arguments, config_from_args

    path = tmp_path / "run.toml"
    path.write_text("max_steps = 20\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cfg = config_from_args(TrainConfig, parser.parse_args(["--config", str(path), "optim.lr=1e-4", "log_every=5"]))
    assert (cfg.max_steps, cfg.optim.lr, cfg.log_every) == (20, 1e-4, 5)
    with pytest.raises(ConfigError, match="command-line override: .*'optim.lrr'"):
        config_from_args(TrainConfig, parser.parse_args(["optim.lrr=1"]))


def test_checkpoints_fall_on_logging_boundaries() -> None:
    with pytest.raises(ConfigError, match=r"ckpt_every \(15\) must be a multiple of log_every \(10\)"):
        TrainConfig(ckpt_every=15, log_every=10)


def test_override_order_does_not_matter() -> None:
    a = load_config(TrainConfig, None, ["ckpt_every=5", "log_every=1"])  # invalid half way, valid in the end
    b = load_config(TrainConfig, None, ["log_every=1", "ckpt_every=5"])
    assert a == b and (a.ckpt_every, a.log_every) == (5, 1)


def test_a_file_section_keeps_the_sections_defaults_as_the_overrides_do(tmp_path) -> None:
    """A [data] or [decoder] table in a file rebuilt the section from its class's defaults, so a tokenizer config
    with only ``[data] path = ...`` trained on 512-residue crops with a cluster split instead of the tokenizer's
    128 and column split, and ``[decoder] n_heads = 8`` built a width-1280 decoder, unlike the same keys given as
    overrides (``data.path=...``, ``decoder.n_heads=8``)."""
    from openesm3.training.tokenizer.config import TokenizerTrainConfig

    path = tmp_path / "run.toml"
    path.write_text('[data]\npath = "ds"\n[data.split]\nseed = 3\n[decoder]\nn_heads = 8\n')
    path.write_text(path.read_text() + "[optim]\nweight_decay = 0.05\n")
    from_file = load_config(TokenizerTrainConfig, path)
    overrides = ["data.path=ds", "data.split.seed=3", "decoder.n_heads=8", "optim.weight_decay=0.05"]
    assert from_file == load_config(TokenizerTrainConfig, None, overrides)
    assert (from_file.data.crop_length, from_file.data.split.method, from_file.decoder.d_model) == (128, "column", 128)
    assert (from_file.optim.lr, from_file.optim.warmup_steps) == (1e-3, 100)
    path.write_text("[decoder]\nn_heads = 3\n")
    with pytest.raises(ConfigError, match="config section 'decoder': d_model=128 is not divisible by n_heads=3"):
        load_config(TokenizerTrainConfig, path)
