"""ESM3 trunk: outputs, defaults, padding, geometric invariance, embed(), taxonomy, presets, bf16."""

from __future__ import annotations

import math

import pytest
import torch

from openesm3 import constants as C
from openesm3.config import ESM3_7B, ESM3_98B, ESM3_SM_OPEN_V1, ESM3_TINY, ESM3Config
from openesm3.layers.block import set_block_dropout
from openesm3.models.esm3 import ESM3
from openesm3.models.esm3_inputs import prepare_inputs
from openesm3.models.taxonomy import taxonomy_logit_targets
from tests.conftest import shared_data
from tests.esm3_testing import real_backbone


def randomized(config: ESM3Config, seed: int = 0) -> ESM3:
    """A model with every parameter random (LayerNorms and geometric scales included)."""
    model = ESM3(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(generator=g)
            if p.ndim == 1:
                p.mul_(0.5).add_(1.0)
            elif p.shape[-1] > 1:
                p.mul_(1.0 / math.sqrt(p.shape[-1]))
    return model


def tokens(b: int, length: int, g: torch.Generator) -> torch.Tensor:
    t = torch.randint(4, 24, (b, length), generator=g)
    t[:, 0], t[:, -1] = C.SEQUENCE_BOS, C.SEQUENCE_EOS
    return t


FIELDS = {
    "sequence_logits": (C.SEQUENCE_EMBED_DIM,),
    "structure_logits": (C.STRUCTURE_N_CODES,),
    "secondary_structure_logits": (C.SS8_VOCAB_SIZE,),
    "sasa_logits": (C.SASA_VOCAB_SIZE,),
    "function_logits": (C.FUNCTION_DEPTH, C.FUNCTION_VOCAB_SIZE),
    "residue_logits": (C.RESIDUE_VOCAB_SIZE,),
    "embeddings": (ESM3_TINY.d_model,),
}


def test_output_fields_shapes_and_defaults_broadcast() -> None:
    model = randomized(ESM3_TINY)
    g = torch.Generator().manual_seed(0)
    seq = tokens(3, 12, g)
    with torch.no_grad():
        out = model(sequence_tokens=seq, ss8_tokens=torch.full((1, 12), 4))  # batch 1 broadcasts to 3
    for name, tail in FIELDS.items():
        assert tuple(getattr(out, name).shape) == (3, 12, *tail), name
    assert out.hidden_states is None and out.taxonomy_logits is None
    # Structure-only input: L from the structure track, sequence defaults to all <mask>.
    with torch.no_grad():
        only_structure = model(structure_tokens=torch.randint(0, 4096, (2, 9), generator=g))
    assert only_structure.sequence_logits.shape == (2, 9, 64)


def test_defaults_equal_explicit_reference_defaults() -> None:
    """Missing tracks behave exactly like the reference's defaults passed explicitly (spec §4.1)."""
    model = randomized(ESM3_TINY, seed=1)
    seq = tokens(2, 10, torch.Generator().manual_seed(1))
    explicit = {
        "structure_tokens": torch.full((2, 10), C.STRUCTURE_MASK),
        "ss8_tokens": torch.zeros(2, 10, dtype=torch.long),
        "sasa_tokens": torch.zeros(2, 10, dtype=torch.long),
        "function_tokens": torch.zeros(2, 10, 8, dtype=torch.long),
        "residue_annotation_tokens": torch.zeros(2, 10, 16, dtype=torch.long),
        "average_plddt": torch.ones(2, 10),
        "per_res_plddt": torch.zeros(2, 10),
        "chain_id": torch.zeros(2, 10, dtype=torch.long),
        "structure_coords": torch.full((2, 10, 3, 3), float("nan")),
    }
    with torch.no_grad():
        a = model(sequence_tokens=seq)
        b = model(sequence_tokens=seq, **explicit)
        c = model(sequence_tokens=seq, average_plddt=1.0)  # scalar form
        d = model(sequence_tokens=seq, average_plddt=torch.ones(2))  # one value per protein
    for other in (b, c, d):
        assert torch.equal(a.sequence_logits, other.sequence_logits)


def test_structure_specials_follow_the_sequence() -> None:
    seq = torch.tensor([[0, 5, 31, 6, 2, 1]])
    structure = torch.tensor([[7, -1, 9, 10, 11, 12]])
    inputs = prepare_inputs(ESM3_TINY, torch.device("cpu"), sequence_tokens=seq, structure_tokens=structure)
    assert inputs.structure_tokens.tolist() == [
        [C.STRUCTURE_BOS, C.STRUCTURE_MASK, C.STRUCTURE_CHAINBREAK, 10, C.STRUCTURE_EOS, C.STRUCTURE_PAD]
    ]
    assert inputs.padding is not None and inputs.padding.tolist() == [[False] * 5 + [True]]


def test_padded_batch_rows_equal_single_runs_and_switch_restores_reference_behaviour() -> None:
    model = randomized(ESM3_TINY, seed=2)
    g = torch.Generator().manual_seed(2)
    long, short = tokens(1, 20, g), tokens(1, 11, g)
    coords_long = torch.randn(1, 20, 3, 3, generator=g) * 5
    coords_short = torch.randn(1, 11, 3, 3, generator=g) * 5
    batch = torch.cat([long, torch.cat([short, torch.full((1, 9), C.SEQUENCE_PAD)], dim=1)])
    # Padded coordinates deliberately finite: padding must be masked even when a pad has a frame.
    coords = torch.cat([coords_long, torch.cat([coords_short, torch.randn(1, 9, 3, 3, generator=g)], dim=1)])
    with torch.no_grad():
        alone = model(sequence_tokens=short, structure_coords=coords_short)
        batched = model(sequence_tokens=batch, structure_coords=coords)
        reference_like = model(sequence_tokens=batch, structure_coords=coords, attend_to_padding=True)
        first_alone = model(sequence_tokens=long, structure_coords=coords_long)
    # Equal up to fp32 rounding, which scales with the values: the embeddings reach ~40, where one ulp is 4e-6 and
    # a batch of another shape may take another matrix-product kernel (measured: 2.1e-5 on AVX-512).
    for name in FIELDS:
        got = getattr(batched, name)[1, :11]
        torch.testing.assert_close(got, getattr(alone, name)[0], atol=2e-5, rtol=2e-6, msg=name)
        torch.testing.assert_close(getattr(batched, name)[0], getattr(first_alone, name)[0], atol=2e-5, rtol=2e-6)
    assert (reference_like.sequence_logits[1, :11] - alone.sequence_logits[0]).abs().max() > 1e-3
    assert torch.isfinite(batched.sequence_logits).all()


def test_geometric_attention_is_invariant_to_rigid_motion_and_sensitive_to_one_residue() -> None:
    model = randomized(ESM3_TINY.replace(v_heads=8), seed=3)
    length = 60
    coords = real_backbone(shared_data("dev"), length)
    seq = tokens(1, length, torch.Generator().manual_seed(4))
    angle = 1.1
    rot = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.3, 0.8], [0.3, 0.0, -0.5], [-0.8, 0.5, 0.0]]) * angle)
    moved = coords @ rot.T + torch.tensor([12.0, -40.0, 7.5])
    with torch.no_grad():
        base = model(sequence_tokens=seq, structure_coords=coords)
        same = model(sequence_tokens=seq, structure_coords=moved)
        none = model(sequence_tokens=seq)
        one = coords.clone()
        one[0, 30] += torch.tensor([1.5, -0.5, 2.0])  # move one residue only
        changed = model(sequence_tokens=seq, structure_coords=one)
    scale = base.embeddings.abs().max()
    assert (base.embeddings - same.embeddings).abs().max() <= 1e-5 * scale
    assert (base.embeddings - none.embeddings).abs().max() > 1e-2 * scale  # coordinates matter at all
    assert (base.embeddings - changed.embeddings).abs().max() > 1e-3 * scale
    # A residue with NaN coordinates is frameless: it must not make anything NaN.
    nan = coords.clone()
    nan[0, 5] = float("nan")
    with torch.no_grad():
        assert torch.isfinite(model(sequence_tokens=seq, structure_coords=nan).embeddings).all()


