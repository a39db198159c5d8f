#!/usr/bin/env bash
# Checks that the dependency floors in pyproject.toml are true: builds a fresh virtual environment with every
# dependency at its floor (torch excepted: see below), installs this checkout into it with --no-deps, and runs
# ruff, mypy and the unit and integration tests there. Not part of CI: the environment takes 1.6 GB (mostly
# torch) and the run ~6 minutes on 2 CPUs. The last result is in docs/dependencies.md.
#
# Usage: scripts/check_floors.sh [VENV_DIR] [-- PYTEST_ARGS...]
# VENV_DIR defaults to $TMPDIR/openesm3-floors/venv; one that this script made before is deleted and made anew,
# any other existing path is refused. PYTHON picks the interpreter: 3.10 or 3.11 (numpy 1.25 has no wheels for
# 3.12 and later).
#
# torch stays at 2.13.0, the CPU wheel that the README installs: older torch wheels on PyPI pull gigabytes of
# CUDA libraries. Its floor is derived from the APIs used instead (docs/dependencies.md).
# The pins below must equal the floors in pyproject.toml (tests/unit/test_dependency_floors.py checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TMPDIR:-/tmp}/openesm3-floors/venv
if [[ $# -gt 0 && "$1" != "--" ]]; then venv=$1; shift; fi
if [[ "${1:-}" == "--" ]]; then shift; fi
FLOORS=(
  numpy==1.25.0 einops==0.7.0 biotite==1.1.0 safetensors==0.4.4
  pytest==7.4.0 ruff==0.17.0 mypy==1.20.0 matplotlib==3.7.0 gemmi==0.6.0
  tensorboard==2.12.0
)
# Only a directory that this script made (it leaves a marker file there) is deleted and made anew.
if [[ -e "$venv" ]]; then
  if [[ ! -f "$venv/.openesm3-floors" ]]; then
    echo "check_floors.sh: $venv exists and was not made by this script; give another VENV_DIR" >&2
    exit 2
  fi
  rm -rf "$venv"
fi
"${PYTHON:-python3}" -m venv "$venv"
touch "$venv/.openesm3-floors"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q torch==2.13.0
# biopython: one unit test reads our PDB files with it (the `ref` extra, which has no floors).
python -m pip install -q "${FLOORS[@]}" biopython
python -m pip install -q --no-deps -e .
python -m pip list 2>/dev/null \
  | grep -iE '^(torch|numpy|einops|biotite|safetensors|pytest|ruff|mypy|matplotlib|gemmi|tensorboard) '
ruff check . && ruff format --check .
mypy
# Not here: tests/parity and the generation benchmark, which need the official esm package as oracle;
# scripts/install_reference.sh would install it with the newest versions of its own dependencies.
python -m pytest tests/unit tests/integration -q -p no:cacheprovider \
  --ignore tests/integration/test_bench_generation.py "$@"
