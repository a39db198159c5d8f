"""Checkpoints: exact round trip, keep-N, RNG states, and half-written checkpoints never becoming the latest."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

import openesm3.training.checkpointing as ckpt
from openesm3.training.distributed import full_state_dicts, load_full_state_dicts


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run much faster on one thread (and do not fight other jobs on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trained(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def _save(root, step: int, model: nn.Module, opt: torch.optim.Optimizer, keep_last: int = 3):
    m, o = full_state_dicts(model, opt)
    return ckpt.save_checkpoint(
        root,
        step,
        model_state=m,
        optimizer_state=o,
        trainer_state={"sampler": {"epoch": 1, "step": step}},
        keep_last=keep_last,
    )


def test_round_trip_is_exact(tmp_path) -> None:
    model, opt = _trained()
    path = _save(tmp_path, 3, model, opt)
    assert path.name == "step_000000003" and ckpt.latest_checkpoint(tmp_path) == path
    loaded = ckpt.load_checkpoint(path)
    assert loaded.step == 3 and loaded.trainer_state["sampler"] == {"epoch": 1, "step": 3}
    fresh, fresh_opt = _trained(seed=1)
    load_full_state_dicts(fresh, fresh_opt, loaded.model_state, loaded.optimizer_state)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    # both continue identically
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (fresh, fresh_opt)):
        m(x).pow(2).mean().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
    # plain files: safetensors + JSON, nothing pickled
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "rng_rank0.json",
        "trainer_state.json",
    ]
    state = json.loads((path / "trainer_state.json").read_text())
    assert (
        state["format"] == ckpt.CHECKPOINT_FORMAT and state["optimizer"]["param_groups"][0]["params"][0] == "0.weight"
    )


def test_the_run_record_lists_the_checkpoints_kept_with_their_hashes(tmp_path) -> None:
    """Checkpoint files are written in a staging folder and renamed into place: the run record listed none of them
    (only latest.txt). Now it lists the files of the checkpoints kept, hashed as written; those removed by keep_last
    are no longer outputs."""
    import hashlib  # noqa: PLC0415

    from openesm3.utils import provenance  # noqa: PLC0415

    model, opt = _trained()
    with provenance.running(provenance.Run("train-tokenizer", hash_outputs=True)) as run:
        for step in (1, 2, 3):
            _save(tmp_path, step, model, opt, keep_last=2)
    kept = [tmp_path / "step_000000002", tmp_path / "step_000000003"]
    files = sorted(file for folder in kept for file in folder.iterdir())
    assert sorted(run.outputs) == sorted([*files, tmp_path / "latest.txt"])
    for file in files:
        assert run.outputs[file].sha256 == hashlib.sha256(file.read_bytes()).hexdigest()


def test_tied_weights_are_saved(tmp_path) -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 5, bias=False))
    model[1].weight = model[0].weight
    opt = torch.optim.AdamW(model.parameters())
    path = _save(tmp_path, 1, model, opt)
    state = ckpt.load_checkpoint(path).model_state
    assert torch.equal(state["0.weight"], state["1.weight"])


def test_keep_last(tmp_path) -> None:
    model, opt = _trained()
    for step in (1, 2, 3, 4, 5):
        _save(tmp_path, step, model, opt, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.txt", "step_000000004", "step_000000005"]


def test_half_written_checkpoints_never_become_latest(tmp_path, monkeypatch) -> None:
    model, opt = _trained()
    good = _save(tmp_path, 2, model, opt)
    # a leftover from a run killed while saving, and a complete-looking directory missing a file
    tmp = tmp_path / ".step_000000009.tmp"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"partial")
    broken = tmp_path / "step_000000008"
    broken.mkdir()
    (broken / "trainer_state.json").write_text(json.dumps({"world_size": 1}))
    assert ckpt.latest_checkpoint(tmp_path) == good
    # a save that dies half way (here: while writing the optimizer file) leaves the previous one latest
    real = ckpt._save_tensors
    calls = []

    def dying(path, tensors):  # noqa: ANN001
        calls.append(path.name)
        if path.name == ckpt.OPTIMIZER_FILE:
            raise KeyboardInterrupt("killed")
        real(path, tensors)

    monkeypatch.setattr(ckpt, "_save_tensors", dying)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 3, model, opt)
    assert calls == ["model.safetensors", "optimizer.safetensors"]
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert not (tmp_path / "step_000000003").exists()
    monkeypatch.setattr(ckpt, "_save_tensors", real)
    newer = _save(tmp_path, 4, model, opt)
    assert ckpt.latest_checkpoint(tmp_path) == newer
    assert not list(tmp_path.glob(".step_*"))  # stale temporaries are cleaned up by the next save


def test_rng_states_round_trip() -> None:
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    state = json.loads(json.dumps(ckpt.capture_rng_state()))
    draws = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    random.seed(9)
    np.random.seed(9)  # noqa: NPY002
    torch.manual_seed(9)
    ckpt.restore_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert draws[0] == again[0] and draws[1] == again[1] and torch.equal(draws[2], again[2])


def test_unreadable_checkpoint(tmp_path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="unreadable checkpoint state"):
        ckpt.load_checkpoint(tmp_path)
    (tmp_path / "trainer_state.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ckpt.CheckpointError, match="not an openesm3-train-checkpoint v1"):
        ckpt.load_checkpoint(tmp_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compile machinery
def test_wrappers_do_not_leak_into_parameter_names() -> None:
    model, opt = _trained()
    compiled = torch.compile(model)  # lazy: nothing is compiled until it runs
    m, o = full_state_dicts(compiled, opt)
    assert list(m) == list(model.state_dict()) and "0.weight" in o["state"]


def test_optimizer_entries_that_are_not_tensors_survive_the_round_trip(tmp_path) -> None:
    model, opt = _trained()
    m, o = full_state_dicts(model, opt)
    name = next(iter(o["state"]))
    o["state"][name]["custom_count"] = 7  # plain numbers, as some optimizers keep per parameter
    o["state"][name]["step"] = 3.0
    ckpt.save_checkpoint(tmp_path, 1, model_state=m, optimizer_state=o, trainer_state={}, keep_last=1)
    loaded = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert loaded.optimizer_state["state"][name]["custom_count"] == 7
    assert loaded.optimizer_state["state"][name]["step"] == 3.0
    assert torch.equal(loaded.optimizer_state["state"][name]["exp_avg"], o["state"][name]["exp_avg"])


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path) -> None:
    model, opt = _trained()
    path = _save(tmp_path, 1, model, opt)
    state = json.loads((path / ckpt.STATE_FILE).read_text())
    state["version"] = ckpt.CHECKPOINT_FORMAT_VERSION + 1
    (path / ckpt.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ckpt.CheckpointError, match=r"not an openesm3-train-checkpoint v1 .*version 2"):
        ckpt.load_checkpoint(path)


def test_cuda_rng_states_are_restored_when_the_checkpoint_has_them(monkeypatch) -> None:
    state = json.loads(json.dumps(ckpt.capture_rng_state()))
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    ckpt.restore_rng_state(state)  # no "cuda" entry: nothing to restore on the GPU
    assert restored == []
    cuda = torch.arange(16, dtype=torch.uint8)
    ckpt.restore_rng_state({**state, "cuda": [ckpt._b64(cuda), ckpt._b64(cuda + 1)]})
    assert len(restored) == 1 and [t.tolist() for t in restored[0]] == [cuda.tolist(), (cuda + 1).tolist()]


def test_a_model_state_missing_a_parameter_is_refused(tmp_path) -> None:
    model, opt = _trained()
    m, o = full_state_dicts(model, opt)
    del m["2.bias"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*2\.bias"):
        load_full_state_dicts(model, opt, m, o)


def test_a_step_saved_again_replaces_its_checkpoint(tmp_path) -> None:
    model, opt = _trained(0)
    _save(tmp_path, 1, model, opt)
    other, other_opt = _trained(1)
    path = _save(tmp_path, 1, other, other_opt)
    loaded = ckpt.load_checkpoint(path)
    assert all(torch.equal(v, loaded.model_state[k]) for k, v in other.state_dict().items())
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1]


def test_every_process_writes_and_reads_its_own_rng_state(tmp_path) -> None:
    model, opt = _trained()
    m, o = full_state_dicts(model, opt)
    states, barriers = {}, []

    def rank1_joins() -> None:  # one process plays both: rank 1 writes at rank 0's first barrier (directory made)
        barriers.append(1)
        if len(barriers) == 1:
            torch.manual_seed(101)
            states[1] = ckpt.capture_rng_state()
            ckpt.save_checkpoint(
                tmp_path, 1, model_state={}, optimizer_state={}, trainer_state={}, keep_last=2, rank=1, world_size=2
            )
            torch.manual_seed(100)
            states[0] = ckpt.capture_rng_state()

    path = ckpt.save_checkpoint(
        tmp_path, 1, model_state=m, optimizer_state=o, trainer_state={}, keep_last=2, world_size=2, barrier=rank1_joins
    )
    assert ckpt.latest_checkpoint(tmp_path) == path  # complete: one RNG file per process
    assert ckpt.load_checkpoint(path, rank=0).rng_state == json.loads(json.dumps(states[0]))
    assert ckpt.load_checkpoint(path, rank=1).rng_state == json.loads(json.dumps(states[1]))
    assert ckpt.load_checkpoint(path, rank=2).rng_state is None  # resumed with more processes: none for rank 2


def test_cuda_rng_states_of_more_gpus_than_this_node_has_are_restored_for_those_it_has(monkeypatch) -> None:
    """A checkpoint written by a process that saw 2 GPUs, resumed where each process sees 1: the state of GPU 1
    has nowhere to go (torch raises setting it), so only GPU 0's is restored; the CPU streams are restored too."""
    state = ckpt.capture_rng_state()
    state["cuda"] = [ckpt._b64(torch.full((16,), i, dtype=torch.uint8)) for i in range(2)]
    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    expected = torch.rand(3)
    ckpt.restore_rng_state(state)
    assert torch.equal(torch.rand(3), expected)
    assert len(restored) == 1 and [t[0].item() for t in restored[0]] == [0]