def test_hidden_states_and_embed_from_any_layer() -> None:
    config = ESM3_TINY.replace(n_layers=3)
    model = randomized(config, seed=5)
    g = torch.Generator().manual_seed(5)
    seq = torch.cat([tokens(1, 9, g), torch.full((1, 3), C.SEQUENCE_PAD)], dim=1)
    with torch.no_grad():
        out = model(sequence_tokens=seq, output_hidden_states=True)
        assert out.hidden_states is not None and len(out.hidden_states) == config.n_layers + 1
        assert torch.equal(out.hidden_states[-1], out.embeddings)
        last = model.embed(sequence_tokens=seq)
        assert torch.equal(last.per_residue, out.embeddings) and last.layer == 3
        assert torch.allclose(last.mean, out.embeddings[:, :9].mean(dim=1), atol=1e-6)  # pads excluded
        for layer in (0, 1, 2, -2):
            e = model.embed(sequence_tokens=seq, layer=layer)
            assert torch.equal(e.per_residue, out.hidden_states[layer])
        with pytest.raises(ValueError, match="layer must lie in"):
            model.embed(sequence_tokens=seq, layer=4)
        with pytest.raises(TypeError, match="sequence_tokenz"):
            model.embed(sequence_tokenz=seq)


def test_an_empty_batch_gives_empty_outputs() -> None:
    model = randomized(ESM3_TINY, seed=12)
    seq = torch.zeros(0, 6, dtype=torch.long)
    with torch.no_grad():
        out = model(sequence_tokens=seq, structure_coords=torch.zeros(0, 6, 3, 3))
        plain = model(sequence_tokens=seq)
    for name, trailing in FIELDS.items():
        assert getattr(out, name).shape == (0, 6, *trailing), name
        assert getattr(plain, name).shape == (0, 6, *trailing), name


