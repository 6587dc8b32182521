"""Probe: the fused kernels under Nsight Compute (ncu), for reports/bench/NOTES.md. Each model's
fused routing runs once to compile, then once between cudaProfilerStart and cudaProfilerStop, so
that `ncu --profile-from-start off` sees exactly one launch a model (scripts/h200_run.sh, step
`ncu`, runs it so and exports the counters and the per-instruction stall samples). The ids of the
profiled launch are checked against the oracle: a profile of a wrong kernel is no profile.

python3 -m benchmarks.profile_ncu [--models gemma4,qwen2-moe,...] [--dtypes bf16,fp32] [--T 250000]
(the dtypes apply to the first model; the others run in bf16, as `make bench` runs them)
"""
import argparse

import torch

from parity import routing
from parity.routing.oracle import route64

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def family_of(model: str):
    for fam in routing.FAMILIES.values():
        if model in {m.name for m in fam.models}:
            return fam
    known = sorted(m.name for f in routing.FAMILIES.values() for m in f.models)
    raise SystemExit(f"unknown model {model!r}; models: {', '.join(known)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gemma4,qwen2-moe,gpt-oss-120b,llama4-maverick,deepseek-v3")
    ap.add_argument("--dtypes", default="bf16,fp32", help="for the first model")
    ap.add_argument("--T", type=int, default=250000)
    a = ap.parse_args()
    models = a.models.split(",")
    runs = [(models[0], d) for d in a.dtypes.split(",")] + [(m, "bf16") for m in models[1:]]
    for model, dtype in runs:
        fam = family_of(model)
        m = fam.model(model)
        torch.manual_seed(0)
        scale = torch.rand(m.E, device="cuda") if fam.per_expert_scale else None
        router = fam.make_router(m, "randn", 0, per_expert_scale=scale, device="cuda")
        arg = fam.argument(router)
        g = torch.randn(a.T, m.E, device="cuda").to(DTYPES[dtype])
        fused = fam.implementations["fused"]
        fused(g, m.K, arg)  # compiles
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        w, ids = fused(g, m.K, arg)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
        ok = "-"
        if fam.name != "deepseek_v3":  # route64 is the softmax-family oracle; the grouped one is checked in make bench
            ok = torch.equal(torch.sort(ids.long(), dim=1)[0],
                             torch.sort(route64(g, m.K, scale if scale is not None else torch.ones(m.E, device="cuda"))[1], dim=1)[0])
        print(f"{model} {dtype} T={a.T} E={m.E} K={m.K}: profiled one launch; ids as the oracle's (sorted): {ok}", flush=True)


if __name__ == "__main__":
    main()