@pytest.mark.parametrize(
    ("state", "kind"),
    [([1], "a JSON array"), ("x", "a JSON string"), (None, "JSON null"), ({"world_size": None}, None),
     ({"world_size": "2"}, None), ({"world_size": 0}, None), ({"world_size": True}, None)],
)  # fmt: skip
def test_a_trainer_state_of_another_shape_is_no_checkpoint_and_is_named_when_read(tmp_path, state, kind) -> None:
    """A trainer_state.json holding JSON that is not an object, or a world size that is not a count, ended listing
    the run's checkpoints (every resume) in an AttributeError / TypeError traceback; it is now no checkpoint to
    resume from, like an unreadable one, and reading it directly names the file and what it holds."""
    model, opt = _trained()
    good = _save(tmp_path, 2, model, opt)
    damaged = _save(tmp_path, 3, model, opt)
    (damaged / ckpt.STATE_FILE).write_text(json.dumps(state))
    assert ckpt.list_checkpoints(tmp_path) == [(2, good)]
    assert ckpt.latest_checkpoint(tmp_path) == good
    if kind is not None:
        with pytest.raises(
            ckpt.CheckpointError, match=f"unreadable checkpoint state \\(trainer_state.json holds {kind}\\)"
        ):
            ckpt.read_trainer_state(damaged)


