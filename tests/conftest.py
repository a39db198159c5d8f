"""Shared test fixtures: seeding, data locations and the official package as an oracle.

- ``tests/data`` is a small self-contained copy of real structures (the suite runs without anything else).
- ``../shared/data`` (override with OPENESM3_SHARED_DATA) holds the full data sets; dataset-wide checks use
  :func:`shared_data` and are skipped, saying so, when it is absent.
- Parity tests (``tests/parity``) need the official ``esm`` package (scripts/install_reference.sh). Without
  it they fail loudly rather than skip: a missing oracle must never look like a pass.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
SHARED_DATA = Path(os.environ.get("OPENESM3_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip (with the reason shown in the summary) if it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"dataset-wide check not run: {path} does not exist (set OPENESM3_SHARED_DATA)")
    return path


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/parity/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.parity)


@pytest.fixture(scope="session")
def esm_reference():  # noqa: ANN201 - returns the esm module
    """The official esm package (oracle), imported with INFRA_PROVIDER=1 so it never touches the network."""
    os.environ["INFRA_PROVIDER"] = "1"
    try:
        import esm  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"the official esm package is needed as test oracle: run scripts/install_reference.sh ({exc})")
    return esm
