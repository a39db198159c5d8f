"""distributed=fsdp on a torch without public FSDP2 (before 2.6; the package allows torch >= 2.3) is a one-line
error naming the torch version needed, not 'internal error: ImportError: cannot import name fully_shard'."""

from __future__ import annotations

import sys
import types

import pytest
import torch.distributed as dist
from torch import nn

from openesm3.errors import DependencyError
from openesm3.training.distributed import DistInfo, wrap_model


def test_fsdp_on_a_torch_without_fully_shard_names_the_version_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setitem(sys.modules, "torch.distributed.fsdp", types.ModuleType("torch.distributed.fsdp"))
    with pytest.raises(DependencyError, match=r"distributed=fsdp needs torch >= 2\.6"):
        wrap_model(nn.Linear(2, 2), "fsdp", DistInfo(world_size=2))
