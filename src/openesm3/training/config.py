"""Typed training configurations and their loading from files and command-line overrides.

Every setting is a field of a frozen, keyword-only dataclass. A run's configuration is read from a JSON or
TOML file (any subset of keys; the rest keep their defaults) and then changed by dotted overrides such as
``optim.lr=1e-4 data.crop_length=256``. Unknown keys, wrong types and invalid values raise
:class:`ConfigError` naming the key. The machinery (:func:`load_config`, :func:`apply_overrides`,
:func:`config_from_dict`, :func:`config_to_dict`) works for any tree of such dataclasses, so a training method
extends :class:`TrainConfig` by subclassing it (adding e.g. a ``model`` section) and keeps the same syntax.

Defaults follow the paper's training recipe (PAPER_NOTES §3.7, A.2.3: AdamW, beta = (0.9, 0.95), weight decay
0.01, gradient clipping 1.0, warmup then cosine decay to 10 % of the peak; §2.10, A.1.7.3.1: crops of 512
residues, peak LR 4e-4 for the structure tokenizer).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from openesm3.errors import InputError, OpenESM3Error
from openesm3.utils.checks import check_seed
from openesm3.utils.text import read_text_file

T = TypeVar("T")

Precision = Literal["fp32", "bf16"]
DeviceName = Literal["auto", "cpu", "cuda"]
Strategy = Literal["auto", "none", "ddp", "fsdp"]
SplitMethod = Literal["column", "cluster", "identity", "none"]
Weighting = Literal["none", "inverse_cluster_size"]
ComplexCrop = Literal["spatial", "contiguous"]


class ConfigError(OpenESM3Error, ValueError):
    """A configuration file or override that cannot be applied; the message names the key."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def require_seed(seed: object, name: str = "seed") -> None:
    """ConfigError unless ``seed`` is a seed the API takes (:func:`openesm3.utils.checks.check_seed`): a negative one
    would otherwise fail deep in NumPy's generator (``expected non-negative integer``) once the run has started."""
    try:
        check_seed(seed, name)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW with linear warmup and cosine decay (paper A.2.3, PAPER_NOTES §3.7)."""

    lr: float = 4e-4  # peak learning rate (A.1.7.3.1: 4e-4 for tokenizer stage 1)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.01  # applied to parameters with >= 2 dimensions only (not to biases/norm scales)
    grad_clip: float = 1.0  # max global gradient L2 norm; 0 disables clipping
    warmup_steps: int = 5000  # A.2.3.1: 5K-20K steps of linear warmup
    min_lr_ratio: float = 0.1  # the cosine decays to this fraction of the peak at the last step

    def __post_init__(self) -> None:
        _require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _require(all(0 <= b < 1 for b in self.betas), f"betas must lie in [0, 1), got {self.betas}")
        _require(self.eps > 0, f"eps must be > 0, got {self.eps}")
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        _require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _require(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """How records are divided into train and validation sets (see :mod:`openesm3.training.splits`).

    ``column``: the ``split`` value recorded at ingestion (e.g. the manifest's ``suggested_split``): ``valid``,
    ``calibration`` (held out of training for calibration), and ``train`` or no label; records with any other
    label (``test``...) are neither trained nor validated on;
    ``cluster``: whole clusters (the ``cluster`` recorded at ingestion) go to validation with probability
    ``valid_fraction``, decided by a hash of the cluster name; ``identity``: as ``cluster``, with clusters from
    greedy sequence-identity clustering at ``identity_threshold``; ``none``: no validation set.

    ``identical_sequences``: records without a cluster label share a cluster when their sequences are identical
    (:attr:`ProteinDataset.clusters`); false: each is its own cluster, as before this setting existed (the split and
    the sampling weights a run started before it drew on such records: give false to resume it as it started).
    """

    method: SplitMethod = "cluster"
    valid_fraction: float = 0.05
    identity_threshold: float = 0.4
    seed: int = 0
    # keep this fraction of the training clusters (whole clusters, chosen by a hash of the cluster name and seed, so
    # a smaller fraction keeps a subset of a larger one); the validation set is unchanged. For data-scaling studies.
    train_fraction: float = 1.0
    # hold this fraction of the clusters out of training and validation (whole clusters, by another hash of the
    # cluster name and seed; validation keeps its clusters): chains the trained decoder has not seen, on which
    # `openesm3 calibrate-tokenizer --config ...` refits its confidence heads. With method=column, records
    # labelled calibration/calib/cal at ingestion are held out as well.
    calibration_fraction: float = 0.0
    identical_sequences: bool = True

    def __post_init__(self) -> None:
        require_seed(self.seed)
        _require(0 <= self.valid_fraction < 1, f"valid_fraction must lie in [0, 1), got {self.valid_fraction}")
        _require(
            0 <= self.calibration_fraction < 1,
            f"calibration_fraction must lie in [0, 1), got {self.calibration_fraction}",
        )
        _require(0 < self.train_fraction <= 1, f"train_fraction must lie in (0, 1], got {self.train_fraction}")
        _require(
            0 < self.identity_threshold <= 1, f"identity_threshold must lie in (0, 1], got {self.identity_threshold}"
        )


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Protein data: cached shards, crops, length buckets and batch sizes.

    Batch sizes are *global* (summed over processes and gradient-accumulation micro-batches), so the same
    configuration trains the same way on any number of processes.
    """

    path: str = ""  # directory of shards written by openesm3.training.ingest
    crop_length: int = 512  # A.1.7.3.1 (tokenizer stage 1) crops to 512 residues
    batch_size: int = 64  # samples per optimizer step (used when max_tokens == 0)
    max_tokens: int = 0  # > 0: padded residues per optimizer step instead of a fixed batch size
    bucket_boundaries: tuple[int, ...] = (64, 128, 256, 384, 512)
    complex_crop: ComplexCrop = "spatial"  # how complexes longer than crop_length are cropped
    interface_distance: float = 8.0  # Angstrom, C-alpha to C-alpha across chains (paper's contact definition)
    weighting: Weighting = "inverse_cluster_size"  # per-record sampling weight
    epoch_size: int = 0  # samples drawn per epoch; 0 = number of training records
    num_workers: int = 0  # background data-loading processes
    valid_batch_size: int = 0  # 0 = batch_size
    valid_max_batches: int = 0  # validation batches per evaluation; 0 = the whole validation set
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        _require(self.crop_length > 0, f"crop_length must be > 0, got {self.crop_length}")
        _require(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        _require(self.max_tokens >= 0, f"max_tokens must be >= 0, got {self.max_tokens}")
        bounds = self.bucket_boundaries
        _require(
            all(b > 0 for b in bounds) and all(a < b for a, b in zip(bounds, bounds[1:])),
            f"bucket_boundaries must be positive and strictly increasing, got {bounds}",
        )
        _require(self.interface_distance > 0, f"interface_distance must be > 0, got {self.interface_distance}")
        for name in ("epoch_size", "num_workers", "valid_batch_size", "valid_max_batches"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything the generic loop (:func:`openesm3.training.loop.train`) needs, plus the data section.

    A training method subclasses this to add its own sections (model, losses); the loop ignores them but
    stores the whole configuration in every checkpoint.
    """

    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    max_steps: int = 1000  # optimizer steps; the cosine schedule ends here
    grad_accum: int = 1  # micro-batches per optimizer step (per process)
    precision: Precision = "bf16"  # bf16: autocast for the model, geometry and losses stay fp32
    device: DeviceName = "auto"
    distributed: Strategy = "auto"  # auto: DDP when launched by torchrun with > 1 process, else none
    log_every: int = 10
    val_every: int = 1000  # 0 disables periodic validation
    ckpt_every: int = 1000  # 0 saves only at the end
    keep_last: int = 3  # checkpoints kept on disk (the most recent ones)
    seed: int = 0
    out_dir: str = "runs/train"
    resume: bool = True  # continue from the latest complete checkpoint in out_dir, if any
    tensorboard: bool = True  # also write TensorBoard events (when tensorboard is installed)
    progress: bool = True

    def __post_init__(self) -> None:
        require_seed(self.seed)
        _require(self.max_steps > 0, f"max_steps must be > 0, got {self.max_steps}")
        _require(self.grad_accum > 0, f"grad_accum must be > 0, got {self.grad_accum}")
        _require(self.log_every > 0, f"log_every must be > 0, got {self.log_every}")
        _require(self.keep_last > 0, f"keep_last must be > 0, got {self.keep_last}")
        for name in ("val_every", "ckpt_every"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0 (0 disables), got {getattr(self, name)}")
        # a resumed run must start on a logging boundary for its log to equal the uninterrupted run's
        _require(
            self.ckpt_every % self.log_every == 0,
            f"ckpt_every ({self.ckpt_every}) must be a multiple of log_every ({self.log_every})",
        )


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Turning structure files into a shard dataset (:func:`openesm3.training.ingest.ingest_structures`)."""

    unit: Literal["chain", "complex"] = "chain"  # one record per chain, or one per file with all its chains
    unique_chains: bool = True  # chain mode: identical sequences within a file (homo-oligomers) kept once
    min_length: int = 10  # records with fewer residues with a C-alpha are left out
    max_length: int = 0  # records longer than this are left out; 0 = no limit (crops handle long ones)
    model: int = 1  # model number in multi-model files (NMR)
    weight: float = 1.0  # sampling weight of every record ingested (e.g. > 1 to upsample experimental data)
    shard_size: int = 1000  # records per shard file
    workers: int = 1  # parallel reading processes
    manifest: str = ""  # optional TSV with a row per file giving cluster and split labels
    manifest_file_column: str = "file"  # path of the file, relative to the manifest's directory
    cluster_column: str = "cluster40"
    split_column: str = "suggested_split"  # "" to ignore

    def __post_init__(self) -> None:
        _require(self.min_length >= 1, f"min_length must be >= 1, got {self.min_length}")
        _require(self.max_length >= 0, f"max_length must be >= 0 (0 = no limit), got {self.max_length}")
        _require(self.model >= 1, f"model must be >= 1, got {self.model}")
        _require(self.shard_size > 0, f"shard_size must be > 0, got {self.shard_size}")
        _require(self.workers > 0, f"workers must be > 0, got {self.workers}")
        _require(self.weight >= 0, f"weight must be >= 0, got {self.weight}")


# --------------------------------------------------------------------------------------------------------
# Generic loading: dict <-> dataclass trees, files, dotted overrides.
# --------------------------------------------------------------------------------------------------------


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-serialisable nested dict of a configuration (tuples become lists)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def _unknown_key(key: str, valid: Sequence[str]) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys here: {', '.join(sorted(valid))}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(value: Any, tp: Any, key: str, *, from_text: bool) -> Any:
    """Convert ``value`` (a JSON/TOML value, or a command-line string when ``from_text``) to type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (from_text and str(value).lower() in {"none", "null"})):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, from_text=from_text)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        for option in args:
            if value == option or (from_text and str(option) == value):
                return option
        raise bad
    if origin is tuple:
        if from_text and isinstance(value, str):
            text = value.strip()
            if text.startswith(("[", "(")):
                try:
                    value = json.loads("[" + text[1:-1] + "]")
                except json.JSONDecodeError:
                    raise bad from None
                from_text = False
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, from_text=from_text) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"config key {key!r}: expected {len(args)} values, got {len(value)} ({value!r})")
        return tuple(_coerce(v, a, key, from_text=from_text) for v, a in zip(value, args))
    if dataclasses.is_dataclass(tp):
        if from_text:
            raise ConfigError(f"config key {key!r} is a section; set its keys instead, e.g. {key}.<name>=...")
        if not isinstance(value, Mapping):
            raise bad
        return config_from_dict(typing.cast(type, tp), value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in _TRUE | _FALSE:
            return str(value).lower() in _TRUE
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if from_text:
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool) or not (isinstance(value, (int, float)) or from_text):
            raise bad
        try:
            number = float(value)
        except ValueError:
            raise bad from None
        except OverflowError:  # an int beyond the float range (JSON / TOML ints are unbounded)
            number = math.inf
        if not math.isfinite(number):  # JSON NaN / Infinity, TOML nan / inf, "inf" on the command line
            raise ConfigError(f"config key {key!r}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise ConfigError(f"config key {key!r}: unsupported field type {tp!r}")  # pragma: no cover - a coding error


def _construct(cls: type[T], kwargs: dict[str, Any], prefix: str) -> T:
    try:
        return cls(**kwargs)
    except (ConfigError, ValueError, TypeError) as exc:
        where = f"config section {prefix!r}" if prefix else "config"
        raise ConfigError(f"{where}: {exc}") from None


def _default_value(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _section(base: Any, value: Any, tp: Any, key: str) -> Any:
    """The value of a field from a file: a table over a section whose default is an instance (e.g. the tokenizer's
    own ``data`` or ``optim``) updates that instance, so its absent keys keep the section's default, as with the
    dotted overrides, not those of the section's class; anything else is coerced to ``tp``."""
    if isinstance(value, Mapping) and dataclasses.is_dataclass(base) and not isinstance(base, type):
        fields = _fields(type(base))
        kwargs: dict[str, Any] = {}
        for name, sub in value.items():
            sub_key = f"{key}.{name}"
            if name not in fields:
                raise _unknown_key(sub_key, list(fields))
            kwargs[name] = _section(getattr(base, name), sub, fields[name][1], sub_key)
        try:
            return dataclasses.replace(base, **kwargs)
        except (ConfigError, ValueError, TypeError) as exc:
            raise ConfigError(f"config section {key!r}: {exc}") from None
    return _coerce(value, tp, key, from_text=False)


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build ``cls`` from a nested mapping; absent keys keep their defaults, unknown keys are errors. A table for a
    section keeps the defaults of that section as ``cls`` gives them (e.g. the tokenizer's ``data.crop_length``)."""
    fields = _fields(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in fields:
            raise _unknown_key(key, list(fields))
        kwargs[name] = _section(_default_value(fields[name][0]), value, fields[name][1], key)
    missing = [
        n
        for n, (f, _) in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing config key(s): {', '.join(f'{prefix}.{m}' if prefix else m for m in missing)}")
    return _construct(cls, kwargs, prefix)


def _parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. optim.lr=1e-4)")
    return key, value.strip()


def _values(cfg: Any) -> dict[str, Any]:
    """Field values of a config tree as nested dicts (values keep their types)."""
    return {
        f.name: _values(getattr(cfg, f.name))
        if dataclasses.is_dataclass(getattr(cfg, f.name))
        else getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.init
    }


def _set(cls: type, values: dict[str, Any], path: list[str], value: str, full_key: str, prefix: str) -> None:
    fields = _fields(cls)
    name = path[0]
    if name not in fields:
        raise _unknown_key(full_key if len(path) == 1 else f"{prefix}{name}", list(fields))
    tp = fields[name][1]
    if len(path) == 1:
        values[name] = _coerce(value, tp, full_key, from_text=True)
    elif not dataclasses.is_dataclass(tp):
        raise ConfigError(f"config key {prefix + name!r} is a value, not a section; cannot set {full_key!r}")
    else:
        _set(typing.cast(type, tp), values[name], path[1:], value, full_key, f"{prefix}{name}.")


def _build(cls: type[T], values: dict[str, Any], prefix: str) -> T:
    kwargs = {}
    for name, (_, tp) in _fields(cls).items():
        value = values[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = _build(typing.cast(type, tp), value, f"{prefix}{name}." if prefix else f"{name}.")
        kwargs[name] = value
    return _construct(cls, kwargs, prefix.rstrip("."))


def apply_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Return ``cfg`` with ``key.sub=value`` overrides applied (values parsed by the field's type).

    All overrides are applied before the configuration is validated, so their order does not matter. Tuples
    are written ``a,b,c`` or ``[a, b, c]``; optional fields accept ``none``; booleans accept
    true/false/yes/no/on/off/1/0.
    """
    if not overrides:
        return cfg
    values = _values(cfg)
    for text in overrides:
        key, value = _parse_override(text)
        _set(type(cfg), values, key.split("."), value, key, "")
    return _build(type(cfg), values, "")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or TOML (``.toml``) configuration file into a dict."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigError(f"{path}: config files must end in .json or .toml")
    text = read_text_file(path, role="config file", error=ConfigError)
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise ConfigError(f"{path}: TOML configs need Python >= 3.11; use a .json file") from None
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/object of config keys")
    return data


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``KEY=VALUE`` overrides for a command that trains (see :func:`config_from_args`)."""
    parser.add_argument("--config", metavar="FILE", help="configuration file (.json or .toml); defaults otherwise")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="settings applied after the file, e.g. optim.lr=1e-4"
    )


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The configuration described by the arguments that :func:`add_config_arguments` added."""
    return load_config(cls, args.config, args.overrides)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of ``cls``, then the file at ``path`` (if any), then the dotted ``overrides``."""
    try:
        cfg = config_from_dict(cls, {} if path is None else read_config_file(path))
    except ConfigError as exc:
        message = str(exc)
        if path is None or message.startswith((f"{path}: ", "config file ")):
            raise
        raise ConfigError(f"{path}: {message}") from None  # which of the file and the overrides holds the key
    try:
        return apply_overrides(cfg, overrides)
    except ConfigError as exc:
        raise ConfigError(f"command-line override: {exc}") from None
