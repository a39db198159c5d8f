"""Structure decoder (tiny config): frames and backbone geometry, pLDDT/PAE/pTM against hand computations, padding,
packing, and clear errors for undecodable token rows."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from openesm3 import constants as C
from openesm3.config import STRUCTURE_DECODER_TINY
from openesm3.errors import InputError
from openesm3.layers.structure_heads import PairwiseHead, pae_and_ptm, pae_bin_centres
from openesm3.models.structure_decoder import StructureDecoder


def randomized_decoder(seed: int = 0) -> StructureDecoder:
    torch.manual_seed(seed)
    model = StructureDecoder(STRUCTURE_DECODER_TINY).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1 / math.sqrt(p.shape[-1])))
            if name.endswith("norm.weight"):
                p.add_(1.0)
        model.pairwise_head.linear2.weight.mul_(6.0)  # peaked PAE distributions
    return model


def tokens(length: int, seed: int = 0, chainbreak_at: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, C.STRUCTURE_N_CODES, (1, length + 2), generator=g)
    t[0, 0], t[0, -1] = C.STRUCTURE_BOS, C.STRUCTURE_EOS
    if chainbreak_at is not None:
        t[0, chainbreak_at] = C.STRUCTURE_CHAINBREAK
    return t


def test_frames_and_backbone_geometry() -> None:
    model = randomized_decoder()
    with torch.no_grad():
        out = model(tokens(30))
    rot = out.frames.rot
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(rot.shape[:-2]), atol=1e-5)
    assert torch.equal(out.affine, torch.cat([rot.flatten(-2), out.frames.trans], -1))
    n, ca, c = out.backbone.unbind(-2)
    assert torch.equal(ca, out.frames.trans)
    assert torch.allclose((n - ca).norm(dim=-1), torch.full(ca.shape[:-1], math.hypot(0.5256, 1.3612)), atol=1e-4)
    assert torch.allclose((c - ca).norm(dim=-1), torch.full(ca.shape[:-1], 1.5251), atol=1e-4)
    assert out.torsions.shape == (1, 32, C.N_TORSIONS, 2)
    # translations are 10x the head output; the x-axis is -a/|a| (a = outputs 3..5)
    raw = model.affine_head.mlp(model.norm(_hidden(model, tokens(30))))
    assert torch.allclose(out.frames.trans, 10 * raw[..., :3], atol=1e-4)
    a = raw[..., 3:6] / (raw[..., 3:6].norm(dim=-1, keepdim=True) + 1e-5)
    assert torch.allclose(rot[..., :, 0], -a / a.norm(dim=-1, keepdim=True), atol=1e-5)


def _hidden(model: StructureDecoder, t: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        x = model.embed(t)
        for block in model.blocks:
            x = block(x)
    return x


def test_confidences_by_hand() -> None:
    model = randomized_decoder(1)
    t = tokens(24, chainbreak_at=10)
    with torch.no_grad():
        out = model(t, return_pair_logits=True)
    assert out.pair_logits is not None and out.pair_logits.shape == (1, 26, 26, 224)
    logits = out.pair_logits[0, :, :, -64:].double().numpy()
    aa = (t[0] < 4096).numpy()
    centres = 0.25 + 0.5 * np.arange(64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    pae = (p * centres).sum(-1)
    pair = aa[:, None] & aa[None, :]
    pae[~pair] = centres.mean()  # 16.0: uniform over bins
    assert np.abs(out.pae[0].numpy() - pae).max() < 1e-4
    assert out.pae[0, 0, 5] == pytest.approx(16.0) and out.pae[0, 10, 3] == pytest.approx(16.0)
    n = aa.sum()
    d0 = 1.24 * (max(n, 19) - 15) ** (1 / 3) - 1.8
    per_pair = (p / (1 + (centres / d0) ** 2)).sum(-1)
    per_row = np.where(aa, (per_pair * pair).sum(-1) / pair.sum(-1).clip(1), 0.0)
    assert out.ptm[0].item() == pytest.approx(per_row.max(), abs=1e-5)
    pl = torch.softmax(out.plddt_logits.double(), -1) @ ((torch.arange(50.0, dtype=torch.float64) + 0.5) / 50)
    assert torch.allclose(out.plddt.double(), pl, atol=1e-6)
    assert ((out.plddt > 0) & (out.plddt < 1)).all()
    with torch.no_grad():
        lean = model(t)
    assert lean.pair_logits is None and torch.allclose(lean.pae, out.pae, atol=1e-5)
    dist, direction, pae_logits = PairwiseHead.split(out.pair_logits)
    assert dist.shape[-1] == 64 and direction.shape[-2:] == (6, 16) and pae_logits.shape[-1] == 64


def test_ptm_of_a_protein_shorter_than_19_residues_uses_d0_of_19() -> None:
    # d0 = 1.24 (max(N, 19) - 15)^(1/3) - 1.8: below 19 residues the formula would give d0 <= 0.
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 10, 10, 64, generator=g) * 2
    residue_mask = torch.ones(1, 10, dtype=torch.bool)
    _, ptm = pae_and_ptm(logits, residue_mask)
    p = torch.softmax(logits.double(), -1)[0]
    d0 = 1.24 * (19 - 15) ** (1 / 3) - 1.8
    per_pair = (p / (1 + (pae_bin_centres().double() / d0) ** 2)).sum(-1)
    assert ptm.item() == pytest.approx(per_pair.mean(-1).max().item(), abs=1e-6)


def test_batched_with_padding_equals_single() -> None:
    model = randomized_decoder(2)
    a, b = tokens(30, 1), tokens(12, 2, chainbreak_at=5)
    batch = torch.full((2, 32), C.STRUCTURE_PAD)
    batch[0], batch[1, :14] = a[0], b[0]
    mask = batch != C.STRUCTURE_PAD
    with torch.no_grad():
        out = model(batch, mask=mask)
        for row, single in ((0, a), (1, b)):
            ref = model(single)
            n = single.shape[1]
            assert (out.backbone[row, :n] - ref.backbone[0]).abs().max() < 1e-4
            assert (out.plddt[row, :n] - ref.plddt[0]).abs().max() < 1e-5
            assert (out.pae[row, :n, :n] - ref.pae[0]).abs().max() < 1e-4
            assert (out.ptm[row] - ref.ptm[0]).abs() < 1e-5


def test_no_attention_row_is_fully_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Padding with a sequence id of its own: a pad query that may see only real keys would see nothing. CPU kernels
    # return 0 for such a row, but fused GPU kernels need not (NaN there reaches real rows through 0 * NaN in the
    # next layer's value product), so pad queries must keep a non-empty row, as in the ESM3 trunk.
    import openesm3.layers.attention as attention_module

    seen = []
    plain = attention_module.attention

    def recording(q, k, v, mask):  # noqa: ANN001, ANN202
        seen.append(mask)
        return plain(q, k, v, mask)

    monkeypatch.setattr(attention_module, "attention", recording)
    model = randomized_decoder(2)
    batch = torch.full((2, 16), C.STRUCTURE_PAD)
    batch[0], batch[1, :8] = tokens(14, 1)[0], tokens(6, 2)[0]
    mask = batch != C.STRUCTURE_PAD
    sequence_id = (~mask).long()  # pads: id 1
    with torch.no_grad():
        out = model(batch, mask=mask, sequence_id=sequence_id)
        alone = model(batch[1:, :8])
    assert seen[0] is not None and all(m is None or bool(m.any(-1).all()) for m in seen)
    assert (out.plddt[1, :8] - alone.plddt[0]).abs().max() < 1e-5


def test_sequence_id_isolates_packed_sequences() -> None:
    model = randomized_decoder(3)
    a, b = tokens(10, 4), tokens(8, 5)
    packed = torch.cat([a, b], dim=1)
    sid = torch.cat([torch.zeros(12), torch.ones(10)]).long()[None]
    with torch.no_grad():
        out = model(packed, sequence_id=sid)
        ref = model(b)
        unpacked = model(packed)
    assert (out.plddt[0, 12:] - ref.plddt[0]).abs().max() < 1e-5
    assert (unpacked.plddt[0, 12:] - ref.plddt[0]).abs().max() > 1e-4  # negative: without it they mix


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.__setitem__((0, 0), 5), "must start with BOS"),
        (lambda t: t.__setitem__((0, -1), 7), "last token must be EOS"),
        (lambda t: t.__setitem__((0, 3), -1), "out of range"),
        (lambda t: t.__setitem__((0, 3), 4101), "out of range"),
    ],
)
def test_bad_tokens_raise_input_errors(edit, message: str) -> None:  # noqa: ANN001
    model = randomized_decoder()
    t = tokens(8)
    edit(t)
    with pytest.raises(InputError, match=message):
        model(t)


def test_too_long_and_missing_eos_in_padded_row() -> None:
    model = randomized_decoder()
    with pytest.raises(InputError, match="exceeds the decoder context"):
        model(tokens(model.config.max_length))
    batch = tokens(8).repeat(2, 1)
    mask = torch.ones_like(batch, dtype=torch.bool)
    mask[1, 7:] = False  # the last real token of row 1 is a code, not EOS
    with pytest.raises(InputError, match="row 1: the last token must be EOS"):
        model(batch, mask=mask)
    with pytest.raises(InputError, match="integers"):
        model(tokens(8).float())


def test_chunked_pair_head_equals_whole() -> None:
    model = randomized_decoder(5)
    t = tokens(40, chainbreak_at=17)
    with torch.no_grad():
        whole = model(t, return_pair_logits=True)  # one pass over all pairs
        model.pair_chunk = 7 * 42  # 7 rows per chunk, the last chunk shorter
        chunked = model(t)
    assert (whole.pae - chunked.pae).abs().max() < 1e-5
    assert (whole.ptm - chunked.ptm).abs().max() < 1e-6


def test_pair_chunk_bounds_the_pairs_of_the_whole_batch() -> None:
    """``pair_chunk`` bounds the pairs computed at once over the batch, not per protein: ``detokenize --batch-size 8``
    of long structures needed 8 times the memory the bound promises (3.7 GB instead of 1.5 GB for 4 x 1537 tokens
    with the bundled decoder). The chunking changes no result."""
    model = randomized_decoder(5)
    t = torch.cat([tokens(40, seed=k, chainbreak_at=17) for k in range(3)])
    sizes: list[int] = []
    head = model.pairwise_head
    hook = head.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[0] * out.shape[1] * out.shape[2]))
    with torch.no_grad():
        whole = model(t)
        sizes.clear()
        model.pair_chunk = 5 * 42  # 5 rows of one protein, but under 2 rows of all 3: one row at a time
        chunked = model(t)
    hook.remove()
    assert sizes and max(sizes) <= model.pair_chunk
    assert (whole.pae - chunked.pae).abs().max() < 1e-5 and (whole.ptm - chunked.ptm).abs().max() < 1e-6


def test_position_features_extension() -> None:
    """Absolute-position features (our tokenizer's extension): off in the official config (no extra weights),
    default positions 0..L-1, and outputs that depend on the positions given."""
    assert not any("position" in k for k in StructureDecoder(STRUCTURE_DECODER_TINY).state_dict())
    torch.manual_seed(0)
    model = StructureDecoder(STRUCTURE_DECODER_TINY.replace(position_features=8)).eval()
    assert model.position_proj.weight.shape == (STRUCTURE_DECODER_TINY.d_model, 16)
    t = tokens(12)
    with torch.no_grad():
        default = model(t).backbone
        explicit = model(t, positions=torch.arange(14)[None]).backbone
        shifted = model(t, positions=torch.arange(14)[None] + 100).backbone
    assert torch.equal(default, explicit)
    assert (shifted - default).abs().max() > 1e-3


def test_chain_frame_mode_composes_relative_frames() -> None:
    torch.manual_seed(0)
    glob = StructureDecoder(STRUCTURE_DECODER_TINY).eval()
    chain = StructureDecoder(STRUCTURE_DECODER_TINY.replace(frame_mode="chain")).eval()
    chain.load_state_dict(glob.state_dict())
    t = tokens(9)
    with torch.no_grad():
        relative = glob(t).frames
        out = chain(t)
    expected = relative.cumulative_compose()
    torch.testing.assert_close(out.frames.trans, expected.trans)
    torch.testing.assert_close(out.affine, expected.to_tensor_12())
    # residue i's frame is residue i-1's frame composed with its own relative transform
    step = expected[0, 3].compose(relative[0, 4])
    torch.testing.assert_close(out.frames.trans[0, 4], step.trans, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="frame_mode"):
        STRUCTURE_DECODER_TINY.replace(frame_mode="spiral")


def test_unknown_sequence_is_the_training_row_without_the_sequence() -> None:
    """Decoding from tokens alone, a sequence-conditioned decoder reads <mask> at the residues and the sequence
    track's own specials beside the structure specials: the row training feeds when it drops the sequence (before,
    <mask> at BOS and EOS too, an input no training step showed it)."""
    from openesm3.models.structure_decoder import unknown_sequence  # noqa: PLC0415
    from openesm3.training.tokenizer.model import decoder_sequence, decoder_tokens  # noqa: PLC0415

    codes = torch.tensor([[5, 17, 4095, 0], [9, 9, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    residue_mask = torch.tensor([[True, False, True, True], [True, True, False, False]])
    tokens, _ = decoder_tokens(codes, residue_mask, mask)  # BOS, codes (STRUCTURE_MASK without a frame), EOS, PAD
    dropped = decoder_sequence(torch.full_like(codes, 7), mask, torch.tensor([False, False]))
    assert torch.equal(unknown_sequence(tokens), dropped)
    complex_row = torch.tensor([[C.STRUCTURE_BOS, 3, C.STRUCTURE_CHAINBREAK, 8, C.STRUCTURE_EOS]])
    expected = [C.SEQUENCE_BOS, C.SEQUENCE_MASK, C.SEQUENCE_CHAINBREAK, C.SEQUENCE_MASK, C.SEQUENCE_EOS]
    assert unknown_sequence(complex_row).tolist() == [expected]


def test_a_sequence_conditioned_decoder_reads_the_unknown_sequence_row_by_default() -> None:
    from openesm3.models.structure_decoder import unknown_sequence  # noqa: PLC0415

    torch.manual_seed(0)
    config = dataclasses.replace(STRUCTURE_DECODER_TINY, sequence_conditioning=True)
    decoder = StructureDecoder(config).eval()
    with torch.no_grad():
        decoder.sequence_embed.weight.normal_()  # distinct rows, so a different sequence row shows
        tokens = torch.tensor([[C.STRUCTURE_BOS, 3, 8, 11, 40, C.STRUCTURE_EOS]])
        default = decoder(tokens).backbone
        explicit = decoder(tokens, sequence_tokens=unknown_sequence(tokens)).backbone
        all_mask = decoder(tokens, sequence_tokens=torch.full_like(tokens, C.SEQUENCE_MASK)).backbone
    assert torch.equal(default, explicit) and not torch.allclose(default, all_mask)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (lambda t: {"mask": torch.ones_like(t)}, "mask: expected a bool tensor"),
        (lambda t: {"mask": torch.ones_like(t, dtype=torch.float32)}, "mask: expected a bool tensor"),
        (lambda t: {"mask": torch.ones(t.shape[1], dtype=torch.bool)}, r"mask: expected shape \[B, L\]"),
        (lambda t: {"mask": torch.ones(1, t.shape[1] - 1, dtype=torch.bool)}, r"mask: expected shape \[B, L\]"),
        (lambda t: {"sequence_id": torch.zeros(t.shape[1], dtype=torch.long)}, r"sequence_id: expected shape"),
        (lambda t: {"sequence_id": torch.zeros(1, t.shape[1] + 1, dtype=torch.long)}, r"sequence_id: expected shape"),
        (
            lambda t: {"embeddings": torch.zeros(1, t.shape[1], 8)},
            r"embeddings: expected shape \[B, L, D\] = \[1, 10, 64\]",
        ),
    ],
)
def test_bad_side_inputs_raise_input_errors_naming_them(kwargs, message: str) -> None:  # noqa: ANN001
    model = randomized_decoder()
    t = tokens(8)
    with pytest.raises(InputError, match=message):
        model(t, **kwargs(t))


def test_side_inputs_with_a_batch_of_one_broadcast() -> None:
    model = randomized_decoder()
    t = tokens(8).repeat(2, 1)
    with torch.no_grad():
        out = model(t, sequence_id=torch.zeros(1, t.shape[1], dtype=torch.long))
    assert out.plddt.shape == t.shape
    with pytest.raises(InputError, match="mask: expected shape"):  # the mask must match the rows it masks
        model(t, mask=torch.ones(1, t.shape[1], dtype=torch.bool))
