"""Tiny random companion networks (structure VQ-VAE encoder/decoder, function decoder) and a tiny function
vocabulary, saved next to a tiny trunk, for the protein-task tests (fold, inverse-fold, predict-function,
generate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from openesm3.checkpoints.format import save_pretrained
from openesm3.config import FunctionDecoderConfig, StructureDecoderConfig, StructureEncoderConfig
from tests.conftest import TEST_DATA
from tests.protein_testing import save_tiny_weights

N_KEYWORDS = 30
KEYWORDS: tuple[str, ...] = ("zinc", "binding", *(f"kw{i:02d}" for i in range(N_KEYWORDS - 2)))

# What the CLI task tests (test_cli_tasks, test_cli_interrupted, test_cli_record) share: two real structures, the
# options of a fast decoding (the tiny networks and vocabulary are the fixtures of tests/integration/conftest.py).
STRUCTURES = TEST_DATA / "structures"
TRP_CAGE = STRUCTURES / "localunfolding__trp-cage-cage__2JOF_A.pdb.gz"  # 20 residues
ZIPPER = STRUCTURES / "2ZTA.pdb.gz"  # chains A, B of 31 residues
FAST = ["--steps", "3", "--quiet"]


def save_tiny_bundle(directory: Path, seed: int = 0, *, function: bool = True) -> Path:
    """Trunk + structure encoder/decoder (+ function decoder) with random weights in ``directory``."""
    from openesm3.models.function_decoder import FunctionDecoder  # noqa: PLC0415
    from openesm3.models.structure_decoder import StructureDecoder  # noqa: PLC0415
    from openesm3.models.structure_encoder import StructureEncoder  # noqa: PLC0415

    root = save_tiny_weights(directory, seed=seed)
    torch.manual_seed(seed)
    networks = {
        "structure_encoder": (StructureEncoder, StructureEncoderConfig(d_model=32, v_heads=4, n_layers=1, d_out=16)),
        "structure_decoder": (StructureDecoder, StructureDecoderConfig(d_model=32, n_heads=2, n_layers=1,
                                                                       pairwise_dim=16)),
    }  # fmt: skip
    if function:
        networks["function_decoder"] = (
            FunctionDecoder,
            FunctionDecoderConfig(d_model=32, n_heads=2, n_layers=1, n_keywords=N_KEYWORDS, n_interpro=5),
        )
    for name, (cls, config) in networks.items():
        save_pretrained(cls(config), config, root / name, model_type=name)
    return root


def save_tiny_vocabulary(directory: Path, seed: int = 0) -> Path:
    """A function vocabulary of 30 keywords (``zinc``, ``binding``, ``kw00`` ...) and 5 InterPro entries."""
    from openesm3.tokenizers import FunctionVocabulary  # noqa: PLC0415
    from openesm3.tokenizers.build import write_function_vocabulary  # noqa: PLC0415
    from openesm3.tokenizers.vocabulary import InterProEntry  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    entries = tuple(InterProEntry(f"IPR{i:06d}", "Domain", f"Entry {i}") for i in range(1, 6))
    vocab = FunctionVocabulary(KEYWORDS, rng.uniform(4, 10, N_KEYWORDS), entries,
                               {e.id: KEYWORDS[:3] for e in entries},
                               rng.standard_normal((8, 8, N_KEYWORDS)).astype(np.float32))  # fmt: skip
    write_function_vocabulary(vocab, directory)
    return directory
