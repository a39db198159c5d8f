"""The top-level API: ``from openesm3 import Protein, fold, ...`` works, lazily, and type checkers see the same names.

``openesm3/__init__.py`` lists each public name three times: in ``_EXPORTS`` (name -> home module, what Python
imports on first use), in ``__all__`` and in its ``if TYPE_CHECKING:`` imports (what mypy and IDEs read). These
tests keep the three from drifting apart and the package import light.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys

import pytest

import openesm3
from tests.conftest import REPO

INIT = REPO / "src" / "openesm3" / "__init__.py"


def test_all_lists_each_exported_name_once() -> None:
    assert len(openesm3.__all__) == len(set(openesm3.__all__))
    assert set(openesm3.__all__) == set(openesm3._EXPORTS)


@pytest.mark.parametrize("name", openesm3.__all__)
def test_each_public_name_is_its_home_modules_object(name: str) -> None:
    home = importlib.import_module(openesm3._EXPORTS[name])
    assert getattr(openesm3, name) is getattr(home, name)
    # a public name of a module that declares its public names (no internals re-exported)
    assert name in getattr(home, "__all__", [name])
    namespace: dict[str, object] = {}
    exec(f"from openesm3 import {name}", namespace)  # noqa: S102
    assert namespace[name] is getattr(home, name)


def test_the_main_names_are_there() -> None:
    """The names the docs and the commands' Python counterparts use, and the error types to catch."""
    expected = {
        "Protein", "ModelBundle", "GenerationConfig", "generate", "fold", "inverse_fold", "predict_function",
        "design", "encode_structure", "decode_structure", "load_model", "load_structure", "pseudo_log_likelihood",
        "masked_marginal_scores", "wt_marginal_scores", "embed_proteins", "OpenESM3Error", "InputError",
        "WeightsError",
    }  # fmt: skip
    assert expected <= set(openesm3.__all__)


def test_dir_lists_the_public_names_before_their_first_use() -> None:
    listed = dir(openesm3)
    assert set(openesm3.__all__) <= set(listed)
    assert "__version__" in listed
    assert listed == sorted(listed)


def test_an_unknown_name_raises_the_usual_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"^module 'openesm3' has no attribute 'Protien'$"):
        openesm3.Protien  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(openesm3, "Protien")
    with pytest.raises(ImportError, match="cannot import name 'Protien' from 'openesm3'"):
        exec("from openesm3 import Protien", {})  # noqa: S102


def test_type_checking_imports_list_the_same_names_from_the_same_modules() -> None:
    """mypy and IDEs resolve ``openesm3.Protein`` through the ``if TYPE_CHECKING:`` block, Python through
    ``_EXPORTS``: a name added to one only would be untyped, or typed but missing at run time."""
    tree = ast.parse(INIT.read_text())
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1
    imported: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.unparse(node)
        for alias in node.names:
            assert alias.asname is None and alias.name not in imported, alias.name
            imported[alias.name] = node.module
    assert imported == openesm3._EXPORTS


def test_importing_the_package_or_starting_the_cli_loads_neither_torch_nor_numpy() -> None:
    """``import openesm3`` and ``openesm3 --help`` stay fast: the public names are imported on first use."""
    script = """
import contextlib, io, json, sys
import openesm3
after_import = sorted(m for m in ("torch", "numpy") if m in sys.modules)
from openesm3.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["--help"])
after_help = sorted(m for m in ("torch", "numpy") if m in sys.modules)
openesm3.ModelBundle
print(json.dumps([after_import, after_help, "torch" in sys.modules]))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert json.loads(done.stdout) == [[], [], True]  # the last: the subprocess does see a name that needs torch
