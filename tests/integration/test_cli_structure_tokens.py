"""``openesm3 tokenize-structure`` and ``openesm3 detokenize`` end to end (tiny random weights in our format,
real structures from tests/data), including the errors a user sees."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from openesm3.checkpoints.format import load_pretrained, save_pretrained
from openesm3.cli.main import main
from openesm3.config import STRUCTURE_DECODER_TINY, STRUCTURE_ENCODER_TINY
from openesm3.models.structure_decoder import StructureDecoder
from openesm3.models.structure_encoder import StructureEncoder
from openesm3.structure import load_chain, load_structure
from tests.conftest import TEST_DATA

STRUCTURES = TEST_DATA / "structures"


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    g = torch.Generator().manual_seed(0)
    for cls, cfg, model_type in ((StructureEncoder, STRUCTURE_ENCODER_TINY, "structure_encoder"),
                                 (StructureDecoder, STRUCTURE_DECODER_TINY, "structure_decoder")):  # fmt: skip
        model = cls(cfg)  # type: ignore[arg-type]
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
        save_pretrained(model, cfg, root / model_type, model_type=model_type)
    return root


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_then_detokenize(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = tmp_path / "tokens.json"
    files = [str(STRUCTURES / "1AM7.pdb.gz"), str(STRUCTURES / "1fxd.pdb.gz")]
    code, _, err = run(["tokenize-structure", *files, "--weights", str(weights), "--out", str(tokens)], capsys)
    assert code == 0, err
    data = json.loads(tokens.read_text())
    assert data["format"] == "openesm3-structure-tokens" and data["format_version"] == 1
    sha = hashlib.sha256((weights / "structure_encoder" / "model.safetensors").read_bytes()).hexdigest()
    assert data["model"]["sha256"] == sha and data["model"]["format"] == "openesm3"
    cx = load_structure(files[0])
    first = data["structures"][0]
    assert first["name"] == "1AM7" and [c["chain_id"] for c in first["chains"]] == list(cx.chain_ids)
    assert first["chains"][0]["residue_index"] == cx.chains[0].residue_index.tolist()
    assert first["chains"][0]["sequence"] == cx.chains[0].sequence
    assert first["tokens"][0] == 4098 and first["tokens"][-1] == 4097
    assert first["tokens"].count(4100) == len(cx.chains) - 1
    assert "1AM7: chains" in err

    out_dir = tmp_path / "decoded"
    conf = tmp_path / "conf.json"
    code, out, err = run(["detokenize", str(tokens), "--weights", str(weights), "--out", str(out_dir),
                          "--confidence", str(conf)], capsys)  # fmt: skip
    assert code == 0, err
    confidence = json.loads(conf.read_text())
    for line, name in zip(out.strip().splitlines(), ("1AM7", "1fxd")):
        assert line.startswith(f"{name}\tpTM {confidence[name]['ptm']:.4f}")
    decoded = load_structure(out_dir / "1AM7.pdb")
    assert decoded.chain_ids == cx.chain_ids
    for ours, original in zip(decoded.chains, cx.chains):
        assert np.array_equal(ours.residue_index, original.residue_index)
    plddt = np.concatenate([c.b_factor[:, 1] for c in decoded.chains])
    assert np.allclose(plddt, confidence["1AM7"]["plddt"], atol=0.006)  # PDB keeps 2 decimals
    assert len(confidence["1fxd"]["pae"]) == len(load_chain(files[1]))

    # one structure to an mmCIF file
    single = tmp_path / "one.json"
    run(["tokenize-structure", files[1], "--weights", str(weights), "--out", str(single)], capsys)
    code, _, err = run(["detokenize", str(single), "--weights", str(weights), "--out", str(tmp_path / "x.cif")],
                       capsys)  # fmt: skip
    assert code == 0, err
    assert len(load_chain(tmp_path / "x.cif")) == len(load_chain(files[1]))


def test_separate_chains_and_selection(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = str(STRUCTURES / "1AM7.pdb.gz")
    code, out, _ = run(["tokenize-structure", file, "--weights", str(weights), "--separate-chains"], capsys)
    assert code == 0
    data = json.loads(out)
    ids = load_structure(file).chain_ids
    assert [s["name"] for s in data["structures"]] == [f"1AM7_{c}" for c in ids]
    code, out, _ = run(["tokenize-structure", file, "--weights", str(weights), "--chain", ids[1]], capsys)
    assert [c["chain_id"] for c in json.loads(out)["structures"][0]["chains"]] == [ids[1]]


def test_the_default_max_length_is_the_models_context_as_its_help_says(capsys: pytest.CaptureFixture[str]) -> None:
    from openesm3.cli.main import build_parser  # noqa: PLC0415
    from openesm3.generation.structure_tokens import MODEL_CONTEXT  # noqa: PLC0415

    assert build_parser().parse_args(["tokenize-structure", "x.pdb"]).max_length == MODEL_CONTEXT == 2048
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tokenize-structure", "--help"])
    assert "(default 2048, the context of the decoder and ESM3" in " ".join(capsys.readouterr().out.split())


def test_user_errors(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = str(STRUCTURES / "1fxd.pdb.gz")
    code, _, err = run(["tokenize-structure", file, "--weights", str(tmp_path / "none")], capsys)
    assert code == 2 and "no structure_encoder weights found" in err
    code, _, err = run(["tokenize-structure", file, "--weights", str(weights), "--max-length", "20"], capsys)
    assert code == 2 and "exceed the limit of 20 tokens" in err and "--chain or --separate-chains" in err
    code, _, err = run(["tokenize-structure", file, "--weights", str(weights), "--max-length", "-5"], capsys)
    assert code == 2 and err == "openesm3 tokenize-structure: error: --max-length must be >= 0 (0: no limit), got -5\n"
    code, out, err = run(["tokenize-structure", file, "--weights", str(weights), "--max-length", "0"], capsys)
    assert code == 0 and len(json.loads(out)["structures"]) == 1, err  # 0: no limit, as documented
    two = tmp_path / "two.pdb"
    load_chain(file)[:2].to_pdb(two)
    code, _, err = run(["tokenize-structure", str(two), "--weights", str(weights)], capsys)
    assert code == 2 and "only 2 residue(s) with N, CA and C" in err

    bad = tmp_path / "bad.json"
    doc = {"format": "openesm3-structure-tokens", "format_version": 1, "structures": [{"name": "p", "tokens": [1, 2]}]}
    bad.write_text(json.dumps(doc))
    code, _, err = run(["detokenize", str(bad), "--weights", str(weights), "--out", str(tmp_path / "o.pdb")], capsys)
    assert code == 2 and "bad.json: structures[0] (p)" in err and "must start with BOS" in err
    doc["structures"] = [{"name": "p", "tokens": [4098, 7, 9999, 4097]}]
    bad.write_text(json.dumps(doc))
    code, _, err = run(["detokenize", str(bad), "--weights", str(weights), "--out", str(tmp_path / "o.pdb")], capsys)
    assert code == 2 and "9999" in err and "out of range" in err
    doc["structures"] = [{"name": "p", "tokens": [4098, 7, 9, 4097]}, {"name": "q", "tokens": [4098, 7, 4097]}]
    bad.write_text(json.dumps(doc))
    code, _, err = run(["detokenize", str(bad), "--weights", str(weights), "--out", str(tmp_path / "o.pdb")], capsys)
    assert code == 2 and "give a directory" in err
    bad.write_text("{not json")
    code, _, err = run(["detokenize", str(bad), "--weights", str(weights), "--out", str(tmp_path / "o.pdb")], capsys)
    assert code == 2 and "not valid JSON" in err
    # a structure file given where the tokens belong, and a path that is not there
    code, _, err = run(["detokenize", file, "--weights", str(weights), "--out", str(tmp_path / "o.pdb")], capsys)
    assert code == 2 and "1fxd.pdb.gz: not valid JSON" in err and "internal error" not in err
    (tmp_path / "x.bin").write_bytes(b"\x00\xff\xfe")
    code, _, err = run(
        ["detokenize", str(tmp_path / "x.bin"), "--weights", str(weights), "--out", str(tmp_path / "o.pdb")], capsys
    )
    assert code == 2 and "x.bin: not a text file" in err
    code, _, err = run(
        ["detokenize", str(tmp_path / "gone.json"), "--weights", str(weights), "--out", str(tmp_path / "o.pdb")], capsys
    )
    assert code == 2 and "gone.json: no such file" in err


def test_round_trip_with_the_bundled_tokenizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's main job: no weights given, so the shipped tokenizer; 1PIN is in the valid split (not trained
    on). The printed RMSD is the measured one, and the confidences come with what is known of them: the pLDDT
    and pTM calibrated on held-out chains, ranking them roughly."""
    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    out = tmp_path / "decoded.pdb"
    assert main(["round-trip", str(TEST_DATA / "structures" / "1PIN.pdb.gz"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "data/tokenizer" in printed and "pLDDT and pTM were calibrated" in printed and "r 0.43" in printed
    rmsd = float(printed.split("backbone RMSD ")[1].split(" A")[0])
    original, decoded = load_chain(TEST_DATA / "structures" / "1PIN.pdb.gz"), load_chain(out)
    assert decoded.sequence == original.sequence
    backbone = original.atom37_mask[:, :3].all(-1) & decoded.atom37_mask[:, :3].all(-1)
    from openesm3.geometry.alignment import kabsch  # noqa: PLC0415

    pred = torch.from_numpy(np.asarray(decoded.atom37, dtype=np.float32)[backbone][:, :3].reshape(-1, 3))
    true = torch.from_numpy(np.asarray(original.atom37, dtype=np.float32)[backbone][:, :3].reshape(-1, 3))
    assert float(kabsch(pred, true).rmsd) == pytest.approx(rmsd, abs=0.02)  # PDB keeps 3 decimals
    assert "all-atom RMSD " in printed and "heavy atoms" in printed
    # Run again, as a user repeating the README's line does: round-trip writes its one file at the end, atomically,
    # so it replaces it (no --overwrite needed, unlike the commands that write as they go).
    assert main(["round-trip", str(TEST_DATA / "structures" / "1PIN.pdb.gz"), "--out", str(out)]) == 0


def test_round_trip_of_a_backbone_only_file_measures_no_side_chains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An N, CA, C, O file (like the BioEmu backbones of the dev set) has no side chains to compare: the all-atom
    line says so instead of reporting the backbone and O as an "all-atom" RMSD."""
    import gzip  # noqa: PLC0415

    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    lines = gzip.decompress((TEST_DATA / "structures" / "1PIN.pdb.gz").read_bytes()).decode().splitlines()
    keep = [ln for ln in lines if not ln.startswith("ATOM") or ln[12:16].strip() in ("N", "CA", "C", "O")]
    backbone_only = tmp_path / "1pin_backbone.pdb"
    backbone_only.write_text("\n".join(keep) + "\n")
    out = tmp_path / "decoded.pdb"
    assert main(["round-trip", str(backbone_only), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "all-atom RMSD not measured: the input has no side-chain atoms" in printed
    assert "heavy atoms" not in printed and "backbone RMSD " in printed
    assert load_chain(out).atom37_mask[:, 3].any()  # the decoded file has side chains (CB) all the same


def test_detokenize_with_sequence_builds_every_heavy_atom(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--with-sequence: the bundled (sequence-conditioned) decoder reads each chain's sequence from the token file
    and writes all heavy atoms, the same structure the Python API's decode_all_atom gives; a decoder without
    sequence conditioning, or a chain without its sequence, gets a one-line error."""
    from openesm3.checkpoints.bundled import BUNDLED_TOKENIZER_DIR  # noqa: PLC0415
    from openesm3.checkpoints.vqvae_weights import load_vqvae_network  # noqa: PLC0415
    from openesm3.generation.all_atom_decoding import decode_all_atom  # noqa: PLC0415
    from openesm3.generation.structure_tokens import tokens_from_json  # noqa: PLC0415

    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    file = STRUCTURES / "1PIN.pdb.gz"
    tokens = tmp_path / "t.json"
    assert run(["tokenize-structure", str(file), "--out", str(tokens)], capsys)[0] == 0
    out = tmp_path / "aa.pdb"
    code, printed, err = run(["detokenize", str(tokens), "--with-sequence", "--out", str(out)], capsys)
    assert code == 0, err
    decoded, original = load_chain(out), load_chain(file)
    assert decoded.sequence == original.sequence
    assert np.array_equal(decoded.atom37_mask[:, :36], original.atom37_mask[:, :36])  # every heavy atom but OXT
    decoder, _ = load_vqvae_network(BUNDLED_TOKENIZER_DIR, "structure_decoder")
    expected = decode_all_atom(tokens_from_json(json.loads(tokens.read_text())), decoder)[0]  # type: ignore[arg-type]
    atom37 = np.asarray(expected.structure.chains[0].atom37)
    assert np.allclose(np.nan_to_num(decoded.atom37), np.nan_to_num(atom37), atol=6e-4)  # PDB keeps 3 decimals
    assert printed.startswith(f"1PIN\tpTM {expected.ptm:.4f}")

    backbone_only = tmp_path / "bb.pdb"
    assert run(["detokenize", str(tokens), "--out", str(backbone_only)], capsys)[0] == 0
    assert not load_chain(backbone_only).atom37_mask[:, 3].any()  # no CB without --with-sequence

    code, _, err = run(["detokenize", str(tokens), "--with-sequence", "--weights", str(weights), "--out",
                        str(tmp_path / "x.pdb")], capsys)  # fmt: skip
    assert code == 2 and "--with-sequence needs a sequence-conditioned decoder" in err
    data = json.loads(tokens.read_text())
    del data["structures"][0]["chains"][0]["sequence"]
    tokens.write_text(json.dumps(data))
    code, _, err = run(["detokenize", str(tokens), "--with-sequence", "--out", str(tmp_path / "x.pdb")], capsys)
    assert code == 2 and "t.json: --with-sequence needs every chain's sequence; none for 1PIN chain A" in err


def test_the_failure_count_has_one_unit_whether_or_not_any_structure_was_encoded(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.pdb.gz"
    broken.write_bytes((STRUCTURES / "1fxd.pdb.gz").read_bytes()[:3000])
    (tmp_path / "empty.pdb").write_text("")
    bad = [str(broken), str(tmp_path / "empty.pdb")]
    options = ["--weights", str(weights), "--out", str(tmp_path / "t.json")]
    code, _, err = run(["tokenize-structure", *bad, *options], capsys)
    assert code == 2 and "2 of 2 structure(s) failed" in err, err  # it said "input(s)" when none was read
    code, _, err = run(["tokenize-structure", *bad, str(STRUCTURES / "1fxd.pdb.gz"), *options], capsys)
    assert code == 1 and "2 of 3 structure(s) failed" in err, err


def test_bad_inputs_are_reported_and_the_others_still_written(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like the other batch commands: an unreadable file or an unencodable structure is named on stderr, the
    others are encoded (exit 1); nothing encodable is exit 2 with no output. Same-named structures decode to
    NAME.pdb and NAME_2.pdb instead of overwriting each other; the progress bar reports the work unless --quiet."""
    good = STRUCTURES / "1fxd.pdb.gz"
    (tmp_path / "other").mkdir()
    same_name = tmp_path / "other" / "1fxd.pdb.gz"
    same_name.write_bytes(good.read_bytes())
    broken = tmp_path / "broken.pdb.gz"
    broken.write_bytes(good.read_bytes()[:3000])
    short = tmp_path / "short.pdb"
    load_chain(good)[:2].to_pdb(short)
    tokens = tmp_path / "t.json"
    code, _, err = run(["tokenize-structure", str(good), str(broken), str(short), str(same_name), "--weights",
                        str(weights), "--out", str(tokens), "--batch-size", "2"], capsys)  # fmt: skip
    assert code == 1
    assert "broken.pdb.gz: damaged gzip data" in err and "short: only 2 residue(s) with N, CA and C" in err
    assert "2 of 4 structure(s) failed" in err and "tokenize: 100% 3/3" in err  # three read, two encoded
    data = json.loads(tokens.read_text())
    assert [s["name"] for s in data["structures"]] == ["1fxd", "1fxd"]
    alone = json.loads(run(["tokenize-structure", str(good), "--weights", str(weights)], capsys)[1])
    assert data["structures"][0]["tokens"] == alone["structures"][0]["tokens"]  # a failed batch changes no codes

    out_dir = tmp_path / "decoded"
    code, printed, err = run(["detokenize", str(tokens), "--weights", str(weights), "--out", str(out_dir),
                              "--quiet"], capsys)  # fmt: skip
    assert code == 0 and sorted(p.name for p in out_dir.iterdir()) == ["1fxd.pdb", "1fxd_2.pdb"]
    assert "1fxd_2\tpTM" in printed and "detokenize:" not in err

    code, _, err = run(["tokenize-structure", str(broken), str(short), "--weights", str(weights), "--out",
                        str(tmp_path / "none.json")], capsys)  # fmt: skip
    assert code == 2 and "2 of 2 structure(s) failed" in err and not (tmp_path / "none.json").exists()


def test_detokenize_warns_when_the_tokens_come_from_another_tokenizer(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Codes of one tokenizer mean nothing to another's decoder. The token file records the encoder that made it;
    detokenize compares it with the encoder beside the decoder: silent for the same tokenizer (also for a float32
    copy of the float16 bundle), a warning naming both for another, a hedged one when the maker is gone."""
    import shutil  # noqa: PLC0415

    from openesm3.checkpoints.bundled import BUNDLED_TOKENIZER_DIR  # noqa: PLC0415

    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    file = str(STRUCTURES / "1fxd.pdb.gz")
    made_by_tiny = tmp_path / "tiny.json"
    assert run(["tokenize-structure", file, "--weights", str(weights), "--out", str(made_by_tiny)], capsys)[0] == 0
    code, _, err = run(
        ["detokenize", str(made_by_tiny), "--weights", str(weights), "--out", str(tmp_path / "a.pdb")], capsys
    )
    assert code == 0 and "warning" not in err
    code, _, err = run(["detokenize", str(made_by_tiny), "--out", str(tmp_path / "b.pdb")], capsys)  # bundled
    assert code == 0 and "tiny.json: the tokens were made by the encoder" in err
    assert str(BUNDLED_TOKENIZER_DIR / "structure_encoder") in err and "a different tokenizer" in err

    float32_copy = tmp_path / "bundle_fp32"
    for part in ("structure_encoder", "structure_decoder"):
        model, config = load_pretrained(BUNDLED_TOKENIZER_DIR / part, dtype=torch.float32)
        save_pretrained(model, config, float32_copy / part, model_type=part)
    made_by_bundle = tmp_path / "bundle.json"
    assert run(["tokenize-structure", file, "--out", str(made_by_bundle)], capsys)[0] == 0
    code, _, err = run(["detokenize", str(made_by_bundle), "--weights", str(float32_copy), "--out",
                        str(tmp_path / "c.pdb")], capsys)  # fmt: skip
    assert code == 0 and "warning" not in err  # other bytes, same tokenizer

    moved = tmp_path / "moved"
    shutil.copytree(weights, moved)
    made_by_moved = tmp_path / "moved.json"
    assert run(["tokenize-structure", file, "--weights", str(moved), "--out", str(made_by_moved)], capsys)[0] == 0
    shutil.rmtree(moved)
    code, _, err = run(["detokenize", str(made_by_moved), "--out", str(tmp_path / "d.pdb")], capsys)
    assert code == 0 and "no longer there to compare with" in err


def test_tokens_alone_decode_as_the_evaluation_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user gets from tokens alone (detokenize, round-trip --no-sequence) is what the tokenizer evaluation
    reports as decoded without the sequence (benchmarks/eval_tokenizer.py): the same decoder input, so the same
    structure and confidences. round-trip's figures are the evaluation's, the mirror-image note included."""
    from openesm3.checkpoints.bundled import load_structure_tokenizer  # noqa: PLC0415
    from openesm3.geometry.alignment import kabsch  # noqa: PLC0415
    from openesm3.training.tokenizer.evaluate import round_trip, structure_to_record  # noqa: PLC0415

    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    file = STRUCTURES / "1PIN.pdb.gz"
    chain = load_chain(file)
    encoder, decoder = load_structure_tokenizer()
    for flags, with_sequence in (([], True), (["--no-sequence"], False)):
        expected = round_trip(encoder, decoder, structure_to_record(chain), with_sequence=with_sequence)
        assert expected is not None
        code, printed, err = run(["round-trip", str(file), *flags], capsys)
        assert code == 0, err
        assert f"backbone RMSD {expected.backbone_rmsd:.2f} A" in printed
        assert f"lDDT-CA {expected.lddt_ca:.3f}  TM-score {expected.tm_score:.3f}" in printed
        assert f"pTM {expected.ptm:.3f}  mean pLDDT {expected.mean_plddt:.3f}" in printed
        assert ("better as its mirror image" in printed) == (expected.mirror_rmsd < expected.backbone_rmsd)
        assert ("all-atom RMSD" in printed) == with_sequence

    tokens, out = tmp_path / "t.json", tmp_path / "d.pdb"
    assert run(["tokenize-structure", str(file), "--out", str(tokens)], capsys)[0] == 0
    code, printed, err = run(["detokenize", str(tokens), "--out", str(out)], capsys)
    assert code == 0, err
    assert printed.startswith(f"1PIN\tpTM {expected.ptm:.4f}\tmean pLDDT {expected.mean_plddt:.4f}")
    decoded = load_chain(out)
    both = chain.atom37_mask[:, :3].all(-1) & decoded.atom37_mask[:, :3].all(-1)
    pred = torch.from_numpy(np.asarray(decoded.atom37, dtype=np.float32)[both][:, :3].reshape(-1, 3))
    true = torch.from_numpy(np.asarray(chain.atom37, dtype=np.float32)[both][:, :3].reshape(-1, 3))
    assert float(kabsch(pred, true).rmsd) == pytest.approx(expected.backbone_rmsd, abs=0.02)  # PDB keeps 3 decimals


def test_round_trip_of_a_complex(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--all-chains (or --chain repeated) round-trips the chains as one complex, joined by chain breaks as
    tokenize-structure joins them: the figures are the evaluation's over every residue, the file has every chain."""
    from openesm3.checkpoints.bundled import load_structure_tokenizer  # noqa: PLC0415
    from openesm3.training.tokenizer.evaluate import round_trip, structure_to_record  # noqa: PLC0415

    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    file = STRUCTURES / "1AM7.pdb.gz"
    encoder, decoder = load_structure_tokenizer()
    expected = round_trip(encoder, decoder, structure_to_record(load_structure(file)))
    assert expected is not None
    out = tmp_path / "cx.pdb"
    code, printed, err = run(["round-trip", str(file), "--all-chains", "--out", str(out)], capsys)
    assert code == 0, err
    assert printed.startswith("1AM7 chains A, B, C: 462 residues -> 466 tokens")
    assert f"backbone RMSD {expected.backbone_rmsd:.2f} A" in printed and f"pTM {expected.ptm:.3f}" in printed
    assert load_structure(out).chain_ids == ("A", "B", "C")
    code, printed, _ = run(["round-trip", str(file), "--chain", "C", "--chain", "A"], capsys)
    assert code == 0 and printed.startswith("1AM7 chains C, A: 308 residues -> 311 tokens")
    code, _, err = run(["round-trip", str(file), "--chain", "A", "--all-chains"], capsys)
    assert code == 2 and "--chain or --all-chains, not both" in err


def test_a_gz_token_file_is_gzipped_and_detokenizes(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens, conf = tmp_path / "tokens.json.gz", tmp_path / "conf.json.gz"
    code, _, err = run(["tokenize-structure", str(STRUCTURES / "1fxd.pdb.gz"), "--weights", str(weights),
                        "--out", str(tokens), "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads(gzip.decompress(tokens.read_bytes()))["structures"][0]["name"] == "1fxd"
    code, _, err = run(["detokenize", str(tokens), "--weights", str(weights), "--out", str(tmp_path / "x.pdb"),
                        "--confidence", str(conf), "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    assert len(json.loads(gzip.decompress(conf.read_bytes()))["1fxd"]["plddt"]) == len(load_chain(tmp_path / "x.pdb"))


def test_detokenize_refuses_a_format_that_contradicts_the_output_name(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in ``fold``: ``--out one.pdb --format cif`` would write mmCIF text under a .pdb name."""
    tokens = tmp_path / "tokens.json"
    code, _, err = run(["tokenize-structure", str(STRUCTURES / "1fxd.pdb.gz"), "--weights", str(weights),
                        "--out", str(tokens), "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    out = tmp_path / "one.pdb"
    code, _, err = run(["detokenize", str(tokens), "--weights", str(weights), "--out", str(out), "--format", "cif",
                        "--quiet"], capsys)  # fmt: skip
    assert code == 2 and "--format is cif" in err and "pdb" in err, err
    assert not out.exists()
    code, _, err = run(["detokenize", str(tokens), "--weights", str(weights), "--out", str(out), "--format", "pdb",
                        "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    assert out.read_text().startswith(("ATOM", "HEADER", "MODEL", "REMARK"))


def _short_context(weights: Path, tmp_path: Path, max_length: int) -> Path:
    """The test tokenizer with a decoder context of ``max_length`` tokens."""
    short = tmp_path / "short_context"
    short.mkdir()
    shutil.copytree(weights / "structure_encoder", short / "structure_encoder")  # the same tokenizer: no warning
    decoder, config = load_pretrained(weights / "structure_decoder")
    save_pretrained(decoder, dataclasses.replace(config, max_length=max_length), short / "structure_decoder",
                    model_type="structure_decoder")  # fmt: skip
    return short


def test_detokenize_skips_a_structure_too_long_for_the_decoder(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A structure longer than the decoder's context is reported by name and the others are still decoded (exit
    1), as in tokenize-structure; it used to end the batch when its turn came, leaving the later ones undone."""
    short = _short_context(weights, tmp_path, 100)
    tokens = tmp_path / "tokens.json"
    files = [str(STRUCTURES / name) for name in ("1fxd.pdb.gz", "1PIN.pdb.gz", "2ZTA.pdb.gz")]  # 60, 155, 65 tokens
    code, _, err = run(["tokenize-structure", *files, "--weights", str(weights), "--out", str(tokens), "--quiet"],
                       capsys)  # fmt: skip
    assert code == 0, err
    out_dir = tmp_path / "decoded"
    code, printed, err = run(["detokenize", str(tokens), "--weights", str(short), "--out", str(out_dir),
                              "--batch-size", "1", "--quiet"], capsys)  # fmt: skip
    assert code == 1, err
    assert "error: 1PIN: 155 tokens (with BOS/EOS) exceed the decoder context of 100" in err
    assert "1 of 3 structure(s) failed" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["1fxd.pdb", "2ZTA.pdb"] and "2ZTA\tpTM" in printed
    one = tmp_path / "one.json"
    run(["tokenize-structure", files[1], "--weights", str(weights), "--out", str(one), "--quiet"], capsys)
    code, _, err = run(["detokenize", str(one), "--weights", str(short), "--out", str(tmp_path / "x.pdb")], capsys)
    assert code == 2 and "1 of 1 structure(s) failed" in err and not (tmp_path / "x.pdb").exists()


def test_detokenize_names_files_by_every_structure_and_decodes_one_that_just_fits(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """File names come from every structure of the token file, before the decoder says which fit its context (so
    that an earlier run's files are refused up front): one too long leaves its name unused, so 'a_b' stays a_b_2
    (as checked) although 'a/b' is not written, and an unnamed third structure is structure_3. A structure of
    exactly the decoder's context is decoded."""
    short = _short_context(weights, tmp_path, 65)
    tokens = tmp_path / "tokens.json"
    files = [str(STRUCTURES / name) for name in ("1PIN.pdb.gz", "2ZTA.pdb.gz", "1fxd.pdb.gz")]  # 155, 65, 60 tokens
    code, _, err = run(["tokenize-structure", *files, "--weights", str(weights), "--out", str(tokens), "--quiet"],
                       capsys)  # fmt: skip
    assert code == 0, err
    data = json.loads(tokens.read_text())
    for structure, name in zip(data["structures"], ["a/b", "a_b", None]):
        structure.pop("name")
        if name is not None:
            structure["name"] = name
    tokens.write_text(json.dumps(data))
    out_dir = tmp_path / "decoded"
    code, _, err = run(["detokenize", str(tokens), "--weights", str(short), "--out", str(out_dir), "--quiet"], capsys)
    assert code == 1 and "error: a/b: 155 tokens (with BOS/EOS) exceed the decoder context of 65" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_b_2.pdb", "structure_3.pdb"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["tokenize-structure", "{pdb}", "--out", "{pdb}"], "--out {pdb}: is the input file"),
        (["round-trip", "{pdb}", "--out", "{pdb}"], "--out {pdb}: is the input file"),
        (["featurize", "{pdb}", "--json", "{pdb}"], "--json {pdb}: is the input file"),
        (["detokenize", "{tokens}", "--out", "{tmp}/d", "--confidence", "{tokens}"],
         "--confidence {tokens}: is the input file"),
    ],
)  # fmt: skip
def test_an_output_that_is_an_input_is_refused(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], message: str
) -> None:
    """The structure (or token file) read is not replaced by the command's output."""
    pdb = tmp_path / "one.pdb"
    pdb.write_bytes(gzip.decompress((STRUCTURES / "1fxd.pdb.gz").read_bytes()))
    tokens = tmp_path / "tokens.json"
    assert run(["tokenize-structure", str(pdb), "--weights", str(weights), "--out", str(tokens)], capsys)[0] == 0
    names = {"pdb": pdb, "tokens": tokens, "tmp": tmp_path}
    before = {path: path.read_bytes() for path in (pdb, tokens)}
    options = [] if command[0] == "featurize" else ["--weights", str(weights)]
    code, _, err = run([part.format(**names) for part in command] + options, capsys)
    assert code == 2 and message.format(**names) in err, err
    assert all(path.read_bytes() == data for path, data in before.items())


def test_detokenize_confidence_is_written_as_it_goes(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--confidence held every structure's pLDDT and PAE as Python lists until the end (about 100 MB per
    1500-residue structure: a batch of 200 needed 20 GB); each is now written as it is decoded, to the same file."""
    tokens = tmp_path / "tokens.json"
    code, _, err = run(["tokenize-structure", str(STRUCTURES / "1PIN.pdb.gz"), "--weights", str(weights), "--out",
                        str(tokens), "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    data = json.loads(tokens.read_text())
    one = data["structures"][0]

    def peak(n: int) -> int:
        data["structures"] = [dict(one, name=f"s{k}") for k in range(n)]
        path = tmp_path / f"t{n}.json"
        path.write_text(json.dumps(data))
        tracemalloc.start()
        try:
            code = main(["detokenize", str(path), "--weights", str(weights), "--out", str(tmp_path / f"d{n}"),
                         "--batch-size", "1", "--quiet", "--confidence", str(tmp_path / f"c{n}.json")])  # fmt: skip
            held = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert code == 0
        return held

    few, many = peak(2), peak(8)
    assert many - few < 1_000_000, (few, many)  # six more structures of 153 residues held: about 4 MB more
    capsys.readouterr()
    written = json.loads((tmp_path / "c8.json").read_text())
    assert list(written) == [f"s{k}" for k in range(8)] and written["s7"] == written["s0"]
    assert len(written["s0"]["plddt"]) == 153 and len(written["s0"]["pae"]) == 153
    assert (tmp_path / "c8.json").read_bytes().endswith(b"}}\n")


def test_detokenize_writes_every_structure_inside_the_output_directory(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Structure names come from the token file: '../x' was written beside --out DIR, over whatever was there, and
    'a/b' into a subdirectory. File names are now made safe, as fold's and embed's are; the names printed and the
    --confidence keys stay those of the file."""
    tokens = tmp_path / "tokens.json"
    code, _, err = run(["tokenize-structure", str(STRUCTURES / "1fxd.pdb.gz"), "--weights", str(weights), "--out",
                        str(tokens), "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    data = json.loads(tokens.read_text())
    data["structures"] = [dict(data["structures"][0], name=name) for name in ("../outside", "a/b", "1fxd")]
    tokens.write_text(json.dumps(data))
    (tmp_path / "outside.pdb").write_text("keep me\n")
    out_dir, conf = tmp_path / "decoded", tmp_path / "conf.json"
    code, printed, err = run(["detokenize", str(tokens), "--weights", str(weights), "--out", str(out_dir), "--quiet",
                              "--confidence", str(conf)], capsys)  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["1fxd.pdb", "a_b.pdb", "outside.pdb"]
    assert (tmp_path / "outside.pdb").read_text() == "keep me\n"
    assert "../outside\tpTM" in printed and f"-> {out_dir / 'outside.pdb'}" in printed
    assert list(json.loads(conf.read_text())) == ["../outside", "a/b", "1fxd"]


def test_detokenize_into_a_directory_refuses_an_earlier_runs_structures(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Into a directory the structures are written batch by batch: a rerun stopped part way left some replaced and
    some from the earlier run (and that run's --confidence file). Refused before decoding, unless --overwrite; one
    structure into one file is written at the end and replaced as before."""
    tokens = tmp_path / "tokens.json"
    files = [str(STRUCTURES / "1AM7.pdb.gz"), str(STRUCTURES / "1fxd.pdb.gz")]
    code, _, err = run(["tokenize-structure", *files, "--weights", str(weights), "--out", str(tokens)], capsys)
    assert code == 0, err
    out_dir = tmp_path / "decoded"
    args = ["detokenize", str(tokens), "--weights", str(weights), "--out", str(out_dir), "--quiet"]
    assert run([*args, "--format", "cif"], capsys)[0] == 0
    before = (out_dir / "1fxd.cif").read_bytes()
    code, _, err = run([*args, "--format", "cif", "--batch-size", "1"], capsys)
    assert code == 2 and err == (
        f"openesm3 detokenize: error: --out {out_dir}: 2 files already exist that this run would write "
        f"({out_dir}/1AM7.cif, {out_dir}/1fxd.cif); give a new directory, or --overwrite to replace them (a stopped "
        "run would leave them part replaced)\n"
    )
    assert (out_dir / "1fxd.cif").read_bytes() == before
    assert run(args, capsys)[0] == 0  # .pdb files: not there yet
    assert run([*args, "--overwrite"], capsys)[0] == 0
    conf = tmp_path / "conf.json"  # an earlier run's confidences, beside structures going to a new directory
    conf.write_text("earlier\n")
    fresh = ["detokenize", str(tokens), "--weights", str(weights), "--out", str(tmp_path / "fresh"), "--quiet"]
    code, _, err = run([*fresh, "--confidence", str(conf)], capsys)
    assert code == 2 and f"--confidence {conf}: 1 file already exists that this run would write ({conf}); " in err
    assert conf.read_text() == "earlier\n"
    single = tmp_path / "one.json"
    assert run(["tokenize-structure", files[1], "--weights", str(weights), "--out", str(single)], capsys)[0] == 0
    for _ in range(2):
        assert run(["detokenize", str(single), "--weights", str(weights), "--out", str(tmp_path / "x.cif")],
                   capsys)[0] == 0  # fmt: skip


def test_detokenize_refuses_an_earlier_runs_structures_before_loading_the_decoder(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files were checked only once the decoder was loaded (and had said which structures fit its context): a
    rerun into the same --out loaded the decoder weights before being refused."""
    import openesm3.checkpoints.vqvae_weights as vqvae_weights  # noqa: PLC0415

    tokens = tmp_path / "tokens.json"
    code, _, err = run(["tokenize-structure", str(STRUCTURES / "1fxd.pdb.gz"), "--weights", str(weights), "--out",
                        str(tokens)], capsys)  # fmt: skip
    assert code == 0, err
    out_dir = tmp_path / "decoded"
    args = ["detokenize", str(tokens), "--weights", str(weights), "--out", str(out_dir), "--quiet"]
    assert run(args, capsys)[0] == 0

    def no_decoder(*args: object, **kwargs: object) -> None:
        raise AssertionError("the decoder was loaded")

    monkeypatch.setattr(vqvae_weights, "load_vqvae_network", no_decoder)
    code, _, err = run(args, capsys)
    assert code == 2 and f"--out {out_dir}: 1 file already exists that this run would write ({out_dir}/1fxd.pdb)" in err


def test_tokenize_structure_with_no_readable_input_names_each_and_keeps_the_output(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.pdb"
    empty.write_text("")
    out = tmp_path / "tokens.json"
    out.write_text("an earlier run's tokens\n")
    args = ["tokenize-structure", str(empty), str(tmp_path / "missing.cif"), "--weights", str(weights)]
    code, stdout, err = run([*args, "--out", str(out)], capsys)
    assert code == 2, err
    assert f"error: {empty}: empty file" in err and f"error: {tmp_path / 'missing.cif'}: no such file" in err, err
    assert "2 of 2 structure(s) failed" in err and stdout == ""
    assert out.read_text() == "an earlier run's tokens\n"


def test_a_structure_over_a_lowered_max_length_is_not_blamed_on_the_model(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --max-length 50 the error said '155 tokens exceed the context of 50 tokens of the structure decoder and
    ESM3', whose context is 2048: the limit is the user's."""
    out = tmp_path / "tokens.json"
    args = ["tokenize-structure", str(STRUCTURES / "1PIN.pdb.gz"), "--weights", str(weights), "--out", str(out)]
    code, _, err = run([*args, "--max-length", "50"], capsys)
    assert code == 2, err
    limit = "the limit of 50 tokens set by max_length (tokenize-structure --max-length)"
    assert f"1PIN: 153 positions + BOS/EOS = 155 tokens exceed {limit}" in err, err
    assert "context" not in err and not out.exists()


@pytest.mark.parametrize("change", ["replaced", "edited"])
def test_the_token_file_names_the_encoder_as_loaded_not_a_file_that_changed_while_it_ran(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    """The token file gave the SHA-256 of the encoder file as it was at the end (hashed then, also without
    --record): an encoder replaced by another while the structures were encoded was named as the one that made
    the tokens (and detokenize then took them for that encoder's). Now it is the file opened when it was loaded
    (hashed in the background, held back here until the change); one edited in place before that hash read it
    is unknown: sha256 null, with a warning, not the edited file's hash."""
    import threading  # noqa: PLC0415

    from openesm3.generation import structure_tokens  # noqa: PLC0415
    from openesm3.utils import provenance  # noqa: PLC0415

    mine = tmp_path / "weights"
    shutil.copytree(weights, mine)
    file = mine / "structure_encoder" / "model.safetensors"
    loaded = hashlib.sha256(file.read_bytes()).hexdigest()
    gate, real_hash, main_thread = threading.Event(), provenance._sha256_of, threading.main_thread()

    def held_back(path: Path, *fd: int) -> str:  # the background hash waits for the change; the run's own do not
        assert threading.current_thread() is main_thread or gate.wait(timeout=60)
        return real_hash(path, *fd)

    real_encode = structure_tokens.encode_structure

    def encode_then_change(*args: object, **kwargs: object) -> object:  # the encoder is loaded by now
        if not gate.is_set():
            if change == "replaced":  # another export renamed into place, as openesm3 writes one
                new = file.with_name("new.safetensors")
                new.write_bytes(b"another encoder")
                new.replace(file)
            else:  # appended to in place (the bytes loaded stay readable: no shorter mapped file)
                with file.open("ab") as handle:
                    handle.write(b"\0" * 64)
            gate.set()
        return real_encode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(provenance, "_sha256_of", held_back)
    monkeypatch.setattr(structure_tokens, "encode_structure", encode_then_change)
    tokens = tmp_path / "tokens.json"
    args = ["tokenize-structure", str(STRUCTURES / "1AM7.pdb.gz"), "--weights", str(mine), "--out", str(tokens)]
    code, _, err = run(args, capsys)
    assert code == 0 and gate.is_set(), err
    model = json.loads(tokens.read_text())["model"]
    assert list(model) == ["model_type", "format", "weights", "sha256"]  # the format is kept
    assert model["sha256"] != hashlib.sha256(file.read_bytes()).hexdigest()  # never the file as it is now
    if change == "replaced":
        assert model["sha256"] == loaded and "warning" not in err, err
    else:
        assert model["sha256"] is None
        assert f"the encoder weights {mine / 'structure_encoder'} changed while they were loaded" in err, err
        # Such a token file still decodes: an unknown encoder is not taken for another one.
        args = ["detokenize", str(tokens), "--weights", str(mine), "--out", str(tmp_path / "decoded")]
        code, _, err = run(args, capsys)
        assert code == 0 and "tokens were made by" not in err, err
