"""Probe: time parity's grouped sigmoid kernel (parity.routing.fused_grouped) over tiles (rows per
program, warps) on the GPU, for reports/bench/NOTES.md, and the cost of its float64 fallback.
Launched directly (no Python-side validation), timed under CUDA-graph replay
(triton.testing.do_bench_cudagraph, median) with input copies rotated beyond L2; every
configuration's ids are checked against the oracle's (the fallback-free rows are only counted:
how many rows the fp32 keys alone would have routed otherwise), and its weights against the
oracle's within tolerance.FUSED_ULP (weights_ok).

The table's tile is timed several ways: flagged rows routed again by exact_kernel in a second launch,
inline in the fast kernel (INLINE_EXACT, one launch), inline without reordering near picks, with the
picks from the whole tile rather than the groups' lists, and not at all (fallback off: what the fp32
keys alone cost and how many rows they would get wrong); ``rows_flagged`` counts the flagged rows.

(The "v2" layout, once a variant under benchmarks/variants timed here with --variant v2, is the
kernel since its H200 run: reports/bench/NOTES.md.)

One row a program (small T) is also timed with its near picks reordered for every row beside the fast
path (speculate=True), beside the default that reorders flagged rows only, after the store.

python3 -m benchmarks.probe_grouped [--models deepseek-v3,kimi-k2,glm-4.5] [--dtypes bf16,fp32] [--registers 64,80] [--switch-ab NAME]
    [--bench-inputs] [--table-only] [--out FILE.json] [T ...]
--switch-ab NAME[,NAME...]: the table's launch with plan(NAME=True) and plan(NAME=False), in turns, three times each
(several names: every combination of them on and off, in turns; each row says its side as ab_NAME):
word_loads, bias_in_ref (fused_grouped.WORD_LOADS, BIAS_IN_REF: on for bf16 since the thirty-fifth round),
pair_test (the default; fused_grouped._picks_in_order; False reorders every near row from float64 keys),
group_test (fused_grouped._groups_in_order; by default on for one-row programs from GROUP_TEST_MIN_ROWS rows).
fixed_ref (grouped_kernel's FIXED_REF: the distances below one reference made from the bias; by default on
where groups are chosen).
--bench-inputs: `make bench`'s logits and router for the model at each T (parity.bench; its T=64 and
T=512 batches of DeepSeek-V3 hold one near row each) instead of the probe's own.
"""
import argparse
import dataclasses
import inspect
import itertools
import json

import torch

from parity import routing  # before triton: parity decides TRITON_INTERPRET
from parity.check import weights_within
from parity.provenance import Run
from parity.routing import fused, fused_grouped
from parity.routing.kernel_parts import empty_outputs
from parity.routing.oracle import route64
from parity.tolerance import FUSED_ULP
from triton.testing import do_bench_cudagraph  # noqa: E402

PAIR_TEST_KNOWN = "pair_test" in inspect.signature(fused_grouped.plan).parameters
GROUP_TEST_KNOWN = "group_test" in inspect.signature(fused_grouped.plan).parameters
"""Whether the parity on the path has the pair test, the group test (an A/B's base tree may not)."""
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
TILES = [(1, 1), (2, 1), (4, 1), (8, 1), (4, 2), (8, 2), (16, 2), (16, 4)]
ROTATE_BYTES = 512 << 20


def launcher(g, K, router, bias, scale, w, ids, **override):
    launch = fused_grouped.plan(g, K, bias, scale, router.n_group, router.topk_group, router.renormalize, **override)
    return launch, (lambda: launch.run(g, bias, scale, w, ids))