def test_block_dropout_reaches_every_block_with_and_without_coordinates() -> None:
    # Dropout 1 zeroes every residual branch in training, so the output must be the input embedding; block 0
    # without coordinates takes a shortcut around the geometric branch that must keep the dropout.
    model = randomized(ESM3_TINY, seed=11).train()
    set_block_dropout(model, 1.0)
    g = torch.Generator().manual_seed(11)
    seq = tokens(1, 8, g)
    for coords in (None, torch.randn(1, 8, 3, 3, generator=g) * 4):
        out = model(sequence_tokens=seq, structure_coords=coords, output_hidden_states=True)
        assert out.hidden_states is not None
        torch.testing.assert_close(out.embeddings, out.hidden_states[0], atol=0, rtol=0)
    model.eval()  # eval mode: no dropout, the blocks act again
    out = model(sequence_tokens=seq, output_hidden_states=True)
    assert out.hidden_states is not None and not torch.equal(out.embeddings, out.hidden_states[0])


def test_taxonomy_track_zero_initialised_then_effective() -> None:
    config = ESM3_TINY.replace(n_taxonomy_terms=50, taxonomy_embed_dim=24)
    model = randomized(config, seed=6)
    with torch.no_grad():
        model.taxonomy_embedding.proj.weight.zero_()  # as constructed (randomized() filled it)
    assert torch.equal(ESM3(config).taxonomy_embedding.proj.weight, torch.zeros(config.d_model, 24))
    g = torch.Generator().manual_seed(6)
    seq = tokens(2, 10, g)
    terms = torch.tensor([[3, 17, 49, 0], [50, 0, 0, 0]])
    with torch.no_grad():
        without = model(sequence_tokens=seq)
        with_terms = model(sequence_tokens=seq, taxonomy_tokens=terms)
        assert torch.equal(without.embeddings, with_terms.embeddings)  # zero projection: no change
        assert with_terms.taxonomy_logits is not None and with_terms.taxonomy_logits.shape == (2, 51)
        model.taxonomy_embedding.proj.weight.normal_(generator=g)
        trained = model(sequence_tokens=seq, taxonomy_tokens=terms)
        reordered = model(sequence_tokens=seq, taxonomy_tokens=terms[:, [2, 0, 1, 3]])
    assert (trained.embeddings - without.embeddings).abs().max() > 1e-3  # added at every position
    assert torch.allclose(trained.embeddings, reordered.embeddings, atol=1e-5)  # a bag: order-free
    targets = taxonomy_logit_targets(terms, 50)
    assert targets.sum(1).tolist() == [3.0, 1.0] and targets[:, 0].eq(0).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(trained.taxonomy_logits, targets)
    assert torch.isfinite(loss)


