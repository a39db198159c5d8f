"""The generic loop in one process: logs, schedule, accumulation, bf16, validation, resume, non-finite steps."""

from __future__ import annotations

import io
import json
import random
import shutil
import sys
import types

import numpy as np
import pytest
import torch

from openesm3.training import distributed as D
from openesm3.training.checkpointing import CheckpointError, capture_rng_state, list_checkpoints, load_checkpoint
from openesm3.training.config import ConfigError, TrainConfig, apply_overrides
from openesm3.training.data import ProteinDataset, write_dataset
from openesm3.training.logging import MetricsLogger, read_metrics
from openesm3.training.loop import (
    _schedule_change,
    build_optimizer,
    check_resume,
    evaluate,
    seed_everything,
    train,
    validation_seed,
)
from openesm3.training.pipeline import build_protein_data
from openesm3.training.schedules import WarmupCosineSchedule
from tests.training_fixtures import TinyModel, synthetic_records, tiny_loss

BASE = [
    "max_steps=12",
    "data.batch_size=4",
    "data.crop_length=40",
    "precision=fp32",
    "optim.lr=1e-2",
    "optim.warmup_steps=3",
    "log_every=1",
    "val_every=6",
    "ckpt_every=4",
    "keep_last=2",
    "progress=false",
    "tensorboard=false",
    "data.split.valid_fraction=0.2",
    "device=cpu",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run much faster on one thread (and do not fight other jobs on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> ProteinDataset:
    root = tmp_path_factory.mktemp("ds")
    write_dataset(synthetic_records(40), root, shard_size=16)
    return ProteinDataset(root)


def _run(dataset: ProteinDataset, out, *overrides: str, dropout: float = 0.0, loss_fn=tiny_loss):  # noqa: ANN001
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={out}", *overrides])
    seed_everything(cfg.seed)
    model = TinyModel(dropout=dropout)
    data = build_protein_data(cfg, dataset=dataset)
    result = train(model, loss_fn, data.train, cfg, valid_data=data.valid)
    return model, result, cfg


def test_training_logs_schedule_validation_and_checkpoints(dataset, tmp_path) -> None:
    model, result, cfg = _run(dataset, tmp_path)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    train_rows = [r for r in rows if r["split"] == "train"]
    valid_rows = [r for r in rows if r["split"] == "valid"]
    assert [r["step"] for r in train_rows] == list(range(1, 13))
    assert [r["step"] for r in valid_rows] == [6, 12]
    schedule = WarmupCosineSchedule(peak_lr=1e-2, warmup_steps=3, total_steps=12, min_lr_ratio=0.1)
    for r in train_rows:
        assert set(r) >= {"step", "lr", "loss", "grad_norm", "tokens_per_s", "time", "metrics"}
        assert r["lr"] == pytest.approx(schedule(r["step"] - 1))
        assert r["tokens_per_s"] > 0 and r["grad_norm"] > 0 and set(r["metrics"]) == {"rmse", "pred_dtype_bf16"}
    assert train_rows[-1]["loss"] < train_rows[0]["loss"] / 2
    assert valid_rows[1]["loss"] < train_rows[0]["loss"]
    assert result.step == 12 and result.valid is not None and result.valid["loss"] == valid_rows[1]["loss"]
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [8, 12]
    saved = load_checkpoint(result.checkpoint)
    assert all(torch.equal(v, saved.model_state[k]) for k, v in model.state_dict().items())
    assert saved.trainer_state["config"]["optim"]["lr"] == 1e-2


def test_gradient_accumulation_matches_one_big_batch(dataset, tmp_path) -> None:
    a, _, _ = _run(dataset, tmp_path / "a", "max_steps=4", "data.batch_size=8", "grad_accum=1")
    b, _, _ = _run(dataset, tmp_path / "b", "max_steps=4", "data.batch_size=8", "grad_accum=2")
    c, _, _ = _run(dataset, tmp_path / "c", "max_steps=4", "data.batch_size=4", "grad_accum=1")
    diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    assert diff < 1e-6
    # the same gradient, not one twice as large (which AdamW alone would hide): micro-batch losses are averaged
    norms = [
        [r["grad_norm"] for r in read_metrics(tmp_path / x / "metrics.jsonl") if r["split"] == "train"] for x in "ab"
    ]
    assert norms[0] == pytest.approx(norms[1], rel=1e-4)
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), c.parameters())) > 1e-3  # negative


def test_bf16_autocast_with_fp32_losses(dataset, tmp_path) -> None:
    _, result, _ = _run(dataset, tmp_path, "precision=bf16", "max_steps=4")
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert all(r["metrics"]["pred_dtype_bf16"] == 1.0 for r in rows)  # the model ran in bf16
    assert all(r["loss"] == r["loss"] for r in rows) and rows[-1]["loss"] < rows[0]["loss"]


