"""Structure tokens from structures and back: the structure tokenizer's user API (paper A.1.7; spec §2, §6, §7,
§10.2, §12).

Encoding follows the official SDK exactly, so that tokens are those ESM3 was trained on:

- a chain is encoded on its own; coordinates are first expressed in the protein's mean backbone frame
  (:func:`normalize_coordinates`) and residues are numbered 1..L (the SDK's numbering, whatever the file says);
- a complex is encoded as one protein whose chains are joined, in order, by one coordinate-less position (the
  SDK's layout for ``|``); normalisation and neighbourhoods span all chains (inter-chain contacts inform the
  codes). The joined positions become CHAINBREAK (4100), the id the trunk puts there (spec §2);
- the framed token row is ``BOS, codes of chain 1, CHAINBREAK, codes of chain 2, ..., EOS``.

Residues without N, CA and C still get a code (as in the SDK; it carries no structure), marked in
:attr:`StructureTokens.residue_mask`.

Decoding runs the decoder on such a row (any BOS/EOS-framed row of codes and CHAINBREAK ids), places N, CA, C,
infers O from the next residue's N within each chain (the last residue of every chain has no O), and splits the
result back into chains at CHAINBREAK positions, with pLDDT (0-1, as the SDK) in the B-factor column.

Batches are padded to their longest member; decoding a padded row agrees with decoding it alone to fp32
rounding (the reductions have other shapes), encoding gives identical neighbourhoods (see
:func:`encode_structure`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np
import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.errors import InputError
from openesm3.geometry.rigid import Rigid
from openesm3.models.structure_decoder import StructureDecoder, check_structure_tokens
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.structure import residue_constants as RC
from openesm3.structure.chain import ProteinChain
from openesm3.structure.complex import ProteinComplex, default_chain_ids
from openesm3.utils.checks import check_batch_size

Structure = ProteinChain | ProteinComplex
MIN_BACKBONE_RESIDUES = 3  # fewer residues with N, CA and C give no meaningful frame or neighbourhood
MODEL_CONTEXT = C.MODEL_CONTEXT  # tokens (BOS/EOS included) the structure decoder and ESM3 take: a row's default limit


# ---- coordinates ----------------------------------------------------------------------------------------
def normalize_coordinates(coords: Tensor) -> Tensor:
    """Express atom coordinates [..., L, A, 3] (A >= 3; N, CA, C first) in the protein's mean backbone frame (spec §12).

    The frame is built (as a residue frame, spec §4.3) from the mean N, CA and C over the residues whose three
    backbone atoms are all finite (``sum / (count + 1e-8)``); every atom is mapped by its inverse ``R^T (p - t)``.
    Missing atoms stay NaN, infinite ones stay +inf, and a protein whose frame origin is exactly 0 (e.g. no valid
    residue) is left unchanged. Computed in fp32 with the reference's operation order, so that the encoder sees
    the same coordinates to the last bit.
    """
    coords = coords.float()
    backbone = coords[..., :3, :]
    valid = torch.isfinite(backbone).all(-1).all(-1)  # [..., L]
    count = valid.sum(-1).float()[..., None, None]
    means = torch.where(valid[..., None, None], backbone, torch.zeros((), device=coords.device)).sum(-3)
    means = means / (count + 1e-8)  # [..., 3 atoms, 3]
    n, ca, c = means.unbind(-2)
    frame = Rigid.from_gram_schmidt(ca, ca - c, n - ca)
    rot_t = frame.rot.transpose(-1, -2)  # [..., 3, 3]
    # R^T p - R^T t as element-wise products summed over j (not matmul): bit-identical to the reference.
    inverse_trans = -(rot_t * frame.trans[..., None, :]).sum(-1)  # [..., 3]
    rot_b = rot_t[..., None, None, :, :]  # broadcast over residues and atoms
    moved = (rot_b * coords[..., None, :]).sum(-1) + inverse_trans[..., None, None, :]
    keep = (frame.trans.norm(dim=-1) > 0)[..., None, None, None]
    out = torch.where(keep, moved, coords)
    return out.masked_fill(torch.isinf(coords), float("inf"))


def infer_oxygen(backbone: Tensor) -> Tensor:
    """O positions [L, 3] from N, CA, C [L, 3, 3] of one chain (spec §12): origin C, x-axis C - CA, the next
    residue's N in the xy-plane, O = R (0.6240, -1.0613, 0.0103) + C. The last residue's O is NaN."""
    n, ca, c = backbone.float().unbind(-2)
    n_next = torch.cat([n[1:], torch.full_like(n[:1], float("nan"))])
    frame = Rigid.from_gram_schmidt(c, c - ca, n_next - c)
    return frame.apply(torch.tensor(C.OXYGEN_LOCAL_COORDS, device=backbone.device))


# ---- token records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainTokens:
    """One chain's codes and what is known about its residues.

    Attributes:
        chain_id: author chain id.
        codes: [L] int64 codes 0..4095.
        residue_index: [L] int64 residue numbers (from the file; 1..L when unknown).
        insertion_code: [L] ``<U1`` insertion codes (``""`` when none).
        sequence: one-letter codes, or None when unknown.
        residue_mask: [L] bool, True where the residue had N, CA and C (elsewhere the code carries no structure).
    """

    chain_id: str
    codes: np.ndarray
    residue_index: np.ndarray
    insertion_code: np.ndarray
    sequence: str | None
    residue_mask: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.codes)
        for name in ("residue_index", "insertion_code", "residue_mask"):
            if len(getattr(self, name)) != n:
                count = len(getattr(self, name))
                raise InputError(f"chain {self.chain_id!r}: {name} has {count} entries for {n} codes")
        if self.sequence is not None and len(self.sequence) != n:
            raise InputError(f"chain {self.chain_id!r}: sequence of length {len(self.sequence)} for {n} codes")
        if n == 0:
            raise InputError(f"chain {self.chain_id!r}: no residues")
        bad = np.flatnonzero((self.codes < 0) | (self.codes >= C.STRUCTURE_N_CODES))
        if bad.size:
            raise InputError(
                f"chain {self.chain_id!r}: code {int(self.codes[bad[0]])} at residue {int(bad[0]) + 1} is outside "
                f"0..{C.STRUCTURE_N_CODES - 1}"
            )


@dataclass(frozen=True)
class StructureTokens:
    """The structure tokens of one protein (a chain or a complex): chains in order, plus a name."""

    chains: tuple[ChainTokens, ...]
    name: str = ""
    _row: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "chains", tuple(self.chains))
        if not self.chains:
            raise InputError(f"structure tokens {self.name!r}: no chains")
        parts: list[np.ndarray] = [np.array([C.STRUCTURE_BOS])]
        for k, chain in enumerate(self.chains):
            if k:
                parts.append(np.array([C.STRUCTURE_CHAINBREAK]))
            parts.append(np.asarray(chain.codes, dtype=np.int64))
        parts.append(np.array([C.STRUCTURE_EOS]))
        object.__setattr__(self, "_row", np.concatenate(parts).astype(np.int64))

    @property
    def tokens(self) -> np.ndarray:
        """[N + n_chains + 1] int64: BOS, chain codes joined by CHAINBREAK, EOS (the decoder's and ESM3's input)."""
        return self._row.copy()

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(chain.chain_id for chain in self.chains)

    @classmethod
    def from_token_row(
        cls,
        tokens: Sequence[int] | np.ndarray | Tensor,
        *,
        chain_ids: Sequence[str] | None = None,
        name: str = "",
    ) -> StructureTokens:
        """Split a framed row (BOS, codes with CHAINBREAK between chains, EOS) into chains named ``chain_ids``
        (default :func:`~openesm3.structure.complex.default_chain_ids`, as :class:`~openesm3.protein.Protein` names
        chains), numbered 1..L, sequence unknown. Raises :class:`InputError` for a bad row."""
        row = torch.as_tensor(np.asarray(tokens))
        if row.ndim != 1:
            raise InputError(f"structure tokens {name!r}: expected one row of ids, got shape {tuple(row.shape)}")
        check_structure_tokens(row[None].long(), None, max_length=int(1e9))
        ids = row.long().numpy()[1:-1]
        breaks = np.flatnonzero(ids == C.STRUCTURE_CHAINBREAK)
        segments = np.split(ids, breaks)
        segments = [segments[0]] + [s[1:] for s in segments[1:]]
        bad = np.flatnonzero((ids >= C.STRUCTURE_N_CODES) & (ids != C.STRUCTURE_CHAINBREAK))
        if bad.size:
            raise InputError(
                f"structure tokens {name!r}: id {int(ids[bad[0]])} at position {int(bad[0]) + 1} is not a code "
                f"(0..{C.STRUCTURE_N_CODES - 1}) or CHAINBREAK ({C.STRUCTURE_CHAINBREAK})"
            )
        ids_out = list(chain_ids) if chain_ids is not None else list(default_chain_ids(len(segments)))
        if len(ids_out) != len(segments):
            raise InputError(f"structure tokens {name!r}: {len(segments)} chains but {len(ids_out)} chain ids given")
        chains = []
        for cid, codes in zip(ids_out, segments):
            if codes.size == 0:
                raise InputError(f"structure tokens {name!r}: chain {cid!r} is empty (two adjacent chain breaks?)")
            n = codes.size
            chains.append(
                ChainTokens(
                    cid,
                    codes.astype(np.int64),
                    np.arange(1, n + 1),
                    np.full(n, "", "<U1"),
                    None,
                    np.ones(n, dtype=bool),
                )
            )
        return cls(tuple(chains), name)


# ---- encoding -------------------------------------------------------------------------------------------
def _chains(structure: Structure) -> tuple[ProteinChain, ...]:
    if isinstance(structure, ProteinChain):
        return (structure,)
    if isinstance(structure, ProteinComplex):
        return structure.chains
    raise InputError(f"expected a ProteinChain or ProteinComplex, got {type(structure).__name__}")


def _label(structure: Structure) -> str:
    return structure.name or ("chain " + structure.chain_id if isinstance(structure, ProteinChain) else "structure")


def _joined_coordinates(structure: Structure, max_length: int | None) -> tuple[np.ndarray, np.ndarray]:
    """atom37 [M, 37, 3] of the chains joined by one NaN position (M = N + n_chains - 1), and [M] True at the
    chain-break positions; checks the input is encodable."""
    chains = _chains(structure)
    label = _label(structure)
    total = 0
    for chain in chains:
        has_backbone = chain.atom37_mask[:, list(RC.BACKBONE_ATOMS)].all(-1)
        if len(chain) == 0 or not has_backbone.any():
            raise InputError(
                f"{label}: chain {chain.chain_id!r} has no residue with N, CA and C coordinates "
                "(all coordinates missing); remove the chain or supply its backbone"
            )
        total += int(has_backbone.sum())
    if total < MIN_BACKBONE_RESIDUES:
        raise InputError(
            f"{label}: only {total} residue(s) with N, CA and C coordinates; the structure tokenizer needs at "
            f"least {MIN_BACKBONE_RESIDUES}"
        )
    gap = np.full((1, RC.N_ATOM37, 3), np.nan, dtype=np.float32)
    parts: list[np.ndarray] = []
    is_break: list[np.ndarray] = []
    for k, chain in enumerate(chains):
        if k:
            parts.append(gap)
            is_break.append(np.ones(1, dtype=bool))
        parts.append(np.where(chain.atom37_mask[..., None], chain.atom37, np.nan).astype(np.float32))
        is_break.append(np.zeros(len(chain), dtype=bool))
    coords = np.concatenate(parts)
    if max_length is not None and coords.shape[0] + 2 > max_length:
        limit = (  # a lower limit is the caller's, not the models'
            f"the context of {max_length} tokens of the structure decoder and ESM3"
            if max_length == MODEL_CONTEXT
            else f"the limit of {max_length} tokens set by max_length (tokenize-structure --max-length)"
        )
        raise InputError(
            f"{label}: {coords.shape[0]} positions + BOS/EOS = {coords.shape[0] + 2} tokens exceed {limit}; encode "
            "fewer chains (tokenize-structure --chain or --separate-chains) or a shorter protein"
        )
    return coords, np.concatenate(is_break)


@overload
def encode_structure(
    structures: Structure, encoder: StructureEncoder, *, batch_size: int = ..., max_length: int | None = ...
) -> StructureTokens: ...
@overload
def encode_structure(
    structures: Sequence[Structure], encoder: StructureEncoder, *, batch_size: int = ..., max_length: int | None = ...
) -> list[StructureTokens]: ...
def encode_structure(
    structures: Structure | Sequence[Structure],
    encoder: StructureEncoder,
    *,
    batch_size: int = 8,
    max_length: int | None = MODEL_CONTEXT,
) -> StructureTokens | list[StructureTokens]:
    """Structure tokens of one structure or of many (module docstring for the layout of complexes).

    Args:
        structures: a :class:`ProteinChain`, a :class:`ProteinComplex`, or a sequence of them.
        encoder: the structure encoder (on any device; inputs follow it).
        batch_size: structures per forward pass (padded to the longest; neighbourhoods never cross proteins and
            each protein's neighbour ranking is computed on its own, so codes do not depend on the batch).
        max_length: refuse structures whose token row (with BOS/EOS) exceeds this (the decoder's and ESM3's
            context, ``MODEL_CONTEXT``); None to allow any length.

    Raises:
        InputError: a structure with fewer than 3 residues with N, CA and C, a chain without any, or too long.
    """
    single = isinstance(structures, (ProteinChain, ProteinComplex))
    items: list[Structure] = [structures] if isinstance(structures, ProteinChain | ProteinComplex) else list(structures)
    check_batch_size(batch_size)
    prepared = [_joined_coordinates(s, max_length) for s in items]
    device = encoder.pre_vq_proj.weight.device
    results: list[StructureTokens] = []
    for start in range(0, len(items), batch_size):
        batch = prepared[start : start + batch_size]
        width = max(coords.shape[0] for coords, _ in batch)
        coords = torch.full((len(batch), width, RC.N_ATOM37, 3), float("nan"))
        mask = torch.zeros(len(batch), width, dtype=torch.bool)
        for row, (c, _) in enumerate(batch):
            coords[row, : c.shape[0]] = normalize_coordinates(torch.from_numpy(c))
            mask[row, : c.shape[0]] = True
        residue_index = torch.arange(1, width + 1).expand(len(batch), width)  # the SDK numbers residues 1..M
        with torch.no_grad():
            out = encoder(coords.to(device), mask=mask.to(device), residue_index=residue_index.to(device))
        codes = out.tokens.cpu().numpy()
        valid = out.residue_mask.cpu().numpy()
        for row, (c, is_break) in enumerate(batch):
            structure = items[start + row]
            results.append(_split_codes(structure, codes[row, : c.shape[0]], valid[row, : c.shape[0]], is_break))
    return results[0] if single else results


def _split_codes(structure: Structure, codes: np.ndarray, valid: np.ndarray, is_break: np.ndarray) -> StructureTokens:
    chains = []
    keep = ~is_break
    codes, valid = codes[keep], valid[keep]
    start = 0
    for chain in _chains(structure):
        n = len(chain)
        chains.append(
            ChainTokens(
                chain_id=chain.chain_id,
                codes=codes[start : start + n].astype(np.int64),
                residue_index=chain.residue_index.copy(),
                insertion_code=chain.insertion_code.copy(),
                sequence=chain.sequence,
                residue_mask=valid[start : start + n].copy(),
            )
        )
        start += n
    return StructureTokens(tuple(chains), structure.name)


# ---- decoding -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodedStructure:
    """A decoded structure with its confidences.

    A decoder whose weights record a confidence head as never trained (a stage-1 tokenizer export,
    :meth:`StructureDecoder.untrained_heads`) gives no numbers for it: NaN pLDDT (and B-factors 0) for ``"plddt"``,
    NaN PAE and pTM for ``"pae"``, named in ``untrained_heads``.

    Attributes:
        structure: chains with N, CA, C and inferred O (other atoms missing), pLDDT (0-1) as B-factors, chain ids,
            residue numbers and sequence from the tokens (sequence ``A`` * L when unknown, as the SDK).
        plddt: [N] per-residue pLDDT in (0, 1), chains concatenated.
        ptm: predicted TM-score of the whole row (chain-break positions excluded).
        pae: [N, N] predicted aligned error (Angstrom) between residues, chains concatenated.
        tokens: what was decoded.
        untrained_heads: the decoder's confidence heads that were never trained (their values above are NaN).
    """

    structure: ProteinComplex
    plddt: np.ndarray
    ptm: float
    pae: np.ndarray
    tokens: StructureTokens
    untrained_heads: tuple[str, ...] = ()


@overload
def decode_structure(
    tokens: StructureTokens, decoder: StructureDecoder, *, batch_size: int = ...
) -> DecodedStructure: ...
@overload
def decode_structure(
    tokens: Sequence[StructureTokens], decoder: StructureDecoder, *, batch_size: int = ...
) -> list[DecodedStructure]: ...
def decode_structure(
    tokens: StructureTokens | Sequence[StructureTokens], decoder: StructureDecoder, *, batch_size: int = 8
) -> DecodedStructure | list[DecodedStructure]:
    """Backbone structures, pLDDT, pTM and PAE from structure tokens (one or many; padded batches).

    A raw token row can be wrapped with :meth:`StructureTokens.from_token_row`. Raises :class:`InputError` when
    a row exceeds the decoder's context.
    """
    single = isinstance(tokens, StructureTokens)
    items: list[StructureTokens] = [tokens] if isinstance(tokens, StructureTokens) else list(tokens)
    check_batch_size(batch_size)
    limit = decoder.config.max_length
    for item in items:
        if len(item.tokens) > limit:
            raise InputError(
                f"structure tokens {item.name!r}: {len(item.tokens)} tokens (with BOS/EOS) exceed the decoder "
                f"context of {limit}"
            )
    device = decoder.embed.weight.device
    results: list[DecodedStructure] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        width = max(len(item.tokens) for item in batch)
        rows = torch.full((len(batch), width), C.STRUCTURE_PAD, dtype=torch.long)
        for i, item in enumerate(batch):
            rows[i, : len(item.tokens)] = torch.from_numpy(item.tokens)
        mask = None if all(len(item.tokens) == width for item in batch) else rows != C.STRUCTURE_PAD
        with torch.no_grad():
            out = decoder(rows.to(device), mask=None if mask is None else mask.to(device))
        for i, item in enumerate(batch):
            n = len(item.tokens)
            results.append(
                _assemble(
                    item,
                    out.backbone[i, :n].cpu(),
                    out.plddt[i, :n].cpu(),
                    out.pae[i, :n, :n].cpu(),
                    float(out.ptm[i]),
                    decoder.untrained_heads(),
                )
            )
    return results[0] if single else results


def withhold_untrained(
    plddt: np.ndarray, ptm: float, pae: np.ndarray, untrained: Sequence[str]
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """``(plddt, ptm, pae, b_factors)`` with the outputs of ``untrained`` heads (see
    :meth:`StructureDecoder.untrained_heads`) replaced by NaN, and the per-residue B-factors: pLDDT, or 0 when its
    head was not trained (a value of random weights is no confidence)."""
    if "plddt" in untrained:
        plddt = np.full_like(plddt, np.nan)
    if "pae" in untrained:
        ptm, pae = float("nan"), np.full_like(pae, np.nan)
    return plddt, ptm, pae, np.nan_to_num(plddt, nan=0.0) if "plddt" in untrained else plddt


def _assemble(
    item: StructureTokens, backbone: Tensor, plddt: Tensor, pae: Tensor, ptm: float, untrained: tuple[str, ...] = ()
) -> DecodedStructure:
    row = item.tokens
    residue = (row < C.STRUCTURE_N_CODES)[1:-1]  # chain-break positions are not residues
    inner = slice(1, len(row) - 1)
    backbone, plddt_r = backbone[inner][residue], plddt[inner].numpy()[residue]
    pae_r = pae[inner, inner].numpy()[np.ix_(residue, residue)]
    plddt_r, ptm, pae_r, b_factor = withhold_untrained(plddt_r, ptm, pae_r, untrained)
    chains = []
    start = 0
    for chain in item.chains:
        n = len(chain.codes)
        bb = backbone[start : start + n]
        atom37 = np.full((n, RC.N_ATOM37, 3), np.nan, dtype=np.float32)
        atom37[:, list(RC.BACKBONE_ATOMS)] = bb.numpy()
        atom37[:, RC.ATOM_O] = infer_oxygen(bb).numpy()
        built = ProteinChain.from_atom37(
            atom37,
            sequence=chain.sequence,
            residue_index=chain.residue_index,
            insertion_code=chain.insertion_code,
            chain_id=chain.chain_id,
            b_factor=b_factor[start : start + n],
            name=item.name,
        )
        chains.append(built)
        start += n
    return DecodedStructure(ProteinComplex(tuple(chains), item.name), plddt_r, ptm, pae_r, item, untrained)


# ---- JSON -----------------------------------------------------------------------------------------------
TOKENS_FORMAT = "openesm3-structure-tokens"
TOKENS_FORMAT_VERSION = 1


def tokens_to_json(
    items: Sequence[StructureTokens], *, model: Mapping[str, str | None] | None = None
) -> dict[str, object]:
    """A JSON-ready dict of structure tokens (written by ``openesm3 tokenize-structure``)::

        {"format": "openesm3-structure-tokens", "format_version": 1,
         "model": {"model_type", "format", "weights", "sha256"},
         "structures": [{"name", "tokens": [BOS, ..., EOS],
                         "chains": [{"chain_id", "sequence", "residue_index", "insertion_code", "codes",
                                     "has_backbone"}]}]}

    ``tokens`` is the framed row (codes of the chains joined by CHAINBREAK 4100); ``codes`` are one chain's codes;
    ``insertion_code`` is omitted when no residue has one; ``sequence`` is null when unknown; the model's
    ``sha256`` is null when unknown (the weights file was changed in place while it was loaded).
    """
    structures = []
    for item in items:
        chains = []
        for chain in item.chains:
            entry: dict[str, object] = {
                "chain_id": chain.chain_id,
                "sequence": chain.sequence,
                "residue_index": chain.residue_index.tolist(),
            }
            if any(chain.insertion_code):
                entry["insertion_code"] = chain.insertion_code.tolist()
            entry["codes"] = chain.codes.tolist()
            entry["has_backbone"] = chain.residue_mask.tolist()
            chains.append(entry)
        structures.append({"name": item.name, "tokens": item.tokens.tolist(), "chains": chains})
    return {
        "format": TOKENS_FORMAT,
        "format_version": TOKENS_FORMAT_VERSION,
        "model": dict(model or {}),
        "structures": structures,
    }


def tokens_from_json(data: object, *, source: str = "tokens") -> list[StructureTokens]:
    """Structure tokens from :func:`tokens_to_json`'s format. A structure may give only ``tokens`` (chains are
    then split at CHAINBREAK and named A, B, ...) or only ``chains``; when both are given they must agree.
    Raises :class:`InputError` naming ``source``, the structure and the key for anything malformed."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != TOKENS_FORMAT:
        raise InputError(f"{source}: not an OpenESM3 structure-token file (format {data.get('format')!r})")
    if data.get("format_version") != TOKENS_FORMAT_VERSION:
        raise InputError(
            f"{source}: format_version {data.get('format_version')!r} is not supported (reads {TOKENS_FORMAT_VERSION})"
        )
    structures = data.get("structures")
    if not isinstance(structures, list) or not structures:
        raise InputError(f"{source}: 'structures' must be a non-empty list")
    out = []
    for k, entry in enumerate(structures):
        where = f"{source}: structures[{k}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected an object")
        name = str(entry.get("name", ""))
        where = f"{where} ({name})" if name else where
        row = entry.get("tokens")
        chains = entry.get("chains")
        if row is None and chains is None:
            raise InputError(f"{where}: needs 'tokens' or 'chains'")
        try:
            parsed = _chains_from_json(chains, where, name) if chains is not None else None
            if row is not None:
                ids = _int_list(row, f"{where}.tokens")
                if parsed is None:
                    parsed = StructureTokens.from_token_row(np.asarray(ids, dtype=np.int64), name=name)
                elif parsed.tokens.tolist() != ids:
                    raise InputError(f"{where}: 'tokens' do not match the chains' codes joined by CHAINBREAK")
        except InputError as exc:
            message = str(exc)
            raise InputError(message if message.startswith(source) else f"{where}: {message}") from None
        assert parsed is not None
        out.append(parsed)
    return out


