"""Residue-level constants: the atom37 layout, residue names and one-letter codes, maximal accessible areas.

Origins: the atom37 order and the 20-residue name table are those of the official implementation
(REFERENCE_SPEC §12); modified residues are mapped to their parent through the Chemical Component Dictionary
(CCD) that ships with biotite (``biotite.structure.info``); the maximal accessible surface areas are the
theoretical values of Tien et al. (2013), *Maximum allowed solvent accessibilites of residues in proteins*,
PLoS ONE 8(11): e80635, Table 1.
"""

from __future__ import annotations

import functools

import numpy as np

# --------------------------------------------------------------------------------------------------------
# atom37 (spec §12): one slot per heavy-atom name that occurs in the 20 standard residues, plus OXT.
# O sits at index 4, after CB.
# --------------------------------------------------------------------------------------------------------
ATOM37_NAMES: tuple[str, ...] = (
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1",
    "SG", "CD", "CD1", "CD2", "ND1", "ND2", "OD1", "OD2", "SD", "CE",
    "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1", "OE2", "CH2", "NH1",
    "NH2", "OH", "CZ", "CZ2", "CZ3", "NZ", "OXT",
)  # fmt: skip
ATOM37_ORDER: dict[str, int] = {name: i for i, name in enumerate(ATOM37_NAMES)}
N_ATOM37 = len(ATOM37_NAMES)
ATOM_N, ATOM_CA, ATOM_C, ATOM_CB, ATOM_O = 0, 1, 2, 3, 4
BACKBONE_ATOMS: tuple[int, ...] = (ATOM_N, ATOM_CA, ATOM_C)
# The reference stores selenomethionine's SE in the SD slot (spec §12); MSE is then read as methionine.
SELENIUM_TO_SULFUR: dict[tuple[str, str], str] = {("MSE", "SE"): "SD"}