def test_resume_in_process_continues_the_same_trajectory(dataset, tmp_path) -> None:
    full = tmp_path / "full"
    _run(dataset, full, dropout=0.2)  # dropout: the torch RNG state must be restored too
    part = tmp_path / "part"
    shutil.copytree(full, part)
    shutil.rmtree(part / "checkpoints" / "step_000000012")  # as if killed between steps 8 and 12
    with open(part / "metrics.jsonl", "a") as handle:
        handle.write('{"split": "train", "step": 11, "loss": 123')  # and mid-line
    _run(dataset, part, dropout=0.2)
    a = read_metrics(full / "metrics.jsonl")
    b = read_metrics(part / "metrics.jsonl")
    key = lambda r: (r["split"], r["step"], r["loss"], r.get("tokens_seen"))  # noqa: E731 - counters resume too
    assert [key(r) for r in a] == [key(r) for r in b]
    # negative: without restoring the RNG, dropout differs and so does the loss
    other = tmp_path / "other"
    shutil.copytree(full, other)
    shutil.rmtree(other / "checkpoints" / "step_000000012")
    for rng_file in (other / "checkpoints").glob("step_*/rng_rank0.json"):
        state = json.loads(rng_file.read_text())
        torch.manual_seed(12345)
        state["torch"] = capture_rng_state()["torch"]
        rng_file.write_text(json.dumps(state))
    _run(dataset, other, dropout=0.2)
    c = read_metrics(other / "metrics.jsonl")
    assert [r["loss"] for r in c if r["step"] > 8] != [r["loss"] for r in a if r["step"] > 8]


def test_resume_false_refuses_to_mix_runs(dataset, tmp_path) -> None:
    _run(dataset, tmp_path, "max_steps=4")
    with pytest.raises(ConfigError, match="holds checkpoints but resume=false"):
        _run(dataset, tmp_path, "max_steps=4", "resume=false")


def test_non_finite_steps_are_skipped(dataset, tmp_path) -> None:
    calls = []

    def sometimes_nan(model, batch):  # noqa: ANN001
        loss, metrics = tiny_loss(model, batch)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 3 else loss), metrics

    model, _, _ = _run(dataset, tmp_path, "max_steps=4", loss_fn=sometimes_nan)
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert [r["skipped_steps"] for r in rows] == [0, 0, 1, 1]
    assert rows[2]["loss"] is None  # NaN is written as null
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_progress_bar_and_tensorboard(dataset, tmp_path, monkeypatch) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is in the optional `train` extra")
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    _run(dataset, tmp_path, "max_steps=3", "progress=true", "tensorboard=true")
    assert "train (from step 0):" in stream.getvalue() and "3/3" in stream.getvalue() and "step/s" in stream.getvalue()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_finished_run_resumed_again_does_nothing(dataset, tmp_path) -> None:
    model, first, _ = _run(dataset, tmp_path, "max_steps=4")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    again, second, _ = _run(dataset, tmp_path, "max_steps=4")
    assert second.step == 4 and second.checkpoint == first.checkpoint
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in before.items())  # the checkpoint's weights
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"] == [1, 2, 3, 4]


def test_the_last_step_is_checkpointed_off_the_checkpoint_interval(dataset, tmp_path) -> None:
    _run(dataset, tmp_path, "max_steps=6", "ckpt_every=4", "log_every=2", "val_every=0")
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [4, 6]


def test_resuming_with_changed_settings_warns_and_names_them(dataset, tmp_path) -> None:
    _run(dataset, tmp_path, "max_steps=4")
    with pytest.warns(UserWarning, match=r"changed settings: max_steps, seed; the learning-rate schedule changes, "
                      r"but not over the steps already run \(0\.\.3\)"):  # fmt: skip
        _run(dataset, tmp_path, "max_steps=5", "seed=1")  # steps 0..3: the warmup (3) and the cosine's start


def test_keeping_more_or_fewer_checkpoints_on_resume_is_no_changed_setting(dataset, tmp_path) -> None:
    """keep_last only says how many checkpoints stay on disk, yet a run resumed with another one warned of changed
    settings, as if it computed something else."""
    import warnings  # noqa: PLC0415

    _run(dataset, tmp_path, "max_steps=8")
    shutil.rmtree(dict(list_checkpoints(tmp_path / "checkpoints"))[8])  # as if stopped after the step-4 checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, result, _ = _run(dataset, tmp_path, "max_steps=8", "keep_last=1")
    assert result.step == 8 and [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [8]


def test_other_log_and_checkpoint_intervals_on_resume_are_no_changed_setting(dataset, tmp_path) -> None:
    """log_every and ckpt_every only say when the loop reports and saves, yet a run resumed with others warned of
    changed settings; it ends bit for bit where the uninterrupted run ends."""
    import warnings  # noqa: PLC0415

    whole = tmp_path / "whole"
    _run(dataset, whole, "max_steps=8", dropout=0.2)
    part = tmp_path / "part"
    shutil.copytree(whole, part)
    shutil.rmtree(dict(list_checkpoints(part / "checkpoints"))[8])  # as if stopped after the step-4 checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(dataset, part, "max_steps=8", "log_every=2", "ckpt_every=2", dropout=0.2)
    a, b = (load_checkpoint(dict(list_checkpoints(r / "checkpoints"))[8]).model_state for r in (whole, part))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_another_number_of_processes_is_refused_from_the_trainer_state_alone(dataset, tmp_path) -> None:
    """A run resumed with another number of processes was refused only once the loop had loaded its checkpoint:
    for a stage-2 run, after it had encoded its whole dataset. check_resume reads the number from the trainer state."""
    _run(dataset, tmp_path, "max_steps=4")
    latest = dict(list_checkpoints(tmp_path / "checkpoints"))[4]
    (latest / "model.safetensors").write_bytes(b"not read")  # the tensors are not what says it
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}", "max_steps=8"])
    with pytest.raises(CheckpointError, match=r"step_000000004: written by 1 processes, resumed with 2; resume with "
                       r"the same number to continue the same run"):  # fmt: skip
        check_resume(cfg, world_size=2)
    check_resume(cfg, world_size=1)  # no refusal


