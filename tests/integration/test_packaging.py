"""The wheel a user installs, built as pip builds it (isolated, from the committed files only): it ships the
bundled tokenizer, py.typed and the licence, declares the lean core dependencies and the ``openesm3`` command, and
its build raises no deprecation whose deadline would break ``pip install .``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

CORE_DEPENDENCIES = {"torch", "numpy", "einops", "biotite", "safetensors"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """(the wheel, the build log, the tracked files) of a copy of the tracked files, so that a file only present in
    a checkout is not in it."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--", "pyproject.toml", "README.md", "LICENSE", "src"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    tracked = [name for name in tracked if name]
    source = tmp_path_factory.mktemp("source")
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (path,) = out.glob("openesm3-*.whl")
    return path, build.stdout + build.stderr, tracked


def test_the_wheel_ships_every_package_file_and_the_licence(wheel: tuple[Path, str, list[str]]) -> None:
    path, _, tracked = wheel
    names = set(zipfile.ZipFile(path).namelist())
    package_files = {name.removeprefix("src/") for name in tracked if name.startswith("src/openesm3/")}
    assert {"openesm3/py.typed", "openesm3/data/tokenizer/structure_encoder/model.safetensors"} <= package_files
    assert package_files <= names, sorted(package_files - names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(n for n in names if "dist-info" in n)


def test_the_wheel_declares_the_command_and_only_the_core_dependencies(wheel: tuple[Path, str, list[str]]) -> None:
    path, _, _ = wheel
    archive = zipfile.ZipFile(path)
    info = next(n.split("/")[0] for n in archive.namelist() if ".dist-info/" in n)
    metadata = archive.read(f"{info}/METADATA").decode()
    required = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in required if "extra ==" not in r}
    assert core == CORE_DEPENDENCIES
    assert "License-Expression: MIT" in metadata
    assert "openesm3 = openesm3.cli.main:main" in archive.read(f"{info}/entry_points.txt").decode()


def test_the_build_raises_no_deprecation(wheel: tuple[Path, str, list[str]]) -> None:
    """setuptools deprecated the TOML-table licence with a deadline (2027-02-18), after which its releases refuse
    to build the project: 'pip install .' (the README's install) builds with the newest setuptools."""
    _, log, _ = wheel
    assert "Deprecat" not in log, log[log.find("Deprecat") - 200 : log.find("Deprecat") + 600]