def test_damaged_checkpoints_are_listed_with_why(tmp_path) -> None:
    """A trainer_state.json that is not UTF-8 ended listing the run's checkpoints in a UnicodeDecodeError traceback;
    it is no checkpoint, and damaged_checkpoints says why each step_ directory is none."""
    model, opt = _trained()
    good = _save(tmp_path, 2, model, opt, keep_last=10)
    bad = {step: _save(tmp_path, step, model, opt, keep_last=10) for step in (3, 4, 5, 6)}
    (bad[3] / ckpt.STATE_FILE).write_bytes(b"\xff\xfe")
    (bad[4] / ckpt.STATE_FILE).unlink()
    (bad[5] / ckpt.STATE_FILE).write_text('{"world_size": 0}')
    (bad[6] / "rng_rank0.json").unlink()
    (tmp_path / ".step_000000007.tmp").mkdir()  # a half-written one: not named step_, not damaged
    assert ckpt.list_checkpoints(tmp_path) == [(2, good)]
    found = ckpt.damaged_checkpoints(tmp_path)
    assert [(s, p) for s, p, _ in found] == [(s, bad[s]) for s in (3, 4, 5, 6)]
    assert found[0][2].startswith("trainer_state.json is not JSON: 'utf-8' codec can't decode")
    assert found[1][2] == "trainer_state.json cannot be read: No such file or directory"
    assert found[2][2] == "trainer_state.json gives world_size 0, not a number of processes"
    assert found[3][2] == "rng_rank0.json missing"
    with pytest.raises(ckpt.CheckpointError, match="step_000000003: unreadable checkpoint state"):
        ckpt.read_trainer_state(bad[3])
    assert ckpt.damaged_checkpoints(tmp_path / "none") == []