def test_a_model_of_other_shapes_is_refused_from_the_checkpoint_header(dataset, tmp_path) -> None:
    """Networks that do not fit the checkpoint were refused only when the loop loaded it (for a stage-2 run, after
    the encoding of its dataset): check_resume compares the model with the header of the checkpoint's tensors."""
    _run(dataset, tmp_path, "max_steps=4")
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}", "max_steps=4"])  # no setting changed
    check_resume(cfg, model=TinyModel())  # the same networks: no refusal
    fit = r"step_000000004: the run in .* does not fit this configuration's model \({}\); resume with the settings"
    with pytest.raises(CheckpointError, match=fit.format(r"blocks\.0\.0\.bias has shape \[32\] in the checkpoint, "
                                                         r"\[16\] in the model")):  # fmt: skip
        check_resume(cfg, model=TinyModel(d=16))
    with pytest.raises(CheckpointError, match=fit.format(r"this configuration's model has blocks\.2\.0\.bias, which "
                                                         r"the checkpoint lacks")):  # fmt: skip
        check_resume(cfg, model=TinyModel(n_blocks=3))
    with pytest.raises(CheckpointError, match=fit.format(r"the checkpoint holds blocks\.1\.0\.bias, which this "
                                                         r"configuration's model lacks")):  # fmt: skip
        check_resume(cfg, model=TinyModel(n_blocks=1))


def test_a_checkpoint_config_with_a_null_learning_rate_names_the_changed_settings(dataset, tmp_path) -> None:
    """A checkpoint whose config holds "lr": null (hand-edited, another layout) ended the resume in a TypeError
    traceback from the old schedule's evaluation; the warning names the changed settings only."""
    _run(dataset, tmp_path, "max_steps=4")
    state = dict(list_checkpoints(tmp_path / "checkpoints"))[4] / "trainer_state.json"
    saved = json.loads(state.read_text())
    saved["config"]["optim"]["lr"] = None
    state.write_text(json.dumps(saved))
    with pytest.warns(UserWarning) as caught:
        _, result, _ = _run(dataset, tmp_path, "max_steps=5")
    assert str(caught[0].message).endswith("with changed settings: max_steps, optim.lr")
    assert result.step == 5


@pytest.mark.parametrize("config", [[1], "x", {"data": [1]}, {"data": {"split": "cluster"}}])
def test_a_checkpoint_config_of_another_layout_names_the_changed_settings(dataset, tmp_path, config) -> None:
    """A checkpoint whose saved config is not a mapping (or holds a data section that is not one) ended the resume in
    an AttributeError traceback; the run resumes, naming the settings it cannot match as changed."""
    _run(dataset, tmp_path, "max_steps=4")
    state = dict(list_checkpoints(tmp_path / "checkpoints"))[4] / "trainer_state.json"
    saved = json.loads(state.read_text())
    saved["config"] = config
    state.write_text(json.dumps(saved))
    with pytest.warns(UserWarning) as caught:
        _, result, _ = _run(dataset, tmp_path, "max_steps=5")
    assert "with changed settings: " in str(caught[0].message)
    assert "max_steps" in str(caught[0].message)
    assert result.step == 5


def test_extending_a_finished_run_says_that_its_schedule_is_restretched(dataset, tmp_path) -> None:
    """A finished run (step 8 of max_steps=8, warmup 3) extended to max_steps=16 goes on from the floor of its cosine
    (10 % of the peak) at the new schedule's rate at step 8, after steps 4..7 decayed faster than a 16-step run's:
    the warning named only max_steps, so nothing said that the learning rates differ from a 16-step run's."""
    _run(dataset, tmp_path, "max_steps=8")
    new = WarmupCosineSchedule(peak_lr=1e-2, warmup_steps=3, total_steps=16)
    assert new(8) > 2e-3  # the old schedule's rate at step 8: its floor, 1e-3
    with pytest.warns(UserWarning) as caught:
        _run(dataset, tmp_path, "max_steps=16")
    message = str(caught[0].message)
    assert message.endswith(
        "changed settings: max_steps; the learning-rate schedule changes (max_steps stretches the cosine decay of "
        f"steps 3..8 over steps 3..16): step 8 goes on at lr {new(8):.3g} where the old schedule gave 0.001, after "
        "steps 4..7 ran at the old schedule's rates, so the run's rates differ from a run started with these settings"
    ), message
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert rows[8]["lr"] == pytest.approx(new(8))  # what the warning says is what the run does


def test_ending_a_run_at_its_checkpoint_with_a_lower_max_steps_says_that_no_step_is_left(dataset, tmp_path) -> None:
    """A 16-step run stopped after its step-8 checkpoint, resumed with max_steps=8, trains no step (it ends and
    exports there), yet the warning said "step 8 goes on at lr ..." as if it trained on at another rate; and that
    max_steps "re-stretches" the cosine decay, which a lower max_steps compresses."""
    _run(dataset, tmp_path, "max_steps=16", "keep_last=4")
    for step, path in list_checkpoints(tmp_path / "checkpoints"):
        if step > 8:
            shutil.rmtree(path)  # as if stopped after the step-8 checkpoint
    with pytest.warns(UserWarning) as caught:
        _, result, _ = _run(dataset, tmp_path, "max_steps=8", "keep_last=4")
    message = str(caught[0].message)
    assert message.endswith(
        "changed settings: max_steps; the learning-rate schedule changes (max_steps compresses the cosine decay of "
        "steps 3..16 over steps 3..8): no step is left to run (max_steps=8), and steps 4..7 ran at the old "
        "schedule's rates, so the run's rates differ from a run started with these settings"
    ), message
    assert result.step == 8 and [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [4, 8]


def test_a_run_past_max_steps_is_refused_from_its_latest_checkpoint_before_any_work(dataset, tmp_path) -> None:
    """check_resume (called before a stage-2 run encodes its data) must judge the checkpoint the loop resumes from,
    the latest: with checkpoints at steps 4 and 8, max_steps=6 is past the run, though not past the older one."""
    _run(dataset, tmp_path, "max_steps=8")
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [4, 8]
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}", "max_steps=6"])
    with pytest.raises(CheckpointError, match=r"step_000000008: .* already at step 8, past max_steps=6"):
        check_resume(cfg)
    check_resume(apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}", "max_steps=8"]))  # no refusal


