"""Probe: what a launch costs before any routing, timed exactly as `make bench` times a kernel
(parity.bench._time_gpu: GRAPH_CALLS calls in one CUDA graph, inputs rotated beyond L2 where they
would fit it, median of the replays), beside the family kernels at the same T. It answers what
part of the "T <= 512: at most 2.5 us" target a kernel can still win (reports/bench/NOTES.md):

- ``nothing``: one one-warp program a row that does nothing (the graph's per-kernel floor), and
  ``nothing_r4w1`` / ``nothing_r4w4``: a program for every four rows, of one warp or of four (on the
  H100 the floor grew with the programs: 1.08 us at T = 1, 1.38 at 512 and 2.11 at 2048 one-row
  programs; these say whether programs or warps cost it);
- ``row_latency``: one one-warp program a row that reads its row, reduces it to its largest logit
  and stores K ids and weights: one DRAM round trip and one reduction before the store, the least a
  one-row routing program must wait for;
- the families' fused kernels (``--cases``) on the bench's own inputs.

python3 -m benchmarks.probe_launch [--cases deepseek_v3,gemma4] [--out FILE.json] [T ...]
"""
import argparse
import json

import torch

from parity import bench, routing  # before triton: parity decides TRITON_INTERPRET
from parity.provenance import Run
import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def nothing_kernel(x_ptr):
    pass


@triton.jit
def row_latency_kernel(x_ptr, w_ptr, ids_ptr, E: tl.constexpr, BLOCK_E: tl.constexpr, K: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_E)
    x = tl.load(x_ptr + row * E + cols, mask=cols < E, other=float("-inf")).to(tl.float32)
    top = tl.max(x, axis=0)
    k = tl.arange(0, K)
    tl.store(w_ptr + row * K + k, top + k.to(tl.float32))
    tl.store(ids_ptr + row * K + k, k + row)


def nothing(g, K, _arg, rows: int = 1, warps: int = 1):
    nothing_kernel[(triton.cdiv(g.shape[0], rows),)](g, num_warps=warps)


def row_latency(g, K, _arg):
    T, E = g.shape
    w = torch.empty(T, K, dtype=torch.float32, device=g.device)
    ids = torch.empty(T, K, dtype=torch.int32, device=g.device)
    row_latency_kernel[(T,)](g, w, ids, E, triton.next_power_of_2(E), K, num_warps=1)
    return w, ids


FLOORS = {"nothing": nothing, "nothing_r4w1": lambda g, K, a: nothing(g, K, a, 4, 1),
          "nothing_r4w4": lambda g, K, a: nothing(g, K, a, 4, 4), "row_latency": row_latency}
"""The floors timed beside each fused kernel: name -> fn(gating_output, topk, argument)."""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="deepseek_v3,gemma4", help="families whose first model's fused kernel is timed beside")
    ap.add_argument("--out", default=None)
    ap.add_argument("T", nargs="*", type=int, default=[1, 8, 64, 512, 2048])
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("probe_launch times CUDA launches: no GPU here")
    clock, rows = Run(), []
    families = [f for f in a.cases.split(",") if f]
    for case in bench.cases(families, on_gpu=True, dtypes=("bfloat16",)):
        fused = routing.family(case.family).implementations["fused"]
        for T in a.T:
            gs, arg = bench._inputs(case, T, on_gpu=True)
            for name, fn in {**FLOORS, "fused": fused}.items():
                us, method = bench._time_gpu(fn, gs, case.K, arg)
                row = {"family": case.family, "model": case.model, "E": case.E, "K": case.K, "T": T,
                       "impl": name, "us": round(us, 4), "method": method}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = {"meta": clock.meta(graph_calls=bench.GRAPH_CALLS, reps=bench.REPS), "rows": rows}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
