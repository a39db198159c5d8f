"""``openesm3 train-tokenizer`` end to end on three small real structures: stage 1, exact resume (EMA codebook
included), export into the official-compatible classes (the baked decoder decodes token ids as the training model
decoded code vectors), stage 2 from stage 1 with a frozen encoder, and a round trip of the exported networks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openesm3 import constants as C
from openesm3.checkpoints.format import load_pretrained
from openesm3.cli.main import main
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.structure.io import load_chain
from openesm3.training.checkpointing import list_checkpoints
from openesm3.training.config import IngestConfig, load_config
from openesm3.training.data import ProteinDataset, collate_proteins
from openesm3.training.ingest import ingest_structures
from openesm3.training.logging import read_metrics
from openesm3.training.tokenizer.config import TokenizerTrainConfig
from openesm3.training.tokenizer.evaluate import round_trip
from openesm3.training.tokenizer.export import resolve_checkpoint
from openesm3.training.tokenizer.model import StructureTokenizerModel
from openesm3.training.tokenizer.run import build_model
from tests.conftest import TEST_DATA

FILES = ("1igd.pdb.gz", "structures/2ZTA.pdb.gz", "structures/localunfolding__trp-cage-cage__2JOF_A.pdb.gz")

TINY = [
    "encoder.d_model=32",
    "encoder.v_heads=4",
    "encoder.d_out=8",
    "encoder.n_codes=16",
    "decoder.d_model=32",
    "decoder.n_heads=2",
    "decoder.n_layers=1",
    "decoder.pairwise_dim=8",
    "data.crop_length=40",
    "data.batch_size=2",
    "data.bucket_boundaries=40",
    "data.split.method=none",
    "optim.warmup_steps=2",
    "log_every=1",
    "ckpt_every=2",
    "keep_last=5",
    "val_every=0",
    "progress=false",
    "tensorboard=false",
    "device=cpu",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tokenizer_data")
    src = root / "pdb"
    src.mkdir()
    for name in FILES:
        shutil.copy(TEST_DATA / name, src / Path(name).name)
    ingest_structures(src, root / "shards", IngestConfig(), progress=False)
    return root / "shards"


def _train(out: Path, data: Path, *extra: str) -> None:
    assert main(["train-tokenizer", "--threads", "1", f"data.path={data}", f"out_dir={out}", *TINY, *extra]) == 0


def test_stage1_resume_export_stage2(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    stage1 = tmp_path / "stage1"
    _train(stage1, dataset, "max_steps=4")
    assert [s for s, _ in list_checkpoints(stage1 / "checkpoints")] == [2, 4]
    final = load_file(str(stage1 / "checkpoints" / "step_000000004" / "model.safetensors"))
    assert bool(final["codebook_initialised"])

    # Resume: drop the last checkpoint and the export, run again -> same weights and codebook (bit for bit).
    again = tmp_path / "again"
    shutil.copytree(stage1, again)
    shutil.rmtree(again / "checkpoints" / "step_000000004")
    shutil.rmtree(again / "export")
    _train(again, dataset, "max_steps=4")
    resumed = load_file(str(again / "checkpoints" / "step_000000004" / "model.safetensors"))
    assert resumed.keys() == final.keys()
    for key in final:
        assert torch.equal(resumed[key], final[key]), key

    # --export-only writes the same networks from the latest checkpoint (here: of a copy of the run, export removed).
    copy = tmp_path / "copy"
    shutil.copytree(stage1, copy)
    shutil.rmtree(copy / "export")
    assert main(["train-tokenizer", f"data.path={dataset}", f"out_dir={copy}", *TINY, "--export-only"]) == 0
    for part in ("structure_encoder", "structure_decoder"):
        exported = load_file(str(copy / "export" / part / "model.safetensors"))
        original = load_file(str(stage1 / "export" / part / "model.safetensors"))
        assert exported.keys() == original.keys()
        assert all(torch.equal(exported[k], original[k]) for k in original), part
    assert main(["train-tokenizer", f"data.path={dataset}", f"out_dir={copy}", *TINY, "--checkpoint", "x"]) == 2
    capsys.readouterr()
    # A config that does not describe the checkpoint's networks is refused, naming the checkpoint and the keys.
    code = main(["train-tokenizer", f"data.path={dataset}", f"out_dir={copy}", *TINY, "encoder.d_out=12",
                 "--export-only"])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "step_000000004" in err and "mis-shaped" in err and "codebook.embeddings" in err

    # Export: the official-compatible classes; the baked decoder decodes ids as training decoded code vectors.
    encoder, enc_cfg = load_pretrained(stage1 / "export" / "structure_encoder", expected_type="structure_encoder")
    decoder, dec_cfg = load_pretrained(stage1 / "export" / "structure_decoder", expected_type="structure_decoder")
    assert isinstance(encoder, StructureEncoder) and isinstance(decoder, StructureDecoder)
    assert enc_cfg.n_codes == 16
    config = load_config(TokenizerTrainConfig, None, [f"data.path={dataset}", *TINY])
    model = StructureTokenizerModel(config.encoder, config.decoder, stage=1)
    state = load_file(str(stage1 / "checkpoints" / "step_000000004" / "model.safetensors"))
    model.load_state_dict(state)
    model.eval()
    data = ProteinDataset(dataset)
    batch = collate_proteins([data[0]])
    with torch.no_grad():
        fwd = model(batch)
        dec_mask = torch.ones(1, fwd.tokens.shape[1] + 2, dtype=torch.bool)
        tokens = torch.cat([torch.tensor([[C.STRUCTURE_BOS]]), fwd.tokens, torch.tensor([[C.STRUCTURE_EOS]])], dim=1)
        out = decoder(tokens, mask=dec_mask)
    torch.testing.assert_close(out.backbone[:, 1:-1], fwd.pred_backbone, atol=2e-4, rtol=1e-4)
    # A deeper stage-2 decoder warm-started from stage 1 decodes exactly as the baked stage-1 decoder at first.
    warm_config = load_config(
        TokenizerTrainConfig,
        None,
        [f"data.path={dataset}", *TINY, "stage=2", f"init_from={stage1}", "decoder_init=stage1",
         "decoder.n_layers=3", "decoder.sequence_conditioning=true"],
    )  # fmt: skip
    warm = build_model(warm_config).decoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(warm(tokens, mask=dec_mask).backbone, out.backbone, atol=1e-5, rtol=0)
    result = round_trip(encoder, decoder, data[0])
    assert result is not None and result.backbone_rmsd > 0 and 0 <= result.lddt_ca <= 1

    # Stage 2: frozen encoder + codebook, a new sequence-conditioned decoder trained with all losses.
    stage2 = tmp_path / "stage2"
    last = stage1 / "checkpoints" / "step_000000004"
    assert resolve_checkpoint(stage1) == resolve_checkpoint(last) == last  # a run directory or a checkpoint
    _train(stage2, dataset, "stage=2", f"init_from={last}", "decoder.sequence_conditioning=true", "max_steps=2")
    enc2 = load_file(str(stage2 / "export" / "structure_encoder" / "model.safetensors"))
    for key, value in enc2.items():
        assert torch.equal(value, final[f"encoder.{key}"]), key
    decoder2, dec2_cfg = load_pretrained(stage2 / "export" / "structure_decoder", expected_type="structure_decoder")
    assert dec2_cfg.sequence_conditioning
    assert isinstance(decoder2, StructureDecoder)
    record = next(data[i] for i in range(len(data)) if data.entries[i]["name"].startswith("1igd"))
    result2 = round_trip(encoder, decoder2, record)
    assert result2 is not None and result2.all_atom_rmsd is not None and result2.all_atom_rmsd_floor is not None
    assert result2.all_atom_rmsd_floor < 0.5 < result2.all_atom_rmsd  # untrained side chains vs ideal-geometry floor
    assert set(result2.chi_errors) >= {1, 2}

    # Token augmentation: every record encoded 3 times (clean + 2 noised), one rendition drawn per example.
    augmented = tmp_path / "stage2_renditions"
    _train(augmented, dataset, "stage=2", f"init_from={last}", "decoder.sequence_conditioning=true", "max_steps=2",
           "token_renditions=3", "token_noise=0.2")  # fmt: skip
    assert (augmented / "export" / "structure_decoder" / "model.safetensors").is_file()

    # A later stage-2 sub-stage (the paper's 2A -> 2B) starts from the stage-2 decoder itself.
    sub_config = load_config(
        TokenizerTrainConfig,
        None,
        [f"data.path={dataset}", *TINY, "stage=2", f"init_from={stage2}", "decoder_init=checkpoint",
         "decoder.sequence_conditioning=true"],
    )  # fmt: skip
    sub = build_model(sub_config)
    stage2_state = load_file(str(resolve_checkpoint(stage2) / "model.safetensors"))
    for key, value in sub.state_dict().items():
        assert torch.equal(value, stage2_state[key]), key

    # Training continues from exported weights alone (decoder_init=weights), here with decoder dropout.
    continued = tmp_path / "stage2_from_weights"
    _train(continued, dataset, "stage=2", f"init_from={stage2 / 'export'}", "decoder_init=weights",
           "decoder.sequence_conditioning=true", "max_steps=2", "decoder_dropout=0.1")  # fmt: skip
    enc3 = load_file(str(continued / "export" / "structure_encoder" / "model.safetensors"))
    assert all(torch.equal(value, enc2[key]) for key, value in enc3.items())  # the frozen encoder is carried over

    # The exported pair works with the user-facing commands: a round trip with all atoms written out.
    out_pdb = tmp_path / "decoded.pdb"
    assert main(["round-trip", str(TEST_DATA / "1igd.pdb.gz"), "--weights", str(stage2 / "export"), "--out",
                 str(out_pdb)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "backbone RMSD" in printed and "all-atom RMSD" in printed
    assert "confidences run high" not in printed  # the warning is about the bundled decoder only
    decoded = load_chain(out_pdb)
    original = load_chain(TEST_DATA / "1igd.pdb.gz")
    assert decoded.sequence == original.sequence
    # side chains are built: the decoded file has the heavy atoms of the input (OXT is not modelled)
    assert int(decoded.atom37_mask.sum()) >= int(original.atom37_mask[:, :36].sum()) - 5


def test_stage2_needs_init_from(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train-tokenizer", f"data.path={dataset}", f"out_dir={tmp_path / 'x'}", "stage=2"])
    assert code == 2
    assert "init_from" in capsys.readouterr().err


def test_token_renditions_need_cached_stage2(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train-tokenizer", f"data.path={dataset}", f"out_dir={tmp_path / 'x'}", "token_renditions=3"])
    assert code == 2
    assert "token_renditions" in capsys.readouterr().err


def test_a_run_holds_out_calibration_chains_and_calibrates_on_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """data.split.method=column with records labelled calibration: the run never trains on them, and
    ``calibrate-tokenizer --run`` refits the export's heads on exactly those chains."""
    import dataclasses
    import json

    from openesm3.training.data import write_dataset
    from tests.unit.test_tokenizer_model import _record

    torch.set_num_threads(1)
    names = ("1igd.pdb.gz", "structures/1PIN.pdb.gz", "structures/1fxd.pdb.gz", "structures/1a62.pdb.gz")
    labels = ("train", "calibration", "train", "calibration")
    records = [
        dataclasses.replace(_record(n), name=f"r{i}", cluster=f"c{i}", split=s)
        for i, (n, s) in enumerate(zip(names, labels, strict=True))
    ]
    write_dataset(records, tmp_path / "data")
    run = tmp_path / "run"
    _train(run, tmp_path / "data", "max_steps=2", "data.split.method=column")
    capsys.readouterr()
    out = tmp_path / "calibrated"
    assert main(["calibrate-tokenizer", "--run", str(run), "--out", str(out), "--steps", "2", "--threads", "1"]) == 0
    assert "the 2 chains" in capsys.readouterr().out
    report = json.loads((out / "calibration.json").read_text())
    assert report["chains"] == ["r1", "r3"] and report["weights"].startswith(str(run / "export"))
    # a run that held nothing out is refused with the remedy
    plain = tmp_path / "plain"
    _train(plain, tmp_path / "data", "max_steps=2")
    capsys.readouterr()
    assert main(["calibrate-tokenizer", "--run", str(plain), "--out", str(tmp_path / "c2"), "--steps", "1"]) == 2
    assert "held out no chains for calibration" in capsys.readouterr().err