def test_the_learning_rate_decays_to_min_lr_ratio_of_the_peak(dataset, tmp_path) -> None:
    """The loop's schedule takes optim.min_lr_ratio from the config (the other tests use the default, 0.1)."""
    _run(dataset, tmp_path, "max_steps=8", "optim.min_lr_ratio=0.5")
    schedule = WarmupCosineSchedule(peak_lr=1e-2, warmup_steps=3, total_steps=8, min_lr_ratio=0.5)
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert [r["lr"] for r in rows] == pytest.approx([schedule(s) for s in range(8)])
    assert rows[-1]["lr"] > 0.5e-2  # above the floor of the default 0.1 by far


_OLD = {"max_steps": 8, "optim": {"lr": 1e-2, "warmup_steps": 3, "min_lr_ratio": 0.1, "weight_decay": 0.01}}
_CHANGES = "; the learning-rate schedule changes: step "
_DIFFER = "ran at the old schedule's rates, so the run's rates differ from a run started with these settings"


@pytest.mark.parametrize(
    ("old", "new", "step", "expected"),
    [
        (_OLD, {}, 4, ""),  # the same schedule (another setting changed): nothing to say about the rates
        ({"max_steps": None}, {}, 4, ""),  # a checkpoint config of another layout: no guess
        # settings of other types (resuming ended in a traceback when the old schedule was evaluated): no guess either
        ({**_OLD, "optim": {**_OLD["optim"], "lr": None}}, {}, 4, ""),
        ({**_OLD, "optim": {**_OLD["optim"], "lr": "1e-2"}}, {}, 4, ""),
        ({**_OLD, "optim": {**_OLD["optim"], "warmup_steps": None}}, {}, 4, ""),
        ({**_OLD, "optim": {**_OLD["optim"], "min_lr_ratio": [0.1]}}, {}, 4, ""),
        ({**_OLD, "optim": "adamw"}, {}, 4, ""),
        ({**_OLD, "max_steps": float("inf")}, {}, 4, ""),
        (_OLD, {"peak_lr": 2e-2}, 4, f"{_CHANGES}4 goes on at lr 0.0183 where the old schedule gave 0.00914, after "
         f"steps 0..3 {_DIFFER}"),
        # the warmup ends at step 2 in both; min_lr_ratio first tells them apart at step 3, the last step run (not
        # "steps 3..3")
        ({**_OLD, "optim": {**_OLD["optim"], "warmup_steps": 2}}, {"warmup_steps": 2, "min_lr_ratio": 0.5}, 4,
         f"{_CHANGES}4 goes on at lr 0.00875 where the old schedule gave 0.00775, after step 3 {_DIFFER}"),
        # another warmup too: not only the cosine decay re-stretched, so no such claim
        (_OLD, {"warmup_steps": 4, "total_steps": 16}, 8, f"{_CHANGES}8 goes on at lr 0.00775 where the old schedule "
         f"gave 0.001, after steps 0..7 {_DIFFER}"),
        # a lower max_steps with steps left: the decay compressed, not "re-stretched"
        ({**_OLD, "max_steps": 16}, {}, 5, "; the learning-rate schedule changes (max_steps compresses the cosine "
         "decay of steps 3..16 over steps 3..8): step 5 goes on at lr 0.00689 where the old schedule gave 0.00948, "
         f"after step 4 {_DIFFER}"),
    ],
    ids=["same", "other-layout", "lr-null", "lr-string", "warmup-null", "min-lr-ratio-list", "optim-string",
         "max-steps-infinite", "lr", "min-lr-ratio-last-step", "max-steps-and-warmup", "max-steps-lowered"],
)  # fmt: skip
def test_the_resume_warning_says_how_the_learning_rates_change(old, new, step, expected) -> None:  # noqa: ANN001
    """The words of the schedule note of the resume warning, per kind of change (the numbers are the schedules')."""
    schedule = WarmupCosineSchedule(**{"peak_lr": 1e-2, "warmup_steps": 3, "total_steps": 8, **new})
    assert _schedule_change(old, schedule, step) == expected


def test_weight_decay_applies_to_matrices_not_to_biases_or_norm_scales() -> None:
    cfg = apply_overrides(TrainConfig(), ["optim.weight_decay=0.05"])
    model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer = build_optimizer(model, cfg)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay[id(model[0].weight)] == decay[id(model[1].weight)] == 0.05
    assert decay[id(model[1].bias)] == decay[id(model[2].weight)] == decay[id(model[2].bias)] == 0.0


def test_tensorboard_keeps_the_events_of_the_checkpoint_step_on_resume(tmp_path, monkeypatch) -> None:
    made = []
    fake = types.ModuleType("torch.utils.tensorboard")  # the writer's arguments are what matters, not tensorboard
    fake.SummaryWriter = lambda log_dir, purge_step=None: made.append(purge_step) or None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    MetricsLogger(tmp_path, tensorboard=True).close()
    MetricsLogger(tmp_path, tensorboard=True, resume_step=8).close()
    assert made == [None, 9]  # events after step 8 are redone; step 8's own are kept


