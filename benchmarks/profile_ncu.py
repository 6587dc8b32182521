"""Probe: the fused kernels under Nsight Compute (ncu), for reports/bench/NOTES.md. Each model's
fused routing runs once to compile, then once between cudaProfilerStart and cudaProfilerStop, so
that `ncu --profile-from-start off` sees exactly one launch a model (scripts/h200_run.sh, step
`ncu`, runs it so and exports the counters and the per-instruction stall samples). The ids of the
profiled launch are checked against the oracle, in order: a profile of a wrong kernel is no profile.
Without a GPU it runs the same launches in the Triton interpreter, profiling nothing (the test).

python3 -m benchmarks.profile_ncu [--models gemma4,qwen2-moe,...] [--dtypes bf16,fp32] [--T 250000]
    [--bench-row T0:ROW]
(the dtypes apply to the first model; the others run in bf16, as `make bench` runs them).
--bench-row T0:ROW fills the T rows with row ROW of `make bench`'s inputs at T = T0 (and its router):
the program of one particular row, e.g. a flagged one, profiled once a row (small-T latency)."""
import argparse
import sys

import torch

from parity import device, routing
from parity.routing.oracle import route64

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def family_of(model: str):
    """The routing family that has a model of this name (exit with the known names if none has)."""
    for fam in routing.FAMILIES.values():
        if model in {m.name for m in fam.models}:
            return fam
    known = sorted(m.name for f in routing.FAMILIES.values() for m in f.models)
    raise SystemExit(f"unknown model {model!r}; models: {', '.join(known)}")


def bench_row(fam, m, dtype, spec: str, T: int):
    """(logits [T, E], argument): row ROW of `make bench`'s inputs at T0 (spec "T0:ROW") repeated."""
    from parity import bench
    t0, row = (int(v) for v in spec.split(":"))
    if not 0 <= row < t0:
        raise SystemExit(f"--bench-row {spec}: the bench's batch at T={t0} has rows 0..{t0 - 1}")
    gs, arg = bench.model_inputs(fam.name, m, dtype, t0, on_gpu=False)
    return gs[0][row:row + 1].expand(T, m.E).contiguous().to(device.default()), arg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gemma4,qwen2-moe,gpt-oss-120b,llama4-maverick,deepseek-v3")
    ap.add_argument("--dtypes", default="bf16,fp32", help="for the first model")
    ap.add_argument("--T", type=int, default=250000)
    ap.add_argument("--bench-row", default=None, metavar="T0:ROW")
    a = ap.parse_args()
    models = a.models.split(",")
    runs = [(models[0], d) for d in a.dtypes.split(",")] + [(m, "bf16") for m in models[1:]]
    dev = device.default()
    on_gpu = dev.type == "cuda"
    wrong = []
    for model, dtype in runs:
        fam = family_of(model)
        m = fam.model(model)
        if a.bench_row:
            g, arg = bench_row(fam, m, DTYPES[dtype], a.bench_row, a.T)
        else:
            gen = torch.Generator().manual_seed(0)
            scale = torch.rand(m.E, generator=gen).to(dev) if fam.per_expert_scale else None
            arg = fam.argument(fam.make_router(m, "randn", 0, per_expert_scale=scale, device=dev))
            g = torch.randn(a.T, m.E, generator=gen).to(DTYPES[dtype]).to(dev)
        fused = fam.implementations["fused"]
        if on_gpu:
            fused(g, m.K, arg)  # compiles
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
        w, ids = fused(g, m.K, arg)
        if on_gpu:
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
        ok = torch.equal(ids.long(), route64(g, m.K, arg)[1].to(ids.device))
        if not ok:
            wrong.append(model)
        what = "profiled one launch" if on_gpu else "one launch in the interpreter, nothing profiled"
        print(f"{model} {dtype} T={a.T} E={m.E} K={m.K}: {what}; ids as the oracle's: {ok}", flush=True)
    if wrong:
        sys.exit(f"ids differ from the oracle's: {', '.join(wrong)}")


if __name__ == "__main__":
    main()
