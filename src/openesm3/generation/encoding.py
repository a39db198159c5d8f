"""From a :class:`~openesm3.protein.Protein` to the model's token tensors and back (spec §10.2, ``ESM3.encode`` /
``decode_protein_tensor``).

:func:`encode_protein` produces a :class:`~openesm3.generation.protein_tensor.ProteinTensor` with the same ids as
the official SDK's ``ESM3.encode``:

- sequence (§1), SS8 (§3.1, ``_`` = masked -> 0), SASA (§3.2, NaN = masked -> 0), each framed by BOS/EOS;
- function annotations (§3.3): routed by label to the function track and, for residue-level labels, to the
  residue-annotation track; ``residue_annotations`` go to the residue-annotation track only. (The SDK drops
  residue annotations, spec §13.16; we tokenize them.)
- coordinates: normalised into the protein's mean backbone frame as the SDK does (spec §12), +inf at BOS/EOS;
  with a structure-token encoder the structure track holds its codes (residue numbering 1..L, the whole
  complex as one chain, as the SDK). One deliberate difference: at chain-break positions we write the
  chain-break id 4100 where the SDK keeps the encoder's code for the empty row; the trunk replaces both by
  4100 whenever the sequence is given (spec §2), so model outputs do not change.

Absent tracks stay ``None``; :meth:`ProteinTensor.filled` gives them the model's defaults (all-mask sequence and
structure, zeros elsewhere, +inf coordinates).

:func:`decode_protein` is the inverse: tracks that are all padding become ``None``; structure tokens without a
mask are decoded to backbone coordinates (O placed from the backbone), pLDDT, pTM and PAE by a structure-token
decoder; function tokens are decoded by a function-token decoder network (:mod:`openesm3.tokenizers.function_decoding`);
residue-annotation tokens by their vocabulary. Name, chain ids and numbering can be copied from a template
protein (e.g. the prompt).

The networks enter through two small protocols, :class:`StructureTokenEncoder` and
:class:`StructureTokenDecoder`, implemented on top of the VQ-VAE models by
:class:`openesm3.generation.bundle.ModelBundle`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from openesm3 import constants as C
from openesm3.annotations import FunctionAnnotation
from openesm3.errors import InputError, OpenESM3Error, VocabularyError
from openesm3.generation.protein_tensor import TRACK_PAD_IDS, ProteinTensor
from openesm3.protein import Protein
from openesm3.structure import residue_constants as RC
from openesm3.structure.chain import ProteinChain
from openesm3.tokenizers import (
    FunctionTokenDecoderProtocol,
    FunctionTokenizer,
    FunctionVocabulary,
    ResidueAnnotationTokenizer,
    ResidueAnnotationVocabulary,
    SASATokenizer,
    SequenceTokenizer,
    SS8Tokenizer,
    StructureTokenizer,
    decode_function_tokens,
    split_annotations,
)


# ==========================================================================================================
# seams for the networks
# ==========================================================================================================
class StructureTokenEncoder(Protocol):
    """The VQ-VAE encoder as the encoding needs it: normalised coordinates [L, 37, 3] float32 (NaN = missing)
    -> codes [L] int64 in 0..4095, residues numbered 1..L (spec §10.2)."""

    def __call__(self, coordinates: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class DecodedStructure:
    """What a structure-token decoder returns for one protein of N = L + 2 tokens (BOS/EOS rows included).

    Attributes:
        backbone: [N, 3, 3] float32 N, CA, C coordinates (Angstrom).
        plddt: [N] float32 in [0, 1].
        ptm: predicted TM-score.
        pae: [N, N] float32 predicted aligned error (Angstrom).
    """

    backbone: Tensor
    plddt: Tensor
    ptm: float
    pae: Tensor


class StructureTokenDecoder(Protocol):
    """The VQ-VAE decoder as decoding needs it: structure ids [L + 2] (BOS ... EOS, no mask) -> DecodedStructure."""

    def __call__(self, tokens: Tensor) -> DecodedStructure: ...


# ==========================================================================================================
# tokenizers
# ==========================================================================================================
@dataclass
class ProteinTokenizers:
    """Every track's tokenizer; the function and residue-annotation ones load their vocabulary files on first use.

    Args:
        vocabulary_dir: where the vocabulary files are (see :mod:`openesm3.tokenizers.vocabulary`); None searches
            ``$OPENESM3_VOCAB_DIR`` and the installed ``esm`` package.
    """

    vocabulary_dir: str | os.PathLike[str] | None = None
    sequence: SequenceTokenizer = field(default_factory=SequenceTokenizer)
    structure: StructureTokenizer = field(default_factory=StructureTokenizer)
    secondary_structure: SS8Tokenizer = field(default_factory=SS8Tokenizer)
    sasa: SASATokenizer = field(default_factory=SASATokenizer)
    _function: FunctionTokenizer | None = field(default=None, repr=False)
    _function_vocabulary: FunctionVocabulary | None = field(default=None, repr=False)
    _residue: ResidueAnnotationTokenizer | None = field(default=None, repr=False)
    _residue_error: VocabularyError | None = field(default=None, repr=False)

    @classmethod
    def from_vocabularies(
        cls, function: FunctionVocabulary | None = None, residue: ResidueAnnotationVocabulary | None = None
    ) -> ProteinTokenizers:
        """Tokenizers with vocabularies already in memory (e.g. built with :mod:`openesm3.tokenizers.build`)."""
        return cls(
            _function=None if function is None else FunctionTokenizer(function),
            _residue=None if residue is None else ResidueAnnotationTokenizer(residue),
        )

    @property
    def function(self) -> FunctionTokenizer:
        """The function-keyword tokenizer; raises :class:`VocabularyError` naming the missing files."""
        if self._function is None:
            self._function = FunctionTokenizer(FunctionVocabulary.load(self.vocabulary_dir))
        return self._function

    @property
    def function_vocabulary(self) -> FunctionVocabulary:
        """The function vocabulary: the tokenizer's if loaded, else read for decoding only (the LSH hyperplanes,
        which the installed ``esm`` package lacks, are needed to encode annotations, not to decode tokens)."""
        if self._function is not None:
            return self._function.vocabulary
        if self._function_vocabulary is None:
            self._function_vocabulary = FunctionVocabulary.load(self.vocabulary_dir, with_hyperplanes=False)
        return self._function_vocabulary

    @property
    def residue(self) -> ResidueAnnotationTokenizer:
        """The residue-annotation tokenizer; raises :class:`VocabularyError` naming the missing file."""
        if self._residue is None:
            if self._residue_error is not None:
                raise self._residue_error
            try:
                self._residue = ResidueAnnotationTokenizer.from_directory(self.vocabulary_dir)
            except VocabularyError as exc:
                self._residue_error = exc
                raise
        return self._residue

    def residue_or_none(self) -> ResidueAnnotationTokenizer | None:
        """The residue-annotation tokenizer if its vocabulary can be found, else None."""
        try:
            return self.residue
        except VocabularyError:
            return None


# ==========================================================================================================
# encoding
# ==========================================================================================================
def normalize_coordinates(coordinates: np.ndarray) -> np.ndarray:
    """[L, 37, 3] coordinates in the protein's mean backbone frame (spec §12), NaN kept for missing atoms.

    The whole protein (a complex: all chains together, NaN break rows included) is one frame, as in the SDK.
    """
    chain = ProteinChain.from_atom37(coordinates)
    return chain.normalize_coordinates().atom37


def encode_protein(
    protein: Protein,
    tokenizers: ProteinTokenizers | None = None,
    *,
    structure_encoder: StructureTokenEncoder | None = None,
    device: torch.device | str = "cpu",
) -> ProteinTensor:
    """Token tensors of every track ``protein`` has (the SDK's ``ESM3.encode``, spec §10.2).

    Args:
        protein: the record (already validated: letters, lengths, ranges).
        tokenizers: default :class:`ProteinTokenizers` (function vocabularies found on first use).
        structure_encoder: turns coordinates into structure tokens; None leaves the structure track absent
            (the coordinates still condition the trunk through geometric attention).
        device: where the tensors are made.

    Raises:
        InputError: naming the protein and the problem (e.g. an annotation label in no vocabulary).
        VocabularyError: annotations were given but the vocabulary files cannot be found.
    """
    tok = tokenizers or ProteinTokenizers()
    where = protein.error_prefix()
    try:
        tensor = _encode(protein, tok, structure_encoder)
    except InputError as exc:
        raise InputError(f"{where}{exc}") from None
    return tensor.to(device)


def _encode(protein: Protein, tok: ProteinTokenizers, structure_encoder: StructureTokenEncoder | None) -> ProteinTensor:
    length = len(protein)
    sequence = ss8 = sasa = function = residue = structure = coordinates = None
    if protein.sequence is not None:
        sequence = tok.sequence.encode(protein.sequence, as_tensor=True)
    if protein.secondary_structure is not None:
        ss8 = tok.secondary_structure.encode(protein.secondary_structure, as_tensor=True)
    if protein.sasa is not None:
        sasa = tok.sasa.encode(protein.sasa, as_tensor=True)
    if protein.function_annotations is not None or protein.residue_annotations is not None:
        function, residue = encode_annotations(protein.function_annotations, protein.residue_annotations, length, tok)
    if protein.coordinates is not None:
        normalized = torch.from_numpy(normalize_coordinates(protein.coordinates))
        if structure_encoder is not None:
            codes = structure_encoder(normalized).to("cpu", torch.int64).clone()
            if tuple(codes.shape) != (length,):
                raise InputError(f"the structure encoder returned shape {tuple(codes.shape)}, expected ({length},)")
            codes[torch.from_numpy(protein.chain_break_positions())] = C.STRUCTURE_CHAINBREAK
            structure = tok.structure.encode(codes, as_tensor=True)
        inf = torch.full((1, RC.N_ATOM37, 3), float("inf"))
        coordinates = torch.cat([inf, normalized, inf])
    return ProteinTensor(
        sequence=sequence,
        structure=structure,
        secondary_structure=ss8,
        sasa=sasa,
        function=function,
        residue_annotations=residue,
        coordinates=coordinates,
    )


def encode_annotations(
    function_annotations: tuple[FunctionAnnotation, ...] | None,
    residue_annotations: tuple[FunctionAnnotation, ...] | None,
    length: int,
    tokenizers: ProteinTokenizers,
) -> tuple[Tensor | None, Tensor | None]:
    """(function ids [L+2, 8], residue-annotation ids [L+2, 16]); a track nobody annotates is None.

    ``function_annotations`` are routed by label (InterPro ids / keywords to the function track, residue-level
    labels to the residue track, as the SDK routes them); ``residue_annotations`` go to the residue track only.
    """
    to_function: list[FunctionAnnotation] = []
    to_residue: list[FunctionAnnotation] = list(residue_annotations or ())
    if function_annotations is not None:
        residue_tok = tokenizers.residue_or_none()
        routed_function, routed_residue = split_annotations(function_annotations, tokenizers.function, residue_tok)
        to_function, to_residue = routed_function, routed_residue + to_residue
    function = None
    if function_annotations is not None:
        function = tokenizers.function.encode(to_function, length, as_tensor=True)
    residue = None
    if to_residue or residue_annotations is not None:
        residue = tokenizers.residue.encode(to_residue, length, as_tensor=True)
    return function, residue


# ==========================================================================================================
# decoding
# ==========================================================================================================
def _all_pad(tokens: Tensor | None, track: str) -> bool:
    return tokens is not None and bool((tokens[1:-1] == TRACK_PAD_IDS[track]).all())


def decode_protein(
    tensor: ProteinTensor,
    tokenizers: ProteinTokenizers | None = None,
    *,
    structure_decoder: StructureTokenDecoder | None = None,
    function_decoder: FunctionTokenDecoderProtocol | None = None,
    template: Protein | None = None,
    name: str | None = None,
) -> Protein:
    """A :class:`Protein` from token tensors (the SDK's ``decode_protein_tensor``).

    Args:
        tensor: one protein's tracks (BOS/EOS included).
        tokenizers: default :class:`ProteinTokenizers`.
        structure_decoder: needed when the structure track is present and fully unmasked; it then gives the
            coordinates (taking priority over ``tensor.coordinates``), pLDDT, pTM and PAE.
        function_decoder: needed when the function track is present (not all padding).
        template: copy ``name``, ``chain_ids``, ``residue_index`` and ``insertion_code`` from it (e.g. the
            prompt) when its length matches.
        name: overrides the name.

    Raises:
        InputError: malformed tokens (naming the track and index) or a needed decoder that was not given.
    """
    tok = tokenizers or ProteinTokenizers()
    t = tensor.to("cpu")
    n = t.n_residues
    keep = {f: getattr(t, f) for f in ("sequence", "structure", "secondary_structure", "sasa", "function",
                                       "residue_annotations")}  # fmt: skip
    for track, tokens in keep.items():
        if _all_pad(tokens, track):
            keep[track] = None
    structure = keep["structure"]
    if structure is not None and bool((structure[1:-1] == C.STRUCTURE_MASK).any()):
        structure = None  # not fully generated: nothing to decode (as the SDK)

    sequence = None if keep["sequence"] is None else tok.sequence.decode(keep["sequence"])
    breaks = np.zeros(0, dtype=np.int64)
    if sequence is not None:
        breaks = np.flatnonzero(np.frombuffer(sequence.encode("ascii"), dtype=np.uint8) == ord("|"))

    coordinates = plddt = pae = None
    ptm: float | None = None
    if structure is not None:
        if structure_decoder is None:
            raise InputError("decoding the structure track needs the structure decoder (esm3_structure_decoder_v0.pth)")
        decoded = structure_decoder(structure)
        coordinates = _backbone_to_atom37(decoded.backbone[1:-1].detach().float().cpu().numpy(), breaks)
        plddt = decoded.plddt[1:-1].detach().float().cpu().numpy()
        pae = decoded.pae[1:-1, 1:-1].detach().float().cpu().numpy().copy()
        ptm = float(decoded.ptm)
        plddt = plddt.copy()
        plddt[breaks] = np.nan
        pae[breaks, :] = np.nan
        pae[:, breaks] = np.nan
    elif t.coordinates is not None and bool(torch.isfinite(t.coordinates[1:-1]).any()):
        coordinates = t.coordinates[1:-1].float().numpy()
        coordinates = np.where(np.isinf(coordinates), np.nan, coordinates)  # the tensors' missing atom (+inf) is NaN

    ss8 = None
    if keep["secondary_structure"] is not None:
        ss8 = tok.secondary_structure.decode(keep["secondary_structure"])
    sasa = None if keep["sasa"] is None else tok.sasa.decode(keep["sasa"])
    function_annotations = None
    if keep["function"] is not None:
        if function_decoder is None:
            raise InputError(
                "decoding the function track needs the function token decoder (esm3_function_decoder_v0.pth)"
            )
        function_annotations = tuple(
            decode_function_tokens(keep["function"], function_decoder, tok.function_vocabulary)
        )
    residue_annotations = None
    if keep["residue_annotations"] is not None:
        residue_annotations = tuple(tok.residue.decode(keep["residue_annotations"]))

    extra: dict[str, Any] = {}
    if template is not None and len(template) == n:
        # Without a decoded sequence the record has one chain (no '|'), so a complex's ids cannot be kept.
        n_chains = 1 if sequence is None else sequence.count("|") + 1
        same_chains = template.n_chains == n_chains
        extra = {
            "name": template.name,
            "chain_ids": template.chain_ids if same_chains else None,
            "residue_index": template.residue_index,
            "insertion_code": template.insertion_code,
        }
    if name is not None:
        extra["name"] = name
    try:
        return Protein(
            sequence=sequence,
            coordinates=coordinates,
            secondary_structure=ss8,
            sasa=sasa,
            function_annotations=function_annotations,
            residue_annotations=residue_annotations,
            plddt=plddt,
            ptm=ptm,
            pae=pae,
            **extra,
        )
    except OpenESM3Error as exc:
        raise InputError(f"decoded tokens do not make a valid protein: {exc}") from None


def _backbone_to_atom37(backbone: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """[L, 3, 3] N/CA/C -> [L, 37, 3] with O placed from the backbone (spec §12) within each chain; NaN at breaks."""
    coords = np.full((backbone.shape[0], RC.N_ATOM37, 3), np.nan, dtype=np.float32)
    coords[:, list(RC.BACKBONE_ATOMS)] = backbone
    coords[breaks] = np.nan
    bounds = [-1, *breaks.tolist(), backbone.shape[0]]
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end - start > 1:
            chain = ProteinChain.from_atom37(coords[start + 1 : end]).infer_oxygen()
            coords[start + 1 : end] = chain.atom37
    return coords
