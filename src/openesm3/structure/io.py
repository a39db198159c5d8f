"""Reading and writing protein structures: PDB, mmCIF and BinaryCIF, plain or gzip-compressed.

Format detection: gzip is recognised by its magic bytes (whatever the suffix); the format of the content is
then sniffed (BinaryCIF is a MessagePack map, mmCIF starts with ``data_``, PDB has PDB record names). The
suffix (``.pdb``, ``.ent``, ``.cif``, ``.mmcif``, ``.bcif``, each optionally ``.gz``) is used only when the
content is inconclusive, so a misnamed file is still read correctly.

Writing goes through biotite's writers; files appear atomically (:mod:`openesm3.utils.atomic`). Modified
residues are written as their parent residue (MSE as MET with SD), since atom37 keeps only the parent's atoms;
the letters U, O, B and Z as SEC, PYL, ASX and GLX (so they read back as themselves), X as UNK. mmCIF and
BinaryCIF files also get one polymer entity per chain (``entity``, ``entity_poly``, ``entity_poly_seq``,
``struct_asym``), and ``label_seq_id`` is the 1-based position in the chain; the author numbering (with
insertion codes) is in ``auth_seq_id`` / ``pdbx_PDB_ins_code``, which is what readers use by default.

A file written while an openesm3 command that loaded weights runs (fold, generate, detokenize, round-trip) also
carries the provenance note of :func:`openesm3.utils.provenance.structure_note` (version, short SHA-256 of each
weight file, seed): in PDB as ``REMARK   6`` lines before the atoms (a REMARK number wwPDB leaves unassigned, which
readers keep as free text), in mmCIF and BinaryCIF as the ``_software`` category. Nothing else in the file changes.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from openesm3.errors import InputError, StructureFileError
from openesm3.structure import residue_constants as RC
from openesm3.structure.assemble import assemble
from openesm3.structure.chain import ProteinChain
from openesm3.structure.cif_reader import parse_cif
from openesm3.structure.complex import ProteinComplex
from openesm3.structure.pdb_reader import parse_pdb
from openesm3.utils.atomic import atomic_write_bytes
from openesm3.utils.provenance import structure_note

StructureFormat = Literal["pdb", "cif", "bcif"]
Structure = ProteinChain | ProteinComplex
PathLike = str | os.PathLike[str]

SUFFIX_FORMATS: dict[str, StructureFormat] = {
    ".pdb": "pdb", ".ent": "pdb", ".cif": "cif", ".mmcif": "cif", ".bcif": "bcif",
}  # fmt: skip
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_PDB_RECORDS = frozenset(
    "HEADER OBSLTE TITLE SPLIT CAVEAT COMPND SOURCE KEYWDS EXPDTA NUMMDL MDLTYP AUTHOR REVDAT SPRSDE JRNL "
    "REMARK DBREF DBREF1 DBREF2 SEQADV SEQRES MODRES HET HETNAM HETSYN FORMUL HELIX SHEET SSBOND LINK CISPEP "
    "SITE CRYST1 ORIGX1 ORIGX2 ORIGX3 SCALE1 SCALE2 SCALE3 MTRIX1 MTRIX2 MTRIX3 MODEL ATOM ANISOU TER HETATM "
    "ENDMDL CONECT MASTER END".split()
)
_SNIFF_LINES = 50
# Largest coordinates the fixed 8.3f columns of PDB hold.
_PDB_COORD_MIN, _PDB_COORD_MAX = -999.999, 9999.999
# Residue numbers the 4 resSeq columns hold: decimal from -999, hybrid-36 (as the reader reads) past 9999.
_PDB_RESSEQ_MIN, _PDB_RESSEQ_MAX = -999, 2436111
# Atom serial numbers the 5 columns hold: decimal to 99999, hybrid-36 past it (A0000 = 100000, ..., zzzzz).
_PDB_SERIAL_MAX = 87440031
# B-factors the 6.2f tempFactor columns hold.
_PDB_B_FACTOR_MIN, _PDB_B_FACTOR_MAX = -99.99, 999.99


# ---- format detection ------------------------------------------------------------------------------------
def _suffix_format(path: Path) -> tuple[StructureFormat | None, bool]:
    """(format named by the suffix or None, whether the name ends in .gz)."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    return (SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None), gz


