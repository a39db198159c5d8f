"""Random crops of protein records to a maximum length (paper A.1.7.3.1: 512 residues).

- Single chains (and any record when ``mode="contiguous"``): a contiguous window of ``crop_length`` residues
  with a uniformly random start, over the concatenated chains of a complex.
- Complexes (``mode="spatial"``, the default): a spatial crop in the style of AlphaFold-Multimer. A centre
  residue is drawn uniformly among the *interface* residues (C-alpha within ``interface_distance`` of a
  C-alpha of another chain; among all residues with a C-alpha if there is no interface); the crop keeps the
  ``crop_length`` residues whose C-alphas are closest to the centre's (ties broken by position), in their
  original order. Residues without a C-alpha are dropped first. A spatial crop keeps the interface the
  network must learn, which a contiguous window over concatenated chains mostly cuts away.

Crops take a ``numpy.random.Generator``; the sampler gives every item its own seed, so a crop does not depend
on the process or worker that loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from openesm3.training.data import ProteinRecord

ATOM37_CA = 1  # index of C-alpha in the atom37 layout (REFERENCE_SPEC §12: N, CA, C, CB, O, ...)


def contiguous_crop(length: int, crop_length: int, rng: np.random.Generator) -> np.ndarray:
    """Indices ``[min(length, crop_length)]`` of a contiguous window with a uniformly random start."""
    if length <= crop_length:
        return np.arange(length)
    start = int(rng.integers(0, length - crop_length + 1))
    return np.arange(start, start + crop_length)


def interface_residues(ca: np.ndarray, chain_index: np.ndarray, distance: float) -> np.ndarray:
    """Boolean ``[L]``: residues whose C-alpha (``ca [L, 3]``, NaN if missing) is within ``distance`` of a
    C-alpha of another chain."""
    valid = np.isfinite(ca).all(axis=-1)
    result = np.zeros(len(ca), dtype=bool)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return result
    pts = ca[idx].astype(np.float64)
    chains = chain_index[idx]
    for c in np.unique(chains):
        inside, outside = chains == c, chains != c
        if not outside.any():
            continue
        d2 = ((pts[inside, None, :] - pts[None, outside, :]) ** 2).sum(-1)
        result[idx[inside]] = (d2 < distance**2).any(axis=1)
    return result


def spatial_crop(
    ca: np.ndarray, chain_index: np.ndarray, crop_length: int, rng: np.random.Generator, interface_distance: float
) -> np.ndarray:
    """Sorted indices of a spatial crop around a random interface residue (see module docstring)."""
    length = len(ca)
    if length <= crop_length:
        return np.arange(length)
    valid = np.isfinite(ca).all(axis=-1)
    if not valid.any():
        return contiguous_crop(length, crop_length, rng)
    candidates = np.flatnonzero(interface_residues(ca, chain_index, interface_distance))
    if len(candidates) == 0:
        candidates = np.flatnonzero(valid)
    centre = ca[candidates[int(rng.integers(0, len(candidates)))]].astype(np.float64)
    dist = np.where(valid, np.sqrt(((np.where(valid[:, None], ca, 0.0) - centre) ** 2).sum(-1)), np.inf)
    keep = np.argsort(dist, kind="stable")[:crop_length]
    return np.sort(keep)


def crop_record(
    record: ProteinRecord,
    crop_length: int,
    rng: np.random.Generator,
    *,
    mode: Literal["spatial", "contiguous"] = "spatial",
    interface_distance: float = 8.0,
) -> ProteinRecord:
    """``record`` cropped to at most ``crop_length`` residues (unchanged if it is not longer)."""
    if record.length <= crop_length:
        return record
    if mode == "spatial" and record.n_chains > 1:
        keep = spatial_crop(record.atom37[:, ATOM37_CA], record.chain_index, crop_length, rng, interface_distance)
    else:
        keep = contiguous_crop(record.length, crop_length, rng)
    return record.select(keep)
