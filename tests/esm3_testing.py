"""Test inputs for the ESM3 trunk: real sequences and backbones from ../shared/data, read with biotite directly
(independent of the project's structure reader), and random valid token tracks."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from openesm3 import constants as C


def sequence_to_tokens(seq: str) -> list[int]:
    index = {tok: i for i, tok in enumerate(C.SEQUENCE_VOCAB)}
    return [C.SEQUENCE_BOS] + [index.get(a, C.SEQUENCE_UNK) for a in seq] + [C.SEQUENCE_EOS]


def read_backbone(path: Path, chain: str) -> tuple[str, np.ndarray]:
    """(one-letter sequence, N/CA/C coordinates [L, 3, 3] with NaN for missing atoms) of one chain."""
    import biotite.structure as struc
    from biotite.sequence import ProteinSequence
    from biotite.structure.io.pdb import PDBFile

    with gzip.open(path, "rt") as handle:
        atoms = PDBFile.read(handle).get_structure(model=1)
    atoms = atoms[struc.filter_amino_acids(atoms) & (atoms.chain_id == chain) & ~atoms.hetero]
    starts = struc.get_residue_starts(atoms, add_exclusive_stop=True)
    letters, coords = [], []
    for lo, hi in zip(starts[:-1], starts[1:]):
        res = atoms[lo:hi]
        try:
            letters.append(ProteinSequence.convert_letter_3to1(res.res_name[0]))
        except KeyError:
            letters.append("X")
        xyz = np.full((3, 3), np.nan, dtype=np.float32)
        for k, atom in enumerate(("N", "CA", "C")):
            hit = np.flatnonzero(res.atom_name == atom)
            if hit.size:
                xyz[k] = res.coord[hit[0]]
        coords.append(xyz)
    return "".join(letters), np.stack(coords)


def real_proteins(data_dir: Path, n: int, min_len: int) -> list[tuple[str, np.ndarray]]:
    """The first ``n`` single-model top240 chains of at least ``min_len`` residues (manifest order)."""
    rows = (data_dir / "manifest.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    out = []
    for line in rows[1:]:
        row = dict(zip(header, line.split("\t")))
        if row["subset"] != "top240" or int(row["primary_len"]) < min_len:
            continue
        out.append(read_backbone(data_dir / row["file"], row["primary_chain"]))
        if len(out) == n:
            break
    return out


def protein_batch(protein: tuple[str, np.ndarray], length: int, nan_residues: tuple[int, ...] = ()) -> tuple:
    """Sequence tokens [1, length] and coordinates [1, length, 3, 3] (BOS/EOS rows +inf) from a real protein
    cropped to ``length - 2`` residues; the given residues (0-based) get NaN coordinates."""
    seq, xyz = protein
    n_res = length - 2
    seq, xyz = seq[:n_res], xyz[:n_res].copy()
    assert len(seq) == n_res, "protein too short for the requested length"
    for i in nan_residues:
        xyz[i] = np.nan
    coords = np.full((length, 3, 3), np.inf, dtype=np.float32)
    coords[1:-1] = xyz
    tokens = torch.tensor([sequence_to_tokens(seq)])
    return tokens, torch.from_numpy(coords)[None]


def random_tracks(b: int, length: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Every token track filled with random valid ids (BOS/EOS left to the structure specials rule)."""
    residue = torch.randint(0, C.RESIDUE_VOCAB_SIZE, (b, length, C.RESIDUE_MAX_PER_POSITION), generator=g)
    residue[torch.rand(residue.shape, generator=g) < 0.5] = 0  # the bag skips zeros: mix them in
    return {
        "structure_tokens": torch.randint(0, C.STRUCTURE_VOCAB_SIZE, (b, length), generator=g),
        "ss8_tokens": torch.randint(0, C.SS8_VOCAB_SIZE, (b, length), generator=g),
        "sasa_tokens": torch.randint(0, C.SASA_VOCAB_SIZE, (b, length), generator=g),
        "function_tokens": torch.randint(0, C.FUNCTION_VOCAB_SIZE, (b, length, C.FUNCTION_DEPTH), generator=g),
        "residue_annotation_tokens": residue,
        "average_plddt": torch.rand(b, length, generator=g),
        "per_res_plddt": torch.rand(b, length, generator=g),
    }


def real_backbone(data_dir: Path, length: int) -> torch.Tensor:
    """[1, length, 3, 3] N/CA/C of the first top240 chain long enough, cropped (no BOS/EOS rows)."""
    _, xyz = real_proteins(data_dir, n=1, min_len=length)[0]
    return torch.from_numpy(xyz[:length].copy())[None]
