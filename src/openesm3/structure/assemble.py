"""From atom records to protein chains: model, alternate locations, ligands, atom37 (all vectorised).

Rules (the same for every file format):

- **Model**: the requested model (1-based position in the file).
- **Residues** are runs of consecutive atoms with the same chain id, residue number and insertion code.
- **Alternate locations**: per residue, the altloc with the highest mean occupancy over its atoms wins; ties
  go to the altloc met first in the file. Atoms without an altloc are always kept.
- **Protein residues** are the 20 standard residues, CCD amino acids (modified residues such as MSE, SEP,
  PTR, UNK), the MD protonation names of ``RC.MD_RESIDUE_ALIASES`` (and, in ATOM records, HSE and GLH as
  histidine and glutamate: ``RC.MD_ATOM_RECORD_ALIASES``), and any ATOM-record residue with N, CA
  and C atoms whatever its name (read as X when the name is not a CCD amino acid); waters and other ligands
  are dropped.
- **HETATM amino acids** are kept only as part of a polymer: when they lie between two ATOM residues of the
  same chain (file order), or are peptide-bonded (C-N <= 2.0 A, possibly through other HETATM residues) to an
  ATOM residue. A free amino-acid ligand (e.g. the tryptophan bound to trp repressor, 1jhg) or a HETATM
  dipeptide after the chain (1pin) is dropped. A chain made only of HETATM residues is dropped as a ligand.
- **atom37**: atoms go to the slot of their name (spec §12; MSE's SE goes to SD); hydrogens and atoms with
  no slot (e.g. the phosphate of SEP) are dropped; if a residue names an atom twice, the first one counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from openesm3.errors import StructureFileError
from openesm3.structure import residue_constants as RC
from openesm3.structure.chain import ProteinChain
from openesm3.structure.complex import ProteinComplex
from openesm3.structure.records import AtomRecords, unique_strings

_NO_ALTLOC = ("", " ", ".", "?")


def _residue_starts(rec: AtomRecords) -> np.ndarray:
    """[N] bool: the atom starts a new residue (chain id, residue number or insertion code changes)."""
    start = np.ones(len(rec), dtype=bool)
    start[1:] = (
        (rec.chain_id[1:] != rec.chain_id[:-1])
        | (rec.res_id[1:] != rec.res_id[:-1])
        | (rec.ins_code[1:] != rec.ins_code[:-1])
    )
    return start


def _altloc_keep(altloc: np.ndarray, occupancy: np.ndarray, residue: np.ndarray) -> np.ndarray:
    """[N] bool: atoms without altloc, and atoms of each residue's best altloc (max mean occupancy, then first)."""
    plain = np.isin(altloc, _NO_ALTLOC)
    if plain.all():
        return plain
    alt = np.flatnonzero(~plain)
    # One group per (residue, altloc letter); its first atom's position orders ties.
    letter = np.ascontiguousarray(altloc[alt], dtype="<U1").view(np.uint32)
    key = residue[alt].astype(np.int64) * 0x110000 + letter  # 0x110000 > any Unicode code point
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    group = group.reshape(-1)
    mean_occ = np.bincount(group, weights=occupancy[alt]) / np.bincount(group)
    group_res = residue[alt][first]
    group_pos = alt[first]
    # Best group per residue: sort by residue, then occupancy descending, then file position.
    order = np.lexsort((group_pos, -mean_occ, group_res))
    best = order[np.r_[True, group_res[order][1:] != group_res[order][:-1]]]
    chosen = np.zeros(len(first), dtype=bool)
    chosen[best] = True
    keep = plain.copy()
    keep[alt] = chosen[group]
    return keep


def _atom_slots(atom_name: np.ndarray, res_name: np.ndarray) -> np.ndarray:
    """[N] int atom37 slot of each atom, -1 when its name has none."""
    uniq, inverse = unique_strings(atom_name)
    slots = np.array([RC.ATOM37_ORDER.get(str(name), -1) for name in uniq], dtype=np.int64)[inverse]
    for (res, atom), target in RC.SELENIUM_TO_SULFUR.items():
        slots[(res_name == res) & (atom_name == atom)] = RC.ATOM37_ORDER[target]
    return slots


