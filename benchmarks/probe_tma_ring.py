"""Probe: route_kernel's launch table against the TMA-ring variant (benchmarks/variants/v8_tma_ring.py:
persistent one-warp programs whose next blocks arrive by TMA into a swizzled shared-memory ring) on
the GPU, for reports/bench/NOTES.md ("A ring of TMA stages"). CUDA-graph replay, inputs rotated
beyond L2, every configuration's ids checked against the oracle and its weights against the
table's, bit for bit; then batches holding NaNs of both signs checked against fused.

Without a GPU, --sass compiles every configuration for sm_90 with the installed Triton and prints
its registers, spill instructions and the instructions of one pass of the loop (the notes' counts).

python3 -m benchmarks.probe_tma_ring [--shapes 128:bf16:8,...] [--out FILE.json] [T ...]
python3 -m benchmarks.probe_tma_ring --sass [--shapes ...]
python3 -m benchmarks.probe_tma_ring --profile 3:96:16,3:96:21 [--shapes ...] [T]: for Nsight Compute
(scripts/h200_run.sh ncuring): per shape, the table's launch and each STAGES:CAP:PROGRAMS_AN_SM ring
once between cudaProfilerStart and Stop (after a compiling launch), ids checked against the oracle
"""
import argparse
import json
import re
import sys

from benchmarks.sass_common import branch_target, instructions

# (stages, ptxas's register cap, programs an SM, fused.pick_rounds itself), bf16/fp16: the stages at
# route_kernel's occupancy (95 registers under a cap of 96, no spill: ~21 warps an SM), then programs an
# SM, then the caps, then the rounds as fused writes them
CONFIGS = [(1, 96, 16, False), (2, 96, 16, False), (3, 96, 16, False), (4, 96, 16, False), (3, 96, 12, False),
           (3, 96, 20, False), (3, 96, 21, False), (2, 96, 21, False), (3, None, 16, False), (3, None, 12, False),
           (3, 88, 20, False), (3, 88, 23, False), (6, 96, 16, False), (3, 128, 14, False), (3, None, 16, True),
           (3, None, 18, True)]
CONFIGS_FP32 = [(1, 64, 32, True), (2, 64, 32, True), (3, 64, 32, True), (4, 64, 32, True), (3, 64, 24, True),
                (3, 72, 28, True), (3, None, 24, True), (6, 64, 32, True)]
"""fp32: fused's selection itself (picks_of, exact paths included), 80 registers uncapped, none spilled
at 64 (route_kernel's count: 32 warps an SM)."""


def parse_configs(text: str) -> list[tuple]:
    """--configs: STAGES:CAP:PER_SM[:fused][:decode],... (CAP "none": uncapped) -> CONFIGS' tuples + decode."""
    out = []
    for spec in text.split(","):
        parts = spec.split(":")
        stages, cap, per_sm = int(parts[0]), None if parts[1] == "none" else int(parts[1]), int(parts[2])
        out.append((stages, cap, per_sm, "fused" in parts[3:], "decode" in parts[3:]))
    return out


def configs_for(dtype: str, chosen: list[tuple] | None = None):
    yield {"kernel": "table"}
    listed = chosen or [c + (False,) for c in (CONFIGS_FP32 if dtype == "fp32" else CONFIGS)]
    for stages, cap, per_sm, fused_rounds, decode in listed:
        yield {"kernel": "tma_ring", "stages": stages, "max_registers": cap, "programs_per_sm": per_sm,
               "fused_rounds": fused_rounds, "decode": decode}


