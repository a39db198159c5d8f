"""Structure encoder parity with the official implementation on degenerate backbones: residues sharing one CA
position (a duplicated residue in a file, or coordinates so far from the origin that fp32 rounds neighbours onto
one grid point). Then the centre's cost-0 tie with another residue can put that residue at node 0."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from openesm3.checkpoints.official import official_to_ours, structure_encoder_key_map
from openesm3.config import StructureEncoderConfig
from openesm3.generation.structure_tokens import normalize_coordinates
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.structure import load_chain
from tests.conftest import TEST_DATA

CONFIG = StructureEncoderConfig(d_model=64, v_heads=8, n_layers=2, d_out=16)


def _encoders(esm_reference: Any) -> tuple[torch.nn.Module, StructureEncoder]:
    from esm.models.vqvae import StructureTokenEncoder  # noqa: PLC0415

    ref = StructureTokenEncoder(d_model=CONFIG.d_model, n_heads=1, v_heads=CONFIG.v_heads, n_layers=CONFIG.n_layers,
                                d_out=CONFIG.d_out, n_codes=CONFIG.n_codes)  # fmt: skip
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1.0 / math.sqrt(p.shape[-1])))
            if p.ndim == 1 and "norm" in name:
                p.add_(1.0)
        ref.codebook.embeddings.copy_(torch.randn(CONFIG.n_codes, CONFIG.d_out, generator=g))
    ours = StructureEncoder(CONFIG).eval()
    ours.load_state_dict(official_to_ours(ref.state_dict(), structure_encoder_key_map(CONFIG), source="reference"))
    return ref.eval(), ours


def test_residues_sharing_a_ca_position_encode_as_the_reference(esm_reference: Any) -> None:
    """Relative positions are offsets from node 0, as in the reference: node 0 is the centre itself except when
    another residue has the very same CA. They were offsets from the centre, so such residues got other codes."""
    ref, ours = _encoders(esm_reference)
    base = load_chain(TEST_DATA / "structures" / "1a62.pdb.gz", "A").atom37[:60]
    duplicated = np.concatenate([base[:21], base[20:21], base[21:]])  # residue 20 twice
    shared_ca = base.copy()
    shared_ca[31, 1] = shared_ca[30, 1]
    far = base + np.float32(-1e7)  # fp32 rounds to 1 A: many CAs coincide, some with C
    for name, coords in (("duplicated", duplicated), ("shared_ca", shared_ca), ("far", far)):
        x = normalize_coordinates(torch.from_numpy(coords))[None]
        residue_index = torch.arange(1, x.shape[1] + 1)[None]
        with torch.no_grad():
            expected = ref.encode(x, residue_index=residue_index)[1]
            got = ours.encode(x, residue_index=residue_index)
        mismatch = torch.nonzero(got != expected).flatten().tolist()
        assert not mismatch, f"{name}: codes differ at {mismatch}"
