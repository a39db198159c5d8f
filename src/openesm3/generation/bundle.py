"""The four ESM3 networks behind one weights location, loaded lazily, on one device and dtype.

:class:`ModelBundle` is what the tasks (``embed``, ``score``, ``fold``, ``generate``, ...) hold: the trunk, the
structure VQ-VAE encoder and decoder, the function token decoder and the tokenizers. Each network is loaded the
first time it is needed, from a ``weights`` location in either format (see
:func:`openesm3.checkpoints.loading.resolve_weights`): an official release directory (``DIR/data/weights/*.pth``
or the ``.pth`` files directly in ``DIR``), a directory of our converted models (``DIR/esm3/``,
``DIR/structure_encoder/``, ...), or, for the trunk alone, one file. ``None`` means ``$OPENESM3_WEIGHTS`` or
``~/.cache/openesm3/weights``.

Numerics: ``dtype="bf16"`` loads the trunk and the decoders in bfloat16 (as the reference runs on GPUs); the
networks keep frames, rotations and other geometry in fp32 internally, coordinates are always passed as fp32, and
every output used downstream (logits, embeddings, coordinates) is cast to fp32. The structure *encoder* always
runs in fp32, so structure tokens never depend on ``dtype`` (its codebook argmin is sensitive to rounding).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import Tensor, nn

from openesm3 import constants as C
from openesm3.errors import InputError, WeightsError
from openesm3.generation.encoding import (
    DecodedStructure,
    ProteinTokenizers,
    StructureTokenEncoder,
    decode_protein,
    encode_protein,
)
from openesm3.generation.protein_tensor import ProteinBatch, ProteinTensor, model_inputs, stack
from openesm3.protein import Protein
from openesm3.tokenizers import FunctionPredictions

DTypeName = Literal["fp32", "bf16"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
MODEL_TYPES: tuple[str, ...] = ("esm3", "structure_encoder", "structure_decoder", "function_decoder")
# What each network is for, for messages (file names: checkpoints.official.OFFICIAL_WEIGHT_FILES).
OFFICIAL_FILES: dict[str, str] = {
    "esm3": "esm3_sm_open_v1.pth",
    "structure_encoder": "esm3_structure_encoder_v0.pth",
    "structure_decoder": "esm3_structure_decoder_v0.pth",
    "function_decoder": "esm3_function_decoder_v0.pth",
}
ROLES: dict[str, str] = {
    "esm3": "the ESM3 trunk (every model command)",
    "structure_encoder": "structure inputs (PDB/mmCIF prompts)",
    "structure_decoder": "structure outputs (fold, generate)",
    "function_decoder": "function outputs (predict-function)",
}
WEIGHTS_ENV = "OPENESM3_WEIGHTS"
DEFAULT_WEIGHTS_DIR = "~/.cache/openesm3/weights"
RELEASE_REPO = "EvolutionaryScale/esm3-sm-open-v1"


def missing_weights_message(needed: Sequence[str], detail: str) -> str:
    """The full instructions shown when weights are missing: which files, from where, where to put them."""
    width = max(len(f) for f in OFFICIAL_FILES.values())
    rows = "\n".join(
        f"  {OFFICIAL_FILES[t]:<{width}}  {ROLES[t]}{'  <- needed here' if t in needed else ''}" for t in MODEL_TYPES
    )
    return (
        f"{detail}\n"
        f"ESM3's open weights are the files of the Hugging Face release {RELEASE_REPO} (folder data/weights/;\n"
        f"the release's licence applies, accept it on the model page first):\n{rows}\n"
        f"Put them in {DEFAULT_WEIGHTS_DIR}/ (or {DEFAULT_WEIGHTS_DIR}/data/weights/, the release layout), or in any\n"
        f"directory DIR passed as --weights DIR or set as {WEIGHTS_ENV}=DIR. Converted weights work too: "
        f"'openesm3 convert DIR OUT'\nwrites OUT/esm3/, OUT/structure_encoder/, ... (config.json + model.safetensors); "
        f"pass --weights OUT."
    )


DEVICE_CHOICES = "cpu, cuda, cuda:N, mps or auto"
# The device types the networks run on. torch.device also parses meta, xla, hpu, ... which would build tensors
# nothing here can run on (meta: shapes only), failing later with a traceback far from the option.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA if available else CPU; anything else must be a CPU, CUDA or MPS device that exists on
    this machine, else :class:`InputError` (one line, naming the device)."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # torch's message lists twenty backends this package does not run on
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise InputError(f"device {str(device)!r} is not a device this package runs on (use {DEVICE_CHOICES})")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {str(device)!r} requested but CUDA is not available on this machine (use --device cpu)"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise InputError(f"device {str(device)!r}: this machine has {count} CUDA device(s), numbered 0..{count - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(
            f"device {str(device)!r} requested but MPS is not available on this machine (use --device cpu)"
        )
    if dev.type in ("cpu", "mps") and dev.index not in (None, 0):
        raise InputError(f"device {str(device)!r}: there is one {dev.type.upper()} device (use {dev.type})")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"dtype {dtype} is not supported; use one of {sorted(DTYPES)}")
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
    return DTYPES[dtype]


class ModelBundle:
    """ESM3 and its companion networks, loaded on first use.

    Args:
        weights: the weights location (see module docstring); None: ``$OPENESM3_WEIGHTS`` or the default.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"``.
        dtype: ``"fp32"`` or ``"bf16"`` (or the torch dtype) for the trunk and the decoders.
        vocabulary_dir: where the function / residue-annotation vocabularies are (see
            :class:`~openesm3.generation.encoding.ProteinTokenizers`).
    """

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: DTypeName | torch.dtype = "fp32",
        vocabulary_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from openesm3.checkpoints.loading import model_directory_of  # noqa: PLC0415

        # A model directory's own file (DIR/esm3/model.safetensors) stands for that directory, not an official .pth.
        self.weights = None if weights is None else model_directory_of(Path(weights).expanduser())
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.tokenizers = ProteinTokenizers(vocabulary_dir=vocabulary_dir)
        self._models: dict[str, nn.Module] = {}
        self._configs: dict[str, Any] = {}  # read without the weights (config_of)

    def __repr__(self) -> str:
        loaded = ", ".join(self._models) or "none yet"
        return f"ModelBundle(weights={self.weights}, device={self.device}, dtype={self.dtype}, loaded: {loaded})"

    # ---- locating and loading ----------------------------------------------------------------------------
    def _location(self, model_type: str) -> str | os.PathLike[str] | None:
        # One .pth (or model directory of ours) given as --weights is the trunk; its companions are looked for beside
        # it. A directory with only a config.json (e.g. a Hugging Face snapshot of the release) is a weights root.
        from openesm3.checkpoints.format import CONFIG_FILE, WEIGHTS_FILE  # noqa: PLC0415

        if self.weights is None or model_type == "esm3":
            return self.weights
        if self.weights.is_file():
            return self.weights.parent
        if (self.weights / CONFIG_FILE).is_file() and (self.weights / WEIGHTS_FILE).is_file():
            return self.weights.parent
        return self.weights

    def locate(self, model_type: str) -> Path:
        """Where ``model_type``'s weights are, or :class:`WeightsError` with the full instructions."""
        from openesm3.checkpoints.loading import resolve_weights  # noqa: PLC0415

        try:
            return resolve_weights(self._location(model_type), model_type)
        except WeightsError as exc:
            raise WeightsError(missing_weights_message([model_type], str(exc))) from None

    def require(self, *model_types: str) -> None:
        """Check up front that every network a task needs can be found (one message listing all missing)."""
        from openesm3.checkpoints.loading import resolve_weights  # noqa: PLC0415

        problems, missing = [], []
        for model_type in model_types:
            try:
                resolve_weights(self._location(model_type), model_type)
            except WeightsError as exc:
                problems.append(str(exc))
                missing.append(model_type)
        if problems:
            raise WeightsError(missing_weights_message(missing, "\n".join(problems)))

    def _get(self, model_type: str) -> nn.Module:
        if model_type not in self._models:
            from openesm3.checkpoints.loading import load_model  # noqa: PLC0415

            place = self.locate(model_type)
            dtype = torch.float32 if model_type == "structure_encoder" else self.dtype
            model, _ = load_model(place, model_type, device=self.device, dtype=dtype)
            self._models[model_type] = model.eval().requires_grad_(False)
        return self._models[model_type]

    @property
    def esm3(self) -> nn.Module:
        """The trunk (:class:`openesm3.models.esm3.ESM3`)."""
        return self._get("esm3")

    @property
    def structure_encoder(self) -> nn.Module:
        return self._get("structure_encoder")

    @property
    def structure_decoder(self) -> nn.Module:
        return self._get("structure_decoder")

    @property
    def function_decoder(self) -> nn.Module:
        return self._get("function_decoder")

    def check_function_vocabulary(self) -> None:
        """Load the function vocabulary and decoder, and check that the decoder's outputs are that vocabulary's
        InterPro entries and keywords; else :class:`VocabularyError` naming both (e.g. a vocabulary made by
        ``build-function-vocab`` given to the official decoder), before any protein is decoded. The tasks that
        decode function tokens (``predict_function``, ``design`` with a function track) call it themselves. The
        vocabulary and the decoder are loaded once per bundle and kept, so a later call only compares their sizes
        (no verdict is cached: a vocabulary replaced later would make it stale)."""
        from openesm3.errors import VocabularyError  # noqa: PLC0415

        vocabulary = self.tokenizers.function_vocabulary
        config = cast(Any, self.function_decoder).config
        decoder = (config.n_interpro, config.n_keywords)
        if decoder != (vocabulary.n_interpro, vocabulary.n_keywords):
            raise VocabularyError(
                f"the function decoder ({self.locate('function_decoder')}) predicts {decoder[0]} InterPro entries and "
                f"{decoder[1]} keywords, but the function vocabulary ({vocabulary.source}) has "
                f"{vocabulary.n_interpro} InterPro entries and {vocabulary.n_keywords} keywords: give the vocabulary "
                "the decoder was trained with (--vocabulary-dir or $OPENESM3_VOCAB_DIR)"
            )

    def config_of(self, model_type: str) -> Any:
        """The config of ``model_type``, read without loading its weights (the config of a directory of ours, the
        release preset for an official file, as loading uses): prompts can be checked against it before any load."""
        if model_type in self._models:
            return cast(Any, self._models[model_type]).config
        from openesm3.checkpoints.format import read_config  # noqa: PLC0415
        from openesm3.checkpoints.official import OFFICIAL_PRESETS  # noqa: PLC0415

        if model_type not in self._configs:  # kept: a batch checks every prompt's length before the trunk loads
            place = self.locate(model_type)
            self._configs[model_type] = read_config(place)[1] if place.is_dir() else OFFICIAL_PRESETS[model_type]
        return self._configs[model_type]

    @property
    def max_length(self) -> int:
        """Most tokens (BOS/EOS included) the trunk accepts."""
        return int(self.config_of("esm3").max_length)

    @property
    def n_layers(self) -> int:
        return int(self.config_of("esm3").n_layers)

    # ---- adapters to the encoding seams ------------------------------------------------------------------
    @torch.inference_mode()
    def encode_structure(self, coordinates: Tensor) -> Tensor:
        """Normalised coordinates [L, 37, 3] -> structure codes [L] (residues numbered 1..L, spec §10.2)."""
        n = coordinates.shape[0]
        coords = coordinates.to(self.device, torch.float32)[None]
        residue_index = torch.arange(1, n + 1, device=self.device)[None]
        return self.structure_encoder.encode(coords, residue_index=residue_index)[0].cpu()  # type: ignore[operator]

    @torch.inference_mode()
    def decode_structure(self, tokens: Tensor) -> DecodedStructure:
        """Structure ids [L + 2] -> backbone, pLDDT, pTM, PAE (fp32, on the CPU)."""
        out = self.structure_decoder(tokens.to(self.device)[None])
        return DecodedStructure(
            backbone=out.backbone[0].float().cpu(),
            plddt=out.plddt[0].float().cpu(),
            ptm=float(out.ptm[0]),
            pae=out.pae[0].float().cpu(),
        )

    @torch.inference_mode()
    def predict(self, tokens: np.ndarray) -> FunctionPredictions:
        """Function tokens [N, 8] -> per-residue InterPro / keyword probabilities (the function decoder seam)."""
        out = self.function_decoder(torch.as_tensor(tokens, device=self.device))
        return FunctionPredictions(
            interpro=torch.sigmoid(out.interpro_logits.float()).cpu().numpy(),
            keywords=torch.sigmoid(out.keyword_logits.float()).cpu().numpy(),
        )

    # ---- proteins <-> tensors ----------------------------------------------------------------------------
    def encode(self, protein: Protein, *, structure_tokens: bool = True) -> ProteinTensor:
        """Tokens of every track of ``protein`` (on the bundle's device). Coordinates are encoded to structure
        tokens with the structure encoder (loaded on demand) unless ``structure_tokens=False``."""
        encoder: StructureTokenEncoder | None = None
        if structure_tokens and protein.coordinates is not None:
            encoder = self.encode_structure
        return encode_protein(protein, self.tokenizers, structure_encoder=encoder, device=self.device)

    def decode(self, tensor: ProteinTensor, *, template: Protein | None = None) -> Protein:
        """A :class:`Protein` from tokens; a decoder network is loaded only if the tensor needs it."""
        return decode_protein(
            tensor,
            self.tokenizers,
            structure_decoder=self.decode_structure,
            function_decoder=self,
            template=template,
        )

    # ---- the trunk -----------------------------------------------------------------------------------------
    def check_length(self, tensor: ProteinTensor, name: str = "") -> None:
        if len(tensor) > self.max_length:
            where = f"protein {name!r}: " if name else ""
            n = len(tensor) - 2
            breaks = 0 if tensor.sequence is None else int((tensor.sequence == C.SEQUENCE_CHAINBREAK).sum())
            if breaks:  # each chain break takes a position: the residues alone may be under the limit
                raise InputError(
                    f"{where}{n} positions ({n - breaks} residues and {breaks} chain break(s)) do not fit the "
                    f"model's {self.max_length - 2}-position limit ({self.max_length} tokens with BOS/EOS)"
                )
            raise InputError(
                f"{where}{n} residues do not fit the model's {self.max_length - 2}-residue limit "
                f"({self.max_length} tokens with BOS/EOS)"
            )

    @torch.inference_mode()
    def forward(self, proteins: Sequence[ProteinTensor] | ProteinBatch, **kwargs: Any) -> Any:
        """One trunk pass over right-padded proteins (padding masked); returns ``ESM3Output``. ``kwargs`` go to
        ``ESM3.forward`` (e.g. ``output_hidden_states``)."""
        batch = proteins if isinstance(proteins, ProteinBatch) else stack(list(proteins), device=self.device)
        has_coords = bool(torch.isfinite(batch.coordinates).any())
        return self.esm3(**model_inputs(batch, condition_on_coordinates=has_coords), **kwargs)
