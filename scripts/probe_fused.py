"""Probe: time fused-kernel variants over launch configurations on the GPU (notes for
reports/bench/NOTES.md). Calls the kernels directly (no Python-side validation) with CUDA events,
rotating input copies beyond L2; checks ids against the oracle for each configuration.

python3 scripts/probe_fused.py [T ...]
"""
import importlib.util
import itertools
import pathlib
import sys

import torch
import triton
import triton.testing

from parity.routing.fused import _route_kernel, kernel_args
from parity.routing.oracle import route64

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_variant(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "reports/bench/variants" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._route_kernel


def main(Ts) -> None:
    E, K = 128, 8
    torch.manual_seed(0)
    s = torch.rand(E, device="cuda")
    v1 = load_variant("v1_iterative_max")
    rows = []
    for T, dtype in itertools.product(Ts, [torch.bfloat16, torch.float32]):
        copies = max(1, min(16, (512 << 20) // (T * E * dtype.itemsize)))
        gs = [torch.randn(T, E, device="cuda").to(dtype) for _ in range(copies)]
        _, i64 = route64(gs[0], K, s)
        w = torch.empty(T, K, device="cuda")
        i = torch.empty(T, K, device="cuda", dtype=torch.int32)
        for variant, block_t, warps in itertools.product(["v1", "v2"], [1, 2, 4, 8, 16, 32, 64], [1, 2, 4, 8]):
            if block_t * E > 8192 or (block_t * E < 32 * warps * 4):
                continue

            def launch(g):
                args = (g, s, w, i, T, E, g.stride(0), g.stride(1), 1)
                if variant == "v1":
                    v1[(triton.cdiv(T, block_t),)](*args, K=K, BLOCK_T=block_t, BLOCK_E=E, BLOCK_K=K,
                                                   ACCURATE_EXP=True, num_warps=warps)
                else:
                    _route_kernel[(triton.cdiv(T, block_t),)](*args, BLOCK_T=block_t, BLOCK_E=E,
                                                              num_warps=warps, **kernel_args(g, K, s))

            i.fill_(-1)
            launch(gs[0])
            ok = torch.equal(i.long(), i64)
            it = itertools.cycle(gs)
            ms = triton.testing.do_bench(lambda: launch(next(it)), warmup=25, rep=100, return_mode="median")
            rows.append((T, str(dtype)[6:], variant, block_t, warps, ms * 1e3, ok))
    best = {}
    for r in rows:
        k = r[:3]
        if k not in best or r[5] < best[k][5]:
            best[k] = r
    print("all configurations:")
    for r in sorted(rows, key=lambda r: (r[0], r[1], r[2], r[5])):
        print("T=%-7d %-8s %s BLOCK_T=%-3d warps=%d  %8.1f us  ids_ok=%s" % r)
    print("best per (T, dtype, variant):")
    for r in sorted(best.values()):
        print("T=%-7d %-8s %s BLOCK_T=%-3d warps=%d  %8.1f us  ids_ok=%s" % r)
    sys.stdout.flush()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2048, 16384, 250000])