# --------------------------------------------------------------------------------------------------------
# Residue names.
# --------------------------------------------------------------------------------------------------
RESTYPE_3TO1: dict[str, str] = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G",
    "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S",
    "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V",
}  # fmt: skip
RESTYPE_1TO3: dict[str, str] = {one: three for three, one in RESTYPE_3TO1.items()}
# Heavy atoms of the 20 standard residues (IUPAC/CCD names; every residue may also carry the terminal OXT).
# A modified residue read as its parent keeps only the parent's atoms (e.g. SCH's extra SD/CE are dropped).
RESIDUE_HEAVY_ATOMS: dict[str, tuple[str, ...]] = {
    "ALA": ("CB",),
    "ARG": ("CB", "CG", "CD", "NE", "CZ", "NH1", "NH2"),
    "ASN": ("CB", "CG", "OD1", "ND2"),
    "ASP": ("CB", "CG", "OD1", "OD2"),
    "CYS": ("CB", "SG"),
    "GLN": ("CB", "CG", "CD", "OE1", "NE2"),
    "GLU": ("CB", "CG", "CD", "OE1", "OE2"),
    "GLY": (),
    "HIS": ("CB", "CG", "ND1", "CD2", "CE1", "NE2"),
    "ILE": ("CB", "CG1", "CG2", "CD1"),
    "LEU": ("CB", "CG", "CD1", "CD2"),
    "LYS": ("CB", "CG", "CD", "CE", "NZ"),
    "MET": ("CB", "CG", "SD", "CE"),
    "PHE": ("CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ"),
    "PRO": ("CB", "CG", "CD"),
    "SER": ("CB", "OG"),
    "THR": ("CB", "OG1", "CG2"),
    "TRP": ("CB", "CG", "CD1", "CD2", "NE1", "CE2", "CE3", "CZ2", "CZ3", "CH2"),
    "TYR": ("CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "OH"),
    "VAL": ("CB", "CG1", "CG2"),
}
RESIDUE_HEAVY_ATOMS = {name: ("N", "CA", "C", "O", *side, "OXT") for name, side in RESIDUE_HEAVY_ATOMS.items()}
UNKNOWN_RESIDUE_NAME = "UNK"  # written for any one-letter code outside the 20 (spec §12 uses it for SASA too)
UNKNOWN_ONE_LETTER = "X"
# Protonation-state names written by molecular-dynamics force fields (AMBER, CHARMM). They are not CCD amino
# acids, so without this table their residues would be dropped. Names that *are* CCD compounds (HSE is
# homoserine, HIP phosphohistidine, GLH and LYN other compounds) follow the CCD instead, except as below.
MD_RESIDUE_ALIASES: dict[str, str] = {
    "HID": "HIS", "HIE": "HIS", "HSD": "HIS", "HSP": "HIS", "CYX": "CYS", "CYM": "CYS", "ASH": "ASP",
}  # fmt: skip
# MD names whose CCD compound has another parent letter (HSE: CHARMM's epsilon-protonated histidine, the CCD's
# homoserine -> S; GLH: AMBER's protonated glutamate, a CCD glutamine derivative -> Q). MD files write protein
# residues as ATOM records, PDB entries write such compounds as HETATM: an ATOM record takes the MD meaning.
MD_ATOM_RECORD_ALIASES: dict[str, str] = {"HSE": "HIS", "GLH": "GLU"}
WATER_NAMES: frozenset[str] = frozenset({"HOH", "WAT", "DOD", "H2O", "SOL", "TIP", "TIP3", "SPC"})

# --------------------------------------------------------------------------------------------------------
# Geometry thresholds (ours, documented where used).
# --------------------------------------------------------------------------------------------------------
# A peptide bond is 1.33 A; C(i-1)-N(i) farther apart than this means the chain is broken between them.
MAX_PEPTIDE_BOND_LENGTH = 2.0

# --------------------------------------------------------------------------------------------------------
# Maximal accessible surface area (A^2) per residue, theoretical values of Tien et al. 2013 (Table 1).
# Used for relative SASA; residues outside the 20 have no maximum (relative SASA NaN).
# --------------------------------------------------------------------------------------------------------
MAX_ASA_TIEN2013: dict[str, float] = {
    "A": 129.0, "R": 274.0, "N": 195.0, "D": 193.0, "C": 167.0, "E": 223.0, "Q": 225.0, "G": 104.0,
    "H": 224.0, "I": 197.0, "L": 201.0, "K": 236.0, "M": 224.0, "F": 240.0, "P": 159.0, "S": 155.0,
    "T": 172.0, "W": 285.0, "Y": 263.0, "V": 174.0,
}  # fmt: skip


@functools.cache
def ccd_amino_acid_names() -> frozenset[str]:
    """Names of all CCD components whose type is a peptide-linking amino acid (biotite's CCD copy)."""
    from biotite.structure.info import amino_acid_names  # noqa: PLC0415 - loads the CCD (~0.5 s) on first use

    return frozenset(amino_acid_names())


def is_amino_acid(res_name: str) -> bool:
    """True for the 20 standard residues, CCD amino acids (modified residues included) and MD aliases."""
    if res_name in RESTYPE_3TO1 or res_name in MD_RESIDUE_ALIASES:
        return True
    if res_name in WATER_NAMES:
        return False
    return res_name in ccd_amino_acid_names()


@functools.cache
def one_letter_code(res_name: str) -> str:
    """One-letter code of a residue; modified residues map to their parent (MSE->M, SEP->S, TPO->T, ...).

    The mapping of non-standard residues is the CCD's ``one_letter_code`` field, which names the parent
    residue (e.g. PTR->Y, HYP->P, MLY->K, PCA->Q). Residues the CCD does not know, or that it gives no single
    letter, are ``X``. Note this differs on purpose from the reference reader, which maps every residue outside
    the 20 (MSE included) to X (spec §12).
    """
    if res_name in RESTYPE_3TO1:
        return RESTYPE_3TO1[res_name]
    if res_name in MD_RESIDUE_ALIASES:
        return RESTYPE_3TO1[MD_RESIDUE_ALIASES[res_name]]
    from biotite.structure.info import one_letter_code as ccd_one_letter  # noqa: PLC0415

    try:
        code = ccd_one_letter(res_name)
    except Exception:  # noqa: BLE001 - an unknown name is not an error, it is an unknown residue
        code = None
    if not code or len(code) != 1 or not code.isalpha():
        return UNKNOWN_ONE_LETTER
    return code.upper()


def three_letter_code(one_letter: str) -> str:
    """Residue name written for a one-letter code: the standard name, or UNK outside the 20."""
    return RESTYPE_1TO3.get(one_letter, UNKNOWN_RESIDUE_NAME)


@functools.lru_cache(maxsize=1)
def parent_atom_mask() -> tuple[str, np.ndarray]:
    """(letters, [21, 37] bool): the atom37 slots each standard residue has; the last row (X) allows all."""
    letters = "".join(RESTYPE_3TO1[name] for name in RESIDUE_HEAVY_ATOMS) + UNKNOWN_ONE_LETTER
    mask = np.zeros((len(letters), N_ATOM37), dtype=bool)
    for row, atoms in enumerate(RESIDUE_HEAVY_ATOMS.values()):
        mask[row, [ATOM37_ORDER[a] for a in atoms]] = True
    mask[-1] = True
    return letters, mask
