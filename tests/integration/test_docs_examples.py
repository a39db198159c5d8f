"""The examples of the user documentation work as written, so the docs cannot silently rot.

- Every ``openesm3 COMMAND ...`` line of a bash example (README.md, docs/*.md below) parses with the real CLI:
  its options exist and take the values shown; ``train-tokenizer``'s config files and KEY=VALUE settings load.
- Every option the prose of README.md and docs/*.md quotes after a command name (``round-trip --no-sequence``)
  is an option of that command, and every option of every command is named somewhere in them.
- Every dotted name ``openesm3.module[.attribute]`` the prose quotes in backticks imports.
- The Python examples of docs/usage.md, docs/generation.md and docs/training.md run unchanged, in a directory
  laid out as the text assumes (``1abc.cif.gz``, ``run.toml``, ``../shared/data/dev`` with a manifest), with tiny
  random weights (``$OPENESM3_WEIGHTS``) standing in for the official ones.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import shutil
import textwrap
from pathlib import Path

import pytest

from openesm3.cli.main import build_parser
from openesm3.training.config import config_from_args
from openesm3.training.tokenizer.config import TokenizerTrainConfig
from tests.conftest import REPO, TEST_DATA
from tests.task_testing import save_tiny_bundle

DOCS = (
    "README.md",
    "docs/usage.md",
    "docs/generation.md",
    "docs/tokenizers.md",
    "docs/training.md",
    "docs/tokenizer_training.md",
)
ALL_DOCS = ("README.md", *(f"docs/{p.name}" for p in sorted((REPO / "docs").glob("*.md"))))
STRUCTURES = TEST_DATA / "structures"


def _blocks(doc: str, language: str) -> list[str]:
    """The code blocks of ``language`` in ``doc``, dedented (a block may be indented under a list item)."""
    found = re.findall(rf"^([ \t]*)```{language}\n(.*?)^\1```", (REPO / doc).read_text(), flags=re.DOTALL | re.M)
    return [textwrap.dedent(body) for _, body in found]


def _commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, split at ``;``, ``&&``, ``||`` and ``|`` outside quotes."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token.strip(";&|"):
            commands[-1].append(token)
        else:
            commands.append([])
    return commands


def _cli_examples() -> list[tuple[str, list[str]]]:
    examples = []
    for doc in DOCS:
        for block in _blocks(doc, "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                for argv in _commands(line):
                    if argv[:1] == ["openesm3"]:
                        # a synopsis writes optional arguments in brackets: [--seed 0]
                        examples.append((doc, [a.strip("[]") for a in argv[1:] if a.strip("[]")]))
    return examples


@pytest.mark.parametrize(("doc", "argv"), _cli_examples(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_cli_example_parses(doc: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed why
        pytest.fail(f"{doc}: 'openesm3 {' '.join(argv)}' is not a valid command line (exit {exc.code})")
    if args.command == "train-tokenizer":  # argparse takes any KEY=VALUE: the settings must exist too
        monkeypatch.chdir(REPO)  # --config configs/...
        config_from_args(TokenizerTrainConfig, args)


def test_the_cli_examples_were_found() -> None:
    commands = {argv[0] for _, argv in _cli_examples()}
    assert {"round-trip", "embed", "score", "fold", "inverse-fold", "predict-function", "generate"} <= commands
    assert {"tokenize-structure", "detokenize", "build-function-vocab"} <= commands
    assert {"train-tokenizer", "calibrate-tokenizer"} <= commands


def _command_options() -> dict[str, set[str]]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    common = set(parser._option_string_actions)  # --debug, --record: before or after the command
    return {name: set(sub._option_string_actions) | common for name, sub in subparsers.choices.items()}


def _prose_options(text: str, commands: set[str]) -> list[tuple[str, str, str]]:
    """(span, command, option) for each ``--option`` in a backticked span that starts with a command name."""
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.DOTALL | re.M)  # prose only
    names = "|".join(sorted(map(re.escape, commands), key=len, reverse=True))
    found = []
    for span in re.findall(r"`([^`]+)`", text):
        if match := re.match(rf"(?:openesm3 )?({names})(?![\w-])(.*)", " ".join(span.split()), flags=re.DOTALL):
            found += [(span, match[1], o) for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", match[2])]
    return found


def test_options_the_prose_quotes_exist() -> None:
    options = _command_options()
    quoted = {doc: _prose_options((REPO / doc).read_text(), set(options)) for doc in ALL_DOCS}
    assert sum(map(len, quoted.values())) > 20
    unknown = [f"{doc}: `{span}`: {o}" for doc, found in quoted.items() for span, c, o in found if o not in options[c]]
    assert not unknown


def test_every_option_is_documented() -> None:
    text = "\n".join((REPO / doc).read_text() for doc in ALL_DOCS)
    named = set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", text))
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = [(name, action.option_strings) for name, sub in subparsers.choices.items() for action in sub._actions]
    missing = [f"{name} {'/'.join(o)}" for name, o in options if o and "--help" not in o and not named & set(o)]
    assert len(options) > 100
    assert not missing


def _resolve(name: str) -> object:
    """``a.b.c``: the longest importable prefix, then attributes (AttributeError if one is missing)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[i:]:
            obj = getattr(obj, attribute)
        return obj
    raise AttributeError(name)


