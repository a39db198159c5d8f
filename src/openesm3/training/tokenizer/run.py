"""Run a structure-tokenizer training stage end to end: data, model, the generic loop, export.

``train_tokenizer(config)`` is what ``openesm3 train-tokenizer`` calls. A run writes to ``config.out_dir``:
``checkpoints/`` (resumable), ``metrics.jsonl`` (+ TensorBoard), and at the end ``export/structure_encoder`` and
``export/structure_decoder`` in our weight format. An ``out_dir`` holding an ``export/`` but no checkpoint to resume
from is refused, so a new run never replaces weights whose checkpoints were deleted.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from openesm3 import constants as C
from openesm3.checkpoints.bundled import bundled_tokenizer_dir
from openesm3.checkpoints.format import WEIGHTS_FILE, load_state_dict_strict, read_head_records
from openesm3.errors import WeightsError
from openesm3.training import distributed as D
from openesm3.training.checkpointing import (
    MODEL_FILE,
    STATE_FILE,
    describe_damaged,
    latest_checkpoint,
    load_checkpoint,
    newer_damaged,
)
from openesm3.training.config import ConfigError, config_from_dict
from openesm3.training.data import INDEX_FILE, ProteinDataset, ProteinRecord
from openesm3.training.loop import CHECKPOINT_DIR, TrainResult, check_resume, seed_everything, train
from openesm3.training.pipeline import build_protein_data
from openesm3.training.tokenizer.config import TokenizerTrainConfig
from openesm3.training.tokenizer.export import (
    DECODER_DIR,
    ENCODER_DIR,
    export_networks,
    load_submodule_state,
    resolve_checkpoint,
)
from openesm3.training.tokenizer.model import StructureTokenizerModel
from openesm3.training.tokenizer.objective import TokenizerObjective
from openesm3.training.tokenizer.warm_start import (
    load_exported_encoder,
    load_exported_tokenizer,
    warm_start_decoder,
)
from openesm3.utils.progress import Progress
from openesm3.utils.provenance import note_input

EXPORT_DIR = "export"
BUNDLED_NAME = "bundled"  # init_from value naming the shipped tokenizer (stage 2 from weights)


@dataclass(frozen=True)
class TokenizerRunResult:
    result: TrainResult
    encoder_dir: Path | None  # exported weights (main process only)
    decoder_dir: Path | None


def needs_pair_outputs(config: TokenizerTrainConfig) -> bool:
    """Whether any loss of the run reads the decoder's pairwise head (distogram, binned directions, stage-2 PAE)."""
    w = config.losses
    return bool(w.distogram or w.binned_direction or (config.stage == 2 and w.pae))


def trained_heads(config: TokenizerTrainConfig, _depth: int = 0) -> tuple[str, ...]:
    """The confidence heads whose weights a run's export holds trained, which its decoder's config records.

    Stage 1 trains neither (no pLDDT or PAE loss: they keep their random initial weights). Stage 2 trains a head
    whose loss weight is above 0; a head with a weight of 0 is trained only when the decoder it started from had it
    trained (``decoder_init=checkpoint`` or ``weights``: :func:`_inherited_heads`).
    """
    if config.stage == 1:
        return ()
    inherited = _inherited_heads(config, _depth)
    weights = {"plddt": config.losses.plddt, "pae": config.losses.pae}
    return tuple(h for h in C.CONFIDENCE_HEADS if weights[h] > 0 or h in inherited)


# How many runs back _inherited_heads follows decoder_init=checkpoint (a chain 2A -> 2B -> 2B-long is 3 deep).
_MAX_INIT_CHAIN = 16


