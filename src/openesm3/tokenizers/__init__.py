"""Tokenizers of every ESM3 track, with ids identical to the official vocabularies (spec §1-3).

Each track has a small class with ``encode`` (values -> int64 numpy ids, or a torch tensor with
``as_tensor=True``) and ``decode`` (ids -> values). Function and residue annotations need vocabulary files,
found by :mod:`openesm3.tokenizers.vocabulary`; :mod:`openesm3.tokenizers.build` makes new ones.
"""

from openesm3.tokenizers.annotation_tracks import encode_annotation_tracks, split_annotations
from openesm3.tokenizers.function import FunctionTokenizer
from openesm3.tokenizers.function_decoding import (
    FunctionPredictions,
    FunctionTokenDecoderProtocol,
    annotations_from_predictions,
    decode_function_tokens,
    merge_annotations,
)
from openesm3.tokenizers.residue import ResidueAnnotationTokenizer
from openesm3.tokenizers.sasa import SASATokenizer
from openesm3.tokenizers.sequence import SequenceTokenizer
from openesm3.tokenizers.ss8 import SS8Tokenizer, dssp_to_ss8
from openesm3.tokenizers.structure import StructureTokenizer, apply_sequence_specials
from openesm3.tokenizers.tracks import check_track_lengths
from openesm3.tokenizers.vocabulary import FunctionVocabulary, ResidueAnnotationVocabulary

__all__ = [
    "FunctionPredictions",
    "FunctionTokenDecoderProtocol",
    "FunctionTokenizer",
    "FunctionVocabulary",
    "ResidueAnnotationTokenizer",
    "ResidueAnnotationVocabulary",
    "SASATokenizer",
    "SS8Tokenizer",
    "SequenceTokenizer",
    "StructureTokenizer",
    "annotations_from_predictions",
    "apply_sequence_specials",
    "check_track_lengths",
    "decode_function_tokens",
    "dssp_to_ss8",
    "encode_annotation_tracks",
    "merge_annotations",
    "split_annotations",
]
