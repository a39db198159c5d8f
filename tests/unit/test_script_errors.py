"""The research scripts of ``scripts/`` end with one line naming the problem (exit status 2) on a bad --data,
--weights or input path, as the openesm3 commands and benchmarks/eval_tokenizer.py do, not with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.script_testing import load_script

_DATA = ["--data", "{nope}"]
CASES = {
    "chain_drift": _DATA,
    "code_informativeness": _DATA,
    "decoder_pair_diagnostic": _DATA,
    "decoder_window_diagnostic": _DATA,
    "token_noise_sensitivity": _DATA,
    "tokens_alone_input_probe": _DATA,
    "pair_head_probe": _DATA,
    "probe_stage1": _DATA,
    "calibration_sweep": [*_DATA, "--calibration-fraction", "0.1", "--out", "{nope}/sweep.json"],
    "compare_tokenizer_evals": ["{nope}/a.json", "{nope}/b.json"],
    "measure_sidechain_geometry": ["{nope}"],
    "plot_tokenizer_curves": ["{nope}", "{nope}/curves.png"],
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_a_missing_input_is_one_line(script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nope = tmp_path / "nowhere"
    argv = [a.format(nope=nope) for a in CASES[script]]
    assert load_script(script).main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{script}.py: error: "), err
    if script != "calibration_sweep":  # a path that is no dataset is read as structure files, which have no split
        assert "nowhere" in err, err
    assert not nope.exists()  # nothing written