def test_the_record_of_a_resumed_stage2_run_names_its_own_checkpoint_not_init_froms_latest(
    tmp_path: Path, dataset: Path, stage1_run: Path
) -> None:
    """A resumed stage-2 run keeps its own checkpoint's frozen encoder, yet its --record named init_from's latest
    checkpoint (after the stage-1 run trained on, one whose encoder the run never used) and not the checkpoint it
    went on from."""
    import json  # noqa: PLC0415

    torch.set_num_threads(1)
    stage1 = tmp_path / "stage1"
    shutil.copytree(stage1_run, stage1)
    stage2 = tmp_path / "s2"
    _train(stage2, dataset, "stage=2", f"init_from={stage1}", "max_steps=2")
    _train(stage1, dataset, "max_steps=4")  # stage 1 trains on: init_from's latest is now another checkpoint
    record = tmp_path / "run.json"
    _train(stage2, dataset, "stage=2", f"init_from={stage1}", "max_steps=4", "--record", str(record))
    inputs = json.loads(record.read_text())["inputs"]
    assert [i for i in inputs if i.get("role") == "init_from checkpoint"] == []
    resumed = [i for i in inputs if i.get("role") == "resumed from checkpoint"]
    assert [Path(i["path"]) for i in resumed] == [stage2 / "checkpoints" / "step_000000002" / "model.safetensors"]
    assert len(resumed[0]["sha256"]) == 64


