"""Round-trip evaluation of a structure tokenizer: structure -> tokens -> structure (paper A.1.7.4).

For each protein: encode its backbone with a :class:`StructureEncoder`, decode the tokens with a
:class:`StructureDecoder` (the classes the official weights load into), and compare with the truth:

- backbone RMSD (N, CA, C after Kabsch superposition), lDDT-CA, TM-score (CA), and whether the decoded structure
  fits better as its mirror image (a failure the superposition-free distance losses cannot see);
- pLDDT against the true per-residue lDDT-CA (calibration), pTM against the true TM-score;
- with a sequence-conditioned decoder given the sequence: all-atom RMSD after superposition (symmetric atoms of
  Asp/Glu/Phe/Tyr named as they fit best) and chi-angle errors (pi-periodic chis modulo pi), next to the floor of
  ideal geometry (true frames and true torsions rebuilt);
- codebook usage over the whole set: fraction of codes used and perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.generation.all_atom_decoding import sequence_row
from openesm3.generation.structure_tokens import encode_structure
from openesm3.geometry import all_atom as A
from openesm3.geometry.alignment import kabsch
from openesm3.geometry.lddt import lddt
from openesm3.geometry.metrics import tm_score
from openesm3.geometry.rigid import Rigid
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.structure.chain import ProteinChain
from openesm3.structure.complex import ProteinComplex
from openesm3.training.data import ProteinRecord, sequence_to_ids


@dataclass
class ProteinResult:
    """Round-trip figures of one protein."""

    name: str
    length: int
    backbone_rmsd: float
    lddt_ca: float
    tm_score: float
    ptm: float
    mean_plddt: float
    tokens: np.ndarray
    plddt: np.ndarray  # per residue (residues with a frame)
    true_lddt: np.ndarray
    mirror_rmsd: float = math.nan  # backbone RMSD of the decoded structure's mirror image (a mirrored fold fits it)
    all_atom_rmsd: float | None = None
    all_atom_rmsd_floor: float | None = None  # true frames + true torsions
    chi_errors: dict[int, np.ndarray] = field(default_factory=dict)  # chi k -> absolute errors (degrees)


def structure_to_record(structure: ProteinChain | ProteinComplex) -> ProteinRecord:
    """The record of a chain or a complex (what :func:`round_trip` evaluates), e.g. from a user's file."""
    chains = structure.chains if isinstance(structure, ProteinComplex) else (structure,)
    mask = np.concatenate([np.asarray(c.atom37_mask, dtype=bool) for c in chains])
    atom37 = np.concatenate([np.asarray(c.atom37, dtype=np.float32) for c in chains])
    return ProteinRecord(
        name=structure.name or chains[0].chain_id,
        sequence="".join(c.sequence for c in chains),
        atom37=np.where(mask[..., None], atom37, np.nan).astype(np.float32),
        atom37_mask=mask,
        residue_index=np.concatenate([np.asarray(c.residue_index) for c in chains]).astype(np.int32),
        chain_index=np.concatenate([np.full(len(c), k, dtype=np.int32) for k, c in enumerate(chains)]),
        chain_ids=tuple(c.chain_id for c in chains),
    )


def record_to_chain(record: ProteinRecord) -> ProteinChain:
    """The :class:`ProteinChain` of a single-chain training record (what the user-facing API encodes)."""
    return ProteinChain.from_atom37(
        np.where(record.atom37_mask[..., None], record.atom37, np.nan),
        sequence=record.sequence,
        residue_index=record.residue_index,
        chain_id=record.chain_ids[0],
        name=record.name,
    )


def record_to_structure(record: ProteinRecord) -> ProteinChain | ProteinComplex:
    """The chain of a single-chain record, the complex (chains in record order) of a multi-chain one."""
    if len(record.chain_ids) == 1:
        return record_to_chain(record)
    chains = []
    for k, chain_id in enumerate(record.chain_ids):
        rows = record.chain_index == k
        chains.append(
            ProteinChain.from_atom37(
                np.where(record.atom37_mask[rows][..., None], record.atom37[rows], np.nan),
                sequence="".join(np.asarray(list(record.sequence))[rows]),
                residue_index=record.residue_index[rows],
                chain_id=chain_id,
                name=record.name,
            )
        )
    return ProteinComplex(tuple(chains), record.name)


