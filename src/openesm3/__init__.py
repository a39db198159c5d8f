"""OpenESM3: an open, exact and fast implementation of ESM3 (Hayes et al., 2024).

Layers, lowest first (nothing imports a higher layer): ``constants``/``config`` -> ``structure`` (numpy,
biotite) -> ``geometry`` (torch, fp32) -> ``tokenizers`` -> ``layers``/``models`` -> ``checkpoints`` ->
``generation``/``training`` -> ``cli``.

The Python API's main names are importable from here (``from openesm3 import Protein, ModelBundle, fold``); each
lives in its home module above (``__all__`` lists them, docs/usage.md "Python API" says what they are). They are
imported on first use (PEP 562), so ``import openesm3`` (and the CLI's start-up) loads neither numpy nor torch.
"""

# ``typing.TYPE_CHECKING`` without importing typing: type checkers take any ``TYPE_CHECKING`` as true.
TYPE_CHECKING = False

__version__ = "0.1.0"

# Public name -> its home module. The TYPE_CHECKING imports below must list the same names from the same modules
# (tests/unit/test_public_api.py checks it): type checkers and IDEs read those, Python reads this table.
_EXPORTS: dict[str, str] = {
    # records and settings
    "Protein": "openesm3.protein",
    "FunctionAnnotation": "openesm3.annotations",
    "GenerationConfig": "openesm3.config",
    "TaskDecoding": "openesm3.config",
    # weights and models
    "ModelBundle": "openesm3.generation.bundle",
    "load_model": "openesm3.checkpoints.loading",
    "load_structure_tokenizer": "openesm3.checkpoints.bundled",
    # structure files
    "load_structure": "openesm3.structure.io",
    "load_chain": "openesm3.structure.io",
    # the commands' Python counterparts
    "embed_proteins": "openesm3.generation.embedding",
    "pseudo_log_likelihood": "openesm3.generation.scoring",
    "masked_marginal_scores": "openesm3.generation.scoring",
    "wt_marginal_scores": "openesm3.generation.scoring",
    "parse_variant": "openesm3.generation.variants",
    "fold": "openesm3.generation.tasks",
    "inverse_fold": "openesm3.generation.tasks",
    "predict_function": "openesm3.generation.tasks",
    "design": "openesm3.generation.design",
    "design_prompt": "openesm3.generation.design",
    "Motif": "openesm3.generation.design",
    "select_motif": "openesm3.generation.design",
    "generate": "openesm3.generation.iterative",
    "encode_structure": "openesm3.generation.structure_tokens",
    "decode_structure": "openesm3.generation.structure_tokens",
    # errors
    "OpenESM3Error": "openesm3.errors",
    "InputError": "openesm3.errors",
    "WeightsError": "openesm3.errors",
}

__all__ = [
    "FunctionAnnotation",
    "GenerationConfig",
    "InputError",
    "ModelBundle",
    "Motif",
    "OpenESM3Error",
    "Protein",
    "TaskDecoding",
    "WeightsError",
    "decode_structure",
    "design",
    "design_prompt",
    "embed_proteins",
    "encode_structure",
    "fold",
    "generate",
    "inverse_fold",
    "load_chain",
    "load_model",
    "load_structure",
    "load_structure_tokenizer",
    "masked_marginal_scores",
    "parse_variant",
    "predict_function",
    "pseudo_log_likelihood",
    "select_motif",
    "wt_marginal_scores",
]

if TYPE_CHECKING:
    from openesm3.annotations import FunctionAnnotation
    from openesm3.checkpoints.bundled import load_structure_tokenizer
    from openesm3.checkpoints.loading import load_model
    from openesm3.config import GenerationConfig, TaskDecoding
    from openesm3.errors import InputError, OpenESM3Error, WeightsError
    from openesm3.generation.bundle import ModelBundle
    from openesm3.generation.design import Motif, design, design_prompt, select_motif
    from openesm3.generation.embedding import embed_proteins
    from openesm3.generation.iterative import generate
    from openesm3.generation.scoring import masked_marginal_scores, pseudo_log_likelihood, wt_marginal_scores
    from openesm3.generation.structure_tokens import decode_structure, encode_structure
    from openesm3.generation.tasks import fold, inverse_fold, predict_function
    from openesm3.generation.variants import parse_variant
    from openesm3.protein import Protein
    from openesm3.structure.io import load_chain, load_structure


def _lazy_attribute(name: str) -> object:
    """Import a public name's home module on first access and keep the name here (later lookups skip this)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# Hidden from type checkers: a module ``__getattr__`` would make them accept any misspelt ``openesm3.X`` as Any.
if not TYPE_CHECKING:
    __getattr__ = _lazy_attribute
