"""Training logs: one JSON object per line (``metrics.jsonl``) and, optionally, TensorBoard events.

Each line is ``{"split": "train"|"valid", "step": int, "time": float, ...}`` with the loop's fields (``lr``,
``loss``, ``grad_norm``, ``tokens_per_s``, ``metrics``). Only the main process writes. When a run resumes from
a checkpoint at step S, lines for steps after S (written before the interruption, and about to be redone) are
dropped, as is a half-written last line, so the log reads as one uninterrupted run; TensorBoard gets the same
treatment through ``purge_step``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import IO, Any

from openesm3.utils.atomic import atomic_write_text
from openesm3.utils.provenance import note_output

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete lines of a ``metrics.jsonl`` file (a torn last line is ignored)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            rows.append(json.loads(line))
    return rows


class MetricsLogger:
    """Append-only JSONL log plus optional TensorBoard, written by the main process only."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_FILE
        self._handle: IO[str] | None = None
        self._writer: Any = None
        self.tensorboard_error: str | None = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._truncate_after(resume_step if resume_step is not None else -1)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # tensorboard is in the `train` extra
                self.tensorboard_error = f"TensorBoard logging off: {exc} (pip install 'openesm3[train]')"
            else:
                purge = None if resume_step is None else resume_step + 1
                self._writer = SummaryWriter(str(Path(out_dir) / TENSORBOARD_DIR), purge_step=purge)

    def _truncate_after(self, step: int) -> None:
        """Keep the complete lines with ``step <= step`` (all of them are dropped for a fresh run, step -1)."""
        kept = [row for row in read_metrics(self.path) if row.get("step", -1) <= step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))

    def log(self, split: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled or self._handle is None:
            return
        row = {"split": split, "step": step, "time": time.time(), **values}
        self._handle.write(json.dumps(_finite_or_none(row)) + "\n")
        self._handle.flush()
        if self._writer is not None:
            for name, value in values.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        if isinstance(v, (int, float)):
                            self._writer.add_scalar(f"{split}/{sub}", v, step)
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            note_output(self.path)  # appended to, not written through openesm3.utils.atomic: noted once complete
        if self._writer is not None:
            self._writer.close()
            self._writer = None