def test_non_finite_metrics_are_logged_as_null_or_signed_infinity(tmp_path) -> None:
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log("train", 1, {"loss": float("nan"), "grad_norm": float("inf"), "metrics": {"x": -float("inf")}})
    logger.close()
    (row,) = read_metrics(tmp_path / "metrics.jsonl")
    assert (row["loss"], row["grad_norm"], row["metrics"]) == (None, "inf", {"x": "-inf"})


@pytest.mark.parametrize("resume_step", [None, 1])
def test_the_run_record_lists_the_metrics_log_as_the_run_left_it(tmp_path, resume_step) -> None:
    """metrics.jsonl is appended to, not written atomically: a fresh run's record did not list it, and a resumed
    run's (its truncation is an atomic write) would see it changed by the appends after."""
    import hashlib  # noqa: PLC0415

    from openesm3.utils import provenance  # noqa: PLC0415

    if resume_step is not None:
        (tmp_path / "metrics.jsonl").write_text('{"split": "train", "step": 1}\n{"split": "train", "step": 2}\n')
    with provenance.running(provenance.Run("train-tokenizer", hash_outputs=True)) as run:
        logger = MetricsLogger(tmp_path, tensorboard=False, resume_step=resume_step)
        logger.log("train", 2, {"loss": 1.0})
        logger.close()
    path = tmp_path / "metrics.jsonl"
    assert [row["step"] for row in read_metrics(path)] == ([2] if resume_step is None else [1, 2])
    assert list(run.outputs) == [path]
    assert run.outputs[path] == provenance.Written(
        provenance.file_stamp(path), hashlib.sha256(path.read_bytes()).hexdigest()
    )


def test_grad_clip_zero_means_no_clipping() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([3.0, 4.0, 0.0])
    assert D.clip_grad_norm([p], 0.0).item() == pytest.approx(5.0)
    assert p.grad.tolist() == [3.0, 4.0, 0.0]  # untouched
    assert D.clip_grad_norm([p], 1.0).item() == pytest.approx(5.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-5)  # negative: a positive limit clips


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [D.resolve_device("cuda", rank) for rank in range(2)] == [torch.device("cuda", i) for i in (0, 1)]
    assert D.resolve_device("auto", 1) == torch.device("cuda", 1)
    assert D.resolve_device("cpu", 1) == torch.device("cpu")
    # A third process on two GPUs would share GPU 0 with rank 0, which NCCL refuses at its first collective.
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=2 but this node has 2 CUDA device\(s\).*--nproc_per_node 2"):
        D.resolve_device("cuda", 2)


def test_full_precision_without_a_device_type_turns_off_the_autocast_in_force() -> None:
    """``full_precision()`` defaulted to CUDA's autocast: on a CPU run with precision=bf16 the geometry and losses
    inside it still ran in bf16. Without an argument it now turns off autocast wherever it is on."""
    from openesm3.training.loop import full_precision  # noqa: PLC0415

    a = torch.ones(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with full_precision():
            assert (a @ a).dtype == torch.float32
        with full_precision("cpu"):
            assert (a @ a).dtype == torch.float32
        assert (a @ a).dtype == torch.bfloat16


def test_full_precision_turns_autocast_off_only_inside_its_block() -> None:
    """``full_precision()`` entered torch's autocast contexts when called, not at its ``with``: a context made ahead
    (or never entered) switched autocast off from the call on, and one never entered never switched it back."""
    from openesm3.training.loop import full_precision  # noqa: PLC0415

    a = torch.ones(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        region = full_precision()
        assert (a @ a).dtype == torch.bfloat16  # made, not entered yet
        with region:
            assert (a @ a).dtype == torch.float32
        assert (a @ a).dtype == torch.bfloat16
        full_precision()  # never entered
        assert (a @ a).dtype == torch.bfloat16


def test_setup_distributed_takes_the_gpu_of_the_local_rank_torchrun_gives(monkeypatch) -> None:  # noqa: ANN001
    """torchrun says which process this is in LOCAL_RANK: the second process of a node takes GPU 1, not GPU 0."""
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "1")  # no process group to join
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = D.setup_distributed("cuda")
    assert (info.device, info.local_rank, chosen) == (torch.device("cuda", 1), 1, [torch.device("cuda", 1)])


@pytest.mark.parametrize("value", ["abc", "", "0", "-2"])
def test_a_world_size_that_is_no_number_of_processes_is_named(monkeypatch, value) -> None:  # noqa: ANN001
    """train-tokenizer reads WORLD_SIZE before any work (to refuse a checkpoint of another number of processes): a
    value that is no number ended in a bare ValueError traceback, and 0 or less was taken as a number of processes."""
    monkeypatch.setenv("WORLD_SIZE", value)
    with pytest.raises(ConfigError, match=f"WORLD_SIZE='{value}' in the environment is not a number of processes"):
        D.launched_world_size()
    with pytest.raises(ConfigError, match="WORLD_SIZE="):
        D.setup_distributed("cpu")
    monkeypatch.delenv("WORLD_SIZE")
    assert D.launched_world_size() == 1
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert D.launched_world_size() == 3


def test_resuming_a_run_from_before_identical_sequence_clusters_says_how_to_keep_its_split(dataset, tmp_path) -> None:
    """Records without a cluster label now share a cluster when their sequences are identical; a run started before
    that (its config has no data.split.identical_sequences) resumed silently on another split and other weights.
    The warning says so and names the setting that keeps the split the run started with."""
    _run(dataset, tmp_path, "max_steps=4")
    state = dict(list_checkpoints(tmp_path / "checkpoints"))[4] / "trainer_state.json"
    saved = json.loads(state.read_text())
    del saved["config"]["data"]["split"]["identical_sequences"]  # as a run of the code before the setting wrote it
    state.write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match=r"changed settings: data\.split\.identical_sequences, max_steps; .*records "
                      r"without a cluster label .* were each their own cluster in this run and now share one when "
                      r"their sequences are identical.*; give data\.split\.identical_sequences=false to go on with "
                      r"the split and weights the run started with"):  # fmt: skip
        _run(dataset, tmp_path, "max_steps=5")
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():  # resumed as it started: nothing changed, nothing said
        warnings.simplefilter("error")
        state.write_text(json.dumps(saved))
        shutil.rmtree(dict(list_checkpoints(tmp_path / "checkpoints"))[5])
        _run(dataset, tmp_path, "max_steps=4", "data.split.identical_sequences=false")
    fresh = tmp_path / "fresh"  # a run of this code, resumed with the grouping turned off: named, not explained so
    _run(dataset, fresh, "max_steps=4")
    with pytest.warns(UserWarning) as caught:
        _run(dataset, fresh, "max_steps=5", "data.split.identical_sequences=false")
    expected = "changed settings: data.split.identical_sequences, max_steps; the learning-rate schedule changes"
    assert str(caught[0].message).endswith(
        f"{expected}, but not over the steps already run (0..3): every step takes the rate of a run started "
        "with these settings"
    )


