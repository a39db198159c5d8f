"""The dependency floors in pyproject.toml are the versions the code was shown to need (docs/dependencies.md).

Each floor below is the first release that has what the code uses; lowering one in pyproject.toml, or pinning
another in scripts/check_floors.sh (which installs the floors and runs the tests there), fails here.
"""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from tests.conftest import REPO

# package -> (the first version that has everything used, why). torch's floors differ by platform: "mps" only
# exists on macOS, and it is the only use that needs more than 2.3.
NEEDED = {
    "torch": ("2.3", "torch.compiler.is_compiling (StructureDecoder.forward); 2.2 has no such attribute"),
    "torch (macOS)": ("2.5", 'torch.autocast(device_type="mps"): autocast supports MPS from 2.5; 2.3 raises'),
    "numpy": ("1.25", "biotite >= 1.1 itself needs numpy >= 1.25: 1.24 cannot be installed beside it"),
    "biotite": ("1.1", "1.0 casts chain ids to 4 characters: 'data_x' was written to mmCIF/BinaryCIF as 'data'"),
    "safetensors": ("0.4.4", "0.4.0-0.4.3 cannot read back an empty tensor dict saved with metadata"),
    "mypy": ("1.20", "mypy 1.8 to 1.19 report errors in src/openesm3 (16 with 1.8.0, 1 with 1.19.1); 1.20.0 none"),
    "einops": ("0.7", "not imported by the library; the floor is kept for the official package in tests"),
}


def _floors() -> dict[str, Version]:
    """package -> declared floor, from the dependencies and every extra of pyproject.toml ([project] and below)."""
    text = (REPO / "pyproject.toml").read_text()
    project = text[text.index("[project]") : text.index("[project.scripts]")]
    floors: dict[str, Version] = {}
    for quoted in re.findall(r'"([^"]+)"', project):
        try:
            req = Requirement(quoted)
        except InvalidRequirement:  # a description, an author
            continue
        lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
        if lower:
            macos = req.marker is not None and str(req.marker) == 'sys_platform == "darwin"'
            floors[req.name + (" (macOS)" if macos else "")] = min(lower)
    return floors


def test_every_floor_is_at_least_what_the_code_needs() -> None:
    floors = _floors()
    for name, (version, why) in NEEDED.items():
        assert name in floors, f"pyproject.toml declares no floor for {name}"
        assert floors[name] >= Version(version), f"{name}>={floors[name]} but {version} is needed: {why}"


def test_the_floor_script_installs_exactly_the_declared_floors() -> None:
    script = (REPO / "scripts" / "check_floors.sh").read_text()
    pins = {name.lower(): Version(v) for name, v in re.findall(r"\b([A-Za-z][\w.-]*)==([\d.]+)\b", script)}
    for name, floor in _floors().items():
        if name.startswith("torch"):
            continue  # untestable here: the script keeps torch 2.13.0 (docs/dependencies.md)
        assert pins.get(name) == floor, f"scripts/check_floors.sh pins {name}=={pins.get(name)}, the floor is {floor}"


def test_the_docs_list_the_declared_floors() -> None:
    doc = (REPO / "docs" / "dependencies.md").read_text()
    rows = dict(re.findall(r"^\| `?([\w. ()]+?)`? \| `?>= ?([\d.]+)`? \|", doc, flags=re.M))
    for name, floor in _floors().items():
        assert name in rows, f"docs/dependencies.md has no row for {name}"
        assert Version(rows[name]) == floor, f"docs/dependencies.md says {name} >= {rows[name]}, pyproject {floor}"
