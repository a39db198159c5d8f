"""Figures written by the CLI (matplotlib, an optional dependency: ``pip install 'openesm3[plot]'``)."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from openesm3.errors import DependencyError
from openesm3.utils.atomic import atomic_write_bytes


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or :class:`DependencyError` saying to install matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise DependencyError(
            "plotting needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'openesm3[plot]')"
        ) from None
    return plt


def write_pae_png(pae: np.ndarray, path: str | os.PathLike[str], title: str = "") -> None:
    """A heat map of the predicted aligned error ``pae`` [L, L] (Angstrom; NaN at chain breaks) as a PNG, atomically.

    Row i, column j: the expected position error of residue j when the prediction is aligned on residue i.
    """
    plt = pyplot()
    values = np.asarray(pae, dtype=np.float32)
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=100)
    try:
        image = ax.imshow(np.ma.masked_invalid(values), cmap="Greens_r", vmin=0.0, interpolation="nearest",
                          extent=(0.5, values.shape[1] + 0.5, values.shape[0] + 0.5, 0.5))  # fmt: skip
        fig.colorbar(image, ax=ax, label="expected position error (Å)")
        ax.set_xlabel("scored residue")
        ax.set_ylabel("aligned residue")
        if title:
            ax.set_title(title)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