@torch.no_grad()
def round_trip(
    encoder: StructureEncoder,
    decoder: StructureDecoder,
    record: ProteinRecord,
    *,
    with_sequence: bool = True,
) -> ProteinResult | None:
    """Encode one protein, a chain or a complex, with :func:`~openesm3.generation.structure_tokens.encode_structure`
    (the user-facing path: coordinates normalised, residues numbered 1..L, chains joined by chain breaks), decode the
    token row, compare over all its residues. A sequence-conditioned decoder gets the sequence when
    ``with_sequence``, else the decoder's row for an unknown sequence (``<mask>`` at the residues, as in training).
    None when the protein has fewer than 3 residues with a backbone."""
    atom37 = torch.tensor(record.atom37, dtype=torch.float32)
    mask37 = torch.tensor(record.atom37_mask) & torch.isfinite(atom37).all(-1)
    atom37 = torch.where(mask37[..., None], atom37, torch.zeros(()))
    if int(mask37[:, :3].all(-1).sum()) < 3:
        return None
    encoded = encode_structure(record_to_structure(record), encoder, max_length=None)
    m = torch.from_numpy(np.concatenate([c.residue_mask for c in encoded.chains]))
    tokens = torch.from_numpy(encoded.tokens)[None]  # BOS, codes (a chain break between chains), EOS
    residues = (tokens[0] < C.STRUCTURE_N_CODES).nonzero().squeeze(-1)  # row positions of the record's residues
    seq_ids = torch.tensor(sequence_to_ids(record.sequence), dtype=torch.long)
    sequence = sequence_row(encoded)[None] if decoder.config.sequence_conditioning and with_sequence else None
    out = decoder(tokens, sequence_tokens=sequence)
    pred_bb = out.backbone[0, residues]
    true_bb = atom37[:, :3]

    rmsd = kabsch(pred_bb[m].reshape(-1, 3), true_bb[m].reshape(-1, 3)).rmsd
    mirror = kabsch(-pred_bb[m].reshape(-1, 3), true_bb[m].reshape(-1, 3)).rmsd
    ld = lddt(pred_bb[:, 1], true_bb[:, 1], m)
    tm = tm_score(pred_bb[m][:, 1], true_bb[m][:, 1])
    plddt = out.plddt[0, residues][m]
    result = ProteinResult(
        name=record.name,
        length=int(m.sum()),
        backbone_rmsd=float(rmsd),
        mirror_rmsd=float(mirror),
        lddt_ca=float(ld.score),
        tm_score=float(tm.score),
        ptm=float(out.ptm[0]),
        mean_plddt=float(plddt.mean()),
        tokens=np.concatenate([c.codes for c in encoded.chains])[m.numpy()],
        plddt=plddt.numpy(),
        true_lddt=ld.per_residue[m].numpy(),
    )
    if decoder.config.sequence_conditioning and with_sequence:
        _all_atom_figures(result, out.frames[0, residues], out.torsions[0, residues], atom37, mask37, seq_ids, m)
    return result


def _all_atom_figures(
    result: ProteinResult,
    frames: Rigid,
    torsions: Tensor,
    atom37: Tensor,
    mask37: Tensor,
    seq_ids: Tensor,
    m: Tensor,
) -> None:
    restype = A.restype_from_sequence_tokens(seq_ids)
    true14, present = A.atom37_to_atom14(atom37, mask37, restype)
    present = present & m[:, None]
    if int(present[:, 4:].sum()) == 0:  # backbone-only structure: no side chains to score
        return
    pred14 = A.all_atom_from_frames(frames, torsions.float(), restype).atom14
    result.all_atom_rmsd = symmetric_rmsd(pred14, true14, present, restype)
    true_frames, _ = Rigid.from_backbone(atom37[:, 0], atom37[:, 1], atom37[:, 2])
    sc, alt, tmask = A.torsion_angles(atom37, mask37, restype)
    floor14 = A.all_atom_from_frames(true_frames, sc, restype).atom14
    result.all_atom_rmsd_floor = symmetric_rmsd(floor14, true14, present, restype)
    pred_sc = A.normalize_torsions(torsions.float())
    err = torch.minimum(_angle_between(pred_sc, sc), _angle_between(pred_sc, alt))  # [L, 7] degrees
    for k in range(1, 5):
        slot = 2 + k
        keep = tmask[:, slot] & m
        result.chi_errors[k] = err[keep, slot].numpy()


def _angle_between(a: Tensor, b: Tensor) -> Tensor:
    """Angle in degrees between unit (sin, cos) pairs [..., 2]."""
    diff = torch.atan2(a[..., 0], a[..., 1]) - torch.atan2(b[..., 0], b[..., 1])
    return torch.rad2deg(torch.atan2(torch.sin(diff), torch.cos(diff)).abs())


def symmetric_rmsd(pred14: Tensor, true14: Tensor, present: Tensor, restype: Tensor) -> float:
    """All-atom RMSD after Kabsch superposition on all present atoms; then, per residue with symmetric atoms, the
    truth's naming that fits the superposed prediction better is used (no second superposition)."""
    fit = kabsch(pred14[present], true14[present])
    moved = pred14 @ fit.rotation.T + fit.translation
    swap = A.tables()["symmetric_swap"][restype]  # [L, 14]
    swapped = torch.gather(true14, 1, swap[..., None].expand(*swap.shape, 3))
    swapped_present = torch.gather(present, 1, swap)
    d_plain = ((moved - true14).pow(2).sum(-1) * present).sum(-1)
    d_swap = ((moved - swapped).pow(2).sum(-1) * swapped_present).sum(-1)
    best = torch.minimum(d_plain, d_swap)
    return math.sqrt(float(best.sum()) / max(int(present.sum()), 1))


