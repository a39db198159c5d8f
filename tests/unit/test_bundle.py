"""ModelBundle: finding the weights in either layout, lazy loading, device/dtype choices and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype(torch.float32) == torch.float32
    with pytest.raises(InputError, match="dtype 'fp16' is not supported"):
        resolve_dtype("fp16")