def _int_list(value: object, where: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InputError(f"{where}: expected a list of integers")
    return value


def _chains_from_json(chains: object, where: str, name: str) -> StructureTokens:
    if not isinstance(chains, list) or not chains:
        raise InputError(f"{where}.chains: expected a non-empty list")
    parsed = []
    defaults = default_chain_ids(len(chains))
    for j, chain in enumerate(chains):
        at = f"{where}.chains[{j}]"
        if not isinstance(chain, dict):
            raise InputError(f"{at}: expected an object")
        codes = np.asarray(_int_list(chain.get("codes"), f"{at}.codes"), dtype=np.int64)
        n = codes.size
        numbers = chain.get("residue_index")
        residue_index = (
            np.arange(1, n + 1) if numbers is None else np.asarray(_int_list(numbers, f"{at}.residue_index"))
        )
        icode = chain.get("insertion_code")
        if icode is None:
            icode = [""] * n
        if not isinstance(icode, list) or not all(isinstance(c, str) and len(c) <= 1 for c in icode):
            raise InputError(f"{at}.insertion_code: expected a list of strings of at most one character")
        mask = chain.get("has_backbone")
        if mask is None:
            mask = [True] * n
        if not isinstance(mask, list) or not all(isinstance(v, bool) for v in mask):
            raise InputError(f"{at}.has_backbone: expected a list of booleans")
        sequence = chain.get("sequence")
        if sequence is not None and not isinstance(sequence, str):
            raise InputError(f"{at}.sequence: expected a string or null")
        chain_id = chain.get("chain_id", defaults[j])
        if not isinstance(chain_id, str):  # "" is a PDB file's blank chain id, as tokenize-structure writes it
            raise InputError(f"{at}.chain_id: expected a string")
        try:
            parsed.append(
                ChainTokens(
                    chain_id,
                    codes,
                    residue_index.astype(np.int64),
                    np.asarray(icode, dtype="<U1"),
                    sequence,
                    np.asarray(mask, dtype=bool),
                )
            )
        except InputError as exc:
            raise InputError(f"{at}: {exc}") from None
    ids = [c.chain_id for c in parsed]
    if len(set(ids)) != len(ids):
        raise InputError(f"{where}.chains: chain ids must be distinct, got {ids}")
    return StructureTokens(tuple(parsed), name)