@dataclass(frozen=True)
class EvaluationSummary:
    """Figures over a set of proteins (see :func:`summarize`)."""

    n_proteins: int
    n_residues: int
    backbone_rmsd_median: float
    backbone_rmsd_mean: float
    lddt_ca_median: float
    lddt_ca_mean: float
    tm_score_median: float
    tm_score_mean: float
    mirrored_fraction: float  # proteins whose decoded structure fits the truth better mirrored
    codes_used_fraction: float
    codebook_perplexity: float
    plddt_lddt_pearson: float  # per residue
    plddt_lddt_pearson_per_protein: float  # mean pLDDT vs lDDT-CA per protein
    ptm_tm_pearson: float
    # calibration in the mean: compare with lddt_ca_mean and tm_score_mean (per protein, then averaged)
    plddt_mean: float
    ptm_mean: float
    all_atom_rmsd_median: float | None
    all_atom_rmsd_floor_median: float | None
    chi_mae: dict[str, float]  # chi k -> mean absolute error (degrees)
    chi_within_40: dict[str, float]  # chi k -> fraction within 40 degrees
    by_length: dict[str, dict[str, float]]  # length bin "lo-hi" -> n, median backbone RMSD and lDDT-CA, mirrored


LENGTH_BINS = (0, 100, 200, 300, None)  # residues; bins are (lo, hi], the last one open


def _by_length(rs: list[ProteinResult]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for lo, hi in zip(LENGTH_BINS[:-1], LENGTH_BINS[1:], strict=True):
        members = [r for r in rs if r.length > lo and (hi is None or r.length <= hi)]
        if members:
            out[f"{lo + 1}-{hi}" if hi is not None else f">{lo}"] = {
                "n_proteins": len(members),
                "backbone_rmsd_median": float(np.median([r.backbone_rmsd for r in members])),
                "lddt_ca_median": float(np.median([r.lddt_ca for r in members])),
                "mirrored_fraction": float(np.mean([r.mirror_rmsd < r.backbone_rmsd for r in members])),
            }
    return out


def bootstrap_mean(d: np.ndarray, rng: np.random.Generator, *, n_boot: int = 5000) -> dict[str, float]:
    """Mean of paired differences ``d`` [N] with a 95 % percentile-bootstrap interval (``n_boot`` resamples of the N
    pairs drawn from ``rng``): ``mean_difference``, ``ci95_low``, ``ci95_high``."""
    boot = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return {
        "mean_difference": float(d.mean()),
        "ci95_low": float(np.percentile(boot, 2.5)),
        "ci95_high": float(np.percentile(boot, 97.5)),
    }


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def summarize(results: Iterable[ProteinResult], n_codes: int) -> EvaluationSummary:
    """Medians, means, codebook usage, calibration and side-chain accuracy over ``results``."""
    rs = list(results)
    if not rs:
        raise ValueError("no proteins to summarise")
    rmsd = np.array([r.backbone_rmsd for r in rs])
    ld = np.array([r.lddt_ca for r in rs])
    tm = np.array([r.tm_score for r in rs])
    tokens = np.concatenate([r.tokens for r in rs])
    counts = np.bincount(tokens[tokens < n_codes], minlength=n_codes).astype(np.float64)
    p = counts / counts.sum()
    perplexity = float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))
    aa = [r.all_atom_rmsd for r in rs if r.all_atom_rmsd is not None]
    floor = [r.all_atom_rmsd_floor for r in rs if r.all_atom_rmsd_floor is not None]
    chi_mae, chi_40 = {}, {}
    for k in range(1, 5):
        errs = [r.chi_errors[k] for r in rs if k in r.chi_errors and len(r.chi_errors[k])]
        if errs:
            e = np.concatenate(errs)
            chi_mae[f"chi{k}"] = float(e.mean())
            chi_40[f"chi{k}"] = float((e < 40.0).mean())
    return EvaluationSummary(
        n_proteins=len(rs),
        n_residues=int(sum(r.length for r in rs)),
        backbone_rmsd_median=float(np.median(rmsd)),
        backbone_rmsd_mean=float(rmsd.mean()),
        lddt_ca_median=float(np.median(ld)),
        lddt_ca_mean=float(ld.mean()),
        tm_score_median=float(np.median(tm)),
        tm_score_mean=float(tm.mean()),
        mirrored_fraction=float(np.mean([r.mirror_rmsd < r.backbone_rmsd for r in rs])),
        codes_used_fraction=float((counts > 0).mean()),
        codebook_perplexity=perplexity,
        plddt_lddt_pearson=_pearson(np.concatenate([r.plddt for r in rs]), np.concatenate([r.true_lddt for r in rs])),
        plddt_lddt_pearson_per_protein=_pearson(np.array([r.mean_plddt for r in rs]), ld),
        ptm_tm_pearson=_pearson(np.array([r.ptm for r in rs]), tm),
        plddt_mean=float(np.mean([r.mean_plddt for r in rs])),
        ptm_mean=float(np.mean([r.ptm for r in rs])),
        all_atom_rmsd_median=float(np.median(aa)) if aa else None,
        all_atom_rmsd_floor_median=float(np.median(floor)) if floor else None,
        chi_mae=chi_mae,
        chi_within_40=chi_40,
        by_length=_by_length(rs),
    )
