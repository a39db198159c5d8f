"""Test helpers for generation: a small deterministic stand-in for the ESM3 trunk and prompt builders.

``FakeESM3`` has the trunk's calling convention (the keyword inputs of ``model_inputs`` plus
``attend_to_padding`` and ``validate``) and output fields. Each protein's logits depend on all of its tokens (a
mean over its positions mixes them), on its coordinates, and - only with ``attend_to_padding=True`` - on the
padding of its batch. Rows are computed one by one over their own length, so a prompt gets bit-identical logits
alone or in any batch, which lets tests demand exact equality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.generation.protein_tensor import ProteinTensor


@dataclass
class FakeOutput:
    sequence_logits: Tensor
    structure_logits: Tensor
    secondary_structure_logits: Tensor
    sasa_logits: Tensor
    function_logits: Tensor
    residue_logits: Tensor
    embeddings: Tensor


class FakeESM3(nn.Module):
    """Random embeddings -> context mixing -> linear heads; records the batch shape of every call."""

    def __init__(self, seed: int = 0, d: int = 24, scale: float = 3.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.d = d

        def table(n: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(n, d, generator=g))

        self.seq = table(C.SEQUENCE_EMBED_DIM)
        self.struct = table(C.STRUCTURE_VOCAB_SIZE)
        self.ss8 = table(C.SS8_VOCAB_SIZE)
        self.sasa = table(C.SASA_VOCAB_SIZE)
        self.func = table(C.FUNCTION_VOCAB_SIZE)
        self.res = table(C.RESIDUE_VOCAB_SIZE)
        self.pos = table(2048)
        self.coord = nn.Parameter(torch.randn(3, d, generator=g) * 0.1)
        self.mix = nn.Parameter(torch.randn(d, d, generator=g) / d**0.5)
        widths = (C.SEQUENCE_EMBED_DIM, C.STRUCTURE_N_CODES, C.SS8_VOCAB_SIZE, C.SASA_VOCAB_SIZE,
                  C.FUNCTION_DEPTH * C.FUNCTION_VOCAB_SIZE, C.RESIDUE_VOCAB_SIZE)  # fmt: skip
        self.heads = nn.ParameterList([nn.Parameter(torch.randn(d, w, generator=g) * scale / d**0.5) for w in widths])
        self.calls: list[tuple[int, int]] = []
        self.seen: list[dict[str, Tensor]] = []

    def forward(
        self,
        *,
        sequence_tokens: Tensor,
        structure_tokens: Tensor,
        ss8_tokens: Tensor,
        sasa_tokens: Tensor,
        function_tokens: Tensor,
        residue_annotation_tokens: Tensor,
        structure_coords: Tensor | None = None,
        per_res_plddt: Tensor | None = None,
        attend_to_padding: bool = False,
        validate: bool = True,
    ) -> FakeOutput:
        b, length = sequence_tokens.shape
        self.calls.append((b, length))
        self.seen.append({"sequence": sequence_tokens.clone(), "structure": structure_tokens.clone()})
        x = (
            self.seq[sequence_tokens] + self.struct[structure_tokens] + self.ss8[ss8_tokens] + self.sasa[sasa_tokens]
            + self.func[function_tokens].sum(-2) + self.res[residue_annotation_tokens].sum(-2) + self.pos[:length]
        )  # fmt: skip
        if structure_coords is not None:
            ca = structure_coords[..., 1, :]
            x = x + torch.where(torch.isfinite(ca), ca, torch.zeros_like(ca)) @ self.coord
        outs = [torch.zeros(b, length, h.shape[1]) for h in self.heads]
        real = (sequence_tokens != C.SEQUENCE_PAD).sum(-1).tolist()
        h_all = torch.zeros(b, length, self.d)
        for i in range(b):
            n = length if attend_to_padding else real[i]
            xi = x[i, :n]
            h = torch.tanh(xi + xi.mean(0, keepdim=True) @ self.mix)
            h_all[i, :n] = h
            for out, w in zip(outs, self.heads):
                out[i, :n] = h @ w
        return FakeOutput(
            sequence_logits=outs[0],
            structure_logits=outs[1],
            secondary_structure_logits=outs[2],
            sasa_logits=outs[3],
            function_logits=outs[4].view(b, length, C.FUNCTION_DEPTH, C.FUNCTION_VOCAB_SIZE),
            residue_logits=outs[5],
            embeddings=h_all,
        )


def masked_prompt(
    n: int,
    *,
    seed: int,
    track: str = "sequence",
    masked_fraction: float = 1.0,
    with_coordinates: bool = False,
    other_tracks: bool = True,
) -> ProteinTensor:
    """A random prompt of ``n`` residues whose ``track`` is masked at ``masked_fraction`` of the positions."""
    g = torch.Generator().manual_seed(seed)
    L = n + 2

    def framed(low: int, high: int, bos: int, eos: int) -> Tensor:
        t = torch.randint(low, high, (L,), generator=g)
        t[0], t[-1] = bos, eos
        return t

    p = ProteinTensor(
        sequence=framed(4, 24, C.SEQUENCE_BOS, C.SEQUENCE_EOS),
        structure=framed(0, C.STRUCTURE_N_CODES, C.STRUCTURE_BOS, C.STRUCTURE_EOS) if other_tracks else None,
        secondary_structure=framed(3, 11, 0, 0) if other_tracks else None,
        sasa=framed(3, 19, 0, 0) if other_tracks else None,
    )
    if other_tracks:
        f = torch.randint(4, C.FUNCTION_VOCAB_SIZE, (L, C.FUNCTION_DEPTH), generator=g)
        f[0], f[-1] = 0, 0
        p.function = f
    if with_coordinates:
        xyz = torch.full((L, 37, 3), float("nan"))
        xyz[1:-1, :3] = torch.randn(n, 3, 3, generator=g) * 5
        xyz[0], xyz[-1] = float("inf"), float("inf")
        p.coordinates = xyz
    mask_id = {"sequence": C.SEQUENCE_MASK, "structure": C.STRUCTURE_MASK}.get(track, 0)
    value = getattr(p, track)
    if value is None:
        return p
    chosen = torch.rand(n, generator=g) < masked_fraction
    chosen[torch.randint(0, n, (1,), generator=g)] = True  # at least one
    value = value.clone()
    value[1:-1][chosen] = mask_id
    setattr(p, track, value)
    return p


# ---------------------------------------------------------------------------------------------------------------
# Prompts from real proteins (tests/data/structures or ../shared/data/dev), read and featurised with
# openesm3.structure; structure tokens from the bundled structure tokenizer.
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RealProtein:
    """One real chain: sequence tokens, atom37 coordinates, DSSP / SASA tokens and (optionally) structure tokens,
    BOS/EOS included ([L+2])."""

    name: str
    sequence: Tensor  # [L+2]
    coordinates: Tensor  # [L+2, 37, 3], +inf at BOS/EOS, NaN for missing atoms
    secondary_structure: Tensor  # [L+2]
    sasa: Tensor  # [L+2]
    structure: Tensor | None = None  # [L+2] codes of a real structure tokenizer, or None

    @property
    def n_residues(self) -> int:
        return int(self.sequence.shape[0]) - 2


def _real_protein(name: str, complex_: object, encoder: object | None) -> RealProtein | None:
    """The first chain of ``complex_`` featurised (None if its sequence has an unknown residue)."""
    from openesm3.generation.structure_tokens import encode_structure
    from openesm3.structure.features import featurize
    from openesm3.tokenizers import SASATokenizer, SequenceTokenizer, SS8Tokenizer

    chain = complex_.chains[0]  # type: ignore[attr-defined]
    if "X" in chain.sequence:
        return None
    features = featurize(complex_)[0]  # type: ignore[arg-type]
    coords = torch.full((len(chain.sequence) + 2, 37, 3), float("inf"))
    coords[1:-1] = torch.from_numpy(chain.atom37)
    structure = None
    if encoder is not None:
        structure = torch.from_numpy(encode_structure(chain, encoder).tokens)  # type: ignore[arg-type]  # framed
    return RealProtein(
        name=name,
        sequence=SequenceTokenizer().encode(chain.sequence, as_tensor=True),
        coordinates=coords,
        secondary_structure=SS8Tokenizer().encode(features.ss8.replace("X", "C"), as_tensor=True),
        sasa=SASATokenizer().encode(features.sasa, as_tensor=True),
        structure=structure,
    )


def real_proteins(dev_dir: Path, n: int, min_len: int = 40) -> list[RealProtein]:
    """The first ``n`` single-model top240 chains of at least ``min_len`` residues (manifest order)."""
    from openesm3.structure.io import load_structure

    rows = (dev_dir / "manifest.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    out: list[RealProtein] = []
    for line in rows[1:]:
        row = dict(zip(header, line.split("\t")))
        if row["subset"] != "top240" or row["n_models"] != "1" or int(row["primary_len"]) < min_len:
            continue
        protein = _real_protein(row["file"], load_structure(dev_dir / row["file"], chains=[row["primary_chain"]]), None)
        if protein is not None:
            out.append(protein)
        if len(out) == n:
            break
    return out


def real_test_proteins(structures_dir: Path, n: int, min_len: int = 40) -> list[RealProtein]:
    """The first chain of the first ``n`` files (name order) of ``structures_dir`` (tests/data/structures) with at
    least ``min_len`` residues, with structure tokens from the bundled structure tokenizer's encoder (2048 codes,
    a subset of ESM3's 4096)."""
    from openesm3.checkpoints.bundled import load_structure_tokenizer
    from openesm3.structure.io import load_structure

    encoder, _ = load_structure_tokenizer()
    out: list[RealProtein] = []
    for path in sorted(structures_dir.glob("*.pdb.gz")):
        complex_ = load_structure(path)
        if len(complex_.chains[0].sequence) < min_len:
            continue
        protein = _real_protein(path.name, complex_, encoder)
        if protein is not None:
            out.append(protein)
        if len(out) == n:
            break
    return out