def output_format(path: PathLike) -> StructureFormat | None:
    """The format :func:`write_structure` gives ``path`` from its suffix (``x.cif.gz`` -> ``cif``), None if none."""
    return _suffix_format(Path(path))[0]


def structure_name(path: PathLike) -> str:
    """File name without its structure and compression suffixes: ``1a62.pdb.gz`` -> ``1a62``."""
    name = Path(path).name
    for _ in range(2):
        stem, dot, suffix = name.rpartition(".")
        if dot and ("." + suffix.lower() in SUFFIX_FORMATS or suffix.lower() == "gz"):
            name = stem
    return name


def sniff_format(data: bytes) -> StructureFormat | None:
    """Format recognised from the (decompressed) content, or None if it looks like none of them."""
    if not data:
        return None
    first = data[0]
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):  # a MessagePack map: BinaryCIF
        return "bcif"
    lines = data[:65536].decode("latin-1").splitlines()[:_SNIFF_LINES]
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("data_"):
            return "cif"
        break
    for line in lines:
        record = line[:6].strip()
        if record in _PDB_RECORDS or line.startswith("ATOM"):
            return "pdb"
    return None


def read_structure_bytes(path: PathLike) -> tuple[bytes, StructureFormat]:
    """The decompressed content of a structure file and its format.

    Raises:
        StructureFileError: missing or unreadable file, empty file, damaged gzip, unknown format.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise StructureFileError(path, "no such file") from None
    except IsADirectoryError:
        raise StructureFileError(path, "is a directory, not a structure file") from None
    except OSError as exc:
        raise StructureFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise StructureFileError(path, f"damaged gzip data ({exc})") from None
    if raw.startswith(_UTF8_BOM):  # left by some Windows editors; it would hide the first record (or data_ line)
        raw = raw[len(_UTF8_BOM) :]
    if not raw.strip():
        raise StructureFileError(path, "empty file")
    suffix_format, _ = _suffix_format(source)
    detected = sniff_format(raw) or suffix_format
    if detected is None:
        raise StructureFileError(
            path,
            "unknown format: the suffix is none of " + ", ".join(sorted(SUFFIX_FORMATS)) + " (optionally .gz) and "
            "the content looks like neither PDB (no PDB records), mmCIF (no data_ line) nor BinaryCIF",
        )
    return raw, detected


# ---- loading ---------------------------------------------------------------------------------------------
def load_structure(path: PathLike, *, model: int = 1, chains: Sequence[str] | None = None) -> ProteinComplex:
    """Every protein chain of one model of a PDB, mmCIF or BinaryCIF file (optionally gzip-compressed).

    Args:
        path: the file.
        model: 1-based position of the model in the file.
        chains: author chain ids to keep, in this order (a single id may be given as a string; an id given
            twice is refused); None keeps all protein chains in file order.

    Returns:
        The chains, each named after the file (``structure_name``). See :mod:`openesm3.structure.assemble`
        for how alternate locations, ligands and modified residues are handled.

    Raises:
        StructureFileError: naming the file and the problem (with the line for PDB records).
    """
    data, fmt = read_structure_bytes(path)
    source = str(path)
    records = parse_pdb(data, source) if fmt == "pdb" else parse_cif(data, source, binary=fmt == "bcif")
    if isinstance(chains, str):
        chains = [chains]
    return assemble(records, source, name=structure_name(path), model=model, chains=chains)


def load_chain(path: PathLike, chain_id: str | None = None, *, model: int = 1) -> ProteinChain:
    """One protein chain of a structure file.

    With ``chain_id=None`` this is the first protein chain in file order, which for PDB files is the first
    chain listed, and is what the reference's ``"detect"`` means (the chain of the first atom) whenever the
    file starts with a protein chain. Use :func:`load_structure` to see all chains.
    """
    complex_ = load_structure(path, model=model, chains=None if chain_id is None else [chain_id])
    return complex_.chains[0]


# ---- writing ---------------------------------------------------------------------------------------------
# Atoms in each residue are written N, CA, C, O, CB, side chain, OXT (the PDB convention), not atom37 order.
_WRITE_ORDER = np.array([RC.ATOM_N, RC.ATOM_CA, RC.ATOM_C, RC.ATOM_O, RC.ATOM_CB, *range(5, RC.N_ATOM37)])
_ATOM_NAMES = np.array(RC.ATOM37_NAMES)
# Letters outside the 20 that have a CCD residue reading back as the same letter; other letters are written UNK.
_EXTRA_RESIDUE_NAMES = {"U": "SEC", "O": "PYL", "B": "ASX", "Z": "GLX"}
# How a bare CIF 1.1 value may not start (biotite's writer quotes only values starting with _ or holding quotes).
_CIF_RESERVED_STARTS = frozenset("#$[];")
_CIF_RESERVED_WORDS = ("data_", "loop_", "save_", "global_", "stop_")


def _chains_of(obj: Structure) -> tuple[ProteinChain, ...]:
    if isinstance(obj, ProteinChain):
        return (obj,)
    if isinstance(obj, ProteinComplex):
        return obj.chains
    raise TypeError(f"expected a ProteinChain or ProteinComplex, got {type(obj).__name__}")


def _check_residue_ids(chain: ProteinChain) -> None:
    """Readers split residues where the number or insertion code changes, so neighbours must differ in one."""
    same = (chain.residue_index[1:] == chain.residue_index[:-1]) & (
        chain.insertion_code[1:] == chain.insertion_code[:-1]
    )
    if same.any():
        i = int(np.flatnonzero(same)[0])
        label = f"{chain.residue_index[i]}{chain.insertion_code[i]}"
        raise InputError(
            f"{chain.name or 'structure'} chain {chain.chain_id!r}: residues {i + 1} and {i + 2} are both numbered "
            f"{label}; a reader would merge them into one residue (give them distinct numbers or insertion codes)"
        )


def _written_atoms(chain: ProteinChain) -> tuple[np.ndarray, np.ndarray]:
    """([N] residue position, [N] atom37 slot) of the atoms written for ``chain``, in file order."""
    residue, column = np.nonzero(chain.atom37_mask[:, _WRITE_ORDER])
    return residue, _WRITE_ORDER[column]


def _written_residue_names(chain: ProteinChain) -> np.ndarray:
    """[L] residue names as written (see the module docstring)."""
    names = [_EXTRA_RESIDUE_NAMES.get(aa) or RC.three_letter_code(aa) for aa in chain.sequence]
    return np.array(names, dtype="<U3").reshape(-1)


def to_atom_array(obj: Structure) -> object:
    """A biotite ``AtomArray`` of the present atoms (modified residues under their parent's name)."""
    import biotite.structure as struc  # noqa: PLC0415

    parts = []
    for chain in _chains_of(obj):
        _check_residue_ids(chain)
        residue, slot = _written_atoms(chain)
        n = len(residue)
        arr = struc.AtomArray(n)
        arr.coord = chain.atom37[residue, slot]
        arr.chain_id = np.full(n, chain.chain_id)
        arr.res_id = chain.residue_index[residue]
        arr.ins_code = chain.insertion_code[residue]
        arr.res_name = _written_residue_names(chain)[residue]
        arr.hetero = np.zeros(n, dtype=bool)
        arr.atom_name = _ATOM_NAMES[slot]
        arr.element = np.array([name[0] for name in RC.ATOM37_NAMES])[slot]
        b_factor = chain.b_factor[residue, slot]
        if np.isinf(b_factor).any():  # np.nan_to_num would write it as +-1.8e308
            raise InputError(
                f"chain {chain.chain_id!r}: a B-factor is infinite; give a finite value (or NaN, written 0)"
            )
        if b_factor.dtype == np.float32:  # each as the float64 its float32 text reads as: 43.6, not 43.5999984...
            b_factor = np.array([float(str(v)) for v in b_factor], dtype=np.float64)
        arr.set_annotation("b_factor", np.nan_to_num(b_factor, nan=0.0))
        arr.set_annotation("occupancy", np.ones(n))
        parts.append(arr)
    array = parts[0]
    for part in parts[1:]:
        array += part
    if array.array_length() == 0:
        raise InputError(f"{getattr(obj, 'name', '') or 'structure'}: no atoms to write (every atom is missing)")
    return array


def _check_pdb_limits(obj: Structure) -> None:
    atoms = sum(int(chain.atom37_mask.sum()) for chain in _chains_of(obj))
    if atoms > _PDB_SERIAL_MAX:
        raise InputError(
            f"{atoms} atoms: atom serial numbers past {_PDB_SERIAL_MAX} do not fit the PDB format's 5 columns (with "
            "hybrid-36); write mmCIF (.cif)"
        )
    for chain in _chains_of(obj):
        if len(chain.chain_id) > 1:
            raise InputError(
                f"chain id {chain.chain_id!r} does not fit the PDB format's one character; write mmCIF (.cif)"
            )
        if not chain.chain_id.isascii():
            raise InputError(f"chain id {chain.chain_id!r} is not ASCII, which the PDB format is; write mmCIF (.cif)")
        numbers = chain.residue_index
        if numbers.size and (numbers.min() < _PDB_RESSEQ_MIN or numbers.max() > _PDB_RESSEQ_MAX):
            bad = int(numbers[(numbers < _PDB_RESSEQ_MIN) | (numbers > _PDB_RESSEQ_MAX)][0])
            raise InputError(
                f"chain {chain.chain_id!r}: residue number {bad} does not fit the PDB format's 4 columns "
                f"([{_PDB_RESSEQ_MIN}, {_PDB_RESSEQ_MAX}] with hybrid-36); write mmCIF (.cif)"
            )
        coords = chain.atom37[chain.atom37_mask]
        if coords.size and (coords.min() < _PDB_COORD_MIN or coords.max() > _PDB_COORD_MAX):
            raise InputError(
                f"chain {chain.chain_id!r}: coordinates outside [{_PDB_COORD_MIN}, {_PDB_COORD_MAX}] do not fit "
                "the PDB format; write mmCIF (.cif)"
            )
        b_factor = np.nan_to_num(
            chain.b_factor[chain.atom37_mask].astype(np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf
        ).round(2)  # as written
        if b_factor.size and (b_factor.min() < _PDB_B_FACTOR_MIN or b_factor.max() > _PDB_B_FACTOR_MAX):
            raise InputError(
                f"chain {chain.chain_id!r}: B-factors outside [{_PDB_B_FACTOR_MIN}, {_PDB_B_FACTOR_MAX}] do not fit "
                "the PDB format; write mmCIF (.cif)"
            )


def _check_cif_chain_ids(obj: Structure) -> None:
    """Refuse chain ids that mmCIF text cannot hold as they are and biotite's writer does not quote.

    CIF reads ``?`` and ``.`` as missing values, a leading ``#`` as a comment, ``data_``/``loop_``/... as
    syntax, and a leading ``$``, ``[``, ``]`` or ``;`` is reserved; other readers (gemmi) reject such files.
    """
    for chain in _chains_of(obj):
        cid = chain.chain_id
        if cid in ("?", ".") or cid[:1] in _CIF_RESERVED_STARTS or cid.lower().startswith(_CIF_RESERVED_WORDS):
            raise InputError(
                f"chain id {cid!r} cannot be written unquoted in mmCIF (it would read as a missing value or as CIF "
                "syntax); rename the chain, or write BinaryCIF (.bcif) or PDB (.pdb)"
            )


def _hybrid36_fields(numbers: np.ndarray, width: int) -> np.ndarray | None:
    """[N] fields of ``width`` columns when some number is past the decimal ones (hybrid-36: 10000 -> ``A000`` as a
    4-column residue number, 100000 -> ``A0000`` as a 5-column atom serial), else None.

    biotite would wrap such numbers silently (10000 -> 1); those that fit, negative ones included, stay decimal."""
    if not numbers.size or numbers.max() < 10**width:
        return None
    from biotite.structure.io.pdb.hybrid36 import encode_hybrid36  # noqa: PLC0415

    uniq, inverse = np.unique(numbers, return_inverse=True)
    fields = np.array([encode_hybrid36(int(r), width) if r > 0 else str(r) for r in uniq.tolist()], dtype=f"<U{width}")
    return np.char.rjust(fields, width)[inverse.reshape(-1)]


def to_pdb_string(obj: Structure) -> str:
    """PDB-format text: ATOM records (B-factor column = ``b_factor``, e.g. pLDDT), TER per chain, END.

    Residue numbers past 9999 and atom serial numbers past 99999 are written in hybrid-36 (``A000`` = 10000,
    ``A0000`` = 100000), as cctbx, PyMOL and gemmi write and read them; :func:`load_structure` reads them.
    """
    from biotite.structure.io.pdb import PDBFile  # noqa: PLC0415

    _check_pdb_limits(obj)
    array = to_atom_array(obj)
    res_fields = _hybrid36_fields(array.res_id, 4)  # type: ignore[attr-defined]
    if res_fields is not None:
        array.res_id = np.zeros_like(array.res_id)  # type: ignore[attr-defined]  # replaced below
    n_atoms = array.array_length()  # type: ignore[attr-defined]
    serials = _hybrid36_fields(np.arange(1, n_atoms + 1), 5)
    if serials is not None:
        array.set_annotation("atom_id", np.zeros(n_atoms, dtype=np.int64))  # type: ignore[attr-defined]  # below
    pdb = PDBFile()
    pdb.set_structure(array)
    lines: list[str] = []
    previous: str | None = None  # the last ATOM line written, until its chain is closed by a TER
    atom = 0
    for line in pdb.lines:
        is_atom = line.startswith("ATOM")
        if previous is not None and (not is_atom or line[21] != previous[21]):
            lines.append(_ter_record(previous))
            previous = None
        if is_atom and res_fields is not None:
            line = line[:22] + res_fields[atom] + line[26:]
        if is_atom and serials is not None:
            line = line[:6] + serials[atom] + line[11:]
        atom += is_atom
        lines.append(line)
        previous = line if is_atom else previous
    if previous is not None:
        lines.append(_ter_record(previous))
    lines.append(_PDB_END)
    return "\n".join(lines) + "\n"


# Records are 80 columns, the record name filling columns 1-6: readers that match the padded name (Biopython's
# "TER   ", "END   ") warn about, and ignore, a bare "TER" or "END".
_PDB_END = "END".ljust(80)


def _ter_record(last_atom: str) -> str:
    """The TER record closing the chain of ``last_atom`` (an ATOM line): the residue name, chain id, residue number
    and insertion code of that atom (columns 18-27). The serial number (columns 7-11) is left blank: the spec's
    "last atom + 1" would repeat the next chain's first serial, since the ATOM serials run on without a gap."""
    return ("TER" + " " * 14 + last_atom[17:27]).ljust(80)


def _set_entities(block: Any, obj: Structure) -> None:
    """One polymer entity per chain, and the ``label_*`` numbering of ``atom_site`` that points into it.

    biotite writes the author residue number as ``label_seq_id`` too; PDBx defines it as the 1-based position in
    the entity's sequence (``_entity_poly_seq.num``), and tools that number by it (label mode of viewers,
    structure-prediction pipelines) would see 0 or negative numbers, and one number for ``1C, 1B, 1A, 1``. Here
    it is the residue's position in its chain, residues without atoms included (they are in the sequence).
    """
    category = block.subcomponent_class()
    chains = [chain for chain in _chains_of(obj) if chain.atom37_mask.any()]  # as in atom_site
    entity_ids = [str(k) for k in range(1, len(chains) + 1)]
    label_entity, label_seq, mon_ids = [], [], []
    for entity_id, chain in zip(entity_ids, chains):
        residue, _ = _written_atoms(chain)
        label_entity.append(np.full(len(residue), entity_id))
        label_seq.append(residue + 1)
        mon_ids.append(_written_residue_names(chain))
    atom_site = block["atom_site"]
    atom_site["label_entity_id"] = np.concatenate(label_entity)
    atom_site["label_seq_id"] = np.concatenate(label_seq)
    block["entity"] = category({"id": np.array(entity_ids), "type": np.full(len(chains), "polymer")})
    block["entity_poly"] = category(
        {
            "entity_id": np.array(entity_ids),
            "type": np.full(len(chains), "polypeptide(L)"),
            "pdbx_strand_id": np.array([chain.chain_id for chain in chains]),
        }
    )
    block["entity_poly_seq"] = category(
        {
            "entity_id": np.repeat(entity_ids, [len(chain) for chain in chains]),
            "num": np.concatenate([np.arange(1, len(chain) + 1) for chain in chains]),
            "mon_id": np.concatenate(mon_ids),
            "hetero": np.full(sum(len(chain) for chain in chains), "n"),
        }
    )
    block["struct_asym"] = category(
        {"id": np.array([chain.chain_id for chain in chains]), "entity_id": np.array(entity_ids)}
    )


# PDB REMARK number of the provenance note: unassigned in wwPDB format v3.3 (which defines 0-5, 100, 200, ...), so
# readers take it as free text (MODELLER writes its own notes there too).
PROVENANCE_REMARK = 6


# A REMARK's text is in columns 12-80; a note line longer than that goes on in the next REMARK 6 lines, indented by
# this (its text in columns 14-80), as PDB continues a REMARK's free text by repeating the number.
_REMARK_WIDTH = 80 - 11
_REMARK_CONTINUED = "  "


def _remark_cut(text: str, width: int) -> int:
    """Where to cut ``text`` (longer than ``width``) for a REMARK line: before the last space that ends a word within
    ``width`` (the space starts the continuation, so no line ends in a space, which readers and editors may strip),
    else mid-word at ``width`` (a word longer than a line, or a run of spaces as long)."""
    words = [i for i in range(1, width + 1) if text[i] == " " and text[i - 1] != " "]
    return words[-1] if words else width


def _pdb_note(note: Sequence[str]) -> str:
    """``REMARK   6`` lines of the provenance note: a blank first line, as every REMARK has (readers such as biotite's
    ``get_remark`` skip it), then each line of the note in columns 12-80, a longer one continued on the next lines
    after two more spaces (columns 14-80): the note's line is the concatenation of those texts, nothing is cut."""
    if not note:
        return ""
    head = f"REMARK {PROVENANCE_REMARK:3d}"
    lines = [head]
    for text in note:
        indent = ""
        while len(indent) + len(text) > _REMARK_WIDTH:
            cut = _remark_cut(text, _REMARK_WIDTH - len(indent))
            lines.append(f"{head} {indent}{text[:cut]}")
            text, indent = text[cut:], _REMARK_CONTINUED
        lines.append(f"{head} {indent}{text}")
    return "".join(line + "\n" for line in lines)


def _set_software(block: Any, note: Sequence[str]) -> None:
    """The provenance note as the standard ``_software`` category (one row: name, version, description)."""
    from openesm3 import __version__  # noqa: PLC0415

    block["software"] = block.subcomponent_class()(
        {
            "pdbx_ordinal": np.array([1]),
            "name": np.array(["OpenESM3"]),
            "version": np.array([__version__]),
            "classification": np.array(["other"]),
            "description": np.array(["; ".join(note)]),
        }
    )


def _to_bytes(obj: Structure, fmt: StructureFormat) -> bytes:
    # Written from a model inside an openesm3 command: the version, weights and seed that made it (else empty).
    note = structure_note()
    if fmt == "pdb":
        return (_pdb_note(note) + to_pdb_string(obj)).encode("ascii")
    from biotite.structure.io import pdbx  # noqa: PLC0415

    name = obj.name if isinstance(obj, (ProteinChain, ProteinComplex)) else ""
    block = "_".join(name.split()) or "structure"  # a data block name is one token: "data_my model" is not CIF
    array = to_atom_array(obj)
    if fmt == "cif":
        _check_cif_chain_ids(obj)
        cif = pdbx.CIFFile()
        pdbx.set_structure(cif, array, data_block=block)
        _set_entities(cif.block, obj)
        if note:
            _set_software(cif.block, note)
        text = io.StringIO()
        cif.write(text)
        return text.getvalue().encode("utf-8")
    bcif = pdbx.BinaryCIFFile()
    pdbx.set_structure(bcif, array, data_block=block)
    _set_entities(bcif.block, obj)
    if note:
        _set_software(bcif.block, note)
    binary = io.BytesIO()
    bcif.write(binary)
    return binary.getvalue()


def structure_text(obj: Structure, format: StructureFormat) -> str:
    """The text of the PDB or mmCIF file :func:`write_structure` would write (provenance note included), e.g. for
    standard output. BinaryCIF is binary: refused."""
    if format not in ("pdb", "cif"):
        raise InputError(f"{format!r} is not a text format; structure text is 'pdb' or 'cif'")
    return _to_bytes(obj, format).decode("utf-8")


def write_structure(obj: Structure, path: PathLike, format: StructureFormat | None = None) -> None:
    """Write a chain or complex to ``path`` atomically; the format comes from the suffix unless given.

    ``.pdb``/``.ent`` -> PDB, ``.cif``/``.mmcif`` -> mmCIF, ``.bcif`` -> BinaryCIF; a trailing ``.gz``
    compresses. B-factors (e.g. pLDDT) go to the B-factor column; missing values are written as 0. Inside an
    openesm3 command that loaded weights, the file also gets the run's provenance note (see the module docstring).

    Raises:
        InputError: unknown format, a ``format`` the suffix contradicts (``to_pdb("x.cif")``), neighbouring
            residues with the same number and insertion code (a reader would merge them), an infinite B-factor,
            or data the format cannot hold (in PDB: chain ids longer than one character, huge coordinates or
            B-factors, residue numbers below -999 or past hybrid-36's 2436111, more atoms than hybrid-36's
            87440031 serial numbers; in mmCIF text: chain ids such as ``?`` or ``$A`` that CIF would read as
            something else).
    """
    target = Path(path)
    suffix_format, gz = _suffix_format(target)
    if format is not None and suffix_format is not None and format != suffix_format:
        raise InputError(  # every reader, ours included, would take the file for what its name says
            f"{target}: the name says {suffix_format!r} but format={format!r} was asked; name the file for its format"
        )
    fmt = format or suffix_format
    if fmt not in ("pdb", "cif", "bcif"):
        raise InputError(
            f"{target}: cannot tell the output format from the suffix; use one of "
            + ", ".join(sorted(SUFFIX_FORMATS))
            + " (optionally + .gz) or pass format='pdb'|'cif'|'bcif'"
        )
    data = _to_bytes(obj, fmt)
    if gz:
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(target, data)