def _polymer_hetero(chain: np.ndarray, hetero: np.ndarray, c_atom: np.ndarray, n_atom: np.ndarray) -> np.ndarray:
    """[R] bool over amino-acid residues in file order: True where a HETATM residue belongs to a polymer."""
    n_res = len(chain)
    _, chain_first, chain_code = np.unique(chain, return_index=True, return_inverse=True)
    chain_code = chain_code.reshape(-1)
    # Group residues by chain (stable: file order inside a chain).
    order = np.lexsort((np.arange(n_res), chain_first[chain_code]))
    ch, het = chain_code[order], hetero[order]
    new_chain = np.r_[True, ch[1:] != ch[:-1]]
    chain_start = np.maximum.accumulate(np.where(new_chain, np.arange(n_res), 0))
    is_atom = (~het).astype(np.int64)
    upto = np.cumsum(is_atom)  # ATOM residues up to and including i (all chains)
    base = (upto - is_atom)[chain_start]  # ATOM residues before i's chain
    before = upto - is_atom - base
    after = np.bincount(ch, weights=is_atom).astype(np.int64)[ch] - (upto - base)
    inside = (before > 0) & (after > 0)
    # Peptide-bonded segments: residue i continues i-1 if same chain and C(i-1)-N(i) <= max bond length.
    with np.errstate(invalid="ignore"):
        bond = np.linalg.norm(n_atom[order][1:] - c_atom[order][:-1], axis=-1)
    linked = np.r_[False, (~new_chain[1:]) & (bond <= RC.MAX_PEPTIDE_BOND_LENGTH)]
    segment = np.cumsum(~linked) - 1
    segment_has_atom = np.bincount(segment, weights=is_atom) > 0
    polymer = np.zeros(n_res, dtype=bool)
    polymer[order] = het & (inside | segment_has_atom[segment])
    return polymer


def _describe_residues(names: np.ndarray) -> str:
    uniq, counts = np.unique(names, return_counts=True)
    top = np.argsort(-counts, kind="stable")[:6]
    return ", ".join(f"{uniq[i]} x{counts[i]}" for i in top) + (", ..." if len(uniq) > 6 else "")