def real_prompt(
    protein: RealProtein,
    track: str,
    *,
    seed: int,
    n_residues: int,
    masked_fraction: float,
    with_coordinates: bool,
    with_other_tracks: bool = True,
) -> ProteinTensor:
    """A prompt cropped from ``protein``: the target ``track`` masked at ``masked_fraction`` of the positions
    (at least one), the other tracks partly given (or absent when ``with_other_tracks`` is False). Structure
    tokens are the protein's own (random codes if it has none); function tokens are random codes (the real
    proteins carry no annotations; decoding only needs valid ids)."""
    g = torch.Generator().manual_seed(seed)
    n = min(n_residues, protein.n_residues)
    start = int(torch.randint(0, protein.n_residues - n + 1, (1,), generator=g))
    window = slice(start + 1, start + 1 + n)

    def framed(inner: Tensor, bos: float, eos: float) -> Tensor:
        edge = (1, *inner.shape[1:])
        return torch.cat([torch.full(edge, bos, dtype=inner.dtype), inner, torch.full(edge, eos, dtype=inner.dtype)])

    def partly(t: Tensor, mask_id: int, fraction: float) -> Tensor:
        t = t.clone()
        hide = torch.rand(n, generator=g) < fraction
        t[1:-1][hide] = mask_id
        return t

    sequence = framed(protein.sequence[window], C.SEQUENCE_BOS, C.SEQUENCE_EOS)
    random_codes = torch.randint(0, C.STRUCTURE_N_CODES, (n,), generator=g)
    codes = random_codes if protein.structure is None else protein.structure[window]
    structure = framed(codes, C.STRUCTURE_BOS, C.STRUCTURE_EOS)
    ss8 = framed(protein.secondary_structure[window], 0, 0)
    sasa = framed(protein.sasa[window], 0, 0)
    function = torch.randint(4, C.FUNCTION_VOCAB_SIZE, (n + 2, C.FUNCTION_DEPTH), generator=g)
    function[0] = function[-1] = 0
    function[1:-1][torch.rand(n, generator=g) < 0.5] = 0  # annotated residues only here and there
    tracks: dict[str, Tensor | None] = {
        "sequence": partly(sequence, C.SEQUENCE_MASK, 0.3),
        "structure": partly(structure, C.STRUCTURE_MASK, 0.5),
        "secondary_structure": partly(ss8, 0, 0.5),
        "sasa": partly(sasa, 0, 0.5),
        "function": function,
    }
    if not with_other_tracks:
        tracks = {k: (v if k == "sequence" else None) for k, v in tracks.items()}
    full = {"sequence": sequence, "structure": structure, "secondary_structure": ss8, "sasa": sasa,
            "function": function}  # fmt: skip
    target = full[track].clone()
    hide = torch.rand(n, generator=g) < masked_fraction
    hide[int(torch.randint(0, n, (1,), generator=g))] = True
    target[1:-1][hide] = {"sequence": C.SEQUENCE_MASK, "structure": C.STRUCTURE_MASK}.get(track, 0)
    tracks[track] = target
    coordinates = framed(protein.coordinates[window], float("inf"), float("inf")) if with_coordinates else None
    return ProteinTensor(**tracks, coordinates=coordinates)
