"""parity bench runs end to end (on the CPU: interpreter figures) and checks every row."""
import json

from parity import bench


def test_bench_runs_and_checks_every_row(tmp_path):
    result = bench.run(tmp_path, Ts=(1, 33), dtypes=("bfloat16",), progress=False)
    rows = result["rows"]
    assert {r["impl"] for r in rows} >= {"fused", "softmax_all", "topk_softmax"}
    assert all(r["ids_ok"] and r["weights_ok"] for r in rows), rows
    md = (tmp_path / "bench.md").read_text()
    assert "fused" in md and ("Interpreter figures" in md or "Copy bandwidth" in md)
    assert json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert (tmp_path / "bench.png").stat().st_size > 0


def test_bench_times_only_the_chosen_implementations(tmp_path):
    result = bench.run(tmp_path, Ts=(1,), dtypes=("float32",), progress=False, only=("fused", "softmax_all"))
    assert {r["impl"] for r in result["rows"]} == {"fused", "softmax_all"}


def test_bench_cli_rejects_unknown_implementations(capsys):
    from parity import cli
    assert cli.main(["bench", "--impl", "fused,torch_magic", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--impl" in err and "torch_magic unknown" in err and "sort_baseline" in err