def assemble(
    records: AtomRecords, source: str, *, name: str, model: int = 1, chains: Sequence[str] | None = None
) -> ProteinComplex:
    """Protein chains of one model of a parsed file.

    Args:
        records: every atom record of the file.
        source: the file, for error messages.
        name: stored as each chain's and the complex's ``name``.
        model: 1-based model position.
        chains: chain ids to keep, in this order; None keeps every protein chain in file order.

    Raises:
        StructureFileError: no atoms, unknown model, no protein residue, unknown chain id.
    """
    if len(records) == 0:
        raise StructureFileError(source, "no atom records (ATOM/HETATM, or mmCIF atom_site rows)")
    n_models = records.n_models
    if isinstance(model, bool) or not isinstance(model, (int, np.integer)) or not 1 <= model <= n_models:
        raise StructureFileError(
            source, f"model {model!r} not found: the file has {n_models} model(s), numbered 1..{n_models} in file order"
        )
    rec = records if n_models == 1 else records.take(records.model == model)
    residue = np.cumsum(_residue_starts(rec)) - 1
    keep_atoms = _altloc_keep(rec.altloc, rec.occupancy, residue)
    if not keep_atoms.all():
        rec = rec.take(keep_atoms)

    starts = _residue_starts(rec)
    residue = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    res_name = rec.res_name[first]
    names, name_inverse = unique_strings(res_name)
    known_aa = np.array([RC.is_amino_acid(str(n)) for n in names], dtype=bool)[name_inverse]
    # An ATOM residue with a peptide backbone is protein whatever its name (an unknown name reads as X).
    backbone = np.zeros((len(first), 3), dtype=bool)
    for k, atom in enumerate(("N", "CA", "C")):
        backbone[residue[rec.atom_name == atom], k] = True
    is_aa = known_aa | (~rec.hetero[first] & backbone.all(axis=1))
    if not is_aa.any():
        raise StructureFileError(
            source, f"no protein residues in model {model} (residues found: {_describe_residues(res_name)})"
        )

    aa_names = res_name[is_aa]
    uniq_aa, aa_inverse = unique_strings(aa_names)
    letters = np.array(
        [RC.one_letter_code(str(n)) if RC.is_amino_acid(str(n)) else RC.UNKNOWN_ONE_LETTER for n in uniq_aa],
        dtype="<U1",
    )[aa_inverse]
    for md_name, parent in RC.MD_ATOM_RECORD_ALIASES.items():  # e.g. CHARMM's HSE is histidine, not homoserine
        letters[(aa_names == md_name) & ~rec.hetero[first[is_aa]]] = RC.RESTYPE_3TO1[parent]

    # atom37 of every amino-acid residue (ligands filtered below need their N and C coordinates).
    aa_index = np.cumsum(is_aa) - 1
    n_aa = int(is_aa.sum())
    slots = _atom_slots(rec.atom_name, rec.res_name)
    use = is_aa[residue] & (slots >= 0)
    # A modified residue keeps only its parent's atoms (e.g. no SD/CE on a modified cysteine).
    parent_letters, parent_mask = RC.parent_atom_mask()
    uniq_letters, letter_inverse = unique_strings(letters)
    row_of_letter = [parent_letters.find(x) if x in parent_letters else len(parent_letters) - 1 for x in uniq_letters]
    row = np.asarray(row_of_letter, dtype=np.int64)[letter_inverse]
    modified = ~np.array([str(n) in RC.RESTYPE_3TO1 for n in uniq_aa], dtype=bool)[aa_inverse]
    atom_res = aa_index[residue]
    check = use & modified[atom_res]
    use[check] = parent_mask[row[atom_res[check]], slots[check]]
    flat = aa_index[residue[use]] * RC.N_ATOM37 + slots[use]
    flat_unique, first_use = np.unique(flat, return_index=True)  # a duplicated atom name: the first counts
    flat_atom37 = np.full((n_aa * RC.N_ATOM37, 3), np.nan, dtype=np.float32)
    flat_atom37[flat_unique] = rec.coord[use][first_use]
    flat_b_factor = np.full(n_aa * RC.N_ATOM37, np.nan, dtype=np.float32)
    flat_b_factor[flat_unique] = rec.b_factor[use][first_use]
    atom37 = flat_atom37.reshape(n_aa, RC.N_ATOM37, 3)
    b_factor = flat_b_factor.reshape(n_aa, RC.N_ATOM37)

    aa_first = first[is_aa]
    chain_id = rec.chain_id[aa_first]
    hetero = rec.hetero[aa_first]
    keep = ~hetero | _polymer_hetero(chain_id, hetero, atom37[:, RC.ATOM_C], atom37[:, RC.ATOM_N])
    if not keep.any():
        raise StructureFileError(
            source,
            f"no protein residues in model {model}: only HETATM amino acids not bonded to a protein chain "
            f"({_describe_residues(res_name[is_aa])}), read as ligands",
        )

    res_id = rec.res_id[aa_first]
    ins_code = rec.ins_code[aa_first]

    available: list[str] = list(dict.fromkeys(chain_id[keep].tolist()))
    wanted = available if chains is None else list(chains)
    repeated = [c for c in dict.fromkeys(wanted) if wanted.count(c) > 1]
    if repeated:  # a chain is read once: chains=["A", "A"] gave one chain A, whatever was meant (a homodimer, a typo)
        raise StructureFileError(
            source,
            f"chain {', '.join(map(repr, repeated))} given more than once; a chain is read once: give each chain id "
            "once, in the order wanted",
        )
    if not wanted:
        raise StructureFileError(source, f"no chain ids given; protein chains: {', '.join(map(repr, available))}")
    missing = [c for c in wanted if c not in available]
    if missing:
        shown = ", ".join(repr(c) for c in available)
        raise StructureFileError(
            source, f"chain {', '.join(repr(c) for c in missing)} not found in model {model}; protein chains: {shown}"
        )
    out = []
    for cid in wanted:
        sel = np.flatnonzero(keep & (chain_id == cid))
        out.append(
            ProteinChain(
                sequence="".join(letters[sel].tolist()),
                atom37=atom37[sel],
                atom37_mask=np.isfinite(atom37[sel, :, 0]),
                residue_index=res_id[sel],
                insertion_code=ins_code[sel],
                chain_id=cid,
                b_factor=b_factor[sel],
                name=name,
                residue_name=aa_names[sel],
            )
        )
    return ProteinComplex(tuple(out), name)