def probe(model: str, dtype: torch.dtype, T: int, tiles, caps=(80,), bench_inputs: bool = False,
          table_only: bool = False, switch_ab: str | None = None) -> list[dict]:
    fam = routing.family("deepseek_v3")
    m = fam.model(model)
    if bench_inputs:
        from parity import bench
        gs, router = bench.model_inputs(fam.name, m, dtype, T, on_gpu=True)
    else:
        router = fam.make_router(m, "randn", 0, device="cuda")
        gen = torch.Generator().manual_seed(T)
        size = T * m.E * dtype.itemsize
        copies = max(1, min(16, ROTATE_BYTES // size)) if size * 4 > (60 << 20) else 1
        gs = [torch.randn(T, m.E, generator=gen).to(dtype).cuda() for _ in range(copies)]
    ow, oid = (t.cpu() for t in route64(gs[0], m.K, router))
    bias, scale = router.correction_bias.float(), fused.router_scale(router, m.E, gs[0].device)
    rows = []
    default = fused_grouped.plan(gs[0], m.K, bias, scale, router.n_group, router.topk_group, True)
    table = (default.block_t, default.num_warps)
    # the table's tile five ways (flagged rows routed again inline, by a second launch, inline
    # without reordering near picks, the picks from the whole tile instead of the groups' lists, not
    # at all), under each register cap asked for (rows record the cap the launch used: the plan caps
    # rows of at most 256 experts itself, fused_grouped.MAX_REGISTERS), then the other tiles as the
    # table would route their flagged rows
    base = dict(fallback=True, inline=default.inline, max_registers=None, reorder=None, lists=None, speculate=None)
    if PAIR_TEST_KNOWN:
        base["pair_test"] = None
    if GROUP_TEST_KNOWN:
        base["group_test"] = None
    configs = [(*table, base), (*table, {**base, "inline": not default.inline}), (*table, {**base, "reorder": False})]
    if dataclasses.replace(default, speculate=True).kernel_options().get("SPECULATE"):   # the plan's own rule
        configs.append((*table, {**base, "speculate": True}))
    if default.constexprs["GROUP_LISTS"]:
        configs.append((*table, {**base, "lists": False}))
    configs += [(*table, {**base, "max_registers": cap}) for cap in caps]
    configs += [(b, wp, base) for b, wp in tiles if (b, wp) != table]
    configs.append((*table, {**base, "fallback": False, "inline": False}))
    if PAIR_TEST_KNOWN:
        configs.insert(1, (*table, {**base, "pair_test": False}))
    if table_only:   # A/B calls (h200_run.sh ab): the launch the table chooses, nothing else to compile
        configs = configs[:1]
    switches = switch_ab.split(",") if switch_ab else []
    if switches:    # the table's launch with each combination of the switches on and off, in turns, three times
        sides = [dict(zip(switches, on)) for on in itertools.product((True, False), repeat=len(switches))]
        configs = [(*table, {**base, **side}) for _ in range(3) for side in sides]
    for block_t, warps, over in configs:
        if block_t > max(1, T):
            continue
        w, ids = empty_outputs(gs[0], m.K)
        launch, _ = launcher(gs[0], m.K, router, bias, scale, w, ids, block_t=block_t, num_warps=warps, **over)
        fallback, inline = over["fallback"], over["inline"]
        for kernel, run_one in [("grouped", launch.run)]:
            w, ids = empty_outputs(gs[0], m.K)
            flags = run_one(gs[0], bias, scale, w, ids)
            flagged, whole = int((flags != 0).sum()), int((flags == 2).sum())
            wrong = int((ids.cpu().long() != oid).any(1).sum())
            weights_ok = weights_within(w, ow, max_ulp=FUSED_ULP)
            outs = [empty_outputs(g, m.K) for g in gs]
            i = [0]

            def call():
                g = gs[i[0] % len(gs)]
                run_one(g, bias, scale, *outs[i[0] % len(gs)])
                i[0] += 1
            us = do_bench_cudagraph(call, rep=200) * 1e3
            rows.append({"model": model, "E": m.E, "K": m.K, "n_group": router.n_group,
                         "dtype": str(dtype).removeprefix("torch."), "T": T, "kernel": kernel, "block_t": block_t,
                         "warps": warps, "fallback": fallback, "inline": fallback and inline, "max_registers": launch.max_registers,
                         "reorder": launch.constexprs["REORDER"], "lists": launch.constexprs["GROUP_LISTS"],
                         "speculate": bool(launch.kernel_options().get("SPECULATE", False)),
                         "pair_test": bool(launch.kernel_options().get("PAIR_TEST", False)),
                         "group_test": bool(launch.kernel_options().get("GROUP_TEST", False)),
                         "rows_pair_test": int((flags == 3).sum()),
                         "us": us, "rows_not_the_oracles": wrong, "weights_ok": weights_ok, "rows_flagged": flagged,
                         "rows_whole_float64": whole,
                         "table": (block_t, warps) == table and over == base,
                         **{"ab_" + name: over[name] for name in switches}})   # the side of an A/B
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="deepseek-v3,kimi-k2,glm-4.5")
    ap.add_argument("--dtypes", default="bf16,fp32")
    ap.add_argument("--out", default=None)
    ap.add_argument("--registers", default="80", help="register caps to time at the table's tile (comma-separated)")
    ap.add_argument("--bench-inputs", action="store_true", help="make bench's inputs (see the module docstring)")
    ap.add_argument("--table-only", action="store_true", help="time the table's launch alone (A/B calls)")
    ap.add_argument("--switch-ab", default=None, metavar="NAME",
                    help="the table's launch with plan(NAME=True) and plan(NAME=False), in turns (word_loads, "
                         "bias_in_ref, pair_test, group_test, fixed_ref; several names comma-separated: every "
                         "combination)")
    ap.add_argument("Ts", nargs="*", type=int, default=[250000, 2048])
    a = ap.parse_args()
    rows = []
    for model in a.models.split(","):
        for dt in a.dtypes.split(","):
            for T in a.Ts:
                rows += probe(model, DTYPES[dt], T, TILES if T >= 2048 else TILES[:3] if T > 1 else TILES[:1],
                              [int(c) for c in a.registers.split(",") if c], a.bench_inputs, a.table_only,
                              a.switch_ab)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"meta": Run().meta(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