def _inherited_heads(config: TokenizerTrainConfig, depth: int = 0) -> tuple[str, ...]:
    """The trained confidence heads of the decoder a stage-2 run starts from: for ``decoder_init=weights`` what the
    weights' ``config.json`` records (all when nothing is, as loading reads it), for ``decoder_init=checkpoint``
    what the checkpoint's own run trained (:func:`trained_heads` of its config, and so on back along its
    ``init_from``: a stage-2A run with pLDDT and PAE weights 0 continued by one with weights 0 trains neither); none
    for ``random`` and ``stage1`` (stage 1 trains no confidence head). A source that can no longer be read counts as
    trained, as before the record."""
    if config.decoder_init == "weights":
        root = bundled_tokenizer_dir() if config.init_from == BUNDLED_NAME else Path(config.init_from)
        try:
            recorded = read_head_records(root / DECODER_DIR)["trained_heads"]
        except (WeightsError, OSError):
            return C.CONFIDENCE_HEADS
        return C.CONFIDENCE_HEADS if recorded is None else recorded
    if config.decoder_init != "checkpoint":
        return ()
    try:
        state = json.loads((resolve_checkpoint(config.init_from) / STATE_FILE).read_text(encoding="utf-8"))
        source = config_from_dict(TokenizerTrainConfig, state["config"])
    except (WeightsError, ConfigError, OSError, ValueError, KeyError, TypeError):
        return C.CONFIDENCE_HEADS
    if source.stage != 1 and depth >= _MAX_INIT_CHAIN:
        return C.CONFIDENCE_HEADS
    return trained_heads(source, depth + 1)


def _new_model(config: TokenizerTrainConfig) -> StructureTokenizerModel:
    """The networks of a run with ``config``, freshly initialised."""
    return StructureTokenizerModel(
        config.encoder,
        config.decoder,
        stage=config.stage,
        sequence_dropout=config.sequence_dropout,
        pair_outputs=needs_pair_outputs(config),
        codebook_init_from_data=config.codebook_init_from_data,
        encoder_positions=config.encoder_positions,
        decoder_dropout=config.decoder_dropout,
    )


def build_model(config: TokenizerTrainConfig) -> StructureTokenizerModel:
    """The model of a run; stage 2 takes its encoder and codebook from ``config.init_from``."""
    model = _new_model(config)
    if config.stage == 2:
        _load_stage2_start(model, config)
    return model


def _load_stage2_start(model: StructureTokenizerModel, config: TokenizerTrainConfig) -> None:
    """Encoder and codebook (and, unless ``decoder_init=random``, the decoder) of a stage-2 run from
    ``config.init_from``."""
    root = bundled_tokenizer_dir() if config.init_from == BUNDLED_NAME else Path(config.init_from)
    # which files init_from gave, for --record; not for a run that resumes: its own checkpoint restores every network
    # (noted by train_tokenizer), and init_from may hold others by now
    fresh = not (config.resume and latest_checkpoint(Path(config.out_dir) / CHECKPOINT_DIR) is not None)
    if (root / ENCODER_DIR / "config.json").is_file():  # a trained tokenizer in our weight format
        if config.decoder_init == "weights":
            load_exported_tokenizer(model, root)
            parts = [ENCODER_DIR, DECODER_DIR]
        elif config.decoder_init == "random":
            load_exported_encoder(model, root)
            parts = [ENCODER_DIR]
        else:
            raise ConfigError(
                f"init_from={config.init_from}: a weights directory, which decoder_init={config.decoder_init} cannot "
                "start from (it needs a training run or checkpoint); use decoder_init=weights or random"
            )
        for part in parts if fresh else []:
            note_input(root / part / WEIGHTS_FILE, "init_from weights")
        return
    if config.decoder_init == "weights":
        raise ConfigError(
            f"init_from={config.init_from}: decoder_init=weights needs a trained tokenizer's weights directory "
            "(structure_encoder/ and structure_decoder/, e.g. a run's export/) or 'bundled'"
        )
    # A new run refuses a stage-1 run whose newest step_ directory is damaged (it would start from an older encoder
    # than that run ended with); a resumed one restores every network from its own checkpoint, so any will do.
    start = resolve_checkpoint(config.init_from, damaged_ok=not fresh)
    load_submodule_state(model.encoder, start, "encoder")
    if fresh:  # which of init_from's checkpoints
        note_input(start / MODEL_FILE, "init_from checkpoint")
    if config.decoder_init == "stage1":
        warm_start_decoder(model.decoder, start)
        load_submodule_state(model.code_proj, start, "code_proj")
    elif config.decoder_init == "checkpoint":
        load_submodule_state(model.decoder, start, "decoder")
        load_submodule_state(model.code_proj, start, "code_proj")