def test_presets_build_with_expected_parameter_counts() -> None:
    with torch.device("meta"):
        open_model = ESM3(ESM3_SM_OPEN_V1)
        big = ESM3(ESM3_7B)
        huge = ESM3(ESM3_98B)
    n_open = sum(p.numel() for p in open_model.parameters())
    assert n_open == 1_401_735_748  # spec §0
    assert len(open_model.state_dict()) == 539
    assert 7.0e9 < sum(p.numel() for p in big.parameters()) < 8.0e9  # paper: 7.7B
    assert 9.5e10 < sum(p.numel() for p in huge.parameters()) < 1.0e11  # paper: 98.5B
    assert huge.taxonomy_embedding is not None and huge.blocks[0].attn.head_dim == 128
    assert open_model.taxonomy_embedding is None
    assert ESM3_SM_OPEN_V1.residual_scale == pytest.approx(1.1547005383792515)


def test_bf16_weights_and_autocast_run_and_keep_geometry_in_fp32() -> None:
    model = randomized(ESM3_TINY.replace(v_heads=8), seed=7)
    g = torch.Generator().manual_seed(7)
    seq = tokens(2, 24, g)
    coords = torch.randn(2, 24, 3, 3, generator=g) * 8
    with torch.no_grad():
        ref = model(sequence_tokens=seq, structure_coords=coords)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = model(sequence_tokens=seq, structure_coords=coords)
        model_bf16 = model.to(torch.bfloat16)
        pure = model_bf16(sequence_tokens=seq, structure_coords=coords)
    assert pure.sequence_logits.dtype == torch.bfloat16
    for out in (auto, pure):
        assert torch.isfinite(out.sequence_logits.float()).all()
        err = (out.sequence_logits.float() - ref.sequence_logits).abs().max()
        assert err < 0.1 * ref.sequence_logits.abs().max(), err


def test_geometric_attention_head_groups_change_nothing(monkeypatch) -> None:
    """Heads are processed in groups to bound memory; the grouping must not change the result."""
    import openesm3.layers.geometric_attention as ga
    from openesm3.geometry.rigid import Rigid

    g = torch.Generator().manual_seed(8)
    layer = ga.GeometricAttention(32, 12).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(generator=g)
    x = torch.randn(2, 40, 32, generator=g)
    coords = torch.randn(2, 40, 3, 3, generator=g) * 6
    coords[1, 7] = float("nan")
    frames, mask = Rigid.from_backbone(coords[:, :, 0], coords[:, :, 1], coords[:, :, 2])
    sequence_id = torch.zeros(2, 40, dtype=torch.long)
    sequence_id[1, 25:] = 1
    outs = []
    for chunk in (1 << 30, 2 * 40 * 40 * 5, 1):  # all heads at once, groups of 5 (uneven), one head at a time
        monkeypatch.setattr(ga, "_CHUNK_ELEMENTS", chunk)
        with torch.no_grad():
            outs.append(layer(x, frames, mask, sequence_id, None))
    assert torch.allclose(outs[0], outs[1], atol=1e-6, rtol=0) and torch.allclose(outs[0], outs[2], atol=1e-6, rtol=0)
