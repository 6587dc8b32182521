"""parity bench runs end to end (on the CPU: interpreter figures), covers every family at its real
E and K, checks every row against the oracle, times candidates, and states the targets."""
import json
import math

import torch

from parity import bench, routing
from parity.routing.contract import Unsupported


def test_bench_runs_every_family_and_checks_every_row(tmp_path):
    result = bench.run(tmp_path, Ts=(1, 33), dtypes=("bfloat16",), progress=False)
    rows = result["rows"]
    assert {r["impl"] for r in rows} >= {"fused", "softmax_all", "topk_softmax"}
    assert {(r["family"], r["model"]) for r in rows} == {
        (f, routing.family(f).model(m).name) for f, m in bench.CASES}
    for r in rows:
        m = routing.family(r["family"]).model(r["model"])
        assert (r["E"], r["K"]) == (m.E, m.K)
    assert all(r["ids_ok"] and r["weights_ok"] for r in rows), [r for r in rows if not (r["ids_ok"] and r["weights_ok"])]
    md = (tmp_path / "bench.md").read_text()
    assert "deepseek_v3 / deepseek-v3: E=256, K=8" in md and "fused vs deepseek_official" in md
    assert "Interpreter figures" in md or "Copy bandwidth" in md
    assert json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert (tmp_path / "bench.png").stat().st_size > 0


def test_bench_times_only_the_chosen_implementations(tmp_path):
    result = bench.run(tmp_path, Ts=(1,), dtypes=("float32",), families=["gemma4", "llama4"], progress=False,
                       only=("fused", "softmax_all"))
    assert {(r["family"], r["impl"]) for r in result["rows"]} == {("gemma4", "fused"), ("gemma4", "softmax_all"),
                                                                  ("llama4", "fused")}
    result = bench.run(tmp_path, Ts=(1,), dtypes=("float32",), families=["llama4"], progress=False,
                       only=("reference",))
    assert {r["impl"] for r in result["rows"]} == {"hf_llama4"}


def lowest_ids_first(gating_output, topk, router):
    """A wrong candidate: the first K experts, uniform weights."""
    T = gating_output.shape[0]
    ids = torch.arange(topk, dtype=torch.int32, device=gating_output.device).expand(T, topk).contiguous()
    return torch.full((T, topk), 1.0 / topk, device=gating_output.device), ids


def softmax_only(gating_output, topk, router):
    if router.score != "softmax":
        raise Unsupported("computes softmax routers only")
    return routing.get("softmax_fp32", "gpt_oss")(gating_output, topk, router)


def test_candidates_are_timed_checked_and_skipped_where_they_do_not_apply(tmp_path):
    result = bench.run(tmp_path, Ts=(16,), dtypes=("float32",), families=["gpt_oss", "llama4"], progress=False,
                       only=("fused",), candidates={"wrong": lowest_ids_first, "softmax_only": softmax_only})
    rows = {(r["family"], r["impl"]): r for r in result["rows"]}
    assert not rows[("gpt_oss", "wrong")]["ids_ok"] and rows[("gpt_oss", "wrong")]["role"] == "candidate"
    assert rows[("gpt_oss", "softmax_only")]["ids_ok"]
    assert ("llama4", "softmax_only") not in rows
    assert "softmax_only on llama4/llama4-maverick" in result["skipped"]
    md = (tmp_path / "bench.md").read_text()
    assert "wrong: ids WRONG" in md and "computes softmax routers only" in md


def no_kernel_here(gating_output, topk, router):
    raise NotImplementedError("Could not run 'aten::something' with arguments from the 'CPU' backend")


def test_a_plain_not_implemented_error_is_a_failed_row_not_a_skip(tmp_path):
    """Only Unsupported means 'not this router': torch's own NotImplementedError (an op without a
    kernel on this device) is a broken row."""
    result = bench.run(tmp_path, Ts=(16,), dtypes=("float32",), families=["llama4"], progress=False,
                       only=("fused",), candidates={"no_kernel_here": no_kernel_here})
    (row,) = [r for r in result["rows"] if r["impl"] == "no_kernel_here"]
    assert row["method"] == "failed" and not row["ids_ok"] and "aten::something" in row["note"]
    assert not result["skipped"]


