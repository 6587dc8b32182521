"""Probe: fp32 Gemma4 routing at small T when rows' top logits tie once truncated beside the id
(ranked_by_logit), against rows without such ties, for reports/bench/NOTES.md ("All pairs at
once"). Times the public op under CUDA-graph replay (triton.testing.do_bench_cudagraph, median of
`--rounds` calls, each its own median), ids checked against the oracle. Run it in two trees to
compare them (the kernel is whatever `parity` imports).

python3 -m benchmarks.probe_ranked [--out FILE.json] [--rounds 5] [T ...]   (default T: 1 64 512)
"""
import argparse
import json
import statistics

import torch
import triton.testing

from parity.provenance import Run
from parity.routing.fused import fused
from parity.routing.oracle import route64


def tied_rows(T: int, E: int, seed: int) -> torch.Tensor:
    """randn rows, each with two picks one ulp apart (the larger at the higher id): their
    truncated packed keys tie inside the K, so every row's picks are ranked again."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(T, E, generator=gen)
    for r in range(T):
        a, b = sorted(torch.randperm(E, generator=gen)[:2].tolist())
        g[r, a] = 5.0 + r % 3
        g[r, b] = torch.nextafter(g[r, a], torch.tensor(float("inf")))
    return g


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("T", type=int, nargs="*", default=[1, 64, 512])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    E, K = 128, 8
    s = torch.rand(E, device="cuda")
    rows = []
    for T in a.T:
        for kind in ("randn", "tied"):
            g = (tied_rows(T, E, T) if kind == "tied" else torch.randn(T, E, generator=torch.Generator().manual_seed(T))).cuda()
            ids_ok = torch.equal(fused(g, K, s)[1].long(), route64(g, K, s)[1])
            us = [1e3 * triton.testing.do_bench_cudagraph(lambda: fused(g, K, s), rep=100, return_mode="median")
                  for _ in range(a.rounds)]
            rows.append({"T": T, "rows": kind, "us": round(statistics.median(us), 3), "us_rounds": [round(u, 3) for u in us],
                         "ids_ok": ids_ok})
            print(rows[-1], flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"meta": Run().meta(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