def tokenized_dataset(
    model: StructureTokenizerModel,
    dataset: ProteinDataset,
    *,
    renditions: int = 1,
    noise: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> ProteinDataset:
    """``dataset`` with every record's codes attached, encoded once by the model's (frozen) encoder on the whole
    record: stage 2 then trains the decoder without an encoder pass per step, on the tokens a user's full-length
    structure gets (crops cut the token row, not the structure).

    With ``renditions`` > 1 each record carries [L, renditions] codes: column 0 encodes the true coordinates,
    column k > 0 the coordinates plus Gaussian noise of ``noise`` A (drawn from ``seed`` and the record's
    position, so every process and every resumed run encodes the same renditions)."""
    if len(dataset) == 0:
        raise ConfigError(f"{dataset.root}: no records to encode")
    tokens: list[np.ndarray] = []
    chunk = 64  # records per call (encode_records batches them further by length)
    with Progress(total=len(dataset) * renditions, desc="encode dataset", unit="record", disable=not progress) as bar:
        for start in range(0, len(dataset), chunk):
            positions = range(start, min(start + chunk, len(dataset)))
            records = [dataset[i] for i in positions]
            columns = [model.encode_records(records)]
            bar.update(len(records))
            for k in range(1, renditions):
                noisy = [noised(r, noise, np.random.default_rng((seed, i, k))) for i, r in zip(positions, records)]
                columns.append(model.encode_records(noisy))
                bar.update(len(records))
            if renditions == 1:
                tokens.extend(columns[0])
            else:
                tokens.extend(np.stack(per_record, axis=-1) for per_record in zip(*columns))
    return dataset.with_structure_tokens(tokens)


def noised(record: ProteinRecord, sigma: float, rng: np.random.Generator) -> ProteinRecord:
    """``record`` with independent Gaussian noise of ``sigma`` A added to every atom coordinate."""
    noise = rng.normal(0.0, sigma, record.atom37.shape).astype(record.atom37.dtype)
    return replace(record, atom37=record.atom37 + noise)


def _check_out_dir(config: TokenizerTrainConfig) -> None:
    """Refuse an ``out_dir`` that is a file before any work (model building, dataset encoding, training)."""
    out = Path(config.out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir={config.out_dir}: exists and is not a directory")


def _note_dataset(path: str) -> None:
    """The dataset's index and shards, as inputs of the run's ``--record`` (hashed there): the data it trained on."""
    index = Path(path) / INDEX_FILE
    note_input(index, "training data")
    try:
        shards = json.loads(index.read_text(encoding="utf-8")).get("shards", [])
    except (OSError, ValueError, AttributeError):
        return  # ProteinDataset names the problem
    for shard in shards if isinstance(shards, list) else []:
        note_input(Path(path) / str(shard), "training data")


def _restore_frozen_encoder(model: StructureTokenizerModel, latest: Path | None) -> None:
    """A stage-2 run that resumes encodes its dataset with its own frozen encoder (the one its checkpoint holds and
    the loop restores), not with the one ``init_from`` holds now: when ``init_from`` is a run that trained on since
    (a stage-1 run continued), its latest encoder gives other tokens, and the decoder went on on tokens it had never
    seen while the export paired it with the old encoder, without a word. ``latest``: the checkpoint the run resumes
    from (None: a new run)."""
    if latest is None:
        return
    try:
        load_submodule_state(model.encoder, latest, "encoder")
    except WeightsError:
        return  # a checkpoint of other networks: the loop refuses it, naming the settings that differ


def train_tokenizer(config: TokenizerTrainConfig) -> TokenizerRunResult:
    """Train one stage as ``config`` says and export the networks (see the module docstring)."""
    _check_out_dir(config)
    out = Path(config.out_dir)
    if (out / EXPORT_DIR).exists() and latest_checkpoint(out / CHECKPOINT_DIR) is None:
        raise ConfigError(
            f"out_dir={config.out_dir} holds an {EXPORT_DIR}/ but no checkpoint to resume from: a new run there would "
            "overwrite those weights; give another out_dir (or move the export away)"
        )
    # what the loop would refuse (another number of processes included), refused before the model is built and stage 2
    # encodes its data
    check_resume(config, world_size=D.launched_world_size())
    _note_dataset(config.data.path)
    # the run's own checkpoint it goes on from (the loop resumes from the same): for a stage-2 run, its frozen encoder
    # comes from there, not from what init_from holds now (which may have trained on since)
    resumed = latest_checkpoint(out / CHECKPOINT_DIR) if config.resume else None
    if resumed is not None:
        note_input(resumed / MODEL_FILE, "resumed from checkpoint")
    info = D.setup_distributed(config.device)
    try:
        seed_everything(config.seed)
        # On the run's device before the stage-2 dataset is encoded with its frozen encoder (train moves it anyway).
        model = build_model(config).to(info.device)
        check_resume(config, model=model)  # networks that do not fit the checkpoint: refused before the encoding
        dataset = None
        if config.stage == 2 and config.cache_tokens:
            _restore_frozen_encoder(model, resumed)
            dataset = tokenized_dataset(
                model,
                ProteinDataset(config.data.path),
                renditions=config.token_renditions,
                noise=config.token_noise,
                seed=config.seed,
                progress=config.progress and info.is_main,
            )
        data = build_protein_data(config, rank=info.rank, world_size=info.world_size, dataset=dataset)
        split = config.data.split
        if data.valid is None and config.val_every and split.method != "none" and info.is_main:
            warnings.warn(
                f"no validation: the {split.method!r} split of {config.data.path} holds no validation records "
                "(label some valid at ingestion, or use data.split.method=cluster with a valid_fraction > 0)",
                stacklevel=2,
            )
        result = train(
            model,
            TokenizerObjective(config.losses),
            data.train,
            config,
            valid_data=data.valid,
            dist_info=info,
            find_unused_parameters=True,
            # of the index read; stage 2's encoded dataset carries its source's (the tokens follow from it and the
            # frozen encoder, which the checkpoint holds)
            data_fingerprint=data.train_set.fingerprint,
        )
        enc = dec = None
        if info.is_main:
            model.eval()
            with torch.no_grad():
                enc, dec = export_networks(
                    model.cpu(), Path(config.out_dir) / EXPORT_DIR, trained_heads=trained_heads(config)
                )
        return TokenizerRunResult(result, enc, dec)
    finally:
        D.teardown_distributed()


def export_checkpoint(config: TokenizerTrainConfig, checkpoint: str | Path) -> tuple[Path, Path, Path]:
    """Export the networks of a training checkpoint (a checkpoint directory, or a run directory for its latest)
    of a run with ``config`` to ``config.out_dir/export``. Returns (checkpoint used, encoder dir, decoder dir).

    An existing ``export/`` is replaced only by the networks of ``out_dir``'s own latest checkpoint (what the run
    wrote there at its end, or would write); another checkpoint (an earlier one, another run's) is refused before any
    work, so the run's final weights are never silently swapped for older ones. A run directory whose newest
    ``step_`` directory is damaged is refused (see :func:`~openesm3.training.tokenizer.export.resolve_checkpoint`),
    and so is replacing an ``export/`` beside one."""
    _check_out_dir(config)
    path = resolve_checkpoint(checkpoint)
    out = Path(config.out_dir)
    if (out / EXPORT_DIR).exists():
        newer, latest = newer_damaged(out / CHECKPOINT_DIR)
        if newer:  # the export may hold its networks: no checkpoint left is known to be the run's last
            raise ConfigError(
                f"out_dir={config.out_dir} holds an {EXPORT_DIR}/ and {describe_damaged(newer, 'read')}: exporting "
                f"{path} there could replace the run's last weights with older ones; move {out / EXPORT_DIR} away "
                "first, or give another out_dir"
            )
        if latest is None or latest.resolve() != path.resolve():
            what = f"its latest checkpoint is {latest}" if latest is not None else "it holds no checkpoint"
            raise ConfigError(
                f"out_dir={config.out_dir} holds an {EXPORT_DIR}/ and {what}: exporting {path} there would replace "
                f"those weights with other ones; move {out / EXPORT_DIR} away first, or give another out_dir"
            )
    model = _new_model(config)
    load_state_dict_strict(model, load_checkpoint(path).model_state, source=f"{path} (with this run's config)")
    model.eval()
    with torch.no_grad():
        enc, dec = export_networks(model, Path(config.out_dir) / EXPORT_DIR, trained_heads=trained_heads(config))
    return path, enc, dec