def loop_instructions(sass: list[str]) -> tuple[int, int]:
    """Instructions from the loop's head to its backward branch, and those a block without a NaN or
    a near tie executes: walking from the head, every forward branch that stays inside the loop is
    taken (past the NaN pass, fp32's exact and ranked paths), every other falls through (the
    mbarrier's retry and the shuffles' divergence fallbacks, laid out after the loop), unconditional
    branches followed. A count of the laid-out code, not of a run: Nsight Compute's executed
    instructions a warp are the measured equivalent."""
    addr = instructions(sass)
    target = {a: to for a, text in addr if (to := branch_target(text)) is not None}
    conditional = {a for a, text in addr if text.startswith("@")}
    back = [(a, to) for a, to in target.items() if to < a and a in conditional]   # out-of-line code returns unconditionally
    if not back:
        return 0, 0
    end, head = max(back, key=lambda ab: ab[0] - ab[1])
    index = {a: i for i, (a, _) in enumerate(addr)}
    i, walked = index[head], 0
    while addr[i][0] != end and walked <= len(addr):
        a, text = addr[i]
        walked += 1
        to = target.get(a)
        if to is not None and (a not in conditional or head <= to <= end) and to > a:
            i = index[to]
        else:
            i += 1
    return (end - head) // 16 + 1, walked + 1


def sass_counts(shapes: str, quick: bool = False, swizzle: int = 128) -> list[dict]:
    """Compile every configuration for sm_90 (no GPU) and count its SASS (quick: 3 stages under a
    cap of 96 registers alone; swizzle: the ring's, for the test that a conflicting read fails)."""
    from benchmarks import sass_grouped as sg   # patches torch.cuda and Triton's driver: this process runs nothing
    import torch
    from benchmarks.variants import v8_tma_ring as v8
    rows = []
    for shape in shapes.split(","):
        E, dt, K = shape.split(":")
        E, dtype, K = int(E), sg.DTYPES[dt], int(K)
        T = 250000
        g = torch.empty(T, E, dtype=dtype)
        s, w, ids = torch.empty(E), torch.empty(T, K), torch.empty(T, K, dtype=torch.int32)
        listed = CONFIGS_FP32 if dt == "fp32" else CONFIGS
        for stages, cap, fused_rounds in [listed[2][:2] + listed[2][3:]] if quick else sorted(
                {(c[0], c[1], c[3]) for c in listed}, key=str):
            desc, args = v8.kernel_args(g, K, s, stages=stages, swizzle=swizzle, fused_rounds=fused_rounds)
            extra = {} if cap is None else {"maxnreg": cap}
            kernel = v8.tma_ring_kernel.warmup(desc, g, s, w, ids, T, g.stride(0), s.stride(0), grid=(1,),
                                               num_warps=1, **args, **extra)
            with sg.cubin_file(kernel) as path:
                sass = [ln for ln in sg._tool("cuobjdump", "-sass", path).splitlines() if sg.INSTRUCTION.match(ln)]
                res = sg._tool("cuobjdump", "-res-usage", path).strip().splitlines()[-1]
            row = {"E": E, "dtype": dt, "K": K, "stages": stages, "max_registers": cap, "fused_rounds": fused_rounds,
                   "registers": int(re.search(r"REG:(\d+)", res).group(1)),
                   "spills": sum(1 for ln in sass if re.search(r"\b(STL|LDL)", ln)),
                   "instructions": len(sass)}
            row["loop"], row["common_path"] = loop_instructions(sass)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def nan_check(sms: int) -> list[dict]:
    """Batches with NaNs of both signs in a few rows: the variant's ids and weights against fused's."""
    import torch
    from benchmarks.probe_persistent import nan_batch, same_as_fused
    from benchmarks.variants import v8_tma_ring as v8
    out = []
    for E, dtype in ((128, torch.bfloat16), (256, torch.float16)):
        g, s, want_w, want_ids = nan_batch(E, dtype)
        for stages, cap, per_sm, fused_rounds in CONFIGS[:4] + CONFIGS[-1:]:
            out.append({"nan_batch": True, "E": E, "dtype": str(dtype), "stages": stages, "fused_rounds": fused_rounds,
                        **same_as_fused(lambda w, ids: v8.launcher(g, 8, s, w, ids, programs=per_sm * sms, stages=stages,
                                                                   max_registers=cap, fused_rounds=fused_rounds)(),
                                        want_w, want_ids)})
            print(json.dumps(out[-1]), flush=True)
    return out


