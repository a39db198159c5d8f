"""Fixtures shared by parity tests: a working directory in which the official package finds its data files.

The official package reads two files of its Hugging Face release relative to the working directory
(``INFRA_PROVIDER=1``): the LSH hyperplanes and the residue-annotation CSV. Neither is available here, so
``oracle_workdir`` writes seeded stand-ins in their exact formats with our own builder
(:mod:`openesm3.tokenizers.build`) under ``<root>/data/``, next to links to the four vocabulary files shipped
inside the installed ``esm`` package. ``<root>`` is then a complete vocabulary directory for our loaders too,
so both implementations read the very same bytes.

Use ``with oracle_workdir.active(): ...`` around every call into the official package that may read data
files (constructing tokenizers, the first tokenize call, ``generate``); the previous working directory is
restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openesm3 import constants as C
from openesm3.tokenizers import build
from openesm3.tokenizers.vocabulary import FUNCTION_FILES, esm_package_data_dir

STANDIN_SEED = 20240625
# Kinds of residue-level sites; the stand-in labels are "<kind> <n>" plus case/punctuation variants.
_SITE_KINDS = (
    "active site", "binding site", "metal binding", "disulfide bond", "modified residue", "glycosylation site",
    "cross-link", "catalytic residue", "zinc binding", "heme binding", "ATP binding", "substrate binding",
)  # fmt: skip


def standin_residue_label_counts(seed: int, n_groups: int = C.RESIDUE_N_LABELS) -> dict[str, int]:
    """Raw residue labels with protein counts: ``n_groups`` groups of 1-3 spellings (case / punctuation
    variants), counts drawn from a narrow range so that many groups tie (exercising the tie order)."""
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for g in range(n_groups):
        base = f"{_SITE_KINDS[g % len(_SITE_KINDS)]} {g // len(_SITE_KINDS) + 1}"
        spellings = [base, base.capitalize(), base.replace(" ", "-") + ";"][: int(rng.integers(1, 4))]
        for spelling in spellings:
            counts[spelling] = int(rng.integers(1001, 1060))
    return counts


def standin_choose_clean(group: Sequence[tuple[str, int]]) -> str:
    """Most frequent spelling, except that every group whose key ends in 7 gets a clean name that is not one
    of its raw labels: the official lookup (label -> label_clean) then yields <unk> (spec §3.4 quirk)."""
    key = build.residue_label_key(group[0][0])
    if key.endswith("7"):
        return key.upper()
    return build.most_frequent_label(group)


@dataclass(frozen=True)
class OracleWorkdir:
    """A directory ``root`` whose ``data/`` holds every vocabulary file the official package reads."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @contextlib.contextmanager
    def active(self) -> Iterator[Path]:
        """Run the enclosed code with ``root`` as working directory and ``INFRA_PROVIDER=1``."""
        previous = Path.cwd()
        old_env = os.environ.get("INFRA_PROVIDER")
        os.environ["INFRA_PROVIDER"] = "1"
        os.chdir(self.root)
        try:
            yield self.root
        finally:
            os.chdir(previous)
            if old_env is None:
                os.environ.pop("INFRA_PROVIDER", None)
            else:
                os.environ["INFRA_PROVIDER"] = old_env


@pytest.fixture(scope="session")
def oracle_workdir(tmp_path_factory: pytest.TempPathFactory, esm_reference: Any) -> OracleWorkdir:
    package_data = esm_package_data_dir()
    if package_data is None or not package_data.is_dir():
        pytest.fail("the official esm package (oracle) has no data/ folder: run scripts/install_reference.sh")
    root = tmp_path_factory.mktemp("oracle_workdir")
    data = root / "data"
    data.mkdir()
    for name in FUNCTION_FILES[:-1]:  # the four files shipped inside the package
        shutil.copyfile(package_data / name, data / name)
    hyperplanes = build.draw_hyperplanes(C.N_KEYWORDS, seed=STANDIN_SEED)
    build.write_hyperplanes(hyperplanes, data / C.LSH_HYPERPLANES_FILE)
    residue_vocab = build.build_residue_annotation_vocabulary(
        standin_residue_label_counts(STANDIN_SEED), min_proteins=1000, choose_clean=standin_choose_clean
    )
    build.write_residue_annotation_vocabulary(residue_vocab, data)
    return OracleWorkdir(root)


@pytest.fixture(scope="session")
def reference_tokenizers(oracle_workdir: OracleWorkdir, esm_reference: Any) -> Any:
    """The official tokenizer collection, built and warmed up (data files read) inside the oracle workdir."""
    from esm.sdk.api import FunctionAnnotation  # noqa: PLC0415
    from esm.tokenization import get_esm3_model_tokenizers  # noqa: PLC0415

    with oracle_workdir.active():
        tokenizers = get_esm3_model_tokenizers()
        tokenizers.function.encode(tokenizers.function.tokenize([FunctionAnnotation("IPR000001", 1, 1)], 1))
        residue = tokenizers.residue_annotations
        label = residue.vocabulary[-1]
        sample = {"interpro_site_descriptions": [label], "interpro_site_starts": [1], "interpro_site_ends": [1],
                  "interpro_site_residues": ["M"]}  # fmt: skip
        residue.encode(residue.tokenize(sample, "M"))
    return tokenizers