def _drawing_loss(model, batch):  # noqa: ANN001, ANN202
    """tiny_loss scaled by draws from the global Python, NumPy and torch RNGs, in training and in evaluation alike."""
    loss, metrics = tiny_loss(model, batch)
    noise = 1.0 + 0.01 * (random.random() + np.random.rand() + torch.rand(()).item())  # noqa: NPY002
    return loss * noise, {**metrics, "noise": noise}


def test_validating_changes_no_training_step(dataset, tmp_path) -> None:
    """A loss function drawing from the global RNGs in evaluation (the tokenizer's does) made validation move the
    training's random numbers: two runs with the same seed and data but another val_every trained other models."""
    runs = {every: tmp_path / f"val_every_{every}" for every in (0, 1, 5)}
    for every, run in runs.items():
        _run(dataset, run, "max_steps=8", f"val_every={every}", dropout=0.2, loss_fn=_drawing_loss)
    states = {every: load_checkpoint(dict(list_checkpoints(run / "checkpoints"))[8]) for every, run in runs.items()}
    losses = {
        every: [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
        for every, run in runs.items()
    }
    for every in (1, 5):
        assert losses[every] == losses[0], every
        assert all(torch.equal(v, states[0].model_state[k]) for k, v in states[every].model_state.items()), every
        assert states[every].rng_state == states[0].rng_state, every  # a run resumed from either goes on alike


def test_validation_restores_the_global_rngs_and_gives_the_same_loss_at_every_call(dataset, tmp_path) -> None:
    """Validation drew from the global RNGs without restoring them, and its loss depended on their state: the same
    model on the same data gave another valid loss at every call."""
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}"])
    seed_everything(cfg.seed)
    model = TinyModel(dropout=0.2)
    data = build_protein_data(cfg, dataset=dataset)
    assert data.valid is not None
    device = torch.device("cpu")
    results = []
    for state in (0, 1):
        seed_everything(state)  # the global RNGs as another point of a run (or another run) leaves them
        before = capture_rng_state()
        valid = evaluate(model, _drawing_loss, data.valid, device=device, precision="fp32", seed=validation_seed(0))
        assert capture_rng_state() == before
        results.append(valid)
    assert results[0] == results[1] and results[0]["noise"] > 1.0
    other = evaluate(model, _drawing_loss, data.valid, device=device, precision="fp32", seed=validation_seed(1))
    assert other["noise"] != results[0]["noise"]  # the seed is what fixes its draws
    assert model.training  # back in the mode it was found in


def test_another_validation_interval_on_resume_is_no_changed_setting(dataset, tmp_path) -> None:
    """val_every was named in a changed-settings warning, since validating could change the training's random
    numbers; it no longer can, and a run resumed with another one ends bit for bit where the uninterrupted run ends."""
    import warnings  # noqa: PLC0415

    whole = tmp_path / "whole"
    _run(dataset, whole, "max_steps=8", dropout=0.2, loss_fn=_drawing_loss)
    part = tmp_path / "part"
    shutil.copytree(whole, part)
    shutil.rmtree(dict(list_checkpoints(part / "checkpoints"))[8])  # as if stopped after the step-4 checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(dataset, part, "max_steps=8", "val_every=1", dropout=0.2, loss_fn=_drawing_loss)
    a, b = (load_checkpoint(dict(list_checkpoints(r / "checkpoints"))[8]).model_state for r in (whole, part))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage", ["[1]", '{"format": "openesm3-train-checkpoint", "world_size": "2"', b"\xff\xfe"])
