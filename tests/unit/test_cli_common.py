"""What the model subcommands share: option checks named by the option typed, per-item failures and their report,
unique output names, inputs whose chains do not match --chains, and when a progress bar is shown."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from openesm3.cli.common import (
    Failures,
    add_decoding_arguments,
    bundle_from_args,
    check_new_outputs,
    check_output_file,
    decoding_from_args,
    progress_bar,
    read_inputs,
    unique_names,
)
from openesm3.config import DESIGN_DECODING
from openesm3.errors import InputError


def _decoding(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_decoding_arguments(parser, DESIGN_DECODING)
    return parser.parse_args(list(argv))


def test_decoding_options_are_checked_under_their_own_names() -> None:
    assert decoding_from_args(_decoding("--steps", "1", "--top-p", "1")).num_steps == 1
    with pytest.raises(InputError, match=r"--steps must be >= 1, got 0"):
        decoding_from_args(_decoding("--steps", "0"))
    with pytest.raises(InputError, match=r"--top-p must lie in \(0, 1\], got 0.0"):
        decoding_from_args(_decoding("--top-p", "0"))


def test_bundle_from_args_checks_batch_size_and_seed_under_their_option_names() -> None:
    # Before torch is seeded or any weights are looked for; the commands check them earlier still.
    with pytest.raises(InputError, match=r"^--batch-size must be an integer >= 1, got 0$"):
        bundle_from_args(argparse.Namespace(batch_size=0, seed=0))
    with pytest.raises(InputError, match=r"^--seed must be an int in \[0, 2\*\*64\), got 18446744073709551616$"):
        bundle_from_args(argparse.Namespace(batch_size=1, seed=2**64))


def test_repeated_names_are_made_distinct_without_taking_a_name_given_later() -> None:
    assert unique_names(["x", "y", "x", "x"]) == ["x", "y", "x_2", "x_3"]
    assert unique_names(["x", "x", "x_2"]) == ["x", "x_3", "x_2"]  # x_2 is a name of its own


def test_failures_report_each_item_once_named_then_a_count() -> None:
    failures = Failures("embed")
    failures.add("a.fasta", "a.fasta:3: bad residue")  # the message already names the item
    failures.add("b", InputError("empty sequence"))
    failures.add("e.json", "e.json[1]: key 'format' must be 'openesm3.protein'")  # a JSON list's item: not twice
    out = io.StringIO()
    failures.report(5, stream=out)
    assert out.getvalue().splitlines() == [
        "openesm3 embed: error: a.fasta:3: bad residue",
        "openesm3 embed: error: b: empty sequence",
        "openesm3 embed: error: e.json[1]: key 'format' must be 'openesm3.protein'",
        "openesm3 embed: 3 of 5 item(s) failed",
    ]
    out = io.StringIO()
    failures.report(5, stream=out, limit=3)  # exactly at the limit: nothing left out
    assert "more" not in out.getvalue()
    out = io.StringIO()
    failures.report(5, stream=out, limit=1)
    assert "openesm3 embed: ... and 2 more" in out.getvalue().splitlines()
    assert failures.exit_code(3) == 1 and failures.exit_code(0) == 2 and Failures("embed").exit_code(0) == 0


def test_a_fasta_record_whose_chains_are_not_the_selected_ones_is_an_item_error(tmp_path: Path) -> None:
    path = tmp_path / "in.fasta"
    path.write_text(">ab chains=A,B\nMKT|GGA\n>b chains=B\nMKT\n")
    items = read_inputs([str(path)], chains=["B"])
    assert [item.name for item in items] == ["ab", "b"]
    assert items[0].protein is None and "--chains B selects chains of structure files only" in str(items[0].error)
    assert items[1].protein is not None and items[1].error is None


def test_a_progress_bar_is_shown_for_several_items_unless_quiet() -> None:
    assert not progress_bar(argparse.Namespace(quiet=False), 2, "embed", "protein").disable
    assert progress_bar(argparse.Namespace(quiet=False), 1, "embed", "protein").disable  # one item: nothing to show
    assert progress_bar(argparse.Namespace(quiet=True), 2, "embed", "protein").disable


def test_each_failure_goes_to_the_run_record_as_it_is_reported() -> None:
    """The record's ``errors`` name the item as the stderr lines do: the name is added where the message lacks it."""
    from openesm3.cli.common import Failures  # noqa: PLC0415
    from openesm3.utils import provenance  # noqa: PLC0415

    failures = Failures("fold")
    with provenance.running(provenance.Run("fold")) as run:
        failures.add("one", "has no coordinates")
        failures.add("two", "protein 'two': too long")
    stream = io.StringIO()
    failures.report(2, stream=stream)
    assert run.errors == ["one: has no coordinates", "protein 'two': too long"]
    assert [f"openesm3 fold: error: {e}" for e in run.errors] == stream.getvalue().splitlines()[:2]


