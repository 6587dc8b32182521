"""Probe: time `fused` over launch configurations on the GPU (a notes tool for reports/bench/NOTES.md).

python3 scripts/probe_fused.py  -> a table of median microseconds per (T, dtype, BLOCK_T, warps).
"""
import itertools
import sys

import torch
import triton
import triton.testing

import parity.routing.fused as F
from parity.routing.oracle import route64


def main() -> None:
    E, K = 128, 8
    torch.manual_seed(0)
    s = torch.rand(E, device="cuda")
    rows = []
    for T, dtype in itertools.product([2048, 16384, 250000], [torch.bfloat16, torch.float32]):
        # several input copies, rotated, so large T is not timed out of L2
        copies = max(1, min(8, (256 << 20) // (T * E * dtype.itemsize)))
        gs = [torch.randn(T, E, device="cuda").to(dtype) for _ in range(copies)]
        w64, i64 = route64(gs[0], K, s)
        w = torch.empty(T, K, device="cuda")
        i = torch.empty(T, K, device="cuda", dtype=torch.int32)
        for block_t, warps in itertools.product([1, 2, 4, 8, 16, 32], [1, 2, 4, 8]):
            def launch(g):
                F._route_kernel[(triton.cdiv(T, block_t),)](
                    g, s, w, i, T, E, g.stride(0), g.stride(1), 1,
                    K=K, BLOCK_T=block_t, BLOCK_E=128, BLOCK_K=8, ACCURATE_EXP=True, num_warps=warps)
            launch(gs[0])
            ok = torch.equal(i.long(), i64)
            it = itertools.cycle(gs)
            ms = triton.testing.do_bench(lambda: launch(next(it)), warmup=50, rep=200, return_mode="median")
            rows.append((T, str(dtype)[6:], block_t, warps, ms * 1e3, ok))
    for r in sorted(rows, key=lambda r: (r[0], r[1], r[4])):
        print("T=%-7d %-8s BLOCK_T=%-3d warps=%d  %8.1f us  ids_ok=%s" % r)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
