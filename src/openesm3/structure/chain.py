"""One protein chain as numpy arrays in the atom37 layout (REFERENCE_SPEC §12).

:class:`ProteinChain` is the record every other layer reads structures from: the one-letter sequence, atom37
coordinates with NaN for missing atoms, the author numbering and per-atom B-factors. It also carries the
coordinate utilities of spec §12 (oxygen inference, coordinate normalisation) and the chain-break rule.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from openesm3 import constants as C
from openesm3.structure import residue_constants as RC

if TYPE_CHECKING:
    from openesm3.structure.io import StructureFormat

ChainIndex = int | slice | Sequence[int] | np.ndarray


def gram_schmidt(x_axis: np.ndarray, xy_plane: np.ndarray, eps: float = C.GRAM_SCHMIDT_EPS) -> np.ndarray:
    """Rotations [..., 3, 3] whose columns are the frame axes (paper Algorithm 5, spec §4.3), in float32.

    e0 = x / sqrt(|x|^2 + eps); e1 = the part of ``xy_plane`` orthogonal to e0, normalised the same way;
    e2 = e0 x e1.
    """
    x_axis = x_axis.astype(np.float32, copy=False)
    xy_plane = xy_plane.astype(np.float32, copy=False)
    e0 = x_axis / np.sqrt((x_axis * x_axis).sum(-1, keepdims=True) + np.float32(eps))
    e1 = xy_plane - e0 * (e0 * xy_plane).sum(-1, keepdims=True)
    e1 = e1 / np.sqrt((e1 * e1).sum(-1, keepdims=True) + np.float32(eps))
    e2 = np.cross(e0, e1)
    return np.stack([e0, e1, e2], axis=-1)


@dataclass(frozen=True, eq=False, kw_only=True)
class ProteinChain:
    """A single protein chain. L = number of residues; atom slots follow ``RC.ATOM37_NAMES``.

    Attributes:
        sequence: one-letter codes, length L; modified residues carry their parent's letter, unknown ones X.
        atom37: [L, 37, 3] float32 coordinates in Angstrom, NaN for missing atoms (MSE's SE sits in SD).
        atom37_mask: [L, 37] bool, True where an atom is present.
        residue_index: [L] int64 author residue numbers.
        insertion_code: [L] ``<U1`` insertion codes, ``""`` when none.
        chain_id: author chain id.
        b_factor: [L, 37] float32 B-factors (or pLDDT), NaN where the atom is missing.
        name: where the chain comes from (e.g. the file stem).
        residue_name: [L] str, residue names as read (``MSE``, ``SEP``, ...); standard names when built from
            a sequence.
    """

    sequence: str
    atom37: np.ndarray
    atom37_mask: np.ndarray
    residue_index: np.ndarray
    insertion_code: np.ndarray
    chain_id: str
    b_factor: np.ndarray
    name: str
    residue_name: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.sequence)
        fix = object.__setattr__  # frozen dataclass: normalise dtypes once, here
        fix(self, "atom37", np.asarray(self.atom37, dtype=np.float32))
        fix(self, "atom37_mask", np.asarray(self.atom37_mask, dtype=bool))
        fix(self, "residue_index", np.asarray(self.residue_index, dtype=np.int64))
        fix(self, "insertion_code", np.asarray(self.insertion_code, dtype="<U1"))
        fix(self, "b_factor", np.asarray(self.b_factor, dtype=np.float32))
        fix(self, "residue_name", np.asarray(self.residue_name, dtype=str))
        expected = {
            "atom37": (n, RC.N_ATOM37, 3),
            "atom37_mask": (n, RC.N_ATOM37),
            "residue_index": (n,),
            "insertion_code": (n,),
            "b_factor": (n, RC.N_ATOM37),
            "residue_name": (n,),
        }
        for field, shape in expected.items():
            if getattr(self, field).shape != shape:
                raise ValueError(
                    f"ProteinChain {self.name!r} chain {self.chain_id!r}: {field} has shape "
                    f"{getattr(self, field).shape}, expected {shape} for a sequence of length {n}"
                )
        if not np.isfinite(self.atom37[self.atom37_mask]).all():
            raise ValueError(
                f"ProteinChain {self.name!r} chain {self.chain_id!r}: an atom marked present is not finite"
            )

    # ---- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_atom37(
        cls,
        atom37: np.ndarray,
        *,
        sequence: str | None = None,
        atom37_mask: np.ndarray | None = None,
        residue_index: np.ndarray | None = None,
        insertion_code: np.ndarray | None = None,
        chain_id: str = "A",
        b_factor: np.ndarray | float | None = None,
        name: str = "",
    ) -> ProteinChain:
        """Build a chain from coordinates; everything else has a default (as in the reference, spec §12).

        Args:
            atom37: [L, 37, 3] coordinates; non-finite entries (NaN or inf) are missing atoms.
            sequence: one-letter codes; default ``"A" * L`` (the reference's default).
            atom37_mask: [L, 37]; default: atoms whose three coordinates are finite.
            residue_index: [L]; default 1..L.
            insertion_code: [L]; default all ``""``.
            chain_id: default ``"A"``.
            b_factor: [L, 37], [L] (one value per residue, e.g. pLDDT) or a scalar; default 0.
            name: default ``""``.
        """
        atom37 = np.array(atom37, dtype=np.float32)
        if atom37.ndim != 3 or atom37.shape[1:] != (RC.N_ATOM37, 3):
            raise ValueError(f"atom37 must have shape [L, 37, 3], got {atom37.shape}")
        n = atom37.shape[0]
        sequence = "A" * n if sequence is None else sequence
        if len(sequence) != n:
            raise ValueError(f"sequence has length {len(sequence)} but atom37 has {n} residues")
        finite = np.isfinite(atom37).all(-1)
        mask = finite if atom37_mask is None else np.asarray(atom37_mask, dtype=bool) & finite
        atom37[~mask] = np.nan
        if b_factor is None:
            b_factor = 0.0
        bf = np.asarray(b_factor, dtype=np.float32)
        bf = np.broadcast_to(bf[:, None] if bf.ndim == 1 else bf, (n, RC.N_ATOM37)).copy()
        bf[~mask] = np.nan
        return cls(
            sequence=sequence,
            atom37=atom37,
            atom37_mask=mask,
            residue_index=np.arange(1, n + 1) if residue_index is None else residue_index,
            insertion_code=np.full(n, "", dtype="<U1") if insertion_code is None else insertion_code,
            chain_id=chain_id,
            b_factor=bf,
            name=name,
            residue_name=np.array([RC.three_letter_code(aa) for aa in sequence], dtype="<U3"),
        )

    # ---- container protocol ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.sequence)

    def __getitem__(self, index: ChainIndex) -> ProteinChain:
        """Sub-chain: ``chain[i]`` (length 1), ``chain[a:b]``, ``chain[bool_mask]`` or ``chain[indices]``."""
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"residue {i} out of range for a chain of length {len(self)}")
            idx: slice | np.ndarray = slice(i % len(self), i % len(self) + 1)
        elif isinstance(index, slice):
            idx = index
        else:
            idx = np.asarray(index)
            if idx.dtype == bool:
                if idx.shape != (len(self),):
                    raise IndexError(f"boolean index of shape {idx.shape} for a chain of length {len(self)}")
                idx = np.flatnonzero(idx)
        letters = np.frombuffer(self.sequence.encode("ascii"), dtype="S1")
        return replace(
            self,
            sequence=letters[idx].tobytes().decode("ascii"),
            atom37=self.atom37[idx],
            atom37_mask=self.atom37_mask[idx],
            residue_index=self.residue_index[idx],
            insertion_code=self.insertion_code[idx],
            b_factor=self.b_factor[idx],
            residue_name=self.residue_name[idx],
        )

    def __repr__(self) -> str:
        shown = self.sequence if len(self) <= 20 else self.sequence[:17] + "..."
        return f"ProteinChain(name={self.name!r}, chain_id={self.chain_id!r}, length={len(self)}, sequence={shown!r})"

    # ---- views -------------------------------------------------------------------------------------------
    def backbone(self, *, oxygen: bool = False) -> np.ndarray:
        """[L, 3, 3] coordinates of N, CA, C (or [L, 4, 3] with O), NaN where missing."""
        atoms = RC.BACKBONE_ATOMS + ((RC.ATOM_O,) if oxygen else ())
        return self.atom37[:, list(atoms)]

    @property
    def has_coordinates(self) -> np.ndarray:
        """[L] bool: the residue has at least one atom."""
        return np.asarray(self.atom37_mask.any(axis=1))

    def with_b_factor(self, values: np.ndarray | float) -> ProteinChain:
        """Copy with new B-factors: [L, 37], [L] (per residue, e.g. pLDDT) or a scalar; NaN where missing."""
        bf = np.asarray(values, dtype=np.float32)
        bf = np.broadcast_to(bf[:, None] if bf.ndim == 1 else bf, (len(self), RC.N_ATOM37)).copy()
        bf[~self.atom37_mask] = np.nan
        return replace(self, b_factor=bf)

    # ---- geometry ----------------------------------------------------------------------------------------
    def chain_breaks(self, max_peptide_bond: float = RC.MAX_PEPTIDE_BOND_LENGTH) -> np.ndarray:
        """[L] bool, True at residues i > 0 that start a new segment (never at i = 0).

        Where C(i-1) and N(i) are both present, their distance decides: a break iff it exceeds
        ``max_peptide_bond`` (2.0 A; a peptide bond is 1.33 A, one missing residue already puts them >= 3 A
        apart). The coordinates win over the numbering because author numbering often skips (e.g. -1 -> 1
        without residue 0, or antibody numbering schemes) while the chain is continuous. Where either atom
        is missing, the numbering decides: a break unless residue i is numbered right after i-1 (n -> n+1,
        or the same number with a different insertion code, as in 52 -> 52A).
        """
        breaks = np.zeros(len(self), dtype=bool)
        if len(self) < 2:
            return breaks
        c_prev = self.atom37[:-1, RC.ATOM_C]
        n_next = self.atom37[1:, RC.ATOM_N]
        measured = self.atom37_mask[:-1, RC.ATOM_C] & self.atom37_mask[1:, RC.ATOM_N]
        with np.errstate(invalid="ignore"):
            too_far = np.linalg.norm(n_next - c_prev, axis=-1) > max_peptide_bond
        step = np.diff(self.residue_index)
        consecutive = (step == 1) | ((step == 0) & (self.insertion_code[1:] != self.insertion_code[:-1]))
        breaks[1:] = np.where(measured, too_far, ~consecutive)
        return breaks

    def infer_oxygen(self, *, overwrite: bool = False) -> ProteinChain:
        """Place backbone O from C, CA and the next residue's N with ideal geometry (spec §12).

        The frame has its origin at C, x-axis C - CA and N(i+1) - C in its xy-plane; O = R (0.6240, -1.0613,
        0.0103) + C. Only missing O atoms are filled unless ``overwrite`` (the reference overwrites all). The
        last residue, and a residue followed by a chain break (:meth:`chain_breaks`), has no next N: its O
        stays missing (the reference gives the last residue NaN; it ignores breaks, we do not place an O
        from the N of an unconnected residue). A placed O gets its residue's CA B-factor.
        """
        n_next = np.full((len(self), 3), np.nan, dtype=np.float32)
        n_next[:-1] = self.atom37[1:, RC.ATOM_N]
        n_next[:-1][self.chain_breaks()[1:]] = np.nan  # residue i-1 has no next N when i starts a segment
        ca, c = self.atom37[:, RC.ATOM_CA], self.atom37[:, RC.ATOM_C]
        rot = gram_schmidt(c - ca, n_next - c)
        oxygen = rot @ np.asarray(C.OXYGEN_LOCAL_COORDS, dtype=np.float32) + c
        placed = np.isfinite(oxygen).all(-1)
        target = placed if overwrite else placed & ~self.atom37_mask[:, RC.ATOM_O]
        atom37, mask, bf = self.atom37.copy(), self.atom37_mask.copy(), self.b_factor.copy()
        atom37[target, RC.ATOM_O] = oxygen[target]
        mask[target, RC.ATOM_O] = True
        bf[target, RC.ATOM_O] = bf[target, RC.ATOM_CA]  # e.g. the residue's pLDDT
        return replace(self, atom37=atom37, atom37_mask=mask, b_factor=bf)

    def normalization_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """(R [3, 3], t [3]) from the mean N, CA, C of residues with all three present (spec §12, float32).

        Means are sum / (count + 1e-8); origin = mean CA, x-axis = mean CA - mean C, mean N - mean CA in the
        xy-plane (the backbone frame of spec §4.3 applied to the mean backbone). The mean N, CA and C of a
        protein lie within a few tenths of an Angstrom of each other, so the axes are short difference vectors
        and float32 rounding of the sums tilts the frame by up to ~1e-3 rad. We accumulate the sums in float64
        (the reference sums in float32, in torch's order), so we agree with it to that rounding only.
        """
        bb = self.backbone()
        valid = np.isfinite(bb).all(axis=(1, 2))
        total = np.where(valid[:, None, None], bb, np.float32(0)).sum(0, dtype=np.float64)
        mean = (total / (valid.sum() + 1e-8)).astype(np.float32)
        n, ca, c = mean
        return gram_schmidt(ca - c, n - ca), ca

    def normalize_coordinates(self) -> ProteinChain:
        """Express every atom in :meth:`normalization_frame`: p -> R^T (p - t) (spec §12).

        As in the reference, nothing moves when |t| = 0 (e.g. no residue has N, CA and C), and coordinates
        that were infinite are +inf afterwards. Missing atoms stay NaN.
        """
        rot, t = self.normalization_frame()
        if not np.linalg.norm(t) > 0:  # reference quirk: the frame only applies when its origin is not 0
            return self
        # Inverse frame applied as R^T p + (-R^T t), the order of operations of the reference.
        with np.errstate(invalid="ignore"):  # NaN (missing) and inf entries propagate; inf is restored below
            moved = self.atom37 @ rot - t @ rot
        moved[np.isinf(self.atom37)] = np.inf
        return replace(self, atom37=moved.astype(np.float32))

    # ---- annotations -------------------------------------------------------------------------------------
    def sasa(self) -> np.ndarray:
        """[L] float32 solvent-accessible surface area per residue in A^2 (see :mod:`openesm3.structure.sasa`)."""
        from openesm3.structure.sasa import residue_sasa  # noqa: PLC0415

        return residue_sasa(self)

    def relative_sasa(self) -> np.ndarray:
        """[L] float32 SASA divided by the Tien et al. 2013 maximum of the residue type (NaN outside the 20)."""
        from openesm3.structure.sasa import relative_sasa  # noqa: PLC0415

        return relative_sasa(self.sasa(), self.sequence)

    # ---- output ------------------------------------------------------------------------------------------
    def to_pdb(self, path: str | os.PathLike[str]) -> None:
        """Write a PDB file (``.gz`` compresses), atomically."""
        self.write(path, "pdb")

    def to_mmcif(self, path: str | os.PathLike[str]) -> None:
        """Write an mmCIF file (``.gz`` compresses), atomically."""
        self.write(path, "cif")

    def to_pdb_string(self) -> str:
        from openesm3.structure.io import to_pdb_string  # noqa: PLC0415

        return to_pdb_string(self)

    def write(self, path: str | os.PathLike[str], format: StructureFormat | None = None) -> None:
        """Write to ``path``; the format comes from the suffix unless given (see :func:`write_structure`)."""
        from openesm3.structure.io import write_structure  # noqa: PLC0415

        write_structure(self, path, format=format)
