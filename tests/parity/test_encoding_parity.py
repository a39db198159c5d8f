"""Protein -> ProteinTensor against the official ``ESM3.encode`` (ESMProtein -> ESMProteinTensor, spec §10.2) on
real proteins: identical ids on every token track the SDK fills."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from openesm3.annotations import FunctionAnnotation
from openesm3.generation.encoding import ProteinTokenizers, encode_protein
from openesm3.protein import Protein
from tests.conftest import TEST_DATA

FILES = ("1a62", "107L", "1orc", "2ZTA", "1AM7", "1IR3", "3GQS_A", "1fxd")


@pytest.fixture(scope="module")
def reference_model(esm_reference: Any, reference_tokenizers: Any) -> Any:
    """A tiny official ESM3 (encode only uses its tokenizers)."""
    from esm.models.esm3 import ESM3  # noqa: PLC0415

    return ESM3(d_model=64, n_heads=4, v_heads=4, n_layers=1, structure_encoder_fn=None, structure_decoder_fn=None,
                function_decoder_fn=None, tokenizers=reference_tokenizers).eval()  # fmt: skip


def _annotations(vocab_root: Any, length: int, rng: np.random.Generator) -> list[FunctionAnnotation]:
    tokenizers = ProteinTokenizers(vocabulary_dir=vocab_root)
    vocab = tokenizers.function_vocabulary
    out = []
    for _ in range(int(rng.integers(1, 5))):
        start = int(rng.integers(1, length))
        end = int(rng.integers(start, length + 1))
        if rng.random() < 0.5:
            ipr = vocab.interpro_ids[int(rng.integers(len(vocab.interpro_ids)))]
            if not vocab.interpro_keywords.get(ipr):  # the SDK crashes on ids without keywords (docs/tokenizers.md)
                continue
            out.append(FunctionAnnotation(ipr, start, end))
        else:
            out.append(FunctionAnnotation(vocab.keywords[int(rng.integers(vocab.n_keywords))], start, end))
    return out


def test_track_tokens_match_the_sdk(reference_model: Any, oracle_workdir: Any) -> None:
    from esm.sdk.api import ESMProtein  # noqa: PLC0415
    from esm.sdk.api import FunctionAnnotation as RefAnnotation  # noqa: PLC0415

    tokenizers = ProteinTokenizers(vocabulary_dir=oracle_workdir.root)
    rng = np.random.default_rng(0)
    compared = 0
    for name in FILES:
        protein = Protein.from_structure(TEST_DATA / "structures" / f"{name}.pdb.gz", with_annotations=True)
        seq = list(protein.sequence)
        for i in rng.choice(len(seq), size=len(seq) // 5, replace=False):
            if seq[i] != "|":
                seq[i] = "_"  # masked positions
        protein = protein.replace(
            sequence="".join(seq),
            function_annotations=_annotations(oracle_workdir.root, len(protein), rng),
            coordinates=None,
        )
        ours = encode_protein(protein, tokenizers).filled()
        ref_input = ESMProtein(
            sequence=protein.sequence,
            secondary_structure=protein.secondary_structure,
            sasa=[None if np.isnan(v) else float(v) for v in protein.sasa],
            function_annotations=[RefAnnotation(a.label, a.start, a.end) for a in protein.function_annotations],
        )
        with oracle_workdir.active():
            ref = reference_model.encode(ref_input)
        for track in ("sequence", "secondary_structure", "sasa", "function", "residue_annotations"):
            theirs = getattr(ref, track)
            assert theirs is not None, track
            assert torch.equal(getattr(ours, track), theirs.to(torch.int64)), (name, track)
        assert ref.structure is None  # no coordinates: both leave the structure track to the default
        compared += 1
    assert compared == len(FILES)


def test_structure_tokens_match_the_sdk(esm_reference: Any, reference_tokenizers: Any, tmp_path: Any) -> None:
    """Coordinates -> structure tokens through our bundle (official-format encoder file loaded by our loader)
    against ``ESM3.encode`` with the official encoder holding the same random weights: identical codes on real
    chains and a complex; at the chain break we write 4100 (documented; the trunk writes 4100 there anyway)."""
    import math  # noqa: PLC0415

    from esm.models.esm3 import ESM3  # noqa: PLC0415
    from esm.models.vqvae import StructureTokenEncoder  # noqa: PLC0415
    from esm.sdk.api import ESMProtein  # noqa: PLC0415

    from openesm3.generation.bundle import ModelBundle  # noqa: PLC0415

    torch.manual_seed(0)
    ref_encoder = StructureTokenEncoder(d_model=1024, n_heads=1, v_heads=128, n_layers=2, d_out=128, n_codes=4096)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in ref_encoder.named_parameters():  # every parameter random (norms around 1)
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1.0 / math.sqrt(p.shape[-1])))
            if p.ndim == 1 and "norm" in name:
                p.add_(1.0)
    ref_encoder.eval()
    weights = tmp_path / "data" / "weights"
    weights.mkdir(parents=True)
    torch.save(ref_encoder.state_dict(), weights / "esm3_structure_encoder_v0.pth")
    bundle = ModelBundle(tmp_path)
    reference = ESM3(
        d_model=64, n_heads=4, v_heads=4, n_layers=1, structure_encoder_fn=lambda device: ref_encoder,
        structure_decoder_fn=None, function_decoder_fn=None, tokenizers=reference_tokenizers,
    ).eval()  # fmt: skip
    for name in ("1a62", "2ZTA", "3GQS_A"):
        protein = Protein.from_structure(TEST_DATA / "structures" / f"{name}.pdb.gz")
        ours = bundle.encode(protein)
        with torch.no_grad():
            ref = reference.encode(ESMProtein(sequence=protein.sequence, coordinates=torch.tensor(protein.coordinates)))
        breaks = torch.from_numpy(protein.chain_break_positions()) + 1
        assert bool((ours.structure[breaks] == 4100).all())
        same = ours.structure == ref.structure
        same[breaks] = True
        assert bool(same.all()), (name, torch.nonzero(~same).flatten().tolist())
        finite = torch.isfinite(ref.coordinates)
        assert torch.equal(finite, torch.isfinite(ours.coordinates))
        # Our frame sums in float64, the SDK's in float32 (structure.chain.ProteinChain.normalization_frame): the
        # two frames differ by a small rigid motion (up to ~1e-3 A here), which geometric attention cannot see.
        torch.testing.assert_close(ours.coordinates[finite], ref.coordinates[finite], atol=1e-2, rtol=0)
        # Up to that motion the coordinates agree: every interatomic distance to 1e-4 A.
        ours_xyz = ours.coordinates[finite.all(-1)].double()
        ref_xyz = ref.coordinates[finite.all(-1)].double()
        torch.testing.assert_close(torch.cdist(ours_xyz, ours_xyz), torch.cdist(ref_xyz, ref_xyz), atol=1e-4, rtol=0)
