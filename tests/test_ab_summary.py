"""benchmarks/ab_summary.py: interleaved runs of two trees reduced to one line per configuration,
on made-up probe rows in probe_grouped's and probe_fused's shapes."""
import json
import subprocess
import sys
from pathlib import Path

from benchmarks import ab_summary

ROOT = Path(__file__).resolve().parents[1]


def _row(T, us, table=True, wrong=0, **extra):
    return {"model": "deepseek-v3", "T": T, "block_t": 1, "table": table, "us": us, "rows_not_the_oracles": wrong,
            "rows_flagged": 1, **extra}


def test_medians_changes_and_the_oracle_per_configuration():
    base = [[_row(64, 2.9), _row(512, 3.1), _row(64, 5.0, table=False)], [_row(64, 3.1), _row(512, 3.3)]]
    new = [[_row(64, 2.6), _row(512, 3.2, wrong=3)], [_row(64, 2.4), _row(512, 3.0)]]
    lines = {d["config"]["T"]: d for d in ab_summary.compare(base, new, [("table", "True")])}
    assert set(lines) == {64, 512}, "the untabled row is filtered out"
    assert lines[64]["base"] == 3.0 and lines[64]["new"] == 2.5 and lines[64]["change_pct"] == -16.7
    assert lines[64]["base_us"] == [2.9, 3.1] and lines[64]["runs_not_the_oracles"] == 0
    assert lines[512]["runs_not_the_oracles"] == 1
    text = ab_summary.table(list(lines.values()))
    assert "-16.7%" in text and "**1 runs wrong**" in text and "3.000 (2.900 / 3.100)" in text
    assert "| T=64 |" in text and text.startswith("all: block_t=1 model=deepseek-v3 table=True"), \
        "rows labelled by what tells them apart, the shared fields once"


def test_a_configuration_on_one_side_only_and_probe_fused_checks():
    base = [[{"kernel": "fused", "T": 8, "us": 2.0, "ids_ok": True, "weights_same": True}]]
    new = [[{"kernel": "fused", "T": 8, "us": 2.2, "ids_ok": False, "weights_same": True},
            {"kernel": "v9", "T": 8, "us": 1.9, "ids_ok": True, "weights_same": True}]]
    lines = {d["config"]["kernel"]: d for d in ab_summary.compare(base, new)}
    assert lines["fused"]["change_pct"] == 10.0 and lines["fused"]["runs_not_the_oracles"] == 1
    assert lines["v9"]["base"] is None and lines["v9"]["change_pct"] is None
    assert "| - |" in ab_summary.table([lines["v9"]])


def test_a_run_whose_weights_left_the_oracles_bound_counts_as_wrong():
    """Right ids and wrong weights (the eighteenth round's paired denominator on CUDA) is a wrong run."""
    base = [[{"kernel": "fused", "T": 8, "us": 2.0, "ids_ok": True, "weights_ok": True, "weights_same": True}]]
    new = [[{"kernel": "fused", "T": 8, "us": 1.9, "ids_ok": True, "weights_ok": False, "weights_same": True}]]
    (line,) = ab_summary.compare(base, new)
    assert line["runs_not_the_oracles"] == 1 and line["change_pct"] == -5.0


def test_the_command_line_fails_on_a_wrong_run(tmp_path):
    files = {}
    for name, rows in {"b1": [_row(64, 2.9)], "n1": [_row(64, 2.8)], "n2": [_row(64, 2.7, wrong=1)]}.items():
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps({"meta": {}, "rows": rows}))
    run = [sys.executable, "-m", "benchmarks.ab_summary", "--base", str(files["b1"]), "--where", "table=True"]
    ok = subprocess.run(run + ["--new", str(files["n1"]), "--out", str(tmp_path / "s.json")], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "-3.4%" in ok.stdout
    assert json.loads((tmp_path / "s.json").read_text())["lines"][0]["new"] == 2.8
    bad = subprocess.run(run + ["--new", str(files["n1"]), str(files["n2"])], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "runs wrong" in bad.stdout
    none = subprocess.run(run[:-1] + ["T=1", "--new", str(files["n1"])], cwd=ROOT, capture_output=True, text=True)
    assert none.returncode != 0 and "no probe row" in none.stderr


def test_two_sides_that_ran_one_tree_are_refused(tmp_path):
    """The runs say which parity/ they imported (meta.parity_dir): an A/B whose base runs imported the
    working tree's (as every one did before scripts/with_tree.sh) compares nothing, and says so."""
    def write(name, tree):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"meta": {"parity_dir": tree} if tree else {}, "rows": [_row(64, 2.9)]}))
        return str(path)
    run = [sys.executable, "-m", "benchmarks.ab_summary"]
    same = subprocess.run(run + ["--base", write("b", "parity"), "--new", write("n", "parity")], cwd=ROOT,
                          capture_output=True, text=True)
    assert same.returncode != 0 and "both sides ran the parity/ in parity" in same.stderr
    apart = subprocess.run(run + ["--base", write("b2", "va/base/parity"), "--new", write("n2", "parity")], cwd=ROOT,
                           capture_output=True, text=True)
    assert apart.returncode == 0, apart.stderr
    assert ab_summary.same_tree([{"meta": {}}], [{"meta": {"parity_dir": "parity"}}]) is None, "old runs are not checked"


def test_a_switch_the_base_lacks_is_ignored_on_request():
    """The pair test's A/B (twentieth round): the new tree's rows say pair_test=True and count the rows it
    proved, the base tree's say pair_test=False; --ignore pair_test pairs them, rows_pair_test is a measurement."""
    base = [[_row(64, 3.0, pair_test=False, rows_pair_test=0)]]
    new = [[_row(64, 2.4, pair_test=True, rows_pair_test=1)]]
    assert len(ab_summary.compare(base, new)) == 2, "without --ignore the two sides are two configurations"
    (line,) = ab_summary.compare(base, new, ignore=frozenset({"pair_test"}))
    assert line["change_pct"] == -20.0 and "pair_test" not in line["config"]