def profile(shapes: str, specs: str, T: int) -> None:
    """One profiled launch of the table and of each ring configuration a shape, labelled as
    benchmarks/profile_ncu labels its launches (benchmarks/ncu_summary reads the labels); exits
    non-zero if a launch's ids are not the oracle's (a profile of a wrong kernel is no profile)."""
    import torch
    from parity.routing.fused import plan
    from parity.routing.oracle import route64
    from benchmarks.variants import v8_tma_ring as v8
    from benchmarks.probe_fused import DTYPES
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    wrong = []
    for shape in shapes.split(","):
        E, dt, K = shape.split(":")
        E, K = int(E), int(K)
        torch.manual_seed(0)
        g = torch.randn(T, E, device="cuda").to(DTYPES[dt])
        s = torch.rand(E, device="cuda")
        want = route64(g, K, s)[1]
        w, ids = torch.empty(T, K, device="cuda"), torch.empty(T, K, dtype=torch.int32, device="cuda")
        launches = [("table", lambda: plan(g, K, s).run(g, s, w, ids))]
        for spec in specs.split(","):
            stages, cap, per_sm, fused_rounds, decode = parse_configs(spec)[0]
            launches.append((f"ring{spec.replace(':', '/')}", v8.launcher(
                g, K, s, w, ids, programs=per_sm * sms, stages=stages, max_registers=cap, fused_rounds=fused_rounds,
                decode=decode)))
        for name, run in launches:
            run()   # compiles
            torch.cuda.synchronize()
            ids.fill_(-1)
            torch.cuda.profiler.start()
            run()
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
            ok = torch.equal(ids.long(), want)
            wrong += [] if ok else [f"{name} {shape}"]
            print(f"{name} {dt} T={T} E={E} K={K}: profiled one launch; ids as the oracle's: {ok}", flush=True)
    if wrong:
        sys.exit(f"ids differ from the oracle's: {', '.join(wrong)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--shapes", default="128:bf16:8,128:bf16:4,128:bf16:1,256:bf16:8,128:fp32:8")
    ap.add_argument("--sass", action="store_true", help="compile for sm_90 and count, no GPU needed")
    ap.add_argument("--quick", action="store_true", help="with --sass: one configuration a shape (3 stages)")
    ap.add_argument("--swizzle", type=int, default=128, help="with --sass: the ring's swizzle (0: conflicts)")
    ap.add_argument("--profile", default=None, metavar="STAGES:CAP:PER_SM,...",
                    help="one profiled launch each (table first) for Nsight Compute, at the first T")
    ap.add_argument("--configs", default=None, metavar="STAGES:CAP:PER_SM[:fused][:decode],...",
                    help="the ring's configurations instead of the lists above (every shape)")
    ap.add_argument("--no-nan-check", action="store_true")
    ap.add_argument("T", nargs="*", type=int, default=[250000, 65536])
    a = ap.parse_args()
    if a.profile:
        return profile(a.shapes, a.profile, a.T[0])
    if a.sass:
        rows = sass_counts(a.shapes, a.quick, a.swizzle)
    else:
        from parity.routing.fused import fused  # noqa: F401  first: parity decides TRITON_INTERPRET
        from benchmarks.probe_persistent import sweep
        from benchmarks.variants import v8_tma_ring as v8
        import torch
        rows = []
        chosen = parse_configs(a.configs) if a.configs else None
        for shape in a.shapes.split(","):
            rows += sweep(shape, a.T, list(configs_for(shape.split(":")[1], chosen)), lambda cfg, g, K, case, sms, w, ids: v8.launcher(
                g, K, case.scale, w, ids, programs=cfg["programs_per_sm"] * sms, stages=cfg["stages"],
                max_registers=cfg["max_registers"], fused_rounds=cfg["fused_rounds"], decode=cfg["decode"]))
        if not a.no_nan_check:
            rows += nan_check(torch.cuda.get_device_properties(0).multi_processor_count)
    if a.out and a.sass:
        import triton
        with open(a.out, "w") as f:
            json.dump({"triton": triton.__version__, "target": "sm_90 (compiled, not run)", "rows": rows}, f, indent=1)
    elif a.out:
        from benchmarks.probe_fused import write_rows
        write_rows(a.out, rows)


if __name__ == "__main__":
    sys.exit(main())
