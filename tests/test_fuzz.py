"""The fuzzer (parity.fuzz, `parity fuzz`): its regimes, every family against the oracle at CI scale
(at least 10**5 rows), planted bugs found and kept as cases, kept cases replayed."""
import json
from pathlib import Path

import pytest
import torch

from external_candidates import higher_id_ties
from parity import fuzz, routing
from parity.analysis import classify_ids
from parity.cli import main

CASES = sorted((Path(__file__).parent / "fuzz_cases").glob("*.json"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_regimes_hold_what_they_promise(dtype):
    n, E, K = 64, 32, 4
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    r = lambda name: fuzz.regime_rows(name, n, E, K, dtype, gen())  # noqa: E731
    ties = r("ties").float()
    assert ((ties.sort(dim=-1, descending=True).values[:, K - 1:K] == ties).sum(-1) > 1).float().mean() > 0.5
    near = r("near-ties")
    ranked = near.sort(dim=-1, descending=True, stable=True).values
    assert torch.equal(ranked[:, K], fuzz._one_ulp_below(ranked[:, K - 1]))     # one ulp apart, in the dtype
    assert torch.isnan(r("nan")).any(-1).all()
    inf = r("inf")
    assert torch.isposinf(inf).any(-1).all() and torch.isneginf(inf).any(-1).all()
    neginf = r("all-neginf")
    assert torch.isneginf(neginf).all(-1)[0::2].all() and (torch.isfinite(neginf).sum(-1)[1::2] == K - 1).all()
    huge = r("huge")
    assert torch.isfinite(huge).all() and huge.abs().max() > torch.finfo(dtype).max / 16
    sub = r("subnormal")
    assert (sub.abs() < torch.finfo(dtype).tiny).all() and (sub != 0).any()
    with pytest.raises(ValueError, match="regime: unknown 'nope'"):
        r("nope")


def test_chunks_interleave_every_regime_reproducibly():
    a, reg = fuzz.chunk_logits(100, 16, 2, torch.bfloat16, 3, 1, "cpu")
    b, _ = fuzz.chunk_logits(100, 16, 2, torch.bfloat16, 3, 1, "cpu")
    assert torch.equal(a.view(torch.int16), b.view(torch.int16))
    assert reg.tolist() == [i % len(fuzz.REGIMES) for i in range(100)]
    c, _ = fuzz.chunk_logits(100, 16, 2, torch.bfloat16, 3, 2, "cpu")
    assert not torch.equal(a[0::10].float(), c[0::10].float())


def test_every_family_at_ci_scale_has_no_difference():
    results = [fuzz.fuzz(name, 1 << 15, dtype="bfloat16", seed=11, chunk=1 << 14) for name in routing.FAMILIES]
    assert sum(r.rows for r in results) >= 10**5
    for r in results:
        assert r.differences == 0 and not r.examples, r.line()
    gemma4 = results[0]
    assert gemma4.impl == "fused" and gemma4.exact and gemma4.special == 0 and gemma4.tie_explained == 0
    assert {r.family for r in results if r.exact} == set(routing.FAMILIES)   # every family has a kernel


def test_ties_count_only_for_a_kernel_that_claims_the_oracles_choice():
    lenient = fuzz.fuzz("gemma4", 2000, impl=higher_id_ties, chunk=2000)
    assert lenient.differences == 0 and lenient.tie_explained > 0
    strict = fuzz.fuzz("gemma4", 2000, impl=higher_id_ties, chunk=2000, exact=True)
    assert strict.by_kind["tie_rule"] == lenient.tie_explained == strict.differences
    assert {e["kind"] for e in strict.examples} == {"tie_rule"}


@pytest.mark.parametrize("mutant,kind", [("mutant-no-max-sub", "nonfinite"), ("mutant-duplicate", "genuine"),
                                         ("mutant-approx-exp", "weights")])
def test_planted_bugs_are_found_kept_and_replayed(mutant, kind):
    r = fuzz.fuzz("gemma4", 3000, impl=mutant, chunk=3000, max_examples=3)
    assert r.by_kind[kind] > 0 and len(r.examples) == 3
    for case in r.examples:
        case = json.loads(json.dumps(case))            # as written to disk
        assert fuzz.replay(case) == [case["kind"]]      # the bug, again, from the stored row
        assert fuzz.replay(case, impl="fused") == []    # parity's kernel routes that row right


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_kept_cases_route_right_through_the_familys_own_implementation(path):
    """Rows the fuzzer once flagged (tests/fuzz_cases: found by planted bugs, or by a real one),
    replayed against the family's kernel: a regression test per row. And the bug still reproduces."""
    case = json.loads(path.read_text())
    assert fuzz.replay(case, impl=None if case["impl"] == "fused" else "fused" if case["family"] == "gemma4" else None) == []
    assert fuzz.replay(case) == [case["kind"]]


def test_cli(tmp_path, capsys):
    assert main(["fuzz", "--rows", "4000", "--family", "llama4,gpt_oss", "--model", "all", "--dtype", "float32,bfloat16",
                 "--chunk", "1024", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fuzz llama4 (llama4-maverick, E=128, K=1) fused float32: 4,096 rows, 0 differences" in out
    assert "fuzz gpt_oss (gpt-oss-20b, E=32, K=4) fused bfloat16: 4,096 rows, 0 differences" in out
    assert out.index("llama4-scout, E=16, K=1) fused float32") < out.index("llama4-maverick, E=128, K=1) fused bfloat16")
    assert "32,768 rows over 8 runs, 0 differences" in out
    assert "| llama4 | llama4-maverick | fused |" in (tmp_path / "fuzz.md").read_text()
    assert main(["fuzz", "--rows", "1", "--family", "deepseek_v3", "--every-tile", "--chunk", "64", "--dtype", "float32",
                 "--out", str(tmp_path / "tiles"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fuzz deepseek_v3 (deepseek-v3, E=256, K=8) fused float32: 194 rows in 12 launches of 12 sizes (1 to 64 rows), " \
           "0 differences" in out
    assert "1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64 rows" in (tmp_path / "tiles" / "fuzz.md").read_text()
    assert main(["fuzz", "--rows", "2000", "--family", "gemma4", "--impl", "mutant-no-renorm", "--chunk", "2000",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 1
    assert len(list((tmp_path / "bad" / "cases").glob("*.json"))) == fuzz.MAX_EXAMPLES
    for argv, message in ((["--impl", "nope", "--family", "gemma4"], "--impl: expected one of"),
                          (["--dtype", "half"], "--dtype: expected names from"),
                          (["--rows", "0"], "--rows: expected at least 1"),
                          (["--model", "qwen"], "--model: expected 'all' or models of"),
                          (["--family", "qwen"], "family: unknown family 'qwen'")):
        assert main(["fuzz", *argv, "--no-progress"]) == 2
        assert message in capsys.readouterr().err


FOUND = sorted((Path(__file__).parent / "fuzz_cases" / "found").glob("*.json"))


@pytest.mark.parametrize("path", FOUND, ids=[p.stem for p in FOUND])
def test_rows_the_fuzzer_found_on_the_gpu_are_classified_as_what_they_are(path):
    """Rows a real implementation routed differently on the H200 (reports/h200-reliability): judged
    from the stored outputs, so on any machine. Mixtral's fp32 router on nearly flat fp32 rows chose
    between logits 3 ulps apart the other way: a rounding-sized flip of its softmax, a near-tie."""
    case = json.loads(path.read_text())
    g = torch.tensor([case["logits"]], dtype=getattr(torch, case["dtype"]))
    v = classify_ids(g, torch.tensor([case["candidate"]["ids"]]), torch.tensor([case["oracle"]["ids"]]),
                     router=fuzz.case_router(case))
    assert bool(v.near_tie[0]) and not bool(v.genuine[0])


def _launch(family: str, model, dtype: torch.dtype, T: int, interpreter: bool):
    """What the family's kernel would launch for T rows (its plan on a meta tensor): tile, warps and
    every compile-time argument, without the row count itself."""
    from parity.routing import fused, fused_grouped

    fam = routing.family(family)
    router = fam.make_router(model, "randn", 0, device="cpu")
    g = torch.empty(T, model.E, dtype=dtype, device="meta")
    scale = torch.empty(model.E, device="meta")
    if fused.grouped(router):
        p = fused_grouped.plan(g, model.K, scale, scale, router.n_group, router.topk_group, router.renormalize,
                               interpreter=interpreter)
        return ("grouped", p.block_t, p.num_warps, tuple(sorted(p.constexprs.items())), p.max_registers, p.exact_rows)
    score, renorm = fused.SCORES[(router.score, router.renormalize)]
    p = fused.plan(g, model.K, scale, interpreter=interpreter, score=score, renormalize=renorm)
    return ("route", p.tile, tuple(sorted(p.constexprs.items())), p.max_registers)


@pytest.mark.parametrize("interpreter,largest", [(False, 1 << 20), (True, 1 << 14)], ids=["gpu-table", "interpreter-table"])
def test_table_sizes_meet_every_launch_the_tables_choose(interpreter, largest):
    """fuzz.table_sizes(largest) meets every launch the kernels' tables choose for every model and
    dtype at T <= largest (sampled: every T to 4096, then random T), and on the GPU's table at any T
    (to 2**21): the default --chunk there, 2**20, meets every tile. (The interpreter's table grows
    further, to the tiles of 2**19 rows and more, which CI does not run.)"""
    sizes = fuzz.table_sizes(largest)
    assert sizes[:5] == [1, 2, 3, 4, 5] and largest in sizes and all(s <= largest for s in sizes)
    gen = torch.Generator().manual_seed(5)
    Ts = list(range(1, 4097)) + torch.randint(4097, largest if interpreter else 1 << 21, (300,), generator=gen).tolist()
    for family in routing.FAMILIES:
        for model in routing.family(family).models:
            for dtype in (torch.bfloat16, torch.float16, torch.float32):
                met = {_launch(family, model, dtype, T, interpreter) for T in sizes}
                for T in Ts:
                    assert _launch(family, model, dtype, T, interpreter) in met, (family, model.name, dtype, T)


def test_every_tile_fuzz_runs_each_size_and_replays_at_the_launchs_size():
    """A kernel wrong in one launch size only (here: every launch of 9 rows) passes a fuzz in one
    large chunk and fails the every-tile fuzz, whose kept case replays at that size."""
    from parity.routing import fused

    def wrong_at_nine(g, K, s):
        w, ids = fused.fused(g, K, s)
        return (w * 0.5 if g.shape[0] == 9 else w), ids

    assert fuzz.fuzz("gemma4", 64, impl=wrong_at_nine, chunk=64).differences == 0
    r = fuzz.fuzz("gemma4", 1, impl=wrong_at_nine, sizes=fuzz.table_sizes(16), max_examples=2)
    assert r.rows == sum(fuzz.table_sizes(16)) == 1 + 2 + 3 + 4 + 5 + 8 + 9 + 16 and r.chunks == 8
    assert r.differences == r.by_kind["weights"] > 0   # the 9-row launch's rows with finite weights
    assert {e["launch_rows"] for e in r.examples} == {9}
    case = json.loads(json.dumps(r.examples[0]))
    assert fuzz.replay(case, impl=wrong_at_nine) == ["weights"]
    assert fuzz.replay({**case, "launch_rows": 1}, impl=wrong_at_nine) == []
