"""The examples of the user documentation work as written, so the docs cannot silently rot.

- Every ``openesm3 COMMAND ...`` line of a bash example (README.md, docs/*.md below) parses with the real CLI:
  its options exist and take the values shown.
- Every dotted name ``openesm3.module[.attribute]`` the prose quotes in backticks imports.
- The Python examples of docs/usage.md, docs/generation.md and docs/training.md run unchanged, in a directory
  laid out as the text assumes (``1abc.cif.gz``, ``run.toml``, ``../shared/data/dev`` with a manifest), with tiny
  random weights (``$OPENESM3_WEIGHTS``) standing in for the official ones.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import textwrap
from pathlib import Path

import pytest

from openesm3.cli.main import build_parser
from tests.conftest import REPO, TEST_DATA
from tests.task_testing import save_tiny_bundle

DOCS = ("README.md", "docs/usage.md", "docs/generation.md", "docs/tokenizers.md", "docs/training.md")
STRUCTURES = TEST_DATA / "structures"


def _blocks(doc: str, language: str) -> list[str]:
    """The code blocks of ``language`` in ``doc``, dedented (a block may be indented under a list item)."""
    found = re.findall(rf"^([ \t]*)```{language}\n(.*?)^\1```", (REPO / doc).read_text(), flags=re.DOTALL | re.M)
    return [textwrap.dedent(body) for _, body in found]


def _cli_examples() -> list[tuple[str, list[str]]]:
    examples = []
    for doc in DOCS:
        for block in _blocks(doc, "bash"):
            for line in block.replace("\\\n", " ").splitlines():
                for command in re.split(r"&&|;", line):
                    argv = shlex.split(command, comments=True)
                    if argv[:1] == ["openesm3"]:
                        # a synopsis writes optional arguments in brackets: [--seed 0]
                        examples.append((doc, [a.strip("[]") for a in argv[1:] if a.strip("[]")]))
    return examples


@pytest.mark.parametrize(("doc", "argv"), _cli_examples(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_cli_example_parses(doc: str, argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed why
        pytest.fail(f"{doc}: 'openesm3 {' '.join(argv)}' is not a valid command line (exit {exc.code})")


def test_the_cli_examples_were_found() -> None:
    commands = {argv[0] for _, argv in _cli_examples()}
    assert {"round-trip", "embed", "score", "fold", "inverse-fold", "predict-function", "generate"} <= commands
    assert {"tokenize-structure", "detokenize", "build-function-vocab"} <= commands


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
