"""encode_structure / decode_structure / the token JSON (tiny random networks, real structures from tests/data)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3 import constants as C
from openesm3.config import STRUCTURE_DECODER_TINY, STRUCTURE_ENCODER_TINY
from openesm3.errors import InputError
from openesm3.generation.structure_tokens import (
    StructureTokens,
    decode_structure,
    encode_structure,
    infer_oxygen,
    normalize_coordinates,
    tokens_from_json,
    tokens_to_json,
)
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.protein import Protein
from openesm3.structure import ProteinChain, ProteinComplex, load_chain, load_structure
from tests.conftest import TEST_DATA

STRUCTURES = TEST_DATA / "structures"


def _random(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim == 1 else 1 / math.sqrt(p.shape[-1])))
            if name.endswith("norm.weight"):
                p.add_(1.0)
    return model.eval()


@pytest.fixture(scope="module")
def encoder() -> StructureEncoder:
    model = _random(StructureEncoder(STRUCTURE_ENCODER_TINY), 0)
    assert isinstance(model, StructureEncoder)
    with torch.no_grad():  # codes around the encoder's outputs, so that tokens vary
        z, valid = model.encode_features(torch.from_numpy(load_chain(STRUCTURES / "1a62.pdb.gz").atom37)[None])
        z = z[valid]
        model.codebook.embeddings.copy_(
            z.mean(0) + z.std(0) * torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
        )
    return model


@pytest.fixture(scope="module")
def decoder() -> StructureDecoder:
    model = _random(StructureDecoder(STRUCTURE_DECODER_TINY), 2)
    assert isinstance(model, StructureDecoder)
    return model


def test_normalize_coordinates_is_a_rigid_motion_to_the_mean_frame() -> None:
    chain = load_chain(STRUCTURES / "1a62.pdb.gz")
    coords = torch.from_numpy(chain.atom37)
    out = normalize_coordinates(coords)
    assert torch.equal(torch.isnan(out), torch.isnan(coords))
    present = torch.from_numpy(chain.atom37_mask)
    d_in = torch.cdist(coords[present].double(), coords[present].double())
    d_out = torch.cdist(out[present].double(), out[present].double())
    assert (d_in - d_out).abs().max() < 1e-3  # distances kept
    bb = out[:, :3][torch.isfinite(out[:, :3]).all(-1).all(-1)]
    mean_n, mean_ca, mean_c = bb.double().mean(0)
    assert mean_ca.abs().max() < 1e-3  # origin at the mean CA
    assert mean_c[1:].abs().max() < 1e-3 and mean_c[0] < 0  # mean C on the -x axis
    assert abs(mean_n[2]) < 1e-3  # mean N in the xy-plane
    inf = coords.clone()
    inf[5, 7] = float("inf")
    assert torch.isinf(normalize_coordinates(inf)[5, 7]).all()
    nothing = torch.full((4, 37, 3), float("nan"))
    assert torch.isnan(normalize_coordinates(nothing)).all()


def test_infer_oxygen_geometry() -> None:
    chain = load_chain(STRUCTURES / "1a62.pdb.gz")
    bb = torch.from_numpy(chain.atom37[:, :3])
    o = infer_oxygen(bb)
    assert torch.isnan(o[-1]).all()
    real = torch.from_numpy(chain.atom37[:, 4])
    ok = torch.isfinite(real).all(-1) & torch.isfinite(o).all(-1)
    assert ok.sum() > 100
    assert ((o[ok] - real[ok]).norm(dim=-1).median()) < 0.2  # ideal O is where crystal O is (~0.1 A)
    assert ((o - bb[:, 2]).norm(dim=-1)[:-1] - 1.231).abs().max() < 0.01  # C=O bond length


def test_complex_layout_chainbreaks_and_metadata(encoder: StructureEncoder) -> None:
    cx = load_structure(STRUCTURES / "1AM7.pdb.gz")
    assert len(cx.chains) >= 2
    tokens = encode_structure(cx, encoder)
    row = tokens.tokens
    n = [len(c) for c in cx.chains]
    assert row[0] == C.STRUCTURE_BOS and row[-1] == C.STRUCTURE_EOS
    assert len(row) == sum(n) + len(n) + 1
    assert np.flatnonzero(row == C.STRUCTURE_CHAINBREAK).tolist() == [
        sum(n[: k + 1]) + k + 1 for k in range(len(n) - 1)
    ]
    assert tokens.chain_ids == cx.chain_ids
    for chain, ours in zip(cx.chains, tokens.chains):
        assert np.array_equal(ours.residue_index, chain.residue_index) and ours.sequence == chain.sequence
    # the first chain alone gets other codes at its interface: the complex is encoded as one structure
    alone = encode_structure(cx.chains[0], encoder)
    assert alone.tokens.shape[0] == n[0] + 2
    assert not np.array_equal(alone.chains[0].codes, tokens.chains[0].codes)


def test_batches_match_singles_and_missing_backbone(encoder: StructureEncoder) -> None:
    chain = load_chain(STRUCTURES / "1H7M.pdb.gz")  # has residues without backbone atoms
    small = load_chain(STRUCTURES / "localunfolding__trp-cage-cage__2JOF_A.pdb.gz")  # 20 residues
    items = [load_structure(STRUCTURES / "2ZTA.pdb.gz"), chain, small, load_chain(STRUCTURES / "1a62.pdb.gz")]
    batched = encode_structure(items, encoder, batch_size=3)
    for item, got in zip(items, batched):
        assert np.array_equal(encode_structure(item, encoder).tokens, got.tokens)
    mask = batched[1].chains[0].residue_mask
    assert not mask.all() and np.array_equal(mask, chain.atom37_mask[:, :3].all(-1))
    assert len(set(batched[3].chains[0].codes.tolist())) > 5


def test_encode_errors(encoder: StructureEncoder) -> None:
    chain = load_chain(STRUCTURES / "1a62.pdb.gz")
    two = chain[:2]
    with pytest.raises(InputError, match="only 2 residue"):
        encode_structure(two, encoder)
    empty = ProteinChain.from_atom37(np.full((10, 37, 3), np.nan, np.float32), chain_id="B", name="ghost")
    with pytest.raises(InputError, match="chain 'B' has no residue with N, CA and C"):
        encode_structure(ProteinComplex((chain, empty), "mix"), encoder)
    with pytest.raises(InputError, match="exceed the limit of 100 tokens set by max_length"):
        encode_structure(chain, encoder, max_length=100)
    assert len(encode_structure(chain, encoder, max_length=None).tokens) == len(chain) + 2


def test_decode_structure_round_trip(encoder: StructureEncoder, decoder: StructureDecoder) -> None:
    cx = load_structure(STRUCTURES / "1AM7.pdb.gz")
    tokens = encode_structure(cx, encoder)
    out = decode_structure(tokens, decoder)
    assert out.structure.chain_ids == cx.chain_ids
    n = len(cx)
    assert out.plddt.shape == (n,) and out.pae.shape == (n, n) and 0 < out.ptm < 1
    for ours, original in zip(out.structure.chains, cx.chains):
        assert np.array_equal(ours.residue_index, original.residue_index) and ours.sequence == original.sequence
        assert ours.atom37_mask[:, :3].all() and ours.atom37_mask[:-1, 4].all() and not ours.atom37_mask[-1, 4]
        assert not ours.atom37_mask[:, 5:].any() and not ours.atom37_mask[:, 3].any()
    first = out.structure.chains[0]
    assert np.allclose(first.b_factor[:, 1], out.plddt[: len(first)])  # pLDDT in the B-factor column
    # the row as the decoder sees it, straight from the model
    with torch.no_grad():
        raw = decoder(torch.from_numpy(tokens.tokens)[None])
    assert abs(raw.ptm.item() - out.ptm) < 1e-6
    keep = tokens.tokens[1:-1] < 4096
    assert np.allclose(raw.plddt[0, 1:-1].numpy()[keep], out.plddt)
    # a raw row works too (chains split at CHAINBREAK, named A, B, ...)
    wrapped = StructureTokens.from_token_row(tokens.tokens)
    assert wrapped.chain_ids == tuple("ABCDEFGH"[: len(cx.chains)])
    assert np.allclose(decode_structure(wrapped, decoder).plddt, out.plddt, atol=1e-6)


def test_decode_batches_and_errors(encoder: StructureEncoder, decoder: StructureDecoder) -> None:
    items = encode_structure([load_chain(STRUCTURES / n) for n in ("1a62.pdb.gz", "1fxd.pdb.gz")], encoder)
    batched = decode_structure(items, decoder)
    for item, got in zip(items, batched):
        alone = decode_structure(item, decoder)
        assert np.abs(alone.plddt - got.plddt).max() < 1e-4 and abs(alone.ptm - got.ptm) < 1e-4
    with pytest.raises(InputError, match="must start with BOS"):
        StructureTokens.from_token_row([5, 1, 2, C.STRUCTURE_EOS])
    with pytest.raises(InputError, match="last token must be EOS"):
        StructureTokens.from_token_row([C.STRUCTURE_BOS, 1, 2, 3])
    with pytest.raises(InputError, match="out of range"):
        StructureTokens.from_token_row([C.STRUCTURE_BOS, 1, 5000, C.STRUCTURE_EOS])
    with pytest.raises(InputError, match="is not a code"):
        StructureTokens.from_token_row([C.STRUCTURE_BOS, 1, C.STRUCTURE_MASK, C.STRUCTURE_EOS])
    long = StructureTokens.from_token_row([C.STRUCTURE_BOS] + [1] * 2048 + [C.STRUCTURE_EOS])
    with pytest.raises(InputError, match="exceed the decoder context of 2048"):
        decode_structure(long, decoder)


def test_token_json_round_trip_and_errors(encoder: StructureEncoder) -> None:
    items = encode_structure([load_structure(STRUCTURES / "1AM7.pdb.gz"), load_chain(STRUCTURES / "1fxd.pdb.gz")],
                             encoder)  # fmt: skip
    data = tokens_to_json(items, model={"model_type": "structure_encoder"})
    back = tokens_from_json(data, source="t.json")
    for a, b in zip(items, back):
        assert np.array_equal(a.tokens, b.tokens) and a.chain_ids == b.chain_ids and a.name == b.name
        for ca, cb in zip(a.chains, b.chains):
            assert np.array_equal(ca.residue_index, cb.residue_index) and ca.sequence == cb.sequence
            assert np.array_equal(ca.residue_mask, cb.residue_mask) and np.array_equal(
                ca.insertion_code, cb.insertion_code
            )
    only_row = {**data, "structures": [{"name": "x", "tokens": data["structures"][0]["tokens"]}]}
    assert tokens_from_json(only_row)[0].chain_ids == ("A", "B", "C")[: len(items[0].chains)]
    bad = {**data, "structures": [{"name": "x", "tokens": [4098, 1, 2]}]}
    with pytest.raises(InputError, match=r"t\.json: structures\[0\] \(x\).*last token must be EOS"):
        tokens_from_json(bad, source="t.json")
    mismatch = {**data, "structures": [dict(data["structures"][1], tokens=[4098, 1, 4097])]}
    with pytest.raises(InputError, match="do not match the chains"):
        tokens_from_json(mismatch, source="t.json")
    wrong_code = {**data, "structures": [{"chains": [{"chain_id": "A", "codes": [1, 4096, 3]}]}]}
    with pytest.raises(InputError, match=r"chains\[0\].*code 4096 at residue 2"):
        tokens_from_json(wrong_code, source="t.json")
    with pytest.raises(InputError, match="not an OpenESM3 structure-token file"):
        tokens_from_json({"format": "other"}, source="t.json")


def test_default_chain_ids_past_z_are_those_of_protein_and_fit_pdb(decoder: StructureDecoder) -> None:
    # The token path named the 27th chain C26 (which no PDB file can hold) where Protein names it 0.
    n = 30
    row = [C.STRUCTURE_BOS] + sum(([C.STRUCTURE_CHAINBREAK, k] for k in range(1, n)), [0]) + [C.STRUCTURE_EOS]
    expected = tuple(chain_id for chain_id, _, _ in Protein.from_sequence("|".join("G" * n)).chain_segments())
    assert expected[25:28] == ("Z", "0", "1")
    wrapped = StructureTokens.from_token_row(row)
    assert wrapped.chain_ids == expected
    from_json = tokens_from_json({**tokens_to_json([wrapped]), "structures": [{"chains": [
        {"codes": [k]} for k in range(n)]}]})  # fmt: skip
    assert from_json[0].chain_ids == expected
    text = decode_structure(wrapped, decoder).structure.to_pdb_string()
    assert [line[21] for line in text.splitlines() if line.startswith("ATOM") and line[12:16] == " CA "] == list(
        expected
    )


def test_token_json_of_a_blank_pdb_chain_id_reads_back(encoder: StructureEncoder, tmp_path: Path) -> None:
    # tokenize-structure wrote chain_id "" for a PDB file without chain ids, which detokenize then refused.
    with gzip.open(STRUCTURES / "1a62.pdb.gz", "rt") as handle:
        lines = handle.read().splitlines()
    blank = tmp_path / "blank.pdb"
    blank.write_text("\n".join(line[:21] + " " + line[22:] for line in lines if line.startswith("ATOM")) + "\n")
    items = encode_structure(load_structure(blank), encoder)
    assert items.chain_ids == ("",)
    back = tokens_from_json(tokens_to_json([items]))[0]
    assert back.chain_ids == ("",) and np.array_equal(back.tokens, items.tokens)


@pytest.mark.parametrize("batch_size", [0, -1, True, 2.0])
def test_a_bad_batch_size_is_an_input_error(encoder: StructureEncoder, decoder: StructureDecoder, batch_size) -> None:
    # It was a ValueError (an "internal error" to the CLIs), and True or 2.0 were accepted as 1 and 2.
    chain = load_chain(STRUCTURES / "1a62.pdb.gz")
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        encode_structure(chain, encoder, batch_size=batch_size)
    tokens = encode_structure(chain, encoder)
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        decode_structure(tokens, decoder, batch_size=batch_size)


def test_encode_limits_are_inclusive(encoder: StructureEncoder) -> None:
    # Three residues with a backbone are the documented minimum; a token row of exactly max_length fits.
    chain = load_chain(STRUCTURES / "1a62.pdb.gz")
    assert len(encode_structure(chain[:3], encoder).tokens) == 5
    n = len(chain)
    assert len(encode_structure(chain, encoder, max_length=n + 2).tokens) == n + 2
    with pytest.raises(InputError, match=f"{n + 2} tokens exceed the limit of {n + 1} tokens"):
        encode_structure(chain, encoder, max_length=n + 1)


def test_normalize_coordinates_leaves_a_protein_without_a_backbone_unchanged() -> None:
    # No residue has N, CA and C: there is no mean frame (origin 0), so the atoms are returned as they are.
    coords = torch.randn(5, 37, 3)
    coords[:, 1] = float("nan")  # no CA anywhere
    out = normalize_coordinates(coords)
    assert torch.equal(out.nan_to_num(123.0), coords.nan_to_num(123.0))


def test_the_default_limit_is_the_models_context_and_a_given_one_is_the_callers(encoder: StructureEncoder) -> None:
    chain = load_chain(STRUCTURES / "1a62.pdb.gz")
    n = 4100
    reps = math.ceil(n / len(chain))
    long = ProteinChain.from_atom37(
        np.tile(chain.atom37, (reps, 1, 1))[:n], atom37_mask=np.tile(chain.atom37_mask, (reps, 1))[:n]
    )
    # by default, the 2048-token context of the models, named as theirs
    with pytest.raises(InputError, match="4102 tokens exceed the context of 2048 tokens of the structure decoder"):
        encode_structure(long, encoder)
    with pytest.raises(InputError, match="2049 tokens exceed the context of 2048 tokens"):
        encode_structure(long[:2047], encoder)
    # a limit the caller gives, above the context too, is the caller's
    with pytest.raises(InputError, match="4102 tokens exceed the limit of 4096 tokens set by max_length"):
        encode_structure(long, encoder, max_length=4096)
    with pytest.raises(InputError, match="exceed the limit of 0 tokens set by max_length"):  # None is no limit, not 0
        encode_structure(long[:3], encoder, max_length=0)