def test_a_damaged_checkpoint_newer_than_the_latest_good_one_is_refused_and_kept(dataset, tmp_path, damage) -> None:
    """A newest checkpoint whose trainer_state.json was damaged counted as no checkpoint: the run silently resumed from
    the older one, cut the metrics after it and, on reaching the damaged step, replaced that checkpoint (a state that
    was not UTF-8 ended in a traceback instead). It is refused, named, and nothing in out_dir is touched."""
    _run(dataset, tmp_path, "max_steps=8")
    ckpts = dict(list_checkpoints(tmp_path / "checkpoints"))
    state = ckpts[8] / "trainer_state.json"
    state.write_bytes(damage.encode() if isinstance(damage, str) else damage)
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}", "max_steps=12"])
    refused = r"step_000000008: a checkpoint that cannot be resumed from \(trainer_state.json .*\), newer than any"
    with pytest.raises(CheckpointError, match=refused + r" that can; a run in .* would resume from the older "
                       r"step_000000004 and overwrite it"):  # fmt: skip
        _run(dataset, tmp_path, "max_steps=12")
    with pytest.raises(CheckpointError, match=refused):
        check_resume(cfg)
    shutil.rmtree(ckpts[4])  # the only checkpoint left is the damaged one: a new run would start afresh over it
    for resume in ("true", "false"):
        with pytest.raises(CheckpointError, match=refused + r" that can; a run in .* would start afresh"):
            _run(dataset, tmp_path, "max_steps=12", f"resume={resume}")
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics
    assert state.read_bytes() == (damage.encode() if isinstance(damage, str) else damage)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.txt", "step_000000008"]


def test_a_damaged_checkpoint_older_than_the_latest_good_one_is_no_obstacle(dataset, tmp_path) -> None:
    """Only a damaged checkpoint newer than the one a run resumes from is one it would overwrite."""
    _run(dataset, tmp_path, "max_steps=8")
    (dict(list_checkpoints(tmp_path / "checkpoints"))[4] / "optimizer.safetensors").unlink()
    with pytest.warns(UserWarning, match="step_000000008 with changed settings: max_steps"):
        _, result, _ = _run(dataset, tmp_path, "max_steps=9")
    assert result.step == 9


def test_a_checkpoint_whose_tensors_cannot_be_read_is_named_when_the_model_is_checked(dataset, tmp_path) -> None:
    """check_resume reads the header of the checkpoint's model file: a damaged one is a CheckpointError naming it
    (safetensors raises its own error type, no OSError), not a traceback."""
    _run(dataset, tmp_path, "max_steps=4")
    latest = dict(list_checkpoints(tmp_path / "checkpoints"))[4]
    (latest / "model.safetensors").write_bytes(b"\x08" + bytes(7) + b"{not json")
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}", "max_steps=8"])
    check_resume(cfg)  # without a model, the tensors are not read
    with pytest.raises(CheckpointError, match=r"step_000000004: unreadable checkpoint tensors"):
        check_resume(cfg, model=TinyModel())


def test_a_compiled_model_is_checked_by_the_names_the_loop_saves(dataset, tmp_path) -> None:
    """The loop saves a torch.compile'd model's state under its own names (no ``_orig_mod.``): check_resume, given the
    compiled model, refused its own run ("this configuration's model has _orig_mod.blocks.0.0.bias, which the
    checkpoint lacks")."""
    _run(dataset, tmp_path, "max_steps=4")
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}", "max_steps=4"])  # no setting changed
    check_resume(cfg, model=torch.compile(TinyModel()))  # no refusal
    with pytest.raises(CheckpointError, match=r"blocks\.0\.0\.bias has shape \[32\] in the checkpoint, \[16\]"):
        check_resume(cfg, model=torch.compile(TinyModel(d=16)))


def _valid_setup(dataset, tmp_path):  # noqa: ANN001, ANN202
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={tmp_path}"])
    seed_everything(cfg.seed)
    model = TinyModel(dropout=0.2)
    data = build_protein_data(cfg, dataset=dataset)
    assert data.valid is not None
    return cfg, model, data.valid


def _recording_loss(draws: list[tuple[float, float, float]]):  # noqa: ANN202
    """tiny_loss that records, in evaluation, one draw from each global RNG (Python, NumPy, torch)."""

    def loss_fn(model, batch):  # noqa: ANN001, ANN202
        if not model.training:
            draws.append((random.random(), float(np.random.rand()), torch.rand(()).item()))  # noqa: NPY002
        return tiny_loss(model, batch)

    return loss_fn


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_validation_that_raises_restores_the_global_rngs_and_the_training_mode(dataset, tmp_path, error) -> None:
    """A batch the loss function rejects (or Ctrl-C) during evaluate() left the model in evaluation mode: a caller
    that caught it and went on trained without dropout. The global RNGs it drew from are restored as well."""
    _, model, valid = _valid_setup(dataset, tmp_path)

    def failing(model, batch):  # noqa: ANN001, ANN202
        _drawing_loss(model, batch)  # draws from every global RNG first
        raise error("bad batch")

    seed_everything(5)
    before = capture_rng_state()
    with pytest.raises(error, match="bad batch"):
        evaluate(model, failing, valid, device=torch.device("cpu"), precision="fp32", seed=validation_seed(0))
    assert capture_rng_state() == before
    assert model.training


