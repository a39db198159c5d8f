"""Fixtures the CLI task tests share (test_cli_tasks, test_cli_interrupted, test_cli_record): the tiny random
networks and the tiny function vocabulary of tests/task_testing.py, built once per module. A module that needs other
weights defines its own ``weights`` fixture, which takes precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.task_testing import save_tiny_bundle, save_tiny_vocabulary


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle (trunk, structure VQ-VAE, function decoder) with random weights, seed 11."""
    return save_tiny_bundle(tmp_path_factory.mktemp("weights"), seed=11)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny function vocabulary of ``tests.task_testing.KEYWORDS``."""
    return save_tiny_vocabulary(tmp_path_factory.mktemp("vocab"))