def _quoted_names(text: str) -> set[str]:
    """``openesm3.x.y`` inside backticks, and ``name(...)`` followed by ``from `openesm3.x` `` or ``(`openesm3.x`)``."""
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.DOTALL | re.M)  # prose only
    names = {m for span in re.findall(r"`([^`]+)`", text) for m in re.findall(r"\bopenesm3(?:\.\w+)+", span)}
    for span, module in re.findall(r"`([^`]+)`,? (?:from |\()`(openesm3[\w.]*)`", text):
        calls = re.findall(r"([A-Za-z_]\w*)\(", span)
        if calls or span.isidentifier():
            names.add(f"{module}.{calls[0] if calls else span}")
    return names


def test_names_the_docs_quote_exist() -> None:
    names = {doc: _quoted_names((REPO / doc).read_text()) for doc in DOCS}
    assert sum(map(len, names.values())) > 20
    missing = []
    for doc, quoted in names.items():
        for name in sorted(quoted):
            try:
                _resolve(name)
            except AttributeError:
                missing.append(f"{doc}: {name}")
    assert not missing


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory as the examples assume it: weights in $OPENESM3_WEIGHTS, their placeholder files."""
    monkeypatch.setenv("OPENESM3_WEIGHTS", str(save_tiny_bundle(tmp_path / "weights")))
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(STRUCTURES / "derived" / "1AM7.cif.gz", work / "1abc.cif.gz")  # chains A, B, C
    (work / "run.toml").write_text("max_steps = 10\n[optim]\nwarmup_steps = 2\n")
    dev = tmp_path / "shared" / "data" / "dev"  # ../shared/data/dev, two files and their manifest
    dev.mkdir(parents=True)
    rows = ["file\tcluster40\tsuggested_split"]
    for name, split in (("1PIN.pdb.gz", "train"), ("2HPR.pdb.gz", "valid")):
        shutil.copy(STRUCTURES / name, dev / name)
        rows.append(f"{name}\t{name[:4].lower()}\t{split}")
    (dev / "manifest.tsv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("doc", ["docs/usage.md", "docs/generation.md", "docs/training.md"])
def test_python_examples_run(doc: str, workdir: Path) -> None:
    blocks = _blocks(doc, "python")
    assert blocks
    for i, block in enumerate(blocks):
        namespace: dict[str, object] = {"__name__": f"example_{i}"}
        exec(compile(block, f"{doc} example {i + 1}", "exec"), namespace)  # noqa: S102
    if doc == "docs/usage.md":
        assert (workdir / "out.pdb").is_file() and (workdir / "out.json").is_file()
    if doc == "docs/generation.md":
        results = namespace["results"]
        assert [r.ok for r in results] == [True, True]  # type: ignore[attr-defined]
    if doc == "docs/training.md":
        assert (workdir / "data" / "dev_chains" / "index.json").is_file()
