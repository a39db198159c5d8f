"""scripts/compare_tokenizer_evals.py: paired per-protein differences of two tokenizer evaluations."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.script_testing import load_script


def _module() -> ModuleType:
    return load_script("compare_tokenizer_evals")


def _eval(rows: dict[str, tuple[float, float, float]]) -> dict:
    return {"proteins": [{"name": n, "lddt_ca": a, "backbone_rmsd": b, "tm_score": c} for n, (a, b, c) in rows.items()]}


def test_paired_differences_on_shared_proteins(tmp_path: Path) -> None:
    compare = _module()
    first = _eval({"a": (0.6, 2.0, 0.5), "b": (0.5, 4.0, 0.4), "c": (0.9, 1.0, 0.9), "only_first": (1.0, 0.0, 1.0)})
    second = _eval({"a": (0.5, 3.0, 0.5), "b": (0.3, 5.0, 0.5), "c": (0.8, 1.0, 0.7)})
    result = compare.compare(first, second, n_boot=200)
    lddt, rmsd, tm = result["lddt_ca"], result["backbone_rmsd"], result["tm_score"]
    assert lddt["n_proteins"] == 3  # the protein only the first scored is left out
    assert lddt["mean_difference"] == pytest.approx(0.4 / 3)
    assert lddt["first_better_fraction"] == 1.0
    assert lddt["ci95_low"] <= lddt["mean_difference"] <= lddt["ci95_high"]
    assert rmsd["mean_difference"] == pytest.approx(-2.0 / 3) and rmsd["first_better_fraction"] == pytest.approx(2 / 3)
    assert tm["first_better_fraction"] == pytest.approx(1 / 3)  # a tie is not better
    paths = [tmp_path / "first.json", tmp_path / "second.json"]
    for path, data in zip(paths, (first, second), strict=True):
        path.write_text(json.dumps(data))
    out = tmp_path / "paired.json"
    assert compare.main([str(paths[0]), str(paths[1]), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["paired"]["lddt_ca"]["n_proteins"] == 3
    assert "all_atom_rmsd" not in result  # neither evaluation has it
    # all-atom RMSD over the proteins both evaluations have it for (None: no side chains)
    first["proteins"][0]["all_atom_rmsd"], first["proteins"][1]["all_atom_rmsd"] = 3.0, None
    second["proteins"][0]["all_atom_rmsd"], second["proteins"][1]["all_atom_rmsd"] = 4.5, 2.0
    all_atom = compare.compare(first, second, n_boot=50)["all_atom_rmsd"]
    assert all_atom["n_proteins"] == 1 and all_atom["mean_difference"] == pytest.approx(-1.5)
    assert all_atom["first_better_fraction"] == 1.0
    with pytest.raises(SystemExit, match="share no protein"):
        compare.compare(first, _eval({"z": (0.1, 1.0, 0.1)}))


def test_paired_confidence_errors_and_correlations() -> None:
    compare = _module()
    tm = [0.3, 0.5, 0.7, 0.9]
    first = _eval({n: (0.5, 1.0, t) for n, t in zip("abcd", tm, strict=True)})
    second = _eval({n: (0.5, 1.0, t) for n, t in zip("abcd", tm, strict=True)})
    for i, p in enumerate(first["proteins"]):  # pTM exact but for protein d; the second reads 0.1 high everywhere
        p["ptm"] = tm[i] + (0.2 if i == 3 else 0.0)
        second["proteins"][i]["ptm"] = tm[i] + 0.1
    result = compare.compare(first, second, n_boot=200)
    error = result["ptm_abs_error"]
    assert error["mean_difference"] == pytest.approx((-0.1 * 3 + 0.1) / 4)
    assert error["first_mean"] == pytest.approx(0.05) and error["second_mean"] == pytest.approx(0.1)
    assert error["first_better_fraction"] == pytest.approx(3 / 4)
    r = result["ptm_vs_tm_score_r"]
    assert r["second"] == pytest.approx(1.0) and r["first"] < 1.0
    assert r["mean_difference"] == pytest.approx(r["first"] - 1.0) and r["ci95_low"] <= r["ci95_high"] <= 1e-12
    assert "mean_plddt_abs_error" not in result  # neither evaluation has the pLDDT


def test_atomic_write_json_creates_parents_and_replaces(tmp_path: Path) -> None:
    from openesm3.utils.atomic import atomic_write_json

    path = tmp_path / "new" / "dir" / "out.json"
    atomic_write_json(path, {"a": [1, 2]})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'
    atomic_write_json(path, [3], indent=None)
    assert path.read_text() == "[3]\n" and [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temp left