@pytest.mark.parametrize("index", ["{not json", '{"shards": 3}'], ids=["not-json", "shards-a-number"])
def test_a_broken_dataset_index_is_named_also_with_record(
    tmp_path: Path, index: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing the training data for --record reads the dataset's index first: a broken index must still be named
    as the dataset's problem, not end in a traceback."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "index.json").write_text(index, encoding="utf-8")
    args = ["train-tokenizer", "--threads", "1", f"data.path={data}", f"out_dir={tmp_path / 'run'}", *TINY]
    assert main(["--record", str(tmp_path / "run.json"), *args, "max_steps=1"]) == 2
    assert "index.json" in _error_line(capsys)


def test_the_record_lists_every_shard_of_the_training_data(tmp_path: Path) -> None:
    """The test dataset has one shard: a listing that stopped after the first shard would pass the run's test."""
    import json  # noqa: PLC0415

    from openesm3.training.tokenizer.run import _note_dataset  # noqa: PLC0415
    from openesm3.utils.provenance import Run, running  # noqa: PLC0415

    data = tmp_path / "data"
    data.mkdir()
    names = [f"shard_{i:05d}.safetensors" for i in range(3)]
    for name in names:
        (data / name).write_bytes(b"shard")
    (data / "index.json").write_text(json.dumps({"shards": names}), encoding="utf-8")
    with running(Run("train-tokenizer")) as run:
        _note_dataset(str(data))
    assert run.inputs == {data / n: "training data" for n in ["index.json", *names]}


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    """A finished 2-step stage-1 run (not to be modified by the tests that use it)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("stage1_run") / "run"
    _train(out, dataset, "max_steps=2")
    return out


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "internal error" not in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def _forbid(monkeypatch: pytest.MonkeyPatch, *steps: str) -> None:
    """Make each of the run's expensive ``steps`` (``build_model``, ``tokenized_dataset``) fail the test if reached:
    a refusal must come before them."""
    import openesm3.training.tokenizer.run as run_module  # noqa: PLC0415

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"one of {', '.join(steps)} was reached before the refusal")

    for step in steps:
        monkeypatch.setattr(run_module, step, reached)


def test_resume_past_max_steps_is_refused(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run at step 2 restarted with max_steps=1 used to train nothing, re-export the step-2 weights and print
    'trained to step 1'."""
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    export = (run / "export" / "structure_encoder" / "model.safetensors").read_bytes()
    code = main(["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={run}", *TINY, "max_steps=1"])
    assert code == 2
    err = _error_line(capsys)
    assert "already at step 2" in err and "max_steps=1" in err
    assert (run / "export" / "structure_encoder" / "model.safetensors").read_bytes() == export


def test_resume_with_other_networks_is_a_one_line_error(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resuming with another architecture used to end in an 'internal error' listing every mis-shaped tensor."""
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={run}", *TINY, "max_steps=4"]
    assert main([*args, "decoder.n_layers=2"]) == 2
    err = _error_line(capsys)
    assert "decoder.n_layers" in err and "another out_dir" in err
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [2]  # nothing lost


def test_stage2_from_a_run_with_other_networks_is_a_one_line_error(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """init_from a stage-1 run whose encoder differs from the stage-2 config's used to end in an 'internal error'."""
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={tmp_path / 's2'}", *TINY]
    assert main([*args, "stage=2", f"init_from={stage1_run}", "encoder.d_model=64", "max_steps=1"]) == 2
    err = _error_line(capsys)
    assert str(stage1_run) in err and "encoder" in err and "mis-shaped" in err


def test_resuming_with_changed_settings_warns_in_one_line(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The warning came as Python's 'run.py:168: UserWarning: ...' followed by a line of our source code."""
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={run}", *TINY]
    assert main([*args, "max_steps=2", "optim.lr=5e-4"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("openesm3 train-tokenizer: warning: resuming from ") and "optim.lr" in err, err
    assert "UserWarning" not in err and len(err.splitlines()) == 1


def test_overrides_may_follow_options(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """KEY=VALUE after an option (``... --export-only out_dir=X``) used to be 'unrecognized arguments'."""
    out = tmp_path / "x"
    args = ["train-tokenizer", f"data.path={dataset}", *TINY, "--threads", "1", "--export-only", f"out_dir={out}"]
    assert main([*args, "--checkpoint", str(stage1_run), "max_steps=2"]) == 0
    assert (out / "export" / "structure_encoder" / "model.safetensors").is_file()
    assert main([*args, "--checkpoint", str(stage1_run), "max_steps=0"]) == 2  # the last override is applied too
    assert "max_steps must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an unknown option is still an argparse error
        main([*args, "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_an_out_dir_that_is_a_file_is_refused_first(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """out_dir naming a file failed with a bare '[Errno 17] File exists' after the model and data were built (for
    stage 2, after encoding the whole dataset), and --export-only with 'Not a directory'."""
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={file}", *TINY, "max_steps=1"]
    for extra in ([], ["--export-only", "--checkpoint", str(stage1_run)]):
        assert main([*args, *extra]) == 2
        assert f"out_dir={file}: exists and is not a directory" in _error_line(capsys)
    assert file.read_text() == "mine"


def test_no_validation_records_is_said_and_a_finished_run_trains_nothing(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run asked to validate (val_every > 0) whose split held no validation records silently skipped validation;
    rerunning a finished run printed 'trained to step 2; last train loss None'."""
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", *TINY]
    out = tmp_path / "run"
    split = ["data.split.method=cluster", "data.split.valid_fraction=0", "val_every=1", "max_steps=1"]
    assert main([*args, f"out_dir={out}", *split]) == 0
    assert "openesm3 train-tokenizer: warning: no validation: the 'cluster' split of" in capsys.readouterr().err
    run = tmp_path / "finished"
    shutil.copytree(stage1_run, run)
    assert main([*args, f"out_dir={run}", "max_steps=2"]) == 0
    assert capsys.readouterr().out.startswith("already at step 2 (max_steps): nothing to train")


def test_quiet_turns_the_progress_bars_off(
    tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other command takes --quiet; train-tokenizer (progress=false only) and calibrate-tokenizer did not."""
    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    tiny = [a for a in TINY if a != "progress=false"]
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", *tiny, "max_steps=1"]
    assert main([*args, f"out_dir={tmp_path / 'loud'}"]) == 0
    assert "train (from step 0)" in capsys.readouterr().err  # the bar, by default
    assert main([*args, "--quiet", f"out_dir={tmp_path / 'quiet'}"]) == 0
    assert capsys.readouterr().err == ""
    files = [str(TEST_DATA / name) for name in FILES[:2]]
    calibrate = ["calibrate-tokenizer", *files, "--steps", "1", "--cross-fit", "0", "--heads", "plddt"]
    assert main([*calibrate, "--quiet", "--out", str(tmp_path / "calibrated")]) == 0
    assert capsys.readouterr().err == ""


def test_a_new_run_does_not_overwrite_an_export_without_checkpoints(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished run whose checkpoints were deleted to save space keeps its weights in export/; the same command
    run again started afresh there and replaced them at its end."""
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    shutil.rmtree(run / "checkpoints")
    weights = (run / "export" / "structure_decoder" / "model.safetensors").read_bytes()
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={run}", *TINY, "max_steps=1"]
    assert main(args) == 2
    assert "holds an export/ but no checkpoint" in _error_line(capsys)
    assert (run / "export" / "structure_decoder" / "model.safetensors").read_bytes() == weights


def test_an_interrupted_export_leaves_the_previous_one_whole(
    tmp_path: Path, dataset: Path, stage1_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder was written in place before the decoder, so a run stopped in between left a new encoder beside
    the old decoder: a tokenizer whose decoder reads the codes as other codes, with nothing to tell."""
    import openesm3.training.tokenizer.export as export_module  # noqa: PLC0415

    export = tmp_path / "export"
    shutil.copytree(stage1_run / "export", export)
    before = {p.relative_to(export): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    real_save = export_module.save_pretrained

    def fail_on_decoder(model, config, directory, *, model_type):  # noqa: ANN001, ANN202
        if model_type == "structure_decoder":
            raise KeyboardInterrupt
        return real_save(model, config, directory, model_type=model_type)

    monkeypatch.setattr(export_module, "save_pretrained", fail_on_decoder)
    config = load_config(TokenizerTrainConfig, None, [f"data.path={dataset}", *TINY])
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        export_module.export_networks(build_model(config), export)
    after = {p.relative_to(export): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    assert after == before
    monkeypatch.setattr(export_module, "save_pretrained", real_save)
    export_module.export_networks(build_model(config), export)
    assert sorted(p.name for p in export.iterdir()) == ["structure_decoder", "structure_encoder"]
    assert (export / "structure_encoder" / "model.safetensors").read_bytes() != before[
        Path("structure_encoder/model.safetensors")
    ]


def test_negative_threads_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--threads -1 ended in 'internal error: RuntimeError: set_num_threads expects a positive integer'."""
    assert main(["train-tokenizer", "--threads", "-1", f"out_dir={tmp_path / 'x'}"]) == 2
    assert "--threads must be >= 0" in _error_line(capsys)
    file = str(TEST_DATA / "1igd.pdb.gz")
    assert main(["calibrate-tokenizer", file, "--threads", "-2", "--out", str(tmp_path / "c")]) == 2
    assert "--threads must be >= 0" in _error_line(capsys)


def test_export_only_of_another_checkpoint_does_not_replace_the_runs_export(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--export-only --checkpoint`` of an earlier checkpoint (or of another run) wrote over ``out_dir/export``: the
    run's final weights were swapped for older ones without a word, and ``calibrate-tokenizer --run`` then took them."""
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    _train(run, dataset, "max_steps=4")  # checkpoints 2 and 4, export of step 4
    export = run / "export" / "structure_decoder" / "model.safetensors"
    final = export.read_bytes()
    capsys.readouterr()
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={run}", *TINY, "--export-only"]
    for other in (run / "checkpoints" / "step_000000002", stage1_run):
        assert main([*args, "--checkpoint", str(other)]) == 2
        err = _error_line(capsys)
        assert "holds an export/ and its latest checkpoint is" in err and "move" in err, err
        assert export.read_bytes() == final
    # The run's own latest checkpoint is what the export holds: exporting it again is allowed.
    assert main(args) == 0
    assert main([*args, "--checkpoint", str(run / "checkpoints" / "step_000000004")]) == 0
    assert export.read_bytes() == final
    # Checkpoints deleted to save space: the export is all that is left of the run, and stays.
    shutil.rmtree(run / "checkpoints")
    capsys.readouterr()
    assert main([*args, "--checkpoint", str(stage1_run)]) == 2
    assert "holds an export/ and it holds no checkpoint" in _error_line(capsys)
    assert export.read_bytes() == final
    # Without an export there is nothing to lose: an earlier checkpoint exports as documented.
    shutil.rmtree(run / "export")
    assert main([*args, "--checkpoint", str(stage1_run)]) == 0
    assert export.read_bytes() != final


def test_export_only_takes_the_runs_latest_checkpoint_by_a_relative_path_or_a_symlink(
    tmp_path: Path, dataset: Path, stage1_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The latest checkpoint of the run itself may replace its export however it is named: by a path relative to the
    working directory, or through a symbolic link (a refusal there would be of legitimate use)."""
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    (tmp_path / "latest").symlink_to(run / "checkpoints" / "step_000000002")
    monkeypatch.chdir(tmp_path)
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", "out_dir=run", *TINY, "--export-only"]
    for given in ("run/checkpoints/step_000000002", "latest", str(tmp_path / "latest"), "run"):
        assert main([*args, "--checkpoint", given]) == 0, given


def _cut_state(checkpoint: Path) -> bytes:
    """Cut the trainer_state.json of ``checkpoint`` (as a full disk or an edit would); returns its old bytes."""
    state = checkpoint / "trainer_state.json"
    old = state.read_bytes()
    state.write_bytes(old[:40])
    return old


def test_stage2_from_a_run_whose_newest_checkpoint_is_damaged_is_refused(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``init_from=<stage-1 run>`` whose newest step_ directory had its trainer_state.json cut took the run's older
    checkpoint: stage 2 started from another encoder than stage 1 ended with, without a word. It is refused, naming
    the directory; the checkpoint named explicitly is taken, and a resumed stage-2 run (whose networks all come from
    its own checkpoint) is no business of it."""
    stage1 = tmp_path / "stage1"
    shutil.copytree(stage1_run, stage1)
    _train(stage1, dataset, "max_steps=4")  # checkpoints 2 and 4
    stage2 = ["stage=2", f"init_from={stage1}", "decoder_init=checkpoint", "max_steps=2"]
    _train(tmp_path / "resumed", dataset, *stage2[:3], "max_steps=1")
    _cut_state(stage1 / "checkpoints" / "step_000000004")
    capsys.readouterr()
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={tmp_path / 's2'}", *TINY]
    for given in (stage1, stage1 / "checkpoints"):
        assert main([*args, "stage=2", f"init_from={given}", "max_steps=1"]) == 2
        err = _error_line(capsys)
        assert "step_000000004: a checkpoint that cannot be read (trainer_state.json is not JSON" in err, err
        assert "would stand for the older step_000000002 instead" in err and "move it out of" in err, err
        assert list_checkpoints(tmp_path / "s2" / "checkpoints") == []
    _train(tmp_path / "s2", dataset, "stage=2", f"init_from={stage1 / 'checkpoints' / 'step_000000002'}", "max_steps=1")
    _train(tmp_path / "resumed", dataset, *stage2)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed" / "checkpoints")] == [1, 2]


def test_export_only_of_a_run_whose_newest_checkpoint_is_damaged_is_refused(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--export-only`` of a run whose newest step_ directory had its trainer_state.json cut exported the older
    checkpoint over the run's export of the newest, without a word. It is refused and the export kept; a damaged
    checkpoint older than the latest good one is no obstacle."""
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    _train(run, dataset, "max_steps=4")  # checkpoints 2 and 4, export of step 4
    export = run / "export" / "structure_encoder" / "model.safetensors"
    final = export.read_bytes()
    state = _cut_state(run / "checkpoints" / "step_000000004")
    capsys.readouterr()
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={run}", *TINY, "--export-only"]
    assert main(args) == 2
    err = _error_line(capsys)
    assert "step_000000004: a checkpoint that cannot be read (trainer_state.json is not JSON" in err, err
    assert "older step_000000002" in err, err
    # named explicitly, the older checkpoint still does not replace an export that may hold the newest's networks
    assert main([*args, "--checkpoint", str(run / "checkpoints" / "step_000000002")]) == 2
    assert "holds an export/ and " in (err := _error_line(capsys)) and "step_000000004" in err, err
    assert export.read_bytes() == final
    # repaired, and the older one damaged instead: the run's latest is its newest again
    (run / "checkpoints" / "step_000000004" / "trainer_state.json").write_bytes(state)
    _cut_state(run / "checkpoints" / "step_000000002")
    assert main(args) == 0
    assert export.read_bytes() == final


def test_a_resumed_stage2_run_decodes_the_tokens_of_its_own_encoder(
    tmp_path: Path, dataset: Path, stage1_run: Path
) -> None:
    """A resumed stage-2 run encoded its dataset with init_from's latest encoder: once the stage-1 run had trained on,
    the decoder continued on other tokens than it started on (its checkpoint's encoder, exported beside it, never
    made them), silently. Resumed, it must end exactly where the uninterrupted run ends."""
    torch.set_num_threads(1)
    stage1 = tmp_path / "stage1"
    shutil.copytree(stage1_run, stage1)
    stage2 = ["stage=2", f"init_from={stage1}", "max_steps=4"]
    _train(tmp_path / "whole", dataset, *stage2)
    _train(tmp_path / "resumed", dataset, *stage2[:2], "max_steps=2")
    _train(stage1, dataset, "max_steps=6", "optim.lr=0.05")  # stage 1 trains on: its latest encoder moves
    _train(tmp_path / "resumed", dataset, *stage2)
    whole = load_file(str(tmp_path / "whole" / "checkpoints" / "step_000000004" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "checkpoints" / "step_000000004" / "model.safetensors"))
    for key in whole:
        assert torch.equal(resumed[key], whole[key]), key


def test_the_run_record_names_the_training_data_and_the_init_from_checkpoint(
    tmp_path: Path, dataset: Path, stage1_run: Path
) -> None:
    """--record of a training run listed the config file only: nothing said which data it trained on or which of
    init_from's checkpoints gave its frozen encoder, so the record could not tell two such runs apart."""
    import json  # noqa: PLC0415

    record = tmp_path / "run.json"
    args = ["stage=2", f"init_from={stage1_run}", "max_steps=1", "--record", str(record)]
    _train(tmp_path / "s2", dataset, *args)
    run = json.loads(record.read_text())
    inputs = run["inputs"]
    from openesm3.generation.bundle import resolve_device  # noqa: PLC0415

    assert run["device"] == str(resolve_device("auto"))  # the config's device (auto), resolved; it was null
    data = {Path(i["path"]).name: i for i in inputs if i.get("role") == "training data"}
    assert sorted(data) == ["index.json", *sorted(p.name for p in dataset.glob("shard_*.safetensors"))]
    assert all(len(i["sha256"]) == 64 for i in data.values())
    start = [i for i in inputs if i.get("role") == "init_from checkpoint"]
    assert [Path(i["path"]) for i in start] == [stage1_run / "checkpoints" / "step_000000002" / "model.safetensors"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["resume=false", "max_steps=4"], "holds checkpoints but resume=false: use another out_dir or resume=true"),
        (["max_steps=1"], "already at step 2, past max_steps=1"),
    ],
    ids=["resume-false", "past-max-steps"],
)
def test_a_refused_stage2_run_is_refused_before_it_encodes_its_dataset(
    tmp_path: Path,
    dataset: Path,
    stage1_run: Path,
    extra: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """resume=false over an out_dir holding checkpoints (and a run already past max_steps) were refused by the loop,
    after stage 2 had built its model and encoded its whole dataset: minutes on real data, for a one-line error."""
    _forbid(monkeypatch, "tokenized_dataset", "build_model")
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)  # checkpoint at step 2
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={run}", *TINY]
    assert main([*args, "stage=2", f"init_from={stage1_run}", *extra]) == 2
    assert expected in _error_line(capsys)
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [2]


def test_a_run_written_by_another_number_of_processes_is_refused_before_any_work(
    tmp_path: Path,
    dataset: Path,
    stage1_run: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run resumed with another number of processes was refused by the loop once it had loaded the checkpoint:
    after stage 2 had built its model and encoded its whole dataset. The trainer state says the number first."""
    import json  # noqa: PLC0415

    _forbid(monkeypatch, "tokenized_dataset", "build_model")
    run = tmp_path / "run"
    shutil.copytree(stage1_run, run)
    latest = run / "checkpoints" / "step_000000002"  # as a run of 2 processes wrote it
    state = json.loads((latest / "trainer_state.json").read_text())
    (latest / "trainer_state.json").write_text(json.dumps({**state, "world_size": 2}))
    shutil.copy(latest / "rng_rank0.json", latest / "rng_rank1.json")
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={run}", *TINY, "max_steps=4"]
    assert main([*args, "stage=2", f"init_from={stage1_run}"]) == 2
    assert "step_000000002: written by 2 processes, resumed with 1; resume with the same number" in _error_line(capsys)


def test_a_stage2_run_resumed_with_other_networks_is_refused_before_it_encodes_its_dataset(
    tmp_path: Path,
    dataset: Path,
    stage1_run: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stage-2 run resumed with another decoder was refused by the loop on loading the checkpoint, after the whole
    dataset had been encoded; the header of the checkpoint's tensors says it before the encoding."""
    torch.set_num_threads(1)
    stage2 = ["stage=2", f"init_from={stage1_run}", "decoder_init=random"]
    _train(tmp_path / "s2", dataset, *stage2, "max_steps=2")
    _forbid(monkeypatch, "tokenized_dataset")
    args = ["train-tokenizer", "--threads", "1", f"data.path={dataset}", f"out_dir={tmp_path / 's2'}", *TINY]
    assert main([*args, *stage2, "max_steps=4", "decoder.n_layers=2"]) == 2
    err = _error_line(capsys)
    assert "does not fit this configuration's model (changed settings: decoder.n_layers, max_steps)" in err, err
    assert [s for s, _ in list_checkpoints(tmp_path / "s2" / "checkpoints")] == [2]


def test_the_record_gives_the_training_data_as_the_run_read_it(
    tmp_path: Path,
    dataset: Path,
    stage1_run: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--record hashed the training data when the run ended: a dataset edited while the run trained was recorded as
    the data it trained on. The record gives the files as the run read them at its start, says which changed, and
    the change is said on stderr; a checkpoint the run removed itself (keep_last) is no such change."""
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    import openesm3.training.tokenizer.run as run_module  # noqa: PLC0415

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    index = data / "index.json"
    before = hashlib.sha256(index.read_bytes()).hexdigest()
    real_train = run_module.train

    def train_while_the_data_changes(*args: object, **kwargs: object) -> object:
        index.write_text(index.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # the user edits the dataset
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run_module, "train", train_while_the_data_changes)
    record = tmp_path / "run.json"
    _train(tmp_path / "run", data, "max_steps=1", "--record", str(record))
    entry = next(i for i in json.loads(record.read_text())["inputs"] if Path(i["path"]) == index)
    assert entry["sha256"] == before and entry["at_end"] == "changed"
    err = capsys.readouterr().err
    assert f"warning: --record {record}: {index} (training data) changed while the run went on" in err, err

    monkeypatch.setattr(run_module, "train", real_train)
    run = tmp_path / "resumed"
    shutil.copytree(stage1_run, run)
    resumed = run / "checkpoints" / "step_000000002" / "model.safetensors"
    weights = hashlib.sha256(resumed.read_bytes()).hexdigest()
    _train(run, data, "max_steps=4", "keep_last=1", "--record", str(record))
    inputs = json.loads(record.read_text())["inputs"]
    entry = next(i for i in inputs if i.get("role") == "resumed from checkpoint")
    assert entry["sha256"] == weights and entry["at_end"] == "removed"  # by the run: keep_last=1
    assert [i for i in inputs if i.get("role") == "training data" and "at_end" in i] == []
    assert "--record" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("decoder_init", "parts"),
    [("random", ["structure_encoder"]), ("weights", ["structure_encoder", "structure_decoder"])],
)
def test_the_record_of_stage2_from_a_weights_directory_names_the_weights_it_started_from(
    tmp_path: Path, dataset: Path, stage1_run: Path, decoder_init: str, parts: list[str]
) -> None:
    """Stage 2 from a checkpoint listed it as `init_from checkpoint`; from a weights directory (a run's export/) the
    record's inputs named nothing it started from."""
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    export = stage1_run / "export"
    record = tmp_path / "run.json"
    args = ["stage=2", f"init_from={export}", f"decoder_init={decoder_init}", "max_steps=1", "--record", str(record)]
    _train(tmp_path / "s2", dataset, *args)
    start = [i for i in json.loads(record.read_text())["inputs"] if i.get("role") == "init_from weights"]
    files = [export / part / "model.safetensors" for part in parts]
    assert [Path(i["path"]) for i in start] == files
    assert [i["sha256"] for i in start] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]


def test_a_resumed_stage2_run_from_a_weights_directory_records_its_own_checkpoint_not_the_weights(
    tmp_path: Path, dataset: Path, stage1_run: Path
) -> None:
    """A resumed run restores every network from its own checkpoint: the weights init_from holds (which may have been
    replaced since the run began) are not what it went on from, so its record must not list them as its start."""
    import json  # noqa: PLC0415

    run, record = tmp_path / "s2", tmp_path / "run.json"
    args = ["stage=2", f"init_from={stage1_run / 'export'}", "decoder_init=weights"]
    _train(run, dataset, *args, "max_steps=2")
    _train(run, dataset, *args, "max_steps=4", "--record", str(record))
    inputs = json.loads(record.read_text())["inputs"]
    assert [i["role"] for i in inputs if i.get("role") not in (None, "training data")] == ["resumed from checkpoint"]


# a split with one validation chain (1igd) and two training chains
VALIDATED = ["data.split.method=cluster", "data.split.seed=1", "data.split.valid_fraction=0.1"]


def _train_losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]


def _final_weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(dict(list_checkpoints(run / "checkpoints"))[step] / "model.safetensors"))


@pytest.mark.parametrize("stage", [1, 2])
def test_validating_changes_no_training_step(
    tmp_path: Path, dataset: Path, stage: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Validation drew from the global torch RNG (stage 2's sequence-dropout draw and all-atom atom subsets), so two
    runs with the same seed and data but another val_every trained different models, and resuming with another
    val_every warned of a changed setting."""
    torch.set_num_threads(1)
    settings = [*VALIDATED, "decoder.sequence_conditioning=true", "max_steps=4"]
    if stage == 2:
        _train(tmp_path / "stage1", dataset, *VALIDATED, "max_steps=2")
        settings += ["stage=2", f"init_from={tmp_path / 'stage1'}"]
    runs = {every: tmp_path / f"val_every_{every}" for every in (0, 1, 3)}
    for every, run in runs.items():
        _train(run, dataset, *settings, f"val_every={every}")
    base = _final_weights(runs[0], 4)
    for every in (1, 3):
        assert _train_losses(runs[every]) == _train_losses(runs[0]), every
        weights = _final_weights(runs[every], 4)
        assert weights.keys() == base.keys() and all(torch.equal(weights[k], base[k]) for k in base), every
    # every run validates its last step, on the same weights: the same valid loss, however often it validated before
    valid = [[r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "valid"] for run in runs.values()]
    assert [len(rows) for rows in valid] == [1, 4, 2]
    last = [(rows[-1]["step"], rows[-1]["loss"], rows[-1]["metrics"]) for rows in valid]
    assert last[1] == last[0] and last[2] == last[0]

    # resumed from its step-2 checkpoint with another val_every: no changed setting, the same end
    resumed = tmp_path / "resumed"
    shutil.copytree(runs[0], resumed)
    shutil.rmtree(dict(list_checkpoints(resumed / "checkpoints"))[4])
    shutil.rmtree(resumed / "export")
    capsys.readouterr()
    _train(resumed, dataset, *settings, "val_every=1")
    assert "warning" not in capsys.readouterr().err
    weights = _final_weights(resumed, 4)
    assert all(torch.equal(weights[k], base[k]) for k in base)


@pytest.mark.parametrize("stage", [1, 2])
def test_a_run_resumed_on_another_dataset_names_it_and_on_a_reingested_one_says_nothing(
    tmp_path: Path, dataset: Path, stage1_run: Path, capsys: pytest.CaptureFixture[str], stage: int
) -> None:
    """A run resumed with data.path naming another dataset (data.path is run-only: a moved dataset is the same one)
    trained on other structures and another split without a word. Stage 2 fingerprints the dataset it encodes."""
    torch.set_num_threads(1)
    src = dataset.parent / "pdb"
    again, other = tmp_path / "again", tmp_path / "other"
    ingest_structures(src, again, IngestConfig(), progress=False)  # the same files ingested elsewhere
    (tmp_path / "two").mkdir()
    for name in FILES[:2]:
        shutil.copy(src / Path(name).name, tmp_path / "two" / Path(name).name)
    ingest_structures(tmp_path / "two", other, IngestConfig(), progress=False)
    run = tmp_path / "run"
    stage_args = ["stage=2", f"init_from={stage1_run}"] if stage == 2 else []
    if stage == 1:
        shutil.copytree(stage1_run, run)
    else:
        _train(run, dataset, *stage_args, "max_steps=2")
    capsys.readouterr()
    _train(run, again, *stage_args, "max_steps=2")
    assert capsys.readouterr().err == ""
    _train(run, other, *stage_args, "max_steps=3")
    err = capsys.readouterr().err
    assert err.startswith("openesm3 train-tokenizer: warning: resuming from ") and len(err.splitlines()) == 1, err
    assert (
        f"changed settings: max_steps, data (the dataset at data.path={other} is not the one the run started on "
        "(index.json differs): its split and batches differ from the uninterrupted run's)"
    ) in err
