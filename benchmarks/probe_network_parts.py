"""Probe (not yet run on a GPU): where the v3 bitonic-network variant loses its time.

v3 issues 2.3x fewer instructions per logit than v2 but ran slower (reports/bench/NOTES.md, "v3").
This times its two halves apart, bf16, E=128, K=8, under CUDA-graph replay with inputs rotated
beyond L2:
  load     - the tile loaded in v3's layout (LANES lanes per row), packed keys built, one max per
             row stored: the memory pattern and the key arithmetic alone;
  network  - the network on keys made from one L1-resident row of seeds and the row index (no
             traffic beyond L1), top ids stored: the arithmetic alone;
and the whole v3 kernel, v4 (v3's network after a coalesced load and one shared-memory transpose,
in Gluon: benchmarks/variants/v4_gluon_transpose.py) and v2 for reference. If `load` at 1 lane
per row already takes most of v3's time, the uncoalesced loads are the limit and v4 should show
it; if `network` does, the network's issue rate is. v4's ids are checked against the oracle.

python3 -m benchmarks.probe_network_parts [--out FILE.json] [T]
"""
import argparse
import itertools

import torch
import triton
import triton.language as tl
import triton.testing

from benchmarks.probe_fused import load_variant, write_rows
from parity.routing.fused import plan, route_kernel, tile
from parity.routing.kernel_parts import packed_keys
from parity.routing.oracle import route64

v3 = load_variant("v3_bitonic_network")


@triton.jit
def _load_only(gating_ptr, out_ptr, T, E, stride_gt, stride_ge, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr,
               COL_BITS: tl.constexpr, KEY16: tl.constexpr, EVEN_E: tl.constexpr, NAN_MAG: tl.constexpr,
               VEC: tl.constexpr, LANES: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    row_ok = rows < T
    row_ptr = gating_ptr + rows.to(tl.int64) * stride_gt
    R: tl.constexpr = BLOCK_E // (LANES * VEC)
    cols = (((tl.arange(0, R) * LANES)[:, None, None, None] + tl.arange(0, LANES)[None, None, :, None]) * VEC
            + tl.arange(0, VEC)[None, None, None, :])
    packed, _, _ = packed_keys(row_ptr[None, :, None, None] + cols * stride_ge, row_ok[None, :, None, None], cols,
                            cols < E, COL_BITS, KEY16, EVEN_E, NAN_MAG)
    best = tl.max(tl.max(tl.max(packed, axis=3), axis=2), axis=0)
    tl.store(out_ptr + rows, best, mask=row_ok)


@triton.jit
def _network_only(seed_ptr, out_ptr, T, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
                  LOG2_BLOCK_E: tl.constexpr, LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr,
                  VEC: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    # One row of seeds (BLOCK_E int16, in L1 for every program) read in v3's load shape with a row
    # stride of 0, so the layout is v3's (a row per thread); mixed with the row index for distinct rows.
    cols = (tl.arange(0, BLOCK_E // VEC) * VEC)[:, None, None] + tl.arange(0, VEC)[None, None, :]
    seed = tl.load(seed_ptr + cols + 0 * rows[None, :, None]).to(tl.int32)
    key = (seed ^ (rows[None, :, None] * 40503)) & 0x7FFF
    packed = (key << 16) | (COL_MASK - cols)
    packed = tl.reshape(tl.permute(packed, (1, 0, 2)), [BLOCK_T, BLOCK_E])
    top = v3.bitonic_topk(packed, BLOCK_T, BLOCK_E, BLOCK_K, LOG2_BLOCK_E, LOG2_BLOCK_K)
    slots = tl.arange(0, BLOCK_K)
    tl.store(out_ptr + rows[:, None] * BLOCK_K + slots[None, :], COL_MASK - (top & COL_MASK),
             mask=(rows < T)[:, None])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("T", nargs="?", type=int, default=250000)
    a = ap.parse_args()
    T, E, K = a.T, 128, 8
    torch.manual_seed(0)
    gs = [torch.randn(T, E, device="cuda").to(torch.bfloat16) for _ in range(8)]
    s = torch.rand(E, device="cuda")
    w = torch.empty(T, K, device="cuda")
    ids = torch.empty(T, K, device="cuda", dtype=torch.int32)
    best = torch.empty(T, device="cuda", dtype=torch.int32)
    ka = plan(gs[0], K, s).constexprs
    common = {k: ka[k] for k in ("COL_BITS", "KEY16", "EVEN_E", "NAN_MAG")}
    rows = []

    def timed(name, make, **cfg):
        runs = itertools.cycle([make(g) for g in gs])
        us = triton.testing.do_bench_cudagraph(lambda: next(runs)(), rep=50, return_mode="median") * 1e3
        rows.append({"part": name, **cfg, "us": round(us, 2)})
        print(rows[-1], flush=True)

    for lanes, rpt, warps in [(1, 1, 1), (4, 2, 2), (8, 1, 1)]:
        bt = 32 // lanes * rpt * warps
        grid = (triton.cdiv(T, bt),)
        timed("load", lambda g, bt=bt, lanes=lanes, warps=warps, grid=grid: lambda: _load_only[grid](
            g, best, T, E, g.stride(0), g.stride(1), BLOCK_T=bt, BLOCK_E=E, VEC=8, LANES=lanes, num_warps=warps,
            **common), lanes=lanes, BLOCK_T=bt, warps=warps)
        timed("v3", lambda g, bt=bt, lanes=lanes, warps=warps, grid=grid: lambda: v3._network_kernel[grid](
            g, s, w, ids, T, E, g.stride(0), g.stride(1), 1, BLOCK_T=bt, BLOCK_E=E, num_warps=warps,
            **v3.network_args(g, ka, E, bt, lanes)), lanes=lanes, BLOCK_T=bt, warps=warps)
    seeds = torch.randint(-(1 << 15), 1 << 15, (E,), device="cuda", dtype=torch.int16)
    timed("network", lambda g: lambda: _network_only[(triton.cdiv(T, 32),)](
        seeds, ids, T, BLOCK_T=32, BLOCK_E=E, BLOCK_K=K, LOG2_BLOCK_E=7, LOG2_BLOCK_K=3, COL_BITS=7, VEC=8,
        num_warps=1),
        lanes=1, BLOCK_T=32, warps=1)
    try:
        v4 = load_variant("v4_gluon_transpose")
        _, ids64 = route64(gs[0], K, s)
        for lanes, warps in [(8, 1), (16, 1), (8, 2)]:
            ids.fill_(-1)
            v4.launch(gs[0], K, s, w, ids, 32 * warps, warps, lanes)
            ok = torch.equal(ids.long(), ids64)
            timed("v4", lambda g, lanes=lanes, warps=warps: lambda: v4.launch(g, K, s, w, ids, 32 * warps, warps, lanes),
                  lanes=lanes, BLOCK_T=32 * warps, warps=warps, ids_ok=ok)
    except Exception as exc:  # noqa: BLE001 - an experimental variant that fails says why and the rest goes on
        rows.append({"part": "v4", "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        print(rows[-1], flush=True)
    cfg = tile(T, E, torch.bfloat16, interpreter=False)
    timed("v2", lambda g: lambda: route_kernel[(triton.cdiv(T, cfg.block_t),)](
        g, s, w, ids, T, E, g.stride(0), g.stride(1), 1, BLOCK_T=cfg.block_t, BLOCK_E=E,
        VEC=cfg.vec, num_warps=cfg.num_warps, **ka), BLOCK_T=cfg.block_t, warps=cfg.num_warps)
    if a.out:
        write_rows(a.out, rows)


if __name__ == "__main__":
    main()
