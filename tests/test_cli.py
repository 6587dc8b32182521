"""The `parity` command: exit codes, error messages, records kept when a candidate fails."""
import json

import pytest

from parity.cli import main


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("fused", "oracle", "mutant-no-scale", "smoke", "bf16-grid", "upstream-1e-2", "derived"):
        assert word in out


def test_bad_grid_name(tmp_path, capsys):
    assert main(["sweep", "--grid", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown grid 'nope'; known: upstream, default, smoke" in capsys.readouterr().err


@pytest.mark.parametrize("spec,message", [
    ("no_colon", "--candidate: expected module:function, got 'no_colon'"),
    ("no_such_module_xyz:f", "--candidate 'no_such_module_xyz:f': cannot import module 'no_such_module_xyz': ModuleNotFoundError"),
    ("cli_candidates:missing", "--candidate 'cli_candidates:missing': module 'cli_candidates' has no attribute 'missing'"),
    ("cli_candidates:NOT_A_FUNCTION", "'NOT_A_FUNCTION' is a int, not a function"),
])
def test_bad_candidate_path(spec, message, tmp_path, capsys):
    assert main(["sweep", "--grid", "smoke", "--out", str(tmp_path), "--candidate", spec]) == 2
    assert message in capsys.readouterr().err


def test_bad_baseline(tmp_path, capsys):
    assert main(["sweep", "--grid", "smoke", "--out", str(tmp_path), "--baseline", "numpy"]) == 2
    assert "--baseline: expected one of softmax_all, topk_softmax, hf_gemma4, oracle for gemma4, got 'numpy'" in capsys.readouterr().err


def test_contract_breaking_candidates_fail_the_sweep_and_keep_records(tmp_path, capsys):
    code = main(["sweep", "--grid", "smoke", "--out", str(tmp_path), "--no-progress",
                 "--candidate", "cli_candidates:wrong_dtype", "--candidate", "cli_candidates:wrong_shape",
                 "--candidate", "cli_candidates:correct"])
    out = capsys.readouterr().out
    assert code == 1
    assert "verdict: FAIL" in out
    assert "cli_candidates:wrong_dtype: weights: expected dtype torch.float32, got torch.float64" in out
    assert "cli_candidates:wrong_shape: weights: expected shape (" in out
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    errors = {r["impl"] for r in records if r["kind"] == "error"}
    assert errors == {"cli_candidates:wrong_dtype", "cli_candidates:wrong_shape"}
    pairs = {r["pair"] for r in records if r["kind"] == "pair"}
    assert {"fused~softmax_all", "cli_candidates:correct~oracle"} <= pairs   # the rest went on
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"meta", "families", "verdict"} <= set(summary)
    assert {"cases", "tolerances", "policies", "mutants", "candidates"} <= set(summary["families"]["gemma4"])
    assert (tmp_path / "report.md").read_text().startswith("# parity report")

    # re-render and the tolerance table from the same directory
    assert main(["report", str(tmp_path)]) == 1
    assert main(["tolerances", str(tmp_path)]) == 0
    assert "fused~softmax_all" in capsys.readouterr().out


def test_report_of_missing_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "no records.jsonl" in capsys.readouterr().err
