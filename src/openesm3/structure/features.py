"""Per-residue structural features of a whole structure: DSSP 8-state, SASA, relative SASA, chain breaks.

What ``openesm3 featurize`` reports. DSSP runs on all chains together, as mkdssp does (H-bonds and bridges
between chains count); SASA is computed per chain in isolation, as the reference computes it for a
``ProteinChain`` (spec §12), so interfaces count as exposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from openesm3.structure.complex import ProteinComplex
from openesm3.structure.dssp import assign_ss8
from openesm3.structure.sasa import relative_sasa, residue_sasa

# SS8 letter of residues DSSP does not assess (no complete N, CA, C, O backbone; mkdssp drops them). The reference
# writes X for residues without atoms (spec §12); a coil letter there would read as a real assignment.
SS8_NOT_ASSIGNED = "X"


@dataclass(frozen=True)
class ChainFeatures:
    """Features of one chain; arrays have one entry per residue (L)."""

    chain_id: str
    sequence: str
    ss8: str  # GHITEBSC, X where the backbone (N, CA, C, O) is incomplete
    sasa: np.ndarray  # [L] float32, Angstrom^2, NaN for residues without atoms
    relative_sasa: np.ndarray  # [L] float32, SASA / theoretical max ASA (Tien et al. 2013)
    chain_breaks: np.ndarray  # [L] bool, True where a new segment starts
    residue_index: np.ndarray  # [L] int64 author numbers
    insertion_code: np.ndarray  # [L] str

    def __len__(self) -> int:
        return len(self.sequence)

    @property
    def mean_relative_sasa(self) -> float:
        finite = self.relative_sasa[np.isfinite(self.relative_sasa)]
        return float(finite.mean()) if finite.size else float("nan")

    @property
    def break_positions(self) -> list[str]:
        """Residue labels (number + insertion code) at which a new segment starts."""
        return [f"{int(n)}{ic}" for n, ic, b in zip(self.residue_index, self.insertion_code, self.chain_breaks) if b]

    def summary(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "length": len(self),
            "sequence": self.sequence,
            "ss8": self.ss8,
            "mean_relative_sasa": _json_float(self.mean_relative_sasa),
            "chain_breaks": self.break_positions,
        }

    def to_json(self) -> dict[str, Any]:
        """The summary plus a per-residue table."""
        residues = [
            {
                "residue": int(n),
                "insertion_code": str(ic),
                "aa": aa,
                "ss8": ss,
                "sasa": _json_float(float(s)),
                "relative_sasa": _json_float(float(r)),
                "chain_break": bool(b),
            }
            for n, ic, aa, ss, s, r, b in zip(
                self.residue_index,
                self.insertion_code,
                self.sequence,
                self.ss8,
                self.sasa,
                self.relative_sasa,
                self.chain_breaks,
            )
        ]
        return {**self.summary(), "residues": residues}


def _json_float(x: float) -> float | None:
    return round(x, 3) if np.isfinite(x) else None


def featurize(structure: ProteinComplex) -> list[ChainFeatures]:
    """DSSP, SASA and chain breaks of every chain of ``structure``.

    Residues without a complete backbone (N, CA, C, O) get :data:`SS8_NOT_ASSIGNED` instead of an SS8 state.
    """
    ss8 = assign_ss8(
        structure.atom37,
        chain_index=structure.chain_index,
        sequence=structure.sequence,
        not_assigned=SS8_NOT_ASSIGNED,
    )
    out = []
    start = 0
    for chain in structure.chains:
        n = len(chain)
        sasa = residue_sasa(chain)
        out.append(
            ChainFeatures(
                chain_id=chain.chain_id,
                sequence=chain.sequence,
                ss8=ss8[start : start + n],
                sasa=sasa,
                relative_sasa=relative_sasa(sasa, chain.sequence),
                chain_breaks=chain.chain_breaks(),
                residue_index=chain.residue_index,
                insertion_code=chain.insertion_code,
            )
        )
        start += n
    return out
