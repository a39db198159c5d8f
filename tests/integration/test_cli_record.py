"""``--record FILE`` (the run record) and the provenance note of structure files written from a model, end to end on
tiny random networks (tests/task_testing.py). The SHA-256 expected are computed here with hashlib, independently of
:mod:`openesm3.utils.provenance`."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import openesm3
from openesm3.cli.main import main
from openesm3.errors import InputError
from openesm3.protein import Protein
from openesm3.structure.io import load_structure
from openesm3.utils import provenance
from openesm3.utils.atomic import atomic_write_text
from tests.task_testing import FAST, TRP_CAGE

SEQUENCE = "MKTAYIAKQRQISFVKSHFS"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _fasta(tmp_path: Path, text: str = f">one\n{SEQUENCE}\n") -> Path:
    path = tmp_path / "in.fasta"
    path.write_text(text)
    return path


def test_the_record_holds_versions_options_weights_inputs_outputs_and_times(weights: Path, tmp_path: Path) -> None:
    fasta = _fasta(tmp_path)
    out, record = tmp_path / "fold", tmp_path / "run.json"
    before = datetime.now(timezone.utc)
    assert main(["fold", str(fasta), "-o", str(out), "--weights", str(weights), "--record", str(record), *FAST]) == 0
    after = datetime.now(timezone.utc)
    r = _record(record)
    assert r["format"] == "openesm3-run-record" and r["openesm3_version"] == openesm3.__version__
    assert r["torch"] == torch.__version__ and r["python"].count(".") == 2 and r["platform"]
    assert r["command"] == "fold"
    assert r["argv"] == ["openesm3", "fold", str(fasta), "-o", str(out), "--weights", str(weights),
                         "--record", str(record), *FAST]  # fmt: skip
    # Every option after defaults, those not given included.
    assert r["options"]["temperature"] == 0.0 and r["options"]["strategy"] == "entropy"
    assert r["options"]["batch_size"] == 8 and r["options"]["steps"] == 3 and r["options"]["format"] is None
    assert (r["seed"], r["dtype"], r["threads"]) == (0, "fp32", torch.get_num_threads())
    assert r["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # "auto" resolved
    # The weight files loaded, each with its config, hashed independently here.
    roles = {w["role"]: w for w in r["weights"]}
    assert set(roles) == {"esm3", "structure_decoder"}
    for role, entry in roles.items():
        file = weights / role / "model.safetensors"
        assert entry["path"] == str(file) and entry["size"] == file.stat().st_size
        assert entry["sha256"] == _sha256(file)
        assert entry["config"]["sha256"] == _sha256(weights / role / "config.json")
    assert r["inputs"] == [{"option": "inputs", "path": str(fasta), "size": fasta.stat().st_size,
                            "sha256": _sha256(fasta)}]  # fmt: skip
    written = {o["path"]: o for o in r["outputs"]}
    assert set(written) == {str(out / "one.pdb"), str(out / "summary.tsv")}
    for path, entry in written.items():
        assert entry["sha256"] == _sha256(Path(path)) and entry["size"] == Path(path).stat().st_size
    started, ended = datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["ended"])
    assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= started <= ended <= after
    assert 0 <= r["duration_s"] <= (after - before).total_seconds() + 0.01
    assert (r["status"], r["exit_code"], r["error"], r["errors"]) == ("ok", 0, None, [])
    assert not list(tmp_path.glob(".run.json*"))  # no temporary file left


def test_the_record_may_come_before_the_command(tmp_path: Path) -> None:
    record = tmp_path / "run.json"
    assert main(["--record", str(record), "featurize", str(TRP_CAGE), "--json", str(tmp_path / "f.json")]) == 0
    r = _record(record)
    assert (r["command"], r["status"], r["seed"], r["weights"]) == ("featurize", "ok", None, [])
    assert [o["path"] for o in r["outputs"]] == [str(tmp_path / "f.json")]


def test_the_record_is_written_when_an_input_error_stops_the_command(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    fasta, record = _fasta(tmp_path), tmp_path / "run.json"
    args = ["fold", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(weights), "--temperature", "-1"]
    assert main([*args, "--record", str(record), *FAST]) == 2
    r = _record(record)
    assert (r["status"], r["exit_code"]) == ("error", 2)
    assert "--temperature must be a finite number >= 0, got -1.0" in r["error"]
    assert "--temperature must be" in capsys.readouterr().err
    # With --debug the error goes on out of main (for its traceback): the record is written all the same.
    record.unlink()
    with pytest.raises(InputError, match="--temperature"):
        main([*args, "--record", str(record), "--debug", *FAST])
    assert (_record(record)["status"], _record(record)["exit_code"]) == ("error", None)
    # Items that fail while the others complete: status "failed", each item's error listed.
    bad = _fasta(tmp_path, f">one\n{SEQUENCE}\n>bad\nMKJT\n")
    assert main(["fold", str(bad), "-o", str(tmp_path / "o"), "--weights", str(weights), "--record", str(record),
                 *FAST]) == 1  # fmt: skip
    r = _record(record)
    assert (r["status"], r["exit_code"], r["error"]) == ("failed", 1, None)
    assert len(r["errors"]) == 1 and "record 'bad'" in r["errors"][0] and "invalid character 'J'" in r["errors"][0]


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_an_interrupted_run_is_recorded_and_the_old_record_kept_until_the_end(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    """An existing record is replaced, atomically, only when the run ends: while it runs the old one is intact."""
    import openesm3.generation.tasks as tasks  # noqa: PLC0415

    fasta, record = _fasta(tmp_path, f">one\n{SEQUENCE}\n>two\nMKTAYI\n"), tmp_path / "run.json"
    record.write_text("the previous record\n")
    real, seen = tasks.generate, []

    def stop_at_the_second_batch(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(record.read_text())
        if len(seen) == 2:
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)  # main() turns it into an exception, as Ctrl-C
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "generate", stop_at_the_second_batch)
    code = main(["fold", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(weights), "--batch-size", "1",
                 "--record", str(record), *FAST])  # fmt: skip
    assert code == (130 if stop == "ctrl-c" else 128 + signal.SIGTERM)
    assert seen == ["the previous record\n"] * 2
    r = _record(record)
    assert (r["status"], r["exit_code"]) == ("interrupted", code)
    assert r["error"] == ("interrupted (Ctrl-C)" if stop == "ctrl-c" else f"terminated (signal {signal.SIGTERM})")
    done, summary = r["outputs"]  # the structure folded before the stop (batches go shortest first), its summary
    assert Path(done["path"]).name == "two.pdb" and done["sha256"] == _sha256(Path(done["path"]))
    assert Path(summary["path"]).name == "summary.tsv" and summary["sha256"] == _sha256(Path(summary["path"]))
    assert not list(tmp_path.glob(".run.json*"))


@pytest.mark.parametrize("after", ["changed", "removed"])
def test_an_output_changed_or_removed_by_something_else_keeps_the_hash_this_run_wrote(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str
) -> None:
    """Outputs were hashed when the run ended: a file another process replaced meanwhile was recorded with that
    process's hash as this run's, and a file removed meanwhile was left out. Each is now hashed as written, and
    ``at_end`` says what became of it."""
    import openesm3.generation.tasks as tasks  # noqa: PLC0415

    fasta, record, out = _fasta(tmp_path, f">one\n{SEQUENCE}\n>two\nMKTAYI\n"), tmp_path / "run.json", tmp_path / "o"
    real, written = tasks.generate, {}

    def meddle_at_the_second_batch(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        done = out / "two.pdb"  # folded first (batches go shortest first)
        if done.exists() and not written:
            written["sha256"], written["size"] = _sha256(done), done.stat().st_size
            if after == "changed":
                other = tmp_path / "other.pdb"
                other.write_text("another process's file\n")
                os.replace(other, done)
            else:
                done.unlink()
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "generate", meddle_at_the_second_batch)
    assert main(["fold", str(fasta), "-o", str(out), "--weights", str(weights), "--batch-size", "1",
                 "--record", str(record), *FAST]) == 0  # fmt: skip
    entries = {Path(o["path"]).name: o for o in _record(record)["outputs"]}
    assert set(entries) == {"two.pdb", "one.pdb", "summary.tsv"}
    assert entries["two.pdb"] == {"path": str(out / "two.pdb"), **written, "at_end": after}
    for name in ("one.pdb", "summary.tsv"):  # still as this run left them
        assert entries[name] == {"path": str(out / name), "size": (out / name).stat().st_size,
                                 "sha256": _sha256(out / name)}  # fmt: skip


def test_an_output_rewritten_in_place_or_replaced_by_a_file_alike_is_changed_at_the_end(tmp_path: Path) -> None:
    """The stamp tells the file this run wrote from one rewritten in place to the same size (another modification
    time) and from one of the same size and time renamed over it (another inode)."""
    from openesm3.cli.record import _output_entry  # noqa: PLC0415

    out, other = tmp_path / "out.txt", tmp_path / "other.txt"
    with provenance.running(provenance.Run("fold", hash_outputs=True)) as run:
        out.write_text("first\n")
        provenance.note_output(out)
    written = run.outputs[out]
    assert _output_entry(out, written) == {"path": str(out), "size": 6, "sha256": _sha256(out)}
    before = out.stat()
    out.write_text("again\n")
    os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert _output_entry(out, written)["at_end"] == "changed"
    other.write_text("later\n")
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, out)
    assert (out.stat().st_size, out.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert _output_entry(out, written)["at_end"] == "changed"


def test_outputs_are_hashed_only_for_a_record_and_a_vanished_one_is_noted_without_a_hash(tmp_path: Path) -> None:
    """Without a record (a structure command's note needs the stamps only) no output is read back to be hashed;
    a file gone before it is noted, or a path under a file, has no stamp and is not hashed."""
    out = tmp_path / "out.txt"
    out.write_text("x\n")
    with provenance.running(provenance.Run("fold")) as run:
        provenance.note_output(out)
    assert run.outputs[out] == provenance.Written(provenance.file_stamp(out), None)
    with provenance.running(provenance.Run("fold", hash_outputs=True)) as run:
        for gone in (tmp_path / "gone.txt", out / "under_a_file"):
            provenance.note_output(gone)
            assert run.outputs[gone] == provenance.Written(None, None)


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_second_stop_while_the_record_is_written_abandons_it_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # noqa: ANN001
    stop: str,
    request: pytest.FixtureRequest,
) -> None:
    """Ctrl-C or SIGTERM again while the record is being written: Ctrl-C ended main with a KeyboardInterrupt (a
    traceback) and SIGTERM killed the process on the spot (the stop handlers were gone by then), leaving the hidden
    temporary file of the record. Now: one line, the command's own exit status (its work was over), no temporary
    file, the old record intact."""
    import openesm3.cli.main as cli_main  # noqa: PLC0415
    import openesm3.utils.atomic as atomic  # noqa: PLC0415

    # Ctrl-C must raise KeyboardInterrupt as in a terminal, also where the tests run with SIGINT ignored (started as
    # a shell's background job, or under nohup), where the signal sent below would do nothing.
    previous_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous_sigint))
    record = tmp_path / "run.json"
    record.write_text("the previous record\n")

    def write_then_stop(path: str, obj: Any, **kwargs: Any) -> None:
        with atomic.atomic_open(path, "w") as handle:
            handle.write(json.dumps(obj)[:10])  # part way through
            assert list(tmp_path.glob(".run.json.*.tmp"))
            if stop == "ctrl-c":
                os.kill(os.getpid(), signal.SIGINT)
            else:  # must stop the command as Ctrl-C does, not with the default action (it would end pytest)
                assert signal.getsignal(signal.SIGTERM) is cli_main._raise_terminated
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(atomic, "atomic_write_json", write_then_stop)
    # A command that ends at once (an option refused before any model is loaded).
    args = ["fold", str(_fasta(tmp_path)), "-o", str(tmp_path / "o"), "--temperature", "-1", "--record", str(record)]
    try:
        code = main(args)
    except KeyboardInterrupt:  # caught here, or pytest would take it as its own and stop the session
        pytest.fail("the second Ctrl-C went on out of main (a traceback)")
    said = "interrupted" if stop == "ctrl-c" else "terminated"
    assert code == 2  # the error that ended the command
    err = capsys.readouterr().err
    assert err.endswith(f"openesm3 fold: {said} while writing --record {record}; the record was not written\n")
    assert record.read_text() == "the previous record\n" and not list(tmp_path.glob(".run.json*"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored all the same
    # A command that had succeeded ends with the stop's status: its record is missing.
    assert main(["featurize", str(TRP_CAGE), "--quiet", "--record", str(record)]) == (
        130 if stop == "ctrl-c" else 128 + signal.SIGTERM
    )
    assert capsys.readouterr().err.endswith("the record was not written\n")
    assert record.read_text() == "the previous record\n" and not list(tmp_path.glob(".run.json*"))


def test_a_record_on_standard_output_is_refused_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """``--record -`` wrote a file named '-' in the current directory; standard output carries the command's own
    output (tables), so the record is refused there with a line saying to give a file name."""
    monkeypatch.chdir(tmp_path)
    args = ["fold", str(_fasta(tmp_path)), "-o", str(tmp_path / "o"), "--record", "-"]
    assert main(args) == 2
    assert "openesm3 fold: error: --record -: give a file name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fasta"]


def test_an_unseeded_run_is_reproduced_by_its_recorded_seed(weights: Path, tmp_path: Path) -> None:
    """generate samples (temperature 0.7): the seed recorded for a run given none reproduces it byte for byte."""
    common = ["generate", "--length", "8", "--num-designs", "2", "--weights", str(weights), *FAST]
    assert main([*common, "-o", str(tmp_path / "a"), "--record", str(tmp_path / "a.json")]) == 0
    seed = _record(tmp_path / "a.json")["seed"]
    assert isinstance(seed, int)
    assert main([*common, "-o", str(tmp_path / "b"), "--seed", str(seed)]) == 0
    assert main([*common, "-o", str(tmp_path / "c"), "--seed", str(seed + 1)]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["design_1.pdb", "design_2.pdb", "designs.fasta", "summary.tsv"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # The comparison can fail: another seed designs other proteins.
    assert (tmp_path / "a" / "designs.fasta").read_bytes() != (tmp_path / "c" / "designs.fasta").read_bytes()


def test_a_record_that_would_replace_an_input_or_an_output_is_refused_before_any_work(
    weights: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    fasta = _fasta(tmp_path)
    args = ["fold", str(fasta), "--weights", str(weights), *FAST]
    assert main([*args, "-o", str(tmp_path / "one.pdb"), "--record", str(tmp_path / "one.pdb")]) == 2
    assert f"--record {tmp_path / 'one.pdb'}: is also the file of --output" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "o"), "--record", str(fasta)]) == 2
    assert f"--record {fasta}: is the input file {fasta}" in capsys.readouterr().err
    assert fasta.read_text() == f">one\n{SEQUENCE}\n" and not (tmp_path / "o").exists()
    # An output made inside an output directory is found when written: the output is kept, the record not written.
    assert main([*args, "-o", str(tmp_path / "d"), "--record", str(tmp_path / "d" / "summary.tsv")]) == 2
    assert "is also an output file of the command; the record was not written" in capsys.readouterr().err
    assert (tmp_path / "d" / "summary.tsv").read_text().startswith("id\tfile")


# ---------------------------------------------------------------------------------------- structure provenance
def _reference_note(weights: Path, roles: list[str], command: str, seed: int | None) -> list[str]:
    lines = [f"openesm3 {openesm3.__version__} {command}"]
    lines += [f"weights {role} sha256:{_sha256(weights / role / 'model.safetensors')[:12]}" for role in roles]
    return lines + ([f"seed {seed}"] if seed is not None else [])


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
def test_structures_from_a_model_carry_a_note_that_readers_ignore(weights: Path, tmp_path: Path, fmt: str) -> None:
    import gemmi  # noqa: PLC0415
    from Bio.PDB import MMCIFParser, PDBParser  # noqa: PLC0415
    from Bio.PDB.MMCIF2Dict import MMCIF2Dict  # noqa: PLC0415

    out = tmp_path / f"one.{fmt}"
    assert main(["fold", str(_fasta(tmp_path)), "-o", str(out), "--weights", str(weights), "--seed", "7", *FAST]) == 0
    note = _reference_note(weights, ["esm3", "structure_decoder"], "fold", 7)
    text = out.read_text()
    if fmt == "pdb":
        assert text.startswith("REMARK   6\n" + "".join(f"REMARK   6 {line}\n" for line in note) + "ATOM  ")
    else:
        cif = MMCIF2Dict(str(out))
        assert cif["_software.name"] == ["OpenESM3"] and cif["_software.version"] == [openesm3.__version__]
        assert cif["_software.description"] == ["; ".join(note)]
    # The same structure written outside a command (no note) reads back identically, with every reader.
    plain = tmp_path / f"plain.{fmt}"
    load_structure(out).write(plain)
    assert "OpenESM3" not in plain.read_text() and "REMARK" not in plain.read_text()
    ours, theirs = load_structure(out), load_structure(plain)
    np.testing.assert_array_equal(ours.atom37, theirs.atom37)
    np.testing.assert_array_equal(ours.chains[0].b_factor, theirs.chains[0].b_factor)
    assert ours.sequence == theirs.sequence == SEQUENCE
    atoms = [line for line in text.splitlines() if line.startswith("ATOM")]
    assert atoms == [line for line in plain.read_text().splitlines() if line.startswith("ATOM")]  # not one changed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parser = PDBParser() if fmt == "pdb" else MMCIFParser()
        bio = [(a.get_parent().get_id()[1], a.get_id(), tuple(a.coord), a.bfactor)
               for a in parser.get_structure("x", str(out)).get_atoms()]  # fmt: skip
        bio_plain = [(a.get_parent().get_id()[1], a.get_id(), tuple(a.coord), a.bfactor)
                     for a in parser.get_structure("x", str(plain)).get_atoms()]  # fmt: skip
    assert bio == bio_plain and len(bio) == len(atoms)
    assert not [w for w in caught if "REMARK" in str(w.message) or "software" in str(w.message)]
    g, g_plain = gemmi.read_structure(str(out)), gemmi.read_structure(str(plain))
    assert [(a.name, a.pos.tolist(), a.b_iso) for _, a in _gemmi_atoms(g)] == [
        (a.name, a.pos.tolist(), a.b_iso) for _, a in _gemmi_atoms(g_plain)
    ]
    if fmt == "cif":
        assert [(s.name, s.version) for s in g.meta.software] == [("OpenESM3", openesm3.__version__)]


def test_a_binary_cif_from_a_model_carries_the_note_too(weights: Path, tmp_path: Path) -> None:
    from biotite.structure.io import pdbx  # noqa: PLC0415

    out = tmp_path / "one.bcif"
    assert main(["fold", str(_fasta(tmp_path)), "-o", str(out), "--weights", str(weights), *FAST]) == 0
    block = pdbx.BinaryCIFFile.read(str(out)).block
    note = _reference_note(weights, ["esm3", "structure_decoder"], "fold", 0)
    assert block["software"]["description"].as_item() == "; ".join(note)
    plain = tmp_path / "plain.bcif"
    load_structure(out).write(plain)
    assert "software" not in pdbx.BinaryCIFFile.read(str(plain)).block
    np.testing.assert_array_equal(load_structure(out).atom37, load_structure(plain).atom37)
    assert pdbx.get_structure(pdbx.BinaryCIFFile.read(str(out)), model=1) == pdbx.get_structure(
        pdbx.BinaryCIFFile.read(str(plain)), model=1
    )


def _gemmi_atoms(structure: Any) -> list[tuple[Any, Any]]:
    return [(residue, atom) for chain in structure[0] for residue in chain for atom in residue]


def test_the_bundled_tokenizer_is_named_in_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from openesm3.checkpoints.bundled import BUNDLED_TOKENIZER_DIR  # noqa: PLC0415

    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    out, record = tmp_path / "tokens.json", tmp_path / "run.json"
    assert main(["tokenize-structure", str(TRP_CAGE), "--out", str(out), "--record", str(record)]) == 0
    r = _record(record)
    (entry,) = r["weights"]
    assert entry["role"] == "structure_encoder"
    assert entry["name"] == f"openesm3 {openesm3.__version__} bundled structure tokenizer"
    assert entry["sha256"] == _sha256(BUNDLED_TOKENIZER_DIR / "structure_encoder" / "model.safetensors")
    assert entry["config"]["sha256"] == _sha256(BUNDLED_TOKENIZER_DIR / "structure_encoder" / "config.json")
    assert r["seed"] is None and r["inputs"][0]["sha256"] == _sha256(TRP_CAGE)
    assert r["outputs"] == [{"path": str(out), "size": out.stat().st_size, "sha256": _sha256(out)}]


def test_a_round_trip_structure_carries_the_note(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "rt.pdb"
    assert main(["round-trip", str(TRP_CAGE), "--weights", str(weights), "--no-sequence", "--out", str(out)]) == 0
    note = _reference_note(weights, ["structure_encoder", "structure_decoder"], "round-trip", None)
    assert out.read_text().startswith("REMARK   6\n" + "".join(f"REMARK   6 {line}\n" for line in note) + "ATOM  ")
    assert Protein.from_structure(out).sequence == Protein.from_structure(TRP_CAGE).sequence


def test_a_file_is_hashed_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "w.bin"
    file.write_bytes(b"weights" * 1000)
    reads: list[Path] = []
    real = provenance._sha256_of

    def counting(path: Path, *fd: int) -> str:
        reads.append(path)
        return real(path, *fd)

    monkeypatch.setattr(provenance, "_sha256_of", counting)
    with provenance.running(provenance.Run("fold", seed=1)):
        provenance.note_weights(file, "esm3")
        assert provenance.sha256_file(file) == provenance.sha256_file(str(file)) == _sha256(file)
        assert provenance.structure_note()[1] == f"weights esm3 sha256:{_sha256(file)[:12]}"
        assert reads == [file]
        file.write_bytes(b"other")  # a file changed during the run is hashed again, not taken from the cache
        assert provenance.sha256_file(file) == provenance.sha256_file(file) == _sha256(file)
    assert reads == [file, file]
    assert provenance.structure_note() == []  # no run open: library writes carry no note


def test_an_output_rewritten_with_the_same_size_and_time_is_hashed_again(tmp_path: Path) -> None:
    """The hash cache knew a file by path, size and modification time: an output written again (atomically: a new
    file) with the same size within one tick of a coarse file-system clock (a few ms on many kernels; the tick is
    imitated here with os.utime) got the first version's hash in the record."""
    out = tmp_path / "latest.txt"
    run = provenance.Run("train", hash_outputs=True)
    with provenance.running(run):
        atomic_write_text(out, "step_000100\n")
        first = out.stat().st_mtime_ns
        tmp = tmp_path / ".latest.txt.tmp"
        tmp.write_text("step_000200\n")
        os.utime(tmp, ns=(first, first))  # the same tick as the first version
        os.replace(tmp, out)
        provenance.note_output(out)
    assert run.outputs[out].sha256 == _sha256(out)


def test_hashing_a_file_holds_a_small_buffer_not_the_file(tmp_path: Path) -> None:
    """The hash read 4 MB at a time: a weights file of a few MB was held whole while it was hashed, in a thread
    beside the command's own work, so the command's peak memory varied by the file's size with the threads' timing
    (a detokenize memory test failed under load). Now one buffer of 256 KB is reused."""
    import tracemalloc  # noqa: PLC0415

    big = tmp_path / "weights.bin"
    big.write_bytes(np.random.default_rng(0).bytes(3_000_000))
    tracemalloc.start()
    try:
        digest = provenance.sha256_file(big)
        held = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == _sha256(big)
    assert held < 500_000, held


def test_weights_are_hashed_in_the_background_when_the_run_needs_their_hash(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every structure-writing command hashes its weight files (the note), with or without --record: about a
    second per GB of SHA-256 that came between the model's work and the first structure file. The hash now starts
    in a background thread as the file is loaded, and only for runs that need it (not embed without --record)."""
    import threading  # noqa: PLC0415

    real, hashed = provenance._sha256_of, []

    def recording(path: Path, *fd: int) -> str:
        hashed.append((path.name, path.parent.name, threading.current_thread() is threading.main_thread()))
        return real(path, *fd)

    monkeypatch.setattr(provenance, "_sha256_of", recording)
    fasta = _fasta(tmp_path)
    assert main(["fold", str(fasta), "-o", str(tmp_path / "o"), "--weights", str(weights), *FAST]) == 0
    assert sorted(hashed) == [("model.safetensors", "esm3", False), ("model.safetensors", "structure_decoder", False)]
    hashed.clear()
    assert main(["embed", str(fasta), "-o", str(tmp_path / "e"), "--weights", str(weights), "--quiet"]) == 0
    assert hashed == []  # nothing needs them
    # Asking for a hash waits for its thread: each file is read once.
    file = tmp_path / "w.bin"
    file.write_bytes(b"weights" * 1000)
    with provenance.running(provenance.Run("fold", prehash=True)) as run:
        provenance.note_weights(file, "esm3")
        assert run.sha256(file) == _sha256(file)
    assert hashed == [("w.bin", tmp_path.name, False)]


# ------------------------------------------------------------------------------------- what else the record holds
def test_the_record_times_come_from_the_start_and_the_end_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """started is when the run began and duration_s the time it took (a monotonic clock), not the end time or 0.
    Both clocks are replaced by ones that step, so the expected values are known exactly."""
    import types  # noqa: PLC0415

    import openesm3.cli.record as record_module  # noqa: PLC0415

    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    walls = iter([t0, datetime(2026, 1, 2, 3, 4, 17, 500000, tzinfo=timezone.utc)])
    ticks = iter([1000.0, 1012.5])

    class SteppingDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return next(walls)

    monkeypatch.setattr(record_module, "datetime", SteppingDatetime)
    monkeypatch.setattr(record_module, "time", types.SimpleNamespace(monotonic=lambda: next(ticks)))
    record = tmp_path / "run.json"
    assert (
        main(["featurize", str(TRP_CAGE), "--quiet", "--json", str(tmp_path / "f.json"), "--record", str(record)]) == 0
    )
    r = _record(record)
    assert (r["started"], r["ended"]) == ("2026-01-02T03:04:05+00:00", "2026-01-02T03:04:17.500000+00:00")
    assert r["duration_s"] == 12.5


def test_the_record_lists_every_file_of_a_repeated_option(tmp_path: Path) -> None:
    """An option given several values (files, --chain) is recorded as a list of them, each input file hashed."""
    second = tmp_path / "copy.pdb.gz"
    second.write_bytes(TRP_CAGE.read_bytes())
    record = tmp_path / "run.json"
    assert main(["featurize", str(TRP_CAGE), str(second), "--chain", "A", "--quiet", "--record", str(record)]) == 0
    r = _record(record)
    assert r["options"]["files"] == [str(TRP_CAGE), str(second)] and r["options"]["chain"] == ["A"]
    assert [(i["option"], i["path"], i["sha256"]) for i in r["inputs"]] == [
        ("files", str(TRP_CAGE), _sha256(TRP_CAGE)),
        ("files", str(second), _sha256(second)),
    ]


def test_the_record_options_are_the_options_of_the_command(weights: Path, tmp_path: Path) -> None:
    """options holds what the user could give (every option of the command's parser), nothing of the CLI's own
    machinery (the handler, the decoding defaults of a model command)."""
    from openesm3.cli.main import build_parser  # noqa: PLC0415

    record = tmp_path / "run.json"
    args = [
        "fold",
        str(_fasta(tmp_path)),
        "-o",
        str(tmp_path / "o"),
        "--weights",
        str(weights),
        "--record",
        str(record),
    ]
    assert main([*args, *FAST]) == 0
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    dests = {a.dest for a in subparsers.choices["fold"]._actions if a.dest != "help"}
    assert set(_record(record)["options"]) == dests | {"command"}


def test_the_record_hashes_every_file_a_command_names(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """score reads --mutations-file (and --dms) besides its sequences: each is an input of the record, hashed."""
    fasta = _fasta(tmp_path)
    muts = tmp_path / "muts.txt"
    muts.write_text("M1A\nK2G\n")
    record = tmp_path / "run.json"
    assert main(["score", str(fasta), "--mutations-file", str(muts), "-o", str(tmp_path / "s.tsv"),
                 "--weights", str(weights), "--quiet", "--record", str(record)]) == 0  # fmt: skip
    inputs = [(i["option"], i["path"], i["sha256"]) for i in _record(record)["inputs"]]
    assert inputs == [("inputs", str(fasta), _sha256(fasta)), ("mutations_file", str(muts), _sha256(muts))]


def test_a_directory_input_is_recorded_as_one_without_a_hash(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    chains = tmp_path / "chains"
    chains.mkdir()
    record = tmp_path / "run.json"
    main(["calibrate-tokenizer", str(chains), "--out", str(tmp_path / "new"), "--record", str(record)])
    capsys.readouterr()
    assert _record(record)["inputs"] == [{"option": "inputs", "path": str(chains), "type": "directory"}]


def test_the_data_files_a_command_reads_are_inputs_of_the_record(weights: Path, tmp_path: Path) -> None:
    """predict-function reads the function vocabulary besides its named inputs: each of its files is recorded with
    its role and hash."""
    from tests.task_testing import save_tiny_vocabulary  # noqa: PLC0415

    vocab = save_tiny_vocabulary(tmp_path / "vocab")
    fasta, record = _fasta(tmp_path), tmp_path / "run.json"
    assert main(["predict-function", str(fasta), "-o", str(tmp_path / "f.json"), "--weights", str(weights),
                 "--vocabulary-dir", str(vocab), "--record", str(record), *FAST]) == 0  # fmt: skip
    inputs = _record(record)["inputs"]
    assert inputs[0]["path"] == str(fasta)
    read = {Path(i["path"]): i for i in inputs[1:]}
    assert read and all(path.parent == vocab for path in read)
    for path, entry in read.items():
        assert entry["role"] == "function vocabulary" and entry["sha256"] == _sha256(path)


def test_data_files_are_hashed_as_first_read_and_only_for_a_record(tmp_path: Path) -> None:
    """note_input keeps a data file as the run first read it (a second note after an edit changes nothing: the run
    read the first bytes), reads nothing back without a record (a training set may be hundreds of GB), and a path it
    cannot hash (here a directory) is kept without a hash instead of stopping the run."""
    data = tmp_path / "data.bin"
    data.write_bytes(b"first")
    with provenance.running(provenance.Run("train-tokenizer")) as run:
        provenance.note_input(data, "training data")
    assert run.inputs == {data: "training data"} and run.inputs_seen == {} and not run._hashes
    with provenance.running(provenance.Run("train-tokenizer", hash_inputs=True)) as run:
        provenance.note_input(data, "training data")
        first = provenance.file_stamp(data)
        data.write_bytes(b"second, longer")
        provenance.note_input(data, "other role")
        provenance.note_input(tmp_path, "a directory")
    assert run.inputs[data] == "training data"
    assert run.inputs_seen[data] == provenance.Written(first, hashlib.sha256(b"first").hexdigest())
    assert run.inputs_seen[tmp_path] == provenance.Written(provenance.file_stamp(tmp_path), None)


def test_the_record_gives_data_files_as_read_and_warns_once_for_all_that_changed(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Two data files changed while the run went on: each entry gives the size and hash as read, the warning names the
    first and counts the others; a path not hashable when read (a directory) is described as it is at the end."""
    from openesm3.cli.record import RunRecorder  # noqa: PLC0415

    index, shard, record = tmp_path / "index.json", tmp_path / "shard.bin", tmp_path / "run.json"
    index.write_text("{}\n")
    shard.write_bytes(b"0123456789")
    recorder = RunRecorder(argparse.Namespace(command="train-tokenizer", record=str(record)), [])
    with provenance.running(recorder.run):
        for path in (index, shard, tmp_path):
            provenance.note_input(path, "training data")
    index.write_text('{"shards": []}\n')  # edited
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    inputs = recorder.record(0)["inputs"]
    assert inputs[0] == {"role": "training data", "path": str(index), "size": 3,
                         "sha256": hashlib.sha256(b"{}\n").hexdigest(), "at_end": "changed"}  # fmt: skip
    assert inputs[1]["size"] == 10 and inputs[1]["at_end"] == "changed"
    assert inputs[2] == {"role": "training data", "path": str(tmp_path), "type": "directory"}
    err = capsys.readouterr().err
    assert f"warning: --record {record}: {index} (training data) and 1 more changed while the run went on" in err, err


@pytest.mark.parametrize("rank", ["1", "0"])
def test_under_torchrun_only_rank_0_writes_the_record_and_its_warnings(
    rank: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under torchrun every process ran the command and wrote the same FILE, the last to end winning: a record of
    rank 1, which writes no checkpoint or export, listed no outputs; and rank 1, which does not remove the old
    checkpoints itself, warned that a resumed checkpoint was "removed while the run went on". Now rank 0 alone
    writes the record (naming the number of processes) and its warnings; rank 0 here is the negative control."""
    from openesm3.cli.record import RunRecorder  # noqa: PLC0415

    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    record, out = tmp_path / "run.json", tmp_path / "f.json"
    assert main(["--record", str(record), "featurize", str(TRP_CAGE), "--json", str(out)]) == 0
    assert out.exists()
    if rank == "1":
        assert not record.exists()
    else:
        r = _record(record)
        assert r["world_size"] == 2 and [o["path"] for o in r["outputs"]] == [str(out)]
        record.unlink()
    capsys.readouterr()
    data = tmp_path / "shard.bin"
    data.write_bytes(b"0123456789")
    recorder = RunRecorder(argparse.Namespace(command="train-tokenizer", record=str(record)), [])
    recorder.begin()
    with provenance.running(recorder.run):
        provenance.note_input(data, "training data")
    data.unlink()  # the checkpoint rank 0 removed past keep_last: rank 1 is not told
    assert recorder.finish(0)
    err = capsys.readouterr().err
    if rank == "1":
        assert not record.exists() and err == ""
        assert recorder.run.inputs_seen == {} and not recorder.run.prehash  # nor hashed what only the record needs
    else:
        assert recorder.run.prehash
        assert _record(record)["inputs"][0]["at_end"] == "removed"
        assert f"{data} (training data) removed while the run went on" in err, err


@pytest.mark.parametrize(("rank", "world_size"), [("1", None), ("1", "1"), ("1", "0"), ("x", "2"), ("1", "x")])
def test_a_process_that_is_not_one_of_several_writes_the_record(
    rank: str, world_size: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RANK left in the environment without a WORLD_SIZE above 1 (not torchrun's launch of several processes):
    the command ran alone and wrote its outputs, but wrote no record and said nothing (it took itself for rank 1 of
    1). A process alone is the whole run: it writes the record. A RANK that is no number counts as rank 0."""
    monkeypatch.setenv("RANK", rank)
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    record, out = tmp_path / "run.json", tmp_path / "f.json"
    assert main(["--record", str(record), "featurize", str(TRP_CAGE), "--json", str(out)]) == 0
    r = _record(record)
    assert r["world_size"] == (2 if world_size == "2" else 1) and [o["path"] for o in r["outputs"]] == [str(out)]


def test_a_record_under_torchrun_is_checked_on_every_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rank 1 writes no record, but it stops on a --record that cannot be written as rank 0 does, so that the ranks
    do not part ways before any work."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["--record", str(tmp_path), "featurize", str(TRP_CAGE), "--json", str(tmp_path / "f.json")]) == 2
    assert "is a directory; give a file name" in capsys.readouterr().err
    assert not (tmp_path / "f.json").exists()


def test_a_stop_that_goes_on_out_of_main_is_recorded_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception main does not turn into an exit status (here SystemExit from a handler) leaves no exit code:
    the run did not finish, so its record must not say ok."""
    from openesm3.cli import featurize  # noqa: PLC0415

    def run(args: argparse.Namespace) -> int:
        raise SystemExit(3)

    monkeypatch.setattr(featurize, "run", run)
    record = tmp_path / "run.json"
    with pytest.raises(SystemExit):
        main(["featurize", str(TRP_CAGE), "--record", str(record)])
    assert (_record(record)["status"], _record(record)["exit_code"]) == ("error", None)


@pytest.mark.parametrize(
    ("exc", "code", "status", "error"),
    [
        (RuntimeError("boom"), 1, "error", "internal error: RuntimeError: boom"),
        (BrokenPipeError(32, "Broken pipe"), 141, "interrupted", "standard output closed (broken pipe)"),
    ],
)
def test_an_internal_error_or_a_closed_pipe_is_recorded_as_what_stopped_the_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    exc: BaseException,
    code: int,
    status: str,
    error: str,  # noqa: ANN001
) -> None:
    from openesm3.cli import featurize  # noqa: PLC0415

    def run(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(featurize, "run", run)
    record = tmp_path / "run.json"
    assert main(["featurize", str(TRP_CAGE), "--record", str(record)]) == code
    capsys.readouterr()
    r = _record(record)
    assert (r["status"], r["exit_code"], r["error"]) == (status, code, error)


def test_the_outputs_are_listed_in_the_order_first_written(weights: Path, tmp_path: Path) -> None:
    """fold, one protein per batch (shortest first): two.pdb, then the summary, then one.pdb; the summary is
    rewritten after the second batch but keeps its place."""
    fasta, record, out = _fasta(tmp_path, f">one\n{SEQUENCE}\n>two\nMKTAYI\n"), tmp_path / "run.json", tmp_path / "o"
    assert main(["fold", str(fasta), "-o", str(out), "--weights", str(weights), "--batch-size", "1",
                 "--record", str(record), *FAST]) == 0  # fmt: skip
    outputs = _record(record)["outputs"]
    assert [o["path"] for o in outputs] == [str(out / "two.pdb"), str(out / "summary.tsv"), str(out / "one.pdb")]
    assert all(o["sha256"] == _sha256(Path(o["path"])) for o in outputs)  # the summary as it is at the end


def test_a_run_that_loaded_no_weights_writes_structures_without_a_note(tmp_path: Path) -> None:
    """The note says which weights made a structure: a run that loaded none (a format conversion) adds nothing."""
    out = tmp_path / "plain.pdb"
    with provenance.running(provenance.Run("convert", seed=3, prehash=True)):
        assert provenance.structure_note() == []
        load_structure(TRP_CAGE).write(out)
        load_structure(TRP_CAGE).write(tmp_path / "plain.cif")
    assert out.read_text().startswith("ATOM  ")
    assert "REMARK" not in out.read_text() and "OpenESM3" not in (tmp_path / "plain.cif").read_text()


def test_a_weight_file_noted_twice_is_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loader may note a file again (e.g. with its role once known): no second background hash of it."""
    import threading  # noqa: PLC0415

    file = tmp_path / "w.bin"
    file.write_bytes(b"weights" * 1000)
    real, reads = provenance._sha256_of, []
    monkeypatch.setattr(provenance, "_sha256_of", lambda path, *fd: reads.append(path) or real(path, *fd))
    with provenance.running(provenance.Run("fold", prehash=True)) as run:
        provenance.note_weights(file)
        provenance.note_weights(file, "esm3")
        assert run.sha256(file) == _sha256(file)
        assert [w.role for w in run.weights.values()] == ["esm3"]
    for thread in threading.enumerate():  # every hash started, finished before counting
        if thread.name.startswith("openesm3-sha256"):
            thread.join()
    assert reads == [file]


def test_a_weight_file_hashed_already_or_noted_again_is_recorded_as_first_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A weight file the run had hashed already (read as data first: init_from weights) is stamped when loaded all
    the same, and a file noted again keeps the stamp, role and config it was first given (a config learnt later is
    added): replaced before the run ends, each is recorded as loaded, with at_end, not as the new file."""
    from openesm3.cli.record import RunRecorder  # noqa: PLC0415

    read, loaded = tmp_path / "read" / "model.safetensors", tmp_path / "loaded" / "model.safetensors"
    for file in (read, loaded):
        file.parent.mkdir()
        file.write_bytes(file.parent.name.encode() * 1000)
    config = loaded.parent / "config.json"
    config.write_text("{}\n")
    before = {file: _sha256(file) for file in (read, loaded)}
    record = tmp_path / "run.json"
    recorder = RunRecorder(argparse.Namespace(command="train-tokenizer", record=str(record)), [])
    recorder.begin()
    with provenance.running(recorder.run):
        provenance.note_input(read, "init_from weights")  # hashed now, as data
        provenance.note_weights(read, "structure_encoder")
        provenance.note_weights(loaded)  # role and config not known yet
        for file in (read, loaded):
            new = tmp_path / "new.bin"
            new.write_bytes(b"another export")
            os.replace(new, file)
        provenance.note_weights(loaded, "structure_decoder", config=config)
        provenance.note_weights(loaded, "esm3")
    entries = recorder.record(0)["weights"]
    assert [(e["role"], e["path"], e["sha256"], e["at_end"]) for e in entries] == [
        ("structure_encoder", str(read), before[read], "changed"),
        ("structure_decoder", str(loaded), before[loaded], "changed"),
    ]
    assert entries[1]["config"] == {"path": str(config), "size": 3, "sha256": _sha256(config)}
    assert "changed while the run went on" in capsys.readouterr().err


def test_the_background_hash_closes_its_file_and_is_started_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file the background hash opens is closed (when it is done, and at once when that file is hashed or
    being hashed already), and a file is not hashed a second time while its first hash is still going; the config
    of a weight file learnt when it is noted again is not hashed when the run keeps no record."""
    import threading  # noqa: PLC0415

    file, config = tmp_path / "model.safetensors", tmp_path / "config.json"
    file.write_bytes(b"weights" * 1000)
    config.write_text("{}\n")
    gate, main_thread = threading.Event(), threading.main_thread()
    real_sha256, real_open, real_close = provenance._sha256_of, os.open, os.close
    reads: list[Path] = []
    opened: list[int] = []
    closed: list[int] = []

    def held_back(path: Path, *fd: int) -> str:  # the background hash waits for the gate
        reads.append(path)
        assert threading.current_thread() is main_thread or gate.wait(timeout=60)
        return real_sha256(path, *fd)

    def counted_open(*args: Any, **kwargs: Any) -> int:
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(provenance, "_sha256_of", held_back)
    monkeypatch.setattr(provenance.os, "open", counted_open)
    monkeypatch.setattr(provenance.os, "close", lambda fd: closed.append(fd) or real_close(fd))
    with provenance.running(provenance.Run("fold", prehash=True)) as run:
        provenance.note_weights(file)
        stamp = provenance.file_stamp(file)
        assert run.start_hashing(file) == stamp  # being hashed: not started again
        provenance.note_weights(file, "esm3", config=config)
        gate.set()
        (weights,) = run.weights.values()
        assert run.loaded_sha256(weights) == _sha256(file)
        assert run.start_hashing(file) == stamp  # hashed: not again
    monkeypatch.undo()
    assert weights.config == config and weights.config_seen is None
    assert reads == [file] and len(opened) == 3 and sorted(closed) == sorted(opened)


def test_weights_are_recorded_as_loaded_even_when_replaced_before_their_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Weight files were hashed as they were at the end: an init_from export replaced while the run went on was
    recorded with the new file's hash (and the structure note too), while a data file read the same way was given
    as read. Now a weight file is stamped and opened when noted, its background hash reads that open file (held
    back here until the files are replaced, removed or edited), and the record gives it as loaded, with at_end."""
    import threading  # noqa: PLC0415

    from openesm3.cli.record import RunRecorder  # noqa: PLC0415

    files = {name: tmp_path / name / "model.safetensors" for name in ("replaced", "removed", "edited", "mine")}
    for name, file in files.items():
        file.parent.mkdir()
        file.write_bytes(name.encode() * 1000)
        (file.parent / "config.json").write_text(f'{{"name": "{name}"}}\n')
    before = {name: (file.stat().st_size, _sha256(file)) for name, file in files.items()}
    config_before = _sha256(files["replaced"].parent / "config.json")
    gate, real, main_thread = threading.Event(), provenance._sha256_of, threading.main_thread()

    def held_back(path: Path, *fd: int) -> str:  # the background hashes wait for the gate; the run's own ones do not
        assert threading.current_thread() is main_thread or gate.wait(timeout=60)
        return real(path, *fd)

    monkeypatch.setattr(provenance, "_sha256_of", held_back)
    record = tmp_path / "run.json"
    recorder = RunRecorder(argparse.Namespace(command="train-tokenizer", record=str(record)), [])
    recorder.begin()
    with provenance.running(recorder.run):
        for name, file in files.items():
            provenance.note_weights(file, name, config=file.parent / "config.json")
        new = tmp_path / "new.bin"
        new.write_bytes(b"another export")
        os.replace(new, files["replaced"])  # a new export renamed into place, as openesm3 writes one
        atomic_write_text(files["replaced"].parent / "config.json", '{"name": "another"}\n')
        files["removed"].unlink()
        files["edited"].write_bytes(b"edited in place")
        files["mine"].unlink()
        provenance.note_removed(files["mine"].parent)  # the run removed it itself: no warning
        gate.set()
        note = provenance.structure_note()
    entries = {w["role"]: w for w in recorder.record(0)["weights"]}
    replaced = entries["replaced"]
    assert (replaced["size"], replaced["sha256"], replaced["at_end"]) == (*before["replaced"], "changed")
    assert replaced["config"]["sha256"] == config_before and replaced["config"]["at_end"] == "changed"
    assert (entries["removed"]["sha256"], entries["removed"]["at_end"]) == (before["removed"][1], "removed")
    assert entries["edited"]["size"] == before["edited"][0] and entries["edited"]["sha256"] is None
    assert (entries["edited"]["unreadable"], entries["edited"]["at_end"]) == ("changed before it could be hashed",
                                                                              "changed")  # fmt: skip
    assert entries["mine"]["at_end"] == "removed"
    assert f"weights replaced sha256:{before['replaced'][1][:12]}" in note
    err = capsys.readouterr().err
    assert f"{files['replaced']} (replaced) and 2 more changed while the run went on" in err, err
    # A weight file left alone is given as it is, with no at_end and no warning (the negative control).
    recorder = RunRecorder(argparse.Namespace(command="fold", record=str(record)), [])
    with provenance.running(recorder.run):
        provenance.note_weights(files["replaced"], "esm3", config=files["replaced"].parent / "config.json")
    (entry,) = recorder.record(0)["weights"]
    assert entry == {"role": "esm3", "path": str(files["replaced"]), "size": 14, "sha256": _sha256(files["replaced"]),
                     "config": {"path": str(files["replaced"].parent / "config.json"), "size": 20,
                                "sha256": _sha256(files["replaced"].parent / "config.json")}}  # fmt: skip
    assert capsys.readouterr().err == ""


def test_a_file_written_by_a_library_save_function_is_an_output_of_the_record(weights: Path, tmp_path: Path) -> None:
    """embed's .safetensors file is written by the safetensors library into a temporary file, then moved in place:
    it is an output of the record like any other."""
    out, record = tmp_path / "emb.safetensors", tmp_path / "run.json"
    assert main(["embed", str(_fasta(tmp_path)), "-o", str(out), "--weights", str(weights), "--quiet",
                 "--record", str(record)]) == 0  # fmt: skip
    assert _record(record)["outputs"] == [{"path": str(out), "size": out.stat().st_size, "sha256": _sha256(out)}]


# Each case: the command line (after the command: inputs made in tmp_path, -o), and the options the record must show.
# A default filled in while the command runs is recorded as the value used (not null); a null stays where the
# option does not apply (a PLL run has no method or offset; author numbering has no offset).
_DEFAULTS_USED = {
    "score variants": (
        ["score", "{fasta}", "--mutations", "M1A", "-o", "{tmp}/s.tsv"],
        {"method": "masked-marginal", "numbering": "sequence", "offset": 0, "variant_chain": None, "batch_size": 8},
    ),
    "score dms": (
        ["score", "{fasta}", "--dms", "{dms}", "-o", "{tmp}/s.tsv", "--method", "wt-marginal"],
        {"method": "wt-marginal", "numbering": "sequence", "offset": 0, "score_column": "DMS_score",
         "batch_size": None},
    ),
    "score dms without scores": (  # no score column: none was read, and none is recorded
        ["score", "{fasta}", "--dms", "{unscored}", "-o", "{tmp}/s.tsv"],
        {"method": "masked-marginal", "score_column": None},
    ),
    "score author numbering": (
        ["score", str(TRP_CAGE), "--mutations", "D1A", "--numbering", "author", "-o", "{tmp}/s.tsv"],
        {"method": "masked-marginal", "numbering": "author", "offset": None, "variant_chain": None},
    ),
    "score pll": (
        ["score", "{fasta}", "-o", "{tmp}/s.tsv"],
        {"method": None, "numbering": None, "offset": None, "score_column": None, "batch_size": 8},
    ),
    "generate": (["generate", "--length", "8", "-o", "{tmp}/g"], {"name": "design", "motif_positions": None}),
    "generate motif": (
        ["generate", "--length", "12", "--motif", str(TRP_CAGE), "--motif-residues", "A2-5", "-o", "{tmp}/g"],
        {"name": "design", "motif_positions": 1},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_DEFAULTS_USED))
def test_the_record_shows_the_defaults_the_run_used(weights: Path, tmp_path: Path, case: str, capsys) -> None:  # noqa: ANN001
    """Options left out whose default was filled in while the command ran (score's method, numbering, offset and
    DMS score column; generate's name and motif place) were recorded as null: a rerun from the record could not tell
    what the run used."""
    dms = tmp_path / "dms.csv"
    dms.write_text("mutant,DMS_score\nM1A,0.5\nK2G,-1.0\n")
    unscored = tmp_path / "unscored.csv"
    unscored.write_text("mutant,note\nM1A,x\n")
    values = {"fasta": str(_fasta(tmp_path)), "dms": str(dms), "unscored": str(unscored), "tmp": str(tmp_path)}
    argv, expected = _DEFAULTS_USED[case]
    record = tmp_path / "run.json"
    args = [a.format(**values) for a in argv]
    assert main([*args, "--weights", str(weights), "--quiet", "--record", str(record),
                 *(FAST if args[0] == "generate" else [])]) == 0  # fmt: skip
    capsys.readouterr()
    options = _record(record)["options"]
    assert {k: options[k] for k in expected} == expected


def test_a_rerun_with_the_recorded_variant_options_scores_the_same(weights: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """The values a record shows for options left out are the ones the run used: given explicitly, they give the
    same table (a rerun from the record is the same run)."""
    fasta, record = _fasta(tmp_path), tmp_path / "run.json"
    common = ["score", str(fasta), "--mutations", "M1A", "K2G:T3S", "--weights", str(weights), "--quiet"]
    assert main([*common, "-o", str(tmp_path / "a.tsv"), "--record", str(record)]) == 0
    options = _record(record)["options"]
    given = ["--method", options["method"], "--numbering", options["numbering"], "--offset", str(options["offset"])]
    assert main([*common, "-o", str(tmp_path / "b.tsv"), *given]) == 0
    capsys.readouterr()
    assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()


def test_the_structure_note_says_a_weights_hash_is_unknown_rather_than_give_another_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weight file edited in place before its background hash read it had, in the note of the structure files,
    the hash of the file as it was at the end (not the one loaded); one not stamped (a run that does not hash its
    weights) and gone since stopped the write with a bare FileNotFoundError. Now the note says why the hash is
    unknown, in a line that stays valid PDB (REMARK 6, 80 columns) and mmCIF (``_software``, read back whole)."""
    import threading  # noqa: PLC0415

    from openesm3.structure.io import write_structure  # noqa: PLC0415

    edited, gone, kept = (tmp_path / name for name in ("edited.pth", "gone.pth", "kept.pth"))
    for file in (edited, gone, kept):
        file.write_bytes(file.name.encode() * 1000)
    gate, real, main_thread = threading.Event(), provenance._sha256_of, threading.main_thread()

    def held_back(path: Path, *fd: int) -> str:  # the background hashes wait for the gate; the run's own ones do not
        assert threading.current_thread() is main_thread or gate.wait(timeout=60)
        return real(path, *fd)

    monkeypatch.setattr(provenance, "_sha256_of", held_back)
    protein = load_structure(TRP_CAGE)
    with provenance.running(provenance.Run("fold", seed=3, prehash=True)):
        provenance.note_weights(edited, "esm3")
        provenance.note_weights(kept, "structure_decoder")
        edited.write_bytes(b"edited in place")
        gate.set()
        note = provenance.structure_note()
        write_structure(protein, tmp_path / "x.pdb")
        write_structure(protein, tmp_path / "x.cif")
    assert note[1:] == ["weights esm3 sha256 unknown (changed while loading)",
                        f"weights structure_decoder sha256:{_sha256(kept)[:12]}", "seed 3"]  # fmt: skip
    lines = (tmp_path / "x.pdb").read_text().splitlines()
    assert lines[:5] == ["REMARK   6", *(f"REMARK   6 {line}" for line in note)] and max(map(len, lines)) <= 80
    for out in (tmp_path / "x.pdb", tmp_path / "x.cif"):
        assert load_structure(out).chains[0].sequence == protein.chains[0].sequence
    assert "; ".join(note) in (tmp_path / "x.cif").read_text()
    with provenance.running(provenance.Run("detokenize")):  # no hashing of weights: not stamped when loaded
        provenance.note_weights(gone, "structure_decoder")
        gone.unlink()
        assert provenance.structure_note()[1:] == ["weights structure_decoder sha256 unknown (file gone)"]
