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
                 "--candidate", "cli_candidates:correct", "--candidate", "cli_candidates:no_float16",
                 "--candidate", "cli_candidates:computes_nothing"])
    out = capsys.readouterr().out
    assert code == 1
    assert "verdict: FAIL" in out
    assert "cli_candidates:wrong_dtype: weights: expected dtype torch.float32, got torch.float64" in out
    assert "cli_candidates:wrong_shape: weights: expected shape (" in out
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    errors = {r["impl"] for r in records if r["kind"] == "error"}
    assert errors == {"cli_candidates:wrong_dtype", "cli_candidates:wrong_shape"}

    # Unsupported: the cases a candidate declines are not judged; declining them all is a failure
    n_cases = len({r["case_id"] for r in records})
    fp16 = {r["case_id"] for r in records if r["case"]["dtype"] == "float16"}
    declined = {r["impl"]: set() for r in records if r["kind"] == "unsupported"}
    for r in records:
        if r["kind"] == "unsupported":
            declined[r["impl"]].add(r["case_id"])
    assert declined == {"cli_candidates:no_float16": fp16, "cli_candidates:computes_nothing": {r["case_id"] for r in records}}
    gemma4 = json.loads((tmp_path / "summary.json").read_text())["families"]["gemma4"]
    assert gemma4["candidates"]["cli_candidates:no_float16"]["ok"]
    assert gemma4["candidates"]["cli_candidates:no_float16"]["cases"] == n_cases - len(fp16)
    assert "cli_candidates:computes_nothing" not in gemma4["candidates"]
    assert f"cli_candidates:computes_nothing computes none of the {n_cases} cases: computes_nothing: needs E = 7" in \
        gemma4["verdict"]["reasons"]
    assert not any("no_float16" in r for r in gemma4["verdict"]["reasons"])
    assert f"cli_candidates:no_float16: does not compute {len(fp16)} of {n_cases} cases" in out
    assert f"- cli_candidates:no_float16: {len(fp16)} of {n_cases} cases (no_float16: built for" in \
        (tmp_path / "report.md").read_text()
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