def test_the_summary_states_each_target():
    def row(impl, T, us, role):
        return {"impl": impl, "T": T, "E": 128, "K": 8, "dtype": "bfloat16", "us": us, "floor_us": 20.0,
                "family": "mixtral", "model": "qwen3-moe", "role": role}
    rows = [row("fused", 1, 2.0, "fused"), row("fused", 250000, 50.0, "fused"),
            row("hf_qwen_moe", 250000, 900.0, "reference"), row("compile", 250000, 400.0, "compile"),
            row("compile-max-autotune", 250000, 200.0, "compile-max-autotune")]
    (s,) = bench.summary_rows({"rows": rows})
    assert math.isclose(s["floor_frac"], 0.4) and math.isclose(s["vs_reference"], 18.0)
    assert s["meets"] == {"floor": False, "eager": False, "compile": False, "small": True}
    assert s["small_max_us"] == 2.0


def test_bench_cli_rejects_unknown_implementations(capsys):
    from parity import cli
    assert cli.main(["bench", "--impl", "fused,torch_magic", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--impl" in err and "torch_magic unknown" in err and "sort_baseline" in err


def test_a_partial_bench_says_what_it_did_not_time():
    """`parity bench --impl fused,sort_baseline` times no reference and no compile: the summary
    marks those speed-ups and targets '-', not 'nanx (None)' and a failed target."""
    def row(impl, T, us, role):
        return {"impl": impl, "T": T, "E": 128, "K": 8, "dtype": "bfloat16", "us": us, "floor_us": 20.0,
                "family": "gemma4", "model": "gemma4", "role": role, "ids_ok": True, "weights_ok": True,
                "method": "graph replay", "note": ""}
    rows = [row("fused", 1, 2.0, "fused"), row("fused", 250000, 35.0, "fused"),
            row("sort_baseline", 250000, 370.0, "baseline")]
    (s,) = bench.summary_rows({"rows": rows})
    assert s["meets"]["eager"] is None and s["meets"]["compile"] is None
    meta = {"device": "NVIDIA H200", "torch": "2.11", "triton": "3.6", "git_sha": "abc", "interpreter": False,
            "copy_bandwidth_TBps": 4.2, "graph_calls": 20, "reps": 50}
    md = bench.markdown({"meta": meta, "rows": rows, "skipped": {}})
    assert "nan" not in md and "None" not in md, md
    assert "| 35.0 | 57.1% | - | - | - | 2.00 | yes | - | - | yes |" in md   # a tenth: 49.7% is no 50%


def test_compiled_references_are_warmed_at_the_largest_batch_first():
    """warm_compiled calls the torch.compile'd implementations (and nothing else) once on the batch
    it is given: run gives it the case's largest T before timing any, so that a dynamic-shape
    compile is tuned there, not at the first T above 1 (8 rows)."""
    seen = []

    def impl(name):
        return lambda g, K, arg: seen.append((name, tuple(g.shape), K, arg))

    fns = {"hf_ref": ("reference", impl("hf_ref")), "compile": ("compile", impl("compile")),
           "compile-max-autotune": ("compile-max-autotune", impl("compile-max-autotune")),
           "fused": ("fused", impl("fused")), "mine": ("candidate", impl("mine"))}
    g = torch.zeros(250, 8)
    assert bench.warm_compiled(fns, g, 2, "router") == ["compile", "compile-max-autotune"]
    assert seen == [("compile", (250, 8), 2, "router"), ("compile-max-autotune", (250, 8), 2, "router")]


def test_a_compile_that_fails_to_warm_is_left_to_its_timed_rows():
    def broken(g, K, arg):
        raise RuntimeError("inductor failed")

    fns = {"compile": ("compile", broken), "compile-max-autotune": ("compile-max-autotune", lambda g, K, arg: None)}
    assert bench.warm_compiled(fns, torch.zeros(4, 8), 2, None) == ["compile-max-autotune"]