def test_the_refusal_of_an_earlier_runs_files_asks_for_what_clashed(tmp_path: Path) -> None:
    """With -o DIR and --summary FILE both there it said "give a new directory"; with two files, "a new file"."""
    out, summary, table = tmp_path / "fold", tmp_path / "s.tsv", tmp_path / "d.fasta"
    out.mkdir()
    for path in (out / "one.pdb", summary, table):
        path.write_text("earlier\n")
    args = argparse.Namespace(overwrite=False)
    cases = [
        ([("-o", out, [out / "one.pdb", out / "two.pdb"])], "give a new directory, or --overwrite to replace it ("),
        ([("-o", table, [table])], "give a new file, or --overwrite to replace it ("),
        ([("-o", out, [out / "one.pdb"]), ("--summary", summary, [summary])],
         "give a new -o and --summary, or --overwrite to replace them ("),
        ([("-o", table, [table]), ("--summary", tmp_path / "new.tsv", [tmp_path / "new.tsv"])],
         "give a new file, or --overwrite to replace it ("),
    ]  # fmt: skip
    for outputs, wanted in cases:
        with pytest.raises(InputError) as caught:
            check_new_outputs(args, outputs)
        assert wanted in str(caught.value), outputs
    check_new_outputs(argparse.Namespace(overwrite=True), cases[2][0])


def test_the_refusal_of_an_earlier_runs_files_counts_what_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link pointing nowhere is still something the run would replace; an option not given (None) names no file,
    even beside a file called 'None'; a file listed twice is one file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "None").write_text("mine\n")
    args = argparse.Namespace(overwrite=False)
    check_new_outputs(args, [("--summary", None, [None]), ("-o", tmp_path / "new.tsv", [tmp_path / "new.tsv"])])
    (tmp_path / "link.tsv").symlink_to(tmp_path / "nowhere.tsv")
    with pytest.raises(
        InputError, match=r"-o link\.tsv: 1 file already exists that this run would write \(link\.tsv\)"
    ):
        check_new_outputs(args, [("-o", "link.tsv", ["link.tsv"])])
    (tmp_path / "t.tsv").write_text("earlier\n")
    with pytest.raises(InputError, match=r"-o t\.tsv: 1 file already exists that this run would write \(t\.tsv\); "
                       r"give a new file, or --overwrite to replace it \("):  # fmt: skip
        check_new_outputs(args, [("-o", "t.tsv", ["t.tsv", Path("t.tsv")])])


NO_WEIGHTS = ["--weights", "{tmp}/no_weights"]  # the refusal must come before any model is looked for


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["featurize", "{pdb}", "--chain", "A", "--chain", "A"], "--chain"),
        (["tokenize-structure", "{pdb}", "--chain", "A", "--chain", "B", "--chain", "A", *NO_WEIGHTS], "--chain"),
        (["round-trip", "{pdb}", "--chain", "A", "--chain", "A", *NO_WEIGHTS], "--chain"),
        (["inverse-fold", "{pdb}", "--chains", "A,A", "-o", "{tmp}/out.fasta", *NO_WEIGHTS], "--chains"),
        (["predict-function", "{pdb}", "--chains", "A, A", "-o", "{tmp}/out.tsv", *NO_WEIGHTS], "--chains"),
    ],
)
def test_a_chain_given_twice_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str
) -> None:
    # a file's chain is read once: '--chain A --chain A' silently gave one chain A, whether a homodimer or a typo
    # for another chain was meant
    from openesm3.cli.main import main  # noqa: PLC0415
    from tests.conftest import TEST_DATA  # noqa: PLC0415

    fill = {"pdb": str(TEST_DATA / "structures" / "1PIN.pdb.gz"), "tmp": str(tmp_path)}
    code = main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{option}: chain 'A' given more than once; a file's chain is read once" in err, err
    assert list(tmp_path.iterdir()) == []


def test_check_output_file_takes_standard_output_whatever_is_named_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").mkdir()  # '-' is standard output, not this directory
    check_output_file("-", "--out")
    with pytest.raises(InputError, match="--out ./-: is a directory"):
        check_output_file("./-", "--out")
