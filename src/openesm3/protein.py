"""The user-facing protein record: every ESM3 track in plain Python / numpy values (spec §10.1 ``ESMProtein``).

A :class:`Protein` holds what a user gives to or gets from ESM3, residue by residue:

- ``sequence``: one-letter codes, ``_`` for a masked position, ``|`` between the chains of a complex;
- ``coordinates``: atom37 positions ``[L, 37, 3]`` in Angstrom, NaN for missing atoms;
- ``secondary_structure``: DSSP 8-state letters ``GHITEBSC``, ``_`` masked;
- ``sasa``: solvent-accessible surface area per residue in Å², NaN (``None`` on input) masked;
- ``function_annotations`` (InterPro ids / function keywords) and ``residue_annotations`` (residue-level sites),
  each a label on residues ``start..end``, 1-indexed and inclusive;
- predictions: ``plddt`` ``[L]`` in [0, 1], ``ptm`` and ``pae`` ``[L, L]`` in Angstrom;
- bookkeeping: ``name``, ``chain_ids`` (one per chain of a complex), author ``residue_index`` and
  ``insertion_code``.

L counts every position of the sequence string, chain breaks included (as the SDK's ``len(ESMProtein)``): in a
complex ``"MKT|GS"`` has L = 6 and position 4 is the break, where :meth:`Protein.from_structure` puts NaN
coordinates, the SS8 letter ``_`` and NaN SASA / pLDDT (values a caller puts there are not checked, and are
encoded as given, as the SDK does). Annotation ranges use the same positions and may span a break.

Every track is optional (a prompt gives some, a model fills in others), but all given tracks must agree in
length; the record is validated when built and errors name the protein, the track and the position. Values are
normalised on construction: letters are uppercased, lists become numpy arrays (copies of the arrays given, and
read-only), an atom with a NaN coordinate is missing (all three values NaN) and an infinite coordinate is refused.
The record is frozen; :meth:`Protein.replace` makes a modified copy.

Conversions: :mod:`openesm3.protein_io` reads and writes FASTA and JSON; this module converts to and from
structures (PDB / mmCIF via :mod:`openesm3.structure`); :mod:`openesm3.generation.encoding` converts to and from
the model's token tensors.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
import os
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

import numpy as np

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.errors import InputError, TokenizationError
from openesm3.structure import residue_constants as RC
from openesm3.structure.chain import ProteinChain
from openesm3.structure.complex import ProteinComplex, default_chain_ids
from openesm3.tokenizers.sequence import SequenceTokenizer
from openesm3.tokenizers.ss8 import SS8Tokenizer, dssp_to_ss8
from openesm3.utils.display import plain as _plain
from openesm3.utils.display import shown as _shown

# pLDDT is stored in [0, 1] and written to the B-factor column as is, as the official SDK (and our structure-token
# detokenizer) write it. AlphaFold / ESMFold files use a 0-100 scale: reading recognises it (values above 1).
PLDDT_PERCENT_SCALE = 100.0
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)

_SEQUENCE = SequenceTokenizer()
_SS8 = SS8Tokenizer()

AnnotationsLike = Iterable[FunctionAnnotation | tuple[str, int, int]]


@dataclass(frozen=True, kw_only=True, eq=False)
class Protein:
    """One protein (or complex) with any subset of ESM3's tracks; L = number of positions, chain breaks included.

    Attributes:
        sequence: one-letter codes (uppercase), ``_`` = masked, ``|`` = chain break; None if unknown.
        coordinates: [L, 37, 3] float32 atom37 coordinates in Angstrom, NaN for missing atoms.
        secondary_structure: SS8 string over ``GHITEBSC``, ``_`` = masked.
        sasa: [L] float64 Å², NaN = masked.
        function_annotations: InterPro ids or function keywords on 1-indexed inclusive ranges.
        residue_annotations: residue-level annotation labels on 1-indexed inclusive ranges.
        plddt: [L] float32 predicted lDDT in [0, 1], NaN where unknown.
        ptm: predicted TM-score in [0, 1].
        pae: [L, L] float32 predicted aligned error in Angstrom.
        chain_ids: one id per chain (``sequence.count("|") + 1`` of them); None = ``A, B, ...`` when needed.
        residue_index: [L] int64 author residue numbers (used when writing structures); None = 1..n per chain.
        insertion_code: [L] ``<U1`` author insertion codes; None = none.
        name: an identifier (FASTA id, file stem); used in error messages and output file names.
    """

    sequence: str | None = None
    coordinates: np.ndarray | None = None
    secondary_structure: str | None = None
    sasa: np.ndarray | None = None
    function_annotations: tuple[FunctionAnnotation, ...] | None = None
    residue_annotations: tuple[FunctionAnnotation, ...] | None = None
    plddt: np.ndarray | None = None
    ptm: float | None = None
    pae: np.ndarray | None = None
    chain_ids: tuple[str, ...] | None = None
    residue_index: np.ndarray | None = None
    insertion_code: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        fix = object.__setattr__  # frozen: normalise once, here
        if not isinstance(self.name, str):
            raise InputError(f"protein name must be a str, got {type(self.name).__name__}")
        fix(self, "sequence", self._checked_sequence())
        fix(self, "secondary_structure", self._checked_ss8())
        fix(self, "sasa", self._checked_sasa())
        fix(self, "coordinates", self._checked_coordinates())
        fix(self, "plddt", self._checked_plddt())
        fix(self, "pae", self._checked_pae())
        fix(self, "ptm", self._checked_ptm())
        fix(self, "residue_index", self._checked_residue_index())
        fix(self, "insertion_code", self._checked_insertion_code())
        length = self._checked_lengths()
        fix(self, "function_annotations", self._checked_annotations("function_annotations", length))
        fix(self, "residue_annotations", self._checked_annotations("residue_annotations", length))
        fix(self, "chain_ids", self._checked_chain_ids())
        for value in (self.coordinates, self.sasa, self.plddt, self.pae, self.residue_index, self.insertion_code):
            if value is not None:
                value.setflags(write=False)  # frozen all the way down: an in-place edit would skip validation

    # ---- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_sequence(cls, sequence: str, name: str = "", chain_ids: Sequence[str] | None = None) -> Protein:
        return cls(sequence=sequence, name=name, chain_ids=None if chain_ids is None else tuple(chain_ids))

    @classmethod
    def from_structure(
        cls,
        source: str | os.PathLike[str] | ProteinChain | ProteinComplex,
        *,
        chains: Sequence[str] | str | None = None,
        model: int = 1,
        with_annotations: bool = False,
        plddt_from_b_factor: bool = False,
        name: str | None = None,
    ) -> Protein:
        """A protein (or complex, chains joined by ``|``) from a structure file or chain(s).

        Args:
            source: a PDB / mmCIF / BinaryCIF file (optionally gzip'd), a :class:`ProteinChain` or a
                :class:`ProteinComplex` (an atom its ``atom37_mask`` marks absent is missing, NaN, whatever
                ``atom37`` holds there).
            chains: author chain ids to keep, in this order; None keeps every protein chain.
            model: 1-based model number in the file.
            with_annotations: also compute the SS8 (native DSSP over the whole complex) and per-chain SASA
                tracks, as the SDK's ``from_protein_chain(with_annotations=True)`` does for one chain. SS8 is
                masked (``_``) at residues without a complete N, CA, C, O backbone, which DSSP cannot assess.
            plddt_from_b_factor: read pLDDT from the CA B-factors: 0-1 as the SDK writes them, or 0-100 (AlphaFold,
                ESMFold), recognised by values above 1.
            name: defaults to the file stem / the structure's name.

        A blank chain id (PDB column 22 left empty, as many older and modelled files do) becomes the first
        default id (``A, B, ...``) that no other chain uses, since a protein's chain ids must be non-empty.
        """
        from openesm3.structure.io import load_structure  # noqa: PLC0415

        if isinstance(source, ProteinChain):
            complex_ = ProteinComplex((source,), source.name)
        elif isinstance(source, ProteinComplex):
            complex_ = source
        else:
            complex_ = load_structure(source, model=model, chains=[chains] if isinstance(chains, str) else chains)
            chains = None
        if chains is not None:
            complex_ = complex_.select([chains] if isinstance(chains, str) else chains)
        label = complex_.name if name is None else name
        sequence = complex_.sequence_with_breaks()
        residue_index = _with_breaks([c.residue_index for c in complex_.chains], -1, np.int64)
        insertion_code = _with_breaks([c.insertion_code for c in complex_.chains], "", "<U1")
        ss8, sasa = None, None
        if with_annotations:
            from openesm3.structure.dssp import assign_ss8  # noqa: PLC0415
            from openesm3.structure.sasa import residue_sasa  # noqa: PLC0415

            # Residues DSSP cannot assess (incomplete N, CA, C, O backbone) are masked, not conditioned on as coil.
            dssp = assign_ss8(
                complex_.atom37,
                chain_index=complex_.chain_index,
                sequence=complex_.sequence,
                not_assigned=C.SS8_MASK_CHAR,
            )
            ss_parts, start = [], 0
            for chain in complex_.chains:
                ss_parts.append(dssp_to_ss8(dssp[start : start + len(chain)]))
                start += len(chain)
            ss8 = C.SS8_MASK_CHAR.join(ss_parts)  # the break position is masked (SS8 <pad>, its chain-break id)
            sasa = _with_breaks([residue_sasa(c).astype(np.float64) for c in complex_.chains], np.nan, np.float64)
        plddt = None
        if plddt_from_b_factor:
            plddt = _plddt_from_b_factors(complex_)
        # An atom the chain marks missing is NaN, whatever it holds there (a chain may keep +inf, the tensors' missing
        # atom, where its mask is False, and a Protein refuses an infinite coordinate).
        present = _with_breaks([c.atom37_mask for c in complex_.chains], [False] * RC.N_ATOM37, bool)
        coordinates = np.where(present[..., None], complex_.atom37_with_breaks(), np.float32(np.nan))
        return cls(
            sequence=sequence,
            coordinates=coordinates,
            secondary_structure=ss8,
            sasa=sasa,
            plddt=plddt,
            chain_ids=_named_chain_ids(complex_.chain_ids),
            residue_index=residue_index,
            insertion_code=insertion_code,
            name=label,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Protein:
        """Read one protein from JSON (``.json``), FASTA (``.fasta``/``.fa``/``.faa``, exactly one record) or a
        structure file (anything else; ``kwargs`` go to :meth:`from_structure`)."""
        from openesm3 import protein_io  # noqa: PLC0415

        return protein_io.load_protein(path, **kwargs)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically as JSON, FASTA or a structure file, by suffix (see :func:`protein_io.save_protein`)."""
        from openesm3 import protein_io  # noqa: PLC0415

        protein_io.save_protein(self, path)

    def replace(self, **changes: Any) -> Protein:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ---- views -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """L: positions including chain breaks; from the first present of sequence, SS8, SASA, coordinates,
        pLDDT, PAE, residue_index, insertion_code (all present ones agree: checked on construction)."""
        for value in (self.sequence, self.secondary_structure, self.sasa, self.coordinates, self.plddt, self.pae,
                      self.residue_index, self.insertion_code):  # fmt: skip
            if value is not None:
                return len(value)
        raise InputError(f"{self.error_prefix()}has no per-residue track, so its length is undefined")

    def __repr__(self) -> str:
        present = [f.name for f in dataclasses.fields(self) if f.name != "name" and getattr(self, f.name) is not None]
        shown = ""
        if self.sequence is not None:
            shown = self.sequence if len(self.sequence) <= 30 else self.sequence[:27] + "..."
        try:
            length: int | None = len(self)
        except InputError:  # no per-residue track; a repr must not raise
            length = None
        return f"Protein(name={self.name!r}, length={length}, sequence={shown!r}, tracks={present})"

    @property
    def is_complex(self) -> bool:
        return self.sequence is not None and C.SEQUENCE_CHAINBREAK_CHAR in self.sequence

    @property
    def n_chains(self) -> int:
        return 1 if self.sequence is None else self.sequence.count(C.SEQUENCE_CHAINBREAK_CHAR) + 1

    def chain_segments(self) -> list[tuple[str, int, int]]:
        """``(chain_id, start, end)`` per chain: positions ``start:end`` (0-based, end exclusive), breaks excluded."""
        ids = self.chain_ids or default_chain_ids(self.n_chains)
        if self.sequence is None:
            return [(ids[0], 0, len(self))]
        segments, start = [], 0
        for chain_id, part in zip(ids, self.sequence.split(C.SEQUENCE_CHAINBREAK_CHAR)):
            segments.append((chain_id, start, start + len(part)))
            start += len(part) + 1
        return segments

    def chain_break_positions(self) -> np.ndarray:
        """0-based positions of the ``|`` characters."""
        if self.sequence is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.frombuffer(self.sequence.encode("ascii"), dtype=np.uint8) == ord("|"))

    # ---- structures --------------------------------------------------------------------------------------
    def to_complex(self) -> ProteinComplex:
        """The coordinates as a :class:`ProteinComplex`, one chain per ``|``-separated segment.

        Masked / unknown residues are written as ``X`` (UNK); the sequence defaults to all ``X``. pLDDT goes
        to the B-factors (0-1, as the SDK writes it). Chains without any O atom (e.g. decoded backbones) get their O
        placed from the backbone (spec §12), as the SDK's ``to_pdb`` does.
        """
        if self.coordinates is None:
            raise InputError(f"{self.error_prefix()}has no coordinates, so it cannot be written as a structure")
        chains = []
        for chain_id, start, end in self.chain_segments():
            n = end - start
            seq = "X" * n if self.sequence is None else self.sequence[start:end]
            seq = seq.replace(C.SEQUENCE_MASK_CHAR, RC.UNKNOWN_ONE_LETTER)
            b_factor = None if self.plddt is None else np.nan_to_num(self.plddt[start:end])
            chain = ProteinChain.from_atom37(
                self.coordinates[start:end],
                sequence=seq,
                residue_index=None if self.residue_index is None else self.residue_index[start:end],
                insertion_code=None if self.insertion_code is None else self.insertion_code[start:end],
                chain_id=chain_id,
                b_factor=b_factor,
                name=self.name,
            )
            if n and not chain.atom37_mask[:, RC.ATOM_O].any():
                chain = chain.infer_oxygen()
            chains.append(chain)
        return ProteinComplex(tuple(chains), self.name)

    def to_pdb(self, path: str | os.PathLike[str]) -> None:
        """Write a PDB file atomically (one chain per segment; ``.gz`` compresses)."""
        self.to_complex().write(path, "pdb")

    def to_mmcif(self, path: str | os.PathLike[str]) -> None:
        """Write an mmCIF file atomically (``.gz`` compresses)."""
        self.to_complex().write(path, "cif")

    def to_pdb_string(self) -> str:
        return self.to_complex().to_pdb_string()

    # ---- validation --------------------------------------------------------------------------------------
    def error_prefix(self) -> str:
        """``"protein 'name': "`` (or ``"protein: "``), how messages about this protein start."""
        return f"protein {_shown(self.name)}: " if self.name else "protein: "

    def _error(self, problem: str) -> InputError:
        return InputError(self.error_prefix() + problem)

    def _checked_sequence(self) -> str | None:
        if self.sequence is None:
            return None
        try:
            sequence = _SEQUENCE.normalize(self.sequence)
        except TokenizationError as exc:
            raise self._error(str(exc)) from None
        chains = sequence.split("|")
        if len(chains) > 1 and not all(chains):  # '|' opening or closing the sequence, or two in a row
            n = chains.index("") + 1
            raise self._error(
                f"sequence: chain {n} of {len(chains)} is empty (a '|' chain break must sit between two chains' "
                "residues, not at either end or next to another '|')"
            )
        return sequence

    def _checked_ss8(self) -> str | None:
        ss = self.secondary_structure
        if ss is None:
            return None
        if not isinstance(ss, str):
            if isinstance(ss, Iterable) and all(isinstance(ch, str) and len(ch) == 1 for ch in ss):
                ss = "".join(ss)  # e.g. a list of letters, as the SDK's dssp().tolist()
            else:
                raise self._error(f"secondary_structure must be a str, got {type(ss).__name__}")
        try:
            _SS8.encode(ss, add_special_tokens=False)
        except TokenizationError as exc:
            raise self._error(str(exc)) from None
        return ss.upper()

    def _checked_sasa(self) -> np.ndarray | None:
        if self.sasa is None:
            return None
        values = _float_track(self.sasa, "sasa", self.error_prefix())
        if values.ndim != 1:
            raise self._error(f"sasa must be one value per residue, got shape {values.shape}")
        negative = np.flatnonzero(values < 0)
        if negative.size:
            i = int(negative[0])
            raise self._error(f"sasa at position {i + 1} is negative ({_shown(values[i])} Å²); SASA must be >= 0")
        return values

    def _checked_coordinates(self) -> np.ndarray | None:
        """The one parser of user coordinates, arrays and the JSON format's nested lists alike."""
        if self.coordinates is None:
            return None
        raw = _to_numpy(self.coordinates)
        if not isinstance(raw, np.ndarray) or raw.dtype == object:
            fast = _well_formed_coordinate_lists(raw)
            raw = self._coordinates_from_lists(raw) if fast is None else fast
        elif not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
            raise self._error(f"coordinates must be numbers, got dtype {raw.dtype}")
        with np.errstate(over="ignore"):
            coords = np.array(raw, dtype=np.float32)
        if coords.ndim != 3 or coords.shape[1:] != (RC.N_ATOM37, 3):
            raise self._error(f"coordinates must have shape [L, 37, 3] (atom37), got {coords.shape}")
        overflow = np.isfinite(raw) & ~np.isfinite(coords)  # a finite number that became inf: the atom would vanish
        if overflow.any():
            i, a = (int(v) for v in np.argwhere(overflow)[0][:2])
            raise self._error(
                f"coordinates of residue {i + 1}, atom {RC.ATOM37_NAMES[a]}: {np.asarray(raw[i, a]).tolist()} is "
                "beyond the float32 range; a missing atom is NaN"
            )
        infinite = np.isinf(raw)  # given as such (inf, JSON Infinity): not a position, and not NaN either
        if infinite.any():
            i, a = (int(v) for v in np.argwhere(infinite)[0][:2])
            raise self._error(
                f"coordinates of residue {i + 1}, atom {RC.ATOM37_NAMES[a]}: {np.asarray(raw[i, a]).tolist()} is "
                "infinite; a missing atom is NaN (null in JSON)"
            )
        coords[~np.isfinite(coords).all(-1)] = np.nan  # an atom is present only with three finite values
        return coords

    def _coordinates_from_lists(self, value: Any) -> np.ndarray:
        """Nested lists ``[L][37][3]`` (or tuples, arrays) as float64 [L, 37, 3], NaN where an atom is ``None`` (JSON
        ``null``) or ``[None, None, None]``; float64, so that a number beyond the float32 range is refused by the
        range check instead of becoming inf (a missing atom). Anything else raises, naming the residue and atom."""
        if not _is_list(value):
            raise self._error(f"coordinates must be a list of residues [L][37][3], got {type(value).__name__}")
        residues = list(value)
        out = np.full((len(residues), RC.N_ATOM37, 3), np.nan)
        for i, given_residue in enumerate(residues):
            residue = _to_numpy(given_residue)
            atoms = list(residue) if _is_list(residue) else None
            if atoms is None or len(atoms) != RC.N_ATOM37:
                got = _shown(residue) if atoms is None else len(atoms)
                raise self._error(
                    f"coordinates at residue {i + 1}: expected a list of {RC.N_ATOM37} atoms (atom37 order), got {got}"
                )
            for a, given_atom in enumerate(atoms):
                atom = _to_numpy(given_atom)
                xyz = list(atom) if _is_list(atom) else None
                if atom is None or (xyz is not None and len(xyz) == 3 and all(x is None for x in xyz)):
                    continue  # a missing atom
                if xyz is None or len(xyz) != 3 or not all(_is_number(x) for x in xyz):
                    raise self._error(
                        f"coordinates at residue {i + 1}, atom {a + 1} ({RC.ATOM37_NAMES[a]}): expected [x, y, z] or "
                        f"None (JSON null) for a missing atom, got {_shown(atom)}"
                    )
                try:
                    out[i, a] = [float(x) for x in xyz]
                except OverflowError:  # an int beyond the float range (Python and JSON ints are unbounded)
                    raise self._error(
                        f"coordinates of residue {i + 1}, atom {RC.ATOM37_NAMES[a]}: {_shown(atom)} is beyond the "
                        "float32 range; a missing atom is NaN"
                    ) from None
        return out

    def _checked_plddt(self) -> np.ndarray | None:
        if self.plddt is None:
            return None
        given = _float_track(self.plddt, "plddt", self.error_prefix())
        if given.ndim != 1:
            raise self._error(f"plddt must be one value per residue, got shape {given.shape}")
        with np.errstate(over="ignore"):
            values = given.astype(np.float32)
        # Checked as stored (a float64 that rounds to 1.0 is 1.0) but named as given: 1e39 is no float32 inf, and a
        # float32 given is named in its own digits (1.1, not 1.100000023841858).
        bad = np.flatnonzero((values < 0) | (values > 1))
        if bad.size:
            i = int(bad[0])
            value = values[i] if float(values[i]) == given[i] else given[i]
            raise self._error(f"plddt at position {i + 1} is {_shown(value)}; pLDDT must lie in [0, 1]")
        return values

    def _checked_pae(self) -> np.ndarray | None:
        if self.pae is None:
            return None
        given = _float_track(self.pae, "pae", self.error_prefix())
        if given.ndim != 2 or given.shape[0] != given.shape[1]:
            raise self._error(f"pae must be a square [L, L] matrix, got shape {given.shape}")
        with np.errstate(over="ignore"):
            values = given.astype(np.float32)
        # An expected error is a finite distance; NaN (None, JSON null) is a pair without one (a chain break's row and
        # column). inf, given or a float beyond the float32 range, is neither, and JSON could not hold it.
        for bad, rule in ((np.isinf(values), "must be finite"), (values < 0, "must be >= 0")):
            if bad.any():
                i, j = (int(v) for v in np.argwhere(bad)[0])
                value = values[i, j] if float(values[i, j]) == given[i, j] else given[i, j]  # as pLDDT's are named
                raise self._error(
                    f"pae at position ({i + 1}, {j + 1}) is {_shown(value)}; PAE {rule} (Angstrom; an undefined pair "
                    "is NaN, null in JSON)"
                )
        return values

    def _checked_ptm(self) -> float | None:
        if self.ptm is None:
            return None
        try:
            if isinstance(self.ptm, (bool, np.bool_)):
                raise TypeError("a bool is not a pTM")
            value = float(self.ptm)
        except (TypeError, ValueError):
            raise self._error(f"ptm must be a number, got {_shown(self.ptm)}") from None
        if math.isnan(value):
            return None
        if not 0.0 <= value <= 1.0:
            raise self._error(f"ptm is {value}; pTM must lie in [0, 1]")
        return value

    def _checked_residue_index(self) -> np.ndarray | None:
        """A copy as int64; a non-integer or out-of-range number raises (casting would truncate or overflow)."""
        if self.residue_index is None:
            return None
        values = np.array(_to_numpy(self.residue_index), dtype=object)  # exact Python / numpy numbers, copied
        if values.ndim != 1:
            raise self._error(f"residue_index must be one value per residue, got shape {values.shape}")
        for i, given in enumerate(values.tolist()):
            x = _plain(given)  # from a list of NumPy numbers the object array holds them as such: np.int32 is no int
            if isinstance(x, bool) or not isinstance(x, (int, float)) or (isinstance(x, float) and not x.is_integer()):
                raise self._error(f"residue_index at position {i + 1}: {_shown(given)} is not an integer")
            if not _INT64_MIN <= x <= _INT64_MAX:
                raise self._error(f"residue_index at position {i + 1}: {_shown(given)} does not fit in 64 bits")
        return values.astype(np.int64)

    def _checked_insertion_code(self) -> np.ndarray | None:
        """A copy as ``<U1``; a longer code raises (casting would keep only its first character)."""
        if self.insertion_code is None:
            return None
        values = np.array(_to_numpy(self.insertion_code), dtype=object)
        if values.ndim != 1:
            raise self._error(f"insertion_code must be one value per residue, got shape {values.shape}")
        for i, given in enumerate(values.tolist()):
            x = _plain(given)
            if not isinstance(x, str):
                raise self._error(f"insertion_code at position {i + 1}: {_shown(given)} is not a string")
            if len(x) > 1:
                raise self._error(f"insertion_code at position {i + 1}: {_shown(given)} is longer than one character")
        return values.astype("<U1")

    def _checked_lengths(self) -> int | None:
        lengths = {
            name: len(value)
            for name, value in (
                ("sequence", self.sequence), ("secondary_structure", self.secondary_structure), ("sasa", self.sasa),
                ("coordinates", self.coordinates), ("plddt", self.plddt), ("pae", self.pae),
                ("residue_index", self.residue_index), ("insertion_code", self.insertion_code),
            )
            if value is not None
        }  # fmt: skip
        if len(set(lengths.values())) > 1:
            parts = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise self._error(f"tracks disagree in length: {parts} positions")
        return next(iter(lengths.values())) if lengths else None

    def _checked_annotations(self, field: str, length: int | None) -> tuple[FunctionAnnotation, ...] | None:
        value = getattr(self, field)
        if value is None:
            return None
        if isinstance(value, (str, bytes, FunctionAnnotation)):
            raise self._error(f"{field} must be a list of annotations, got a single {type(value).__name__}")
        out = []
        for n, item in enumerate(value):
            if isinstance(item, FunctionAnnotation):
                ann = item
            elif isinstance(item, (tuple, list)) and len(item) == 3:
                ann = FunctionAnnotation(item[0], item[1], item[2])
            elif isinstance(item, dict) and set(item) == {"label", "start", "end"}:
                ann = FunctionAnnotation(item["label"], item["start"], item["end"])
            else:
                raise self._error(f"{field}[{n}]: expected FunctionAnnotation(label, start, end), got {_shown(item)}")
            if length is None:
                raise self._error(f"{field} need a per-residue track (e.g. the sequence) to define the length")
            try:
                ann.check(length, index=n)
            except InputError as exc:
                raise self._error(f"{field}: {exc}") from None
            out.append(ann)
        return tuple(out)

    def _checked_chain_ids(self) -> tuple[str, ...] | None:
        if self.chain_ids is None:
            return None
        if isinstance(self.chain_ids, str):
            raise self._error("chain_ids must be a list of ids, one per chain (got a single string)")
        ids = tuple(self.chain_ids)
        for cid in ids:
            if not isinstance(cid, str) or not cid or any(ch.isspace() for ch in cid) or "," in cid:
                raise self._error(f"chain id {_shown(cid)}: must be a non-empty string without spaces or commas")
        if len(set(ids)) != len(ids):
            raise self._error(f"chain ids must be distinct, got {list(ids)}")
        if len(ids) != self.n_chains:
            raise self._error(
                f"{len(ids)} chain id(s) {list(ids)} for {self.n_chains} chain(s) in the sequence "
                f"({self.n_chains - 1} '|' chain break(s))"
            )
        return ids