def test_every_global_rng_is_seeded_for_validation(dataset, tmp_path) -> None:
    """evaluate(seed=s) seeds Python, NumPy and torch each as seed_everything(s) does, whatever state it finds them
    in (0 included); validation_seed(s) starts other draws than the training's seed s."""
    _, model, valid = _valid_setup(dataset, tmp_path)

    def first_draws(seed: int, state: int) -> tuple[float, float, float]:
        seed_everything(state)
        draws: list[tuple[float, float, float]] = []
        evaluate(model, _recording_loss(draws), valid, device=torch.device("cpu"), precision="fp32", seed=seed)
        return draws[0]

    seed_everything(0)
    seeded_0 = (random.random(), float(np.random.rand()), torch.rand(()).item())  # noqa: NPY002
    assert first_draws(0, 1) == first_draws(0, 2) == seeded_0
    a, b = first_draws(validation_seed(0), 1), first_draws(validation_seed(1), 2)
    assert a == first_draws(validation_seed(0), 2)
    assert all(x != y for x, y in zip(a, b, strict=True))  # each RNG follows the seed
    assert all(x != y for x, y in zip(a, seeded_0, strict=True))  # not the training's stream


def test_train_validates_with_the_runs_validation_seed(dataset, tmp_path) -> None:
    """Every validation of a run draws the numbers evaluate(seed=validation_seed(cfg.seed)) draws."""
    draws: list[tuple[float, float, float]] = []
    _, _, cfg = _run(dataset, tmp_path / "run", "max_steps=4", "val_every=2", loss_fn=_recording_loss(draws))
    _, model, valid = _valid_setup(dataset, tmp_path / "ref")
    expected: list[tuple[float, float, float]] = []
    evaluate(
        model,
        _recording_loss(expected),
        valid,
        device=torch.device("cpu"),
        precision="fp32",
        seed=validation_seed(cfg.seed),
    )
    assert draws == expected * 2


def _run_on(path, out, *overrides: str):  # noqa: ANN001, ANN202
    """A run on the dataset at data.path=``path``, with no fingerprint given to train: it fingerprints data.path."""
    cfg = apply_overrides(TrainConfig(), [*BASE, f"out_dir={out}", f"data.path={path}", *overrides])
    seed_everything(cfg.seed)
    data = build_protein_data(cfg)
    return train(TinyModel(), tiny_loss, data.train, cfg, valid_data=data.valid)


def test_a_run_resumed_on_another_dataset_says_so_and_on_the_same_one_elsewhere_says_nothing(tmp_path) -> None:
    """data.path is a run-only setting (a moved dataset is the same), so a run resumed with data.path naming another
    dataset trained on other records, on another split, without a word. The checkpoint now holds the dataset's
    fingerprint (its index.json's), and only a dataset whose index differs is named."""
    import warnings  # noqa: PLC0415

    write_dataset(synthetic_records(40), tmp_path / "ds", shard_size=16)
    write_dataset(synthetic_records(40), tmp_path / "again", shard_size=16)  # the same records ingested again
    write_dataset(synthetic_records(40, seed=1), tmp_path / "other", shard_size=16)
    run = tmp_path / "run"
    _run_on(tmp_path / "ds", run, "max_steps=4")
    state = json.loads((run / "checkpoints" / "step_000000004" / "trainer_state.json").read_text())
    assert state["data_fingerprint"] == ProteinDataset(tmp_path / "again").fingerprint
    assert state["data_fingerprint"] != ProteinDataset(tmp_path / "other").fingerprint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run_on(tmp_path / "again", run, "max_steps=4")  # the same dataset at another path: nothing changed
    with pytest.warns(UserWarning) as caught:
        _run_on(tmp_path / "other", run, "max_steps=5")
    message = str(caught[0].message)
    assert len(caught) == 1 and "step_000000004 with changed settings: max_steps, data (the dataset at " in message
    assert (
        f"data.path={tmp_path / 'other'} is not the one the run started on (index.json differs): its split and "
        "batches differ from the uninterrupted run's); the learning-rate schedule changes" in message
    )
    with pytest.warns(UserWarning, match=r"changed settings: data \(the dataset at data\.path=.*/ds is not the one"):
        _run_on(tmp_path / "ds", run, "max_steps=5")  # back from the other dataset (step 5 trained on it)


def test_a_checkpoint_without_a_dataset_fingerprint_is_resumed_on_any_dataset_without_a_word(tmp_path) -> None:
    """Checkpoints written before fingerprints hold none: nothing to compare, so no warning and no error."""
    import warnings  # noqa: PLC0415

    write_dataset(synthetic_records(40), tmp_path / "ds", shard_size=16)
    write_dataset(synthetic_records(40, seed=1), tmp_path / "other", shard_size=16)
    run = tmp_path / "run"
    _run_on(tmp_path / "ds", run, "max_steps=5")
    shutil.rmtree(run / "checkpoints" / "step_000000005")  # as if killed after step 4
    path = run / "checkpoints" / "step_000000004" / "trainer_state.json"
    state = json.loads(path.read_text())
    del state["data_fingerprint"]  # as the code before fingerprints wrote it
    path.write_text(json.dumps(state))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = _run_on(tmp_path / "other", run, "max_steps=5")
    assert result.step == 5
    saved = json.loads((run / "checkpoints" / "step_000000005" / "trainer_state.json").read_text())
    assert saved["data_fingerprint"] == ProteinDataset(tmp_path / "other").fingerprint  # stored from now on


def test_the_dataset_fingerprint_is_the_indexs_and_subsets_keep_it(dataset) -> None:
    """Stage 2 trains on its dataset with encoded tokens attached: the fingerprint is the source dataset's."""
    import hashlib  # noqa: PLC0415

    expected = "sha256:" + hashlib.sha256((dataset.root / "index.json").read_bytes()).hexdigest()
    assert dataset.fingerprint == expected
    part = dataset.subset([0, 2])
    tokens = [np.zeros(n, dtype=np.int64) for n in part.lengths]
    assert part.fingerprint == part.with_structure_tokens(tokens).fingerprint == expected
