"""ModelBundle: finding the weights in either layout, lazy loading, device/dtype choices and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openesm3.checkpoints.loading import resolve_weights
from openesm3.errors import InputError, WeightsError
from openesm3.generation.bundle import ModelBundle, resolve_device, resolve_dtype
from openesm3.protein import Protein
from tests.protein_testing import save_tiny_weights, tiny_esm3


def test_missing_weights_name_every_file_and_place(tmp_path: Path) -> None:
    bundle = ModelBundle(tmp_path / "empty")
    with pytest.raises(WeightsError) as info:
        bundle.require("esm3", "structure_encoder")
    message = str(info.value)
    for text in ("esm3_sm_open_v1.pth", "esm3_structure_encoder_v0.pth", "esm3_structure_decoder_v0.pth",
                 "esm3_function_decoder_v0.pth", "EvolutionaryScale/esm3-sm-open-v1", "~/.cache/openesm3/weights",
                 "OPENESM3_WEIGHTS", "openesm3 convert", str(tmp_path / "empty")):  # fmt: skip
        assert text in message
    assert message.count("<- needed here") == 2
    assert not bundle._models  # nothing was loaded


def test_weights_in_our_format_and_official_file(tmp_path: Path) -> None:
    root = save_tiny_weights(tmp_path / "ours", seed=5)
    bundle = ModelBundle(root)
    bundle.require("esm3")
    assert bundle.locate("esm3") == root / "esm3"
    model = bundle.esm3
    assert bundle.esm3 is model and bundle.n_layers == 2 and bundle.max_length == 2048
    with pytest.raises(WeightsError, match="esm3_structure_decoder_v0.pth"):
        bundle.require("structure_decoder")
    # The trunk's own directory given as --weights: companions are looked for beside it.
    assert ModelBundle(root / "esm3").locate("esm3") == root / "esm3"
    # An official-layout file given directly.
    official = tmp_path / "release" / "data" / "weights"
    official.mkdir(parents=True)
    torch.save({}, official / "esm3_sm_open_v1.pth")
    assert ModelBundle(tmp_path / "release").locate("esm3") == official / "esm3_sm_open_v1.pth"
    assert ModelBundle(official / "esm3_sm_open_v1.pth").locate("esm3") == official / "esm3_sm_open_v1.pth"


def test_a_model_directorys_own_file_stands_for_the_directory(tmp_path: Path) -> None:
    # --weights DIR/esm3/model.safetensors is our format, not an official .pth to be unpickled and key-mapped.
    root = save_tiny_weights(tmp_path / "ours", seed=5)
    for file in ("model.safetensors", "config.json"):
        bundle = ModelBundle(root / "esm3" / file)
        assert bundle.locate("esm3") == root / "esm3"
        assert bundle.n_layers == 2
    # A model directory that cannot be used is named with the reason, not only as "no weights found".
    (tmp_path / "broken" / "esm3").mkdir(parents=True)
    (tmp_path / "broken" / "esm3" / "model.safetensors").write_bytes((root / "esm3" / "model.safetensors").read_bytes())
    (tmp_path / "broken" / "esm3" / "config.json").write_text("{")
    with pytest.raises(WeightsError, match=r"esm3/config.json: not valid JSON"):
        ModelBundle(tmp_path / "broken").locate("esm3")
    with pytest.raises(WeightsError, match=r"esm3 holds esm3 weights, not structure_decoder"):
        resolve_weights(root / "esm3", "structure_decoder")


def test_bf16_bundle_and_forward(tmp_path: Path) -> None:
    root = save_tiny_weights(tmp_path / "w", seed=6)
    tensor = ModelBundle(root).encode(Protein(sequence="MKTAYIAK"))
    fp32 = ModelBundle(root).forward([tensor]).sequence_logits.float()
    bf16_bundle = ModelBundle(root, dtype="bf16")
    assert next(bf16_bundle.esm3.parameters()).dtype == torch.bfloat16
    bf16 = bf16_bundle.forward([tensor]).sequence_logits.float()
    assert (bf16 - fp32).abs().max() < 0.1 * fp32.abs().max()
    with torch.no_grad():
        direct = tiny_esm3(seed=6)(sequence_tokens=tensor.sequence[None]).sequence_logits
    torch.testing.assert_close(fp32, direct)


def test_device_and_dtype_choices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(InputError, match="device '1.5' is not a device this package runs on"):
        resolve_device(1.5)  # type: ignore[arg-type] # a library caller's mistake: torch raises TypeError for it
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype(torch.float32) == torch.float32
    with pytest.raises(InputError, match="dtype 'fp16' is not supported"):
        resolve_dtype("fp16")


def test_companion_networks_encode_and_decode(tmp_path: Path) -> None:
    """Structure tokens, decoded structures and function annotations through tiny random VQ-VAE / function
    decoder networks saved in our format next to the trunk."""
    import numpy as np  # noqa: PLC0415

    from openesm3.annotations import FunctionAnnotation  # noqa: PLC0415
    from openesm3.checkpoints.format import save_pretrained  # noqa: PLC0415
    from openesm3.config import FunctionDecoderConfig, StructureDecoderConfig, StructureEncoderConfig  # noqa: PLC0415
    from openesm3.models.function_decoder import FunctionDecoder  # noqa: PLC0415
    from openesm3.models.structure_decoder import StructureDecoder  # noqa: PLC0415
    from openesm3.models.structure_encoder import StructureEncoder  # noqa: PLC0415
    from openesm3.tokenizers import FunctionVocabulary  # noqa: PLC0415
    from openesm3.tokenizers.build import write_function_vocabulary  # noqa: PLC0415
    from openesm3.tokenizers.vocabulary import InterProEntry  # noqa: PLC0415
    from tests.conftest import TEST_DATA  # noqa: PLC0415

    root = save_tiny_weights(tmp_path / "w", seed=7)
    torch.manual_seed(0)
    configs = {
        "structure_encoder": StructureEncoderConfig(d_model=64, v_heads=4, n_layers=2, d_out=16),
        "structure_decoder": StructureDecoderConfig(d_model=64, n_heads=4, n_layers=2, pairwise_dim=16),
        "function_decoder": FunctionDecoderConfig(d_model=32, n_heads=2, n_layers=1, n_keywords=30, n_interpro=5),
    }
    classes = {"structure_encoder": StructureEncoder, "structure_decoder": StructureDecoder,
               "function_decoder": FunctionDecoder}  # fmt: skip
    for name, config in configs.items():
        save_pretrained(classes[name](config), config, root / name, model_type=name)
    rng = np.random.default_rng(0)
    keywords = tuple(f"kw{i:02d}" for i in range(30))
    entries = tuple(InterProEntry(f"IPR{i:06d}", "Domain", f"Entry {i}") for i in range(1, 6))
    vocab = FunctionVocabulary(keywords, rng.uniform(4, 10, 30), entries, {e.id: keywords[:3] for e in entries},
                               rng.standard_normal((8, 8, 30)).astype(np.float32))  # fmt: skip
    write_function_vocabulary(vocab, tmp_path / "vocab")

    bundle = ModelBundle(root, vocabulary_dir=tmp_path / "vocab")
    protein = Protein.from_structure(TEST_DATA / "structures" / "2ZTA.pdb.gz")
    protein = protein.replace(function_annotations=[FunctionAnnotation("IPR000003", 3, 20)])
    tensor = bundle.encode(protein)
    (b,) = protein.chain_break_positions()
    assert tensor.structure[b + 1] == 4100 and bool((tensor.structure[1 : b + 1] < 4096).all())
    assert "structure_decoder" not in bundle._models  # loaded only when needed
    decoded = bundle.decode(tensor, template=protein)
    assert decoded.chain_ids == ("A", "B") and 0.0 <= decoded.ptm <= 1.0
    assert decoded.coordinates.shape == (len(protein), 37, 3) and np.isnan(decoded.coordinates[b]).all()
    assert np.isfinite(decoded.coordinates[:b, :3]).all() and np.isfinite(decoded.plddt[:b]).all()
    assert decoded.function_annotations is not None  # the function decoder ran (random: any labels)
    assert all(a.label.endswith(")") or a.label in keywords for a in decoded.function_annotations)
    assert set(bundle._models) == {"structure_encoder", "structure_decoder", "function_decoder"}  # no trunk needed
    # The structure encoder runs in fp32 whatever the dtype, so structure tokens do not depend on it.
    bf16 = ModelBundle(root, dtype="bf16", vocabulary_dir=tmp_path / "vocab")
    assert torch.equal(bf16.encode(protein).structure, tensor.structure)


def test_release_directory_with_a_config_json_of_its_own_finds_the_companions(tmp_path: Path) -> None:
    # A Hugging Face snapshot of the release may carry a config.json at its root; that does not make the root one
    # of our model directories (whose companions are looked for beside it).
    official = tmp_path / "snapshot" / "data" / "weights"
    official.mkdir(parents=True)
    for name in ("esm3_sm_open_v1.pth", "esm3_structure_encoder_v0.pth"):
        torch.save({}, official / name)
    (tmp_path / "snapshot" / "config.json").write_text('{"model_type": "esm3"}')
    bundle = ModelBundle(tmp_path / "snapshot")
    assert bundle.locate("structure_encoder") == official / "esm3_structure_encoder_v0.pth"
    assert bundle.locate("esm3") == official / "esm3_sm_open_v1.pth"


def test_config_of_is_the_config_the_trunk_loads_with_wherever_it_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # generate checks a prompt's length against config_of before any load: it must be the loaded trunk's config
    # (here a max_length of 100, not the release's 2048) however the weights are found
    import json  # noqa: PLC0415

    from openesm3.checkpoints.official import OFFICIAL_PRESETS  # noqa: PLC0415

    root = save_tiny_weights(tmp_path / "home" / ".cache" / "openesm3" / "weights", seed=5)
    config_json = root / "esm3" / "config.json"
    meta = json.loads(config_json.read_text())
    meta["config"]["max_length"] = 100
    config_json.write_text(json.dumps(meta))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    for weights, env in ((root, None), (root / "esm3", None), (config_json, None), (None, root), (None, None)):
        if env is not None:
            monkeypatch.setenv("OPENESM3_WEIGHTS", str(env))
        bundle = ModelBundle(weights)
        assert (bundle.max_length, bundle.n_layers) == (100, 2) and not bundle._models  # read, nothing loaded
        assert bundle.config_of("esm3") == bundle.esm3.config
        monkeypatch.delenv("OPENESM3_WEIGHTS", raising=False)
    # an official file: the release preset, which loading it uses (this empty file is never read)
    official = tmp_path / "release" / "data" / "weights" / "esm3_sm_open_v1.pth"
    official.parent.mkdir(parents=True)
    torch.save({}, official)
    for weights in (tmp_path / "release", official):
        bundle = ModelBundle(weights)
        assert bundle.config_of("esm3") is OFFICIAL_PRESETS["esm3"] and bundle.max_length == 2048
        assert not bundle._models