# ---- helpers -----------------------------------------------------------------------------------------------
def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return value


def _is_list(value: Any) -> bool:
    """A list level of nested coordinates: a list, tuple, array (not 0-d) or other sequence, not text, a dict or a set
    (a set has no order: {3.0, 1.0, 2.0} would be read as the atom [1.0, 2.0, 3.0])."""
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping, Set))


_FAST_LEAF_TYPES = frozenset({float, int} | {np.dtype(c).type for c in "bhilqBHILQefd"})  # not bool, np.bool_


def _well_formed_coordinate_lists(value: Any) -> np.ndarray | None:
    """The fast path of :meth:`Protein._coordinates_from_lists`: the same float64 [L, 37, 3] array for lists (not
    tuples) of L residues, each a list of 37 atoms, each ``None`` or a list of exactly three Python / NumPy ints or
    floats (a bool, a string, a nested array, a longdouble... is not one), checked by C-level passes (``map``,
    ``list.count``) instead of a Python loop per atom. None for anything else, which the loop then reads or refuses
    with its message."""
    if (
        type(value) is not list
        or not value
        or not _all_of(map(type, value), list)
        or not _all_of(map(len, value), RC.N_ATOM37)
    ):
        return None
    atoms = list(itertools.chain.from_iterable(value))
    kinds = list(map(type, atoms))
    missing = kinds.count(type(None))
    if kinds.count(list) + missing != len(kinds):
        return None
    present = list(map(operator.is_not, atoms, itertools.repeat(None))) if missing else None
    given = atoms if present is None else list(itertools.compress(atoms, present))
    if not _all_of(map(len, given), 3):
        return None
    numbers = list(itertools.chain.from_iterable(given))
    types = list(map(type, numbers))
    if types.count(float) != len(types) and not set(types) <= _FAST_LEAF_TYPES:  # counting: faster than a set
        return None
    try:
        values = np.fromiter(numbers, dtype=np.float64, count=len(numbers))
    except OverflowError:  # an int beyond the float range: the loop names the atom
        return None
    if present is None:
        out = values.reshape(len(atoms), 3)
    else:
        out = np.full((len(atoms), 3), np.nan)
        out[np.frombuffer(bytes(present), dtype=bool)] = values.reshape(-1, 3)  # bytes: faster than np.array
    return out.reshape(len(value), RC.N_ATOM37, 3)


