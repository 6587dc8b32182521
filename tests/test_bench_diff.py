"""`parity diff` on two `parity bench` outputs: the speed table a review wants, and what it calls worse."""
import json
from pathlib import Path

import pytest

from parity import bench_diff
from parity.cli import main

ROOT = Path(__file__).resolve().parent.parent
H200 = {"device": "NVIDIA H200", "torch": "2.11.0+cu130", "triton": "3.6.0", "interpreter": False, "git_sha": "a" * 40}


def row(T, us, impl="fused", model="gemma4", E=128, dtype="bfloat16", ok=True, method="graph replay"):
    return {"impl": impl, "T": T, "E": E, "K": 8, "dtype": dtype, "us": us, "method": method, "floor_us": 1.0,
            "ids_ok": ok, "weights_ok": True, "note": "" if ok else "3 rows not the oracle's", "family": "gemma4",
            "model": model, "role": "kernel" if impl == "fused" else None}


def write(path: Path, rows, **meta) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "bench.json").write_text(json.dumps({"meta": {**H200, **meta}, "rows": rows, "skipped": []}))
    return path


BASE = [row(1, 2.00), row(512, 2.40), row(250000, 30.0), row(250000, 53.0, dtype="float32"),
        row(250000, 2000.0, impl="compile")]


def run_diff(tmp_path, new_rows, capsys, *extra, **meta):
    old = write(tmp_path / "old", BASE)
    new = write(tmp_path / "new", new_rows, **meta)
    code = main(["diff", str(old), str(new), *extra])
    return code, capsys.readouterr().out


def test_same_bench_is_no_regression(tmp_path, capsys):
    code, out = run_diff(tmp_path, BASE, capsys)
    assert code == 0 and "verdict: no regression" in out
    assert "4 timed rows in both" in out   # fused only, by default
    assert "| gemma4 | 128 | 8 | bfloat16 | 250000 | fused | 30.00 | 30.00 | +0.0% |" in out


def test_slower_beyond_both_margins_is_worse(tmp_path, capsys):
    slower = [row(1, 2.00), row(512, 2.40), row(250000, 33.0), row(250000, 53.0, dtype="float32"),
              row(250000, 2000.0, impl="compile")]
    code, out = run_diff(tmp_path, slower, capsys)
    assert code == 1
    assert "WORSE (1):\n  gemma4 (E=128, K=8) bfloat16 T=250000 fused: 30.00 -> 33.00 µs (+10.0%)" in out
    assert "verdict: REGRESSED (1 changes for the worse)" in out


@pytest.mark.parametrize("T,old_us,new_us", [(250000, 30.0, 31.4),   # +4.7%: within the relative margin
                                             (512, 2.40, 2.58)])     # +7.5% but 0.18 µs: within the absolute one
def test_changes_within_a_margin_are_noise(tmp_path, capsys, T, old_us, new_us):
    rows = [r if r["T"] != T or r["impl"] != "fused" or r["dtype"] != "bfloat16" else row(T, new_us) for r in BASE]
    code, out = run_diff(tmp_path, rows, capsys)
    assert code == 0 and "WORSE (0)" in out and "better (0)" in out
    assert f"| {old_us:.2f} | {new_us:.2f} |" in out


def test_faster_is_listed_as_better(tmp_path, capsys):
    rows = [row(1, 2.00), row(512, 2.40), row(250000, 27.0), row(250000, 53.0, dtype="float32"),
            row(250000, 2000.0, impl="compile")]
    code, out = run_diff(tmp_path, rows, capsys)
    assert code == 0 and "better (1):\n  gemma4 (E=128, K=8) bfloat16 T=250000 fused: 30.00 -> 27.00 µs (-10.0%)" in out


def test_another_card_judges_the_checks_not_the_times(tmp_path, capsys):
    rows = [row(1, 9.0), row(512, 9.0), row(250000, 90.0), row(250000, 53.0, dtype="float32", ok=False)]
    code, out = run_diff(tmp_path, rows, capsys, device="NVIDIA H100 80GB HBM3")
    assert code == 1
    assert "times not judged, the runs differ in device: NVIDIA H200 -> NVIDIA H100 80GB HBM3" in out
    assert "(not judged)" in out and "µs (+" not in out
    assert "gemma4 (E=128, K=8) float32 T=250000 fused: no longer the oracle's (3 rows not the oracle's)" in out
    assert "WORSE (1)" in out


def test_a_row_missing_now_and_another_method(tmp_path, capsys):
    rows = [row(1, 2.00), row(250000, 40.0, method="graph replay, inputs rotated beyond L2"),
            row(250000, 53.0, dtype="float32"), row(2048, 3.0)]
    code, out = run_diff(tmp_path, rows, capsys)
    assert code == 1
    assert "gemma4 (E=128, K=8) bfloat16 T=512 fused: timed in OLD only" in out
    assert ("timed another way, not compared (1):\n  gemma4 (E=128, K=8) bfloat16 T=250000 fused: graph replay -> "
            "graph replay, inputs rotated beyond L2") in out
    assert "better (0)" in out and "40.00" in out and "(not judged)" in out
    assert "timed in NEW only: gemma4 (E=128, K=8) bfloat16 T=2048 fused" in out


def test_impl_all_compares_every_implementation(tmp_path, capsys):
    rows = BASE[:-1] + [row(250000, 2500.0, impl="compile")]
    code, out = run_diff(tmp_path, rows, capsys, "--impl", "all")
    assert code == 1 and "T=250000 compile: 2000.00 -> 2500.00 µs (+25.0%)" in out
    code, out = run_diff(tmp_path, rows, capsys)   # fused alone: the compile's change is not asked about
    assert code == 0 and "compile" not in out


def test_a_benchmark_against_a_sweep_is_a_usage_error(tmp_path, capsys):
    old = write(tmp_path / "old", BASE)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "records.jsonl").write_text("")
    assert main(["diff", str(old), str(tmp_path / "sweep")]) == 2
    assert "holds a benchmark (bench.json) and" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps({"rows": []}))
    assert main(["diff", str(tmp_path / "bad.json"), str(old / "bench.json")]) == 2
    assert "is not a `parity bench` output" in capsys.readouterr().err


def test_the_committed_h200_bench_against_itself():
    b = bench_diff.Bench.read(ROOT / "reports" / "bench" / "h200")
    result = bench_diff.diff(b, b)
    assert result["common"] == sum(1 for k in b.rows if k[1] == "fused") > 0
    assert not result["worse"] and not result["better"] and not result["setup"]


def test_a_row_no_longer_timed_is_worse(tmp_path, capsys):
    rows = [dict(r, us="nan") if r["T"] == 512 and r["impl"] == "fused" else r for r in BASE]   # as jsonable writes NaN
    code, out = run_diff(tmp_path, rows, capsys)
    assert code == 1 and "gemma4 (E=128, K=8) bfloat16 T=512 fused: 2.40 µs -> not timed" in out
    assert "| 512 | fused | 2.40 | - | - |" in out


def test_plot_of_the_ratios(tmp_path, capsys):
    rows = [row(1, 2.00), row(512, 2.40), row(250000, 33.0), row(250000, 53.0, dtype="float32")]
    code, out = run_diff(tmp_path, rows, capsys, "--plot", str(tmp_path / "diff.png"))
    assert code == 1 and f"plot: {tmp_path / 'diff.png'}" in out
    assert (tmp_path / "diff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
