"""Probe: how far the fused kernel's softmax-over-all-E weights lie from the float64 oracle's, in
fp32 ulps (max, 99.99th percentile, mean), for Qwen2-MoE's router (E=60, K=4) over bf16 and fp16
logits at a few spreads. The bound the tests hold the kernel to is tolerance.FUSED_ULP; this says
how much of it a change to the denominator spends (reports/bench/NOTES.md, "Nineteenth round").
Runs wherever parity runs (CUDA, or the interpreter on the CPU); with scripts/with_tree.sh, on
another tree's kernel.

PYTHONPATH=. python3 scripts/probe_softmax_all_ulps.py [--rows N] [--out FILE.json]  (scripts/ is not a package)
"""
from __future__ import annotations

import argparse
import json

import torch

from parity import device, routing
from parity.numerics import ulp_error
from parity.provenance import Run
from parity.routing import fused
from parity.routing.oracle import route64


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--out")
    a = ap.parse_args()
    fam = routing.family("mixtral")
    m = fam.model("qwen2-moe")
    dev = device.default()
    router = fam.make_router(m, "randn", 0, device=dev)
    rows = []
    for dtype in (torch.bfloat16, torch.float16):
        for spread in (0.05, 1.0, 4.0, 12.0):
            gen = torch.Generator().manual_seed(7)
            g = (torch.randn(a.rows, m.E, generator=gen) * spread).to(dtype).to(dev)
            w, ids = fused.route(g, m.K, router)
            ow, oid = route64(g, m.K, router)
            err = ulp_error(w.double().cpu(), ow.cpu()).flatten()
            row = {"dtype": str(dtype).removeprefix("torch."), "spread": spread, "rows": a.rows,
                   "ids_ok": bool(torch.equal(ids.long().cpu(), oid.long().cpu())),
                   "max_ulp": round(float(err.max()), 3), "p9999_ulp": round(float(err.quantile(0.9999)), 3),
                   "mean_ulp": round(float(err.mean()), 4)}
            rows.append(row)
            print(row, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"meta": Run().meta(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