def _all_of(items: Iterable[Any], expected: Any) -> bool:
    """Whether every item is ``expected`` (compared in C by ``list.count``: identity first, then ``==``)."""
    values = list(items)
    return values.count(expected) == len(values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _float_track(value: Any, field: str, where: str) -> np.ndarray:
    """Numbers (``None`` = NaN) as float64, with an error naming the first bad entry."""
    value = _to_numpy(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise InputError(f"{where}{field} must be numbers, got dtype {value.dtype}")
        return value.astype(np.float64)
    array = np.asarray(value, dtype=object)
    out = np.empty(array.shape, dtype=np.float64)
    for index, item in np.ndenumerate(array):
        if item is None:
            out[index] = np.nan
        elif isinstance(item, (int, float, np.integer, np.floating)) and not isinstance(item, bool):
            out[index] = float(item)
        else:
            where_in = ", ".join(str(i + 1) for i in index)
            raise InputError(f"{where}{field} at position {where_in}: expected a number or None, got {_shown(item)}")
    return out


def _with_breaks(parts: Sequence[np.ndarray], fill: Any, dtype: Any) -> np.ndarray:
    """Per-chain arrays joined with one ``fill`` entry between chains (the ``|`` positions)."""
    out: list[np.ndarray] = []
    for k, part in enumerate(parts):
        if k:
            out.append(np.array([fill], dtype=dtype))
        out.append(np.asarray(part, dtype=dtype))
    return np.concatenate(out) if out else np.zeros(0, dtype=dtype)


def _named_chain_ids(ids: tuple[str, ...]) -> tuple[str, ...]:
    """``ids`` with a blank id (at most one: ids are distinct) replaced by the first unused default id."""
    if "" not in ids:
        return ids
    free = next(c for c in default_chain_ids(len(ids) + 1) if c not in ids)  # len(ids) + 1 candidates: one is free
    return tuple(free if cid == "" else cid for cid in ids)


def _plddt_from_b_factors(complex_: ProteinComplex) -> np.ndarray:
    """CA B-factors as pLDDT in [0, 1]: taken as is when they are all <= 1, divided by 100 when the largest is in
    (1, 100] (the AlphaFold / ESMFold scale); anything else is not pLDDT and raises."""
    values = _with_breaks([c.b_factor[:, RC.ATOM_CA].astype(np.float64) for c in complex_.chains], np.nan, np.float64)
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > PLDDT_PERCENT_SCALE):
        raise InputError(
            f"{complex_.name or 'structure'}: CA B-factors span {finite.min():.2f}..{finite.max():.2f}, not pLDDT "
            f"values (0-1, or 0-{PLDDT_PERCENT_SCALE:g})"
        )
    return values / PLDDT_PERCENT_SCALE if finite.size and finite.max() > 1.0 else values
