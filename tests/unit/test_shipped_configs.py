"""Every training config in ``configs/`` still parses into the run config it was written for, so the recipes that
the docs quote stay runnable as the options evolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from openesm3.training.config import load_config
from openesm3.training.tokenizer.config import TokenizerTrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.toml"))


def test_configs_are_found() -> None:
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_parses(path: Path) -> None:
    config = load_config(TokenizerTrainConfig, path)
    assert config.out_dir.startswith("runs/")
    assert config.stage == 1 or config.init_from
