"""v4 (prepared 2026-11-30, NOT yet run on a GPU): v3's bitonic network fed by a coalesced load and one
explicit shared-memory transpose, written in Gluon (triton.experimental.gluon: explicit layouts).

Why: v3 holds whole rows in single threads, which Triton only reaches by loading 16 bytes per row
per lane (32 rows per load instruction); its issue rate was a third of v2's and the suspect is that
load pattern (reports/bench/NOTES.md; benchmarks/probe_network_parts.py separates loads from network).
Here the tile is loaded with 8 lanes per row (128 contiguous bytes per 8 lanes), converted once to
one row per thread (gl.convert_layout: through shared memory), and the network runs in registers.
The network is written without position masks: a compare-exchange splits the direction bit and the
partner bit off by reshape/permute/split, so every op is a plain min or max on whole registers.

Scope: bf16 logits, E a power of two <= 128, K <= E, fp32 scale, contiguous rows. Weights use
exp_shifted's formula with gl ops (no libdevice), so they may differ from ``fused`` in the last bit;
the probe checks ids against the oracle. Gluon has no interpreter: this compiles only for a GPU.
Compiled for sm_90 with triton 3.6.0 on a CPU-only machine (the device's version); see NOTES.md.
The network's logic was checked in the Triton interpreter by running the same two functions with
``gl.`` read as ``tl.``: top-K equal to torch.topk for (N, K) in (128, 8), (128, 1), (128, 2),
(64, 64), (256, 16), (8, 8), (16, 4).
"""
from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl


@gluon.jit
def _compare_exchange(x, BLOCK_T: gl.constexpr, N: gl.constexpr, D: gl.constexpr, S: gl.constexpr):
    """Element i against i + D (bit D of i clear) in every row of x [BLOCK_T, N]; larger first where
    bit S of i is clear (everywhere when S >= N), smaller first elsewhere."""
    if S >= N:
        y = gl.permute(gl.reshape(x, [BLOCK_T, N // (2 * D), 2, D]), (0, 1, 3, 2))
        lo, hi = gl.split(y)
        y = gl.join(gl.maximum(lo, hi), gl.minimum(lo, hi))
        return gl.reshape(gl.permute(y, (0, 1, 3, 2)), [BLOCK_T, N])
    else:
        y = gl.reshape(x, [BLOCK_T, N // (2 * S), 2, S // (2 * D), 2, D])
        y = gl.permute(y, (0, 1, 3, 5, 4, 2))  # [T, blocks, S/2D, D, pair bit, direction bit]
        down, up = gl.split(y)
        d_lo, d_hi = gl.split(down)
        u_lo, u_hi = gl.split(up)
        down = gl.join(gl.maximum(d_lo, d_hi), gl.minimum(d_lo, d_hi))
        up = gl.join(gl.minimum(u_lo, u_hi), gl.maximum(u_lo, u_hi))
        y = gl.permute(gl.join(down, up), (0, 1, 5, 2, 4, 3))
        return gl.reshape(y, [BLOCK_T, N])


@gluon.jit
def _bitonic_topk(x, BLOCK_T: gl.constexpr, N: gl.constexpr, BLOCK_K: gl.constexpr, LOG2_N: gl.constexpr,
                  LOG2_BLOCK_K: gl.constexpr):
    for stage in gl.static_range(1, LOG2_BLOCK_K + 1):
        for step in gl.static_range(stage):
            x = _compare_exchange(x, BLOCK_T, N, 1 << (stage - 1 - step), 1 << stage)
    for level in gl.static_range(LOG2_N - LOG2_BLOCK_K):
        pairs = gl.permute(gl.reshape(x, [BLOCK_T, (N >> level) // (2 * BLOCK_K), 2, BLOCK_K]), (0, 1, 3, 2))
        a, b = gl.split(pairs)
        x = gl.reshape(gl.maximum(a, b), [BLOCK_T, N >> (level + 1)])
        for step in gl.static_range(LOG2_BLOCK_K):
            x = _compare_exchange(x, BLOCK_T, N >> (level + 1), BLOCK_K >> (step + 1), BLOCK_K)
    return x


@gluon.jit
def _v4_kernel(gating_ptr, scale_ptr, weights_ptr, ids_ptr, T, stride_gt,
               K: gl.constexpr, BLOCK_T: gl.constexpr, BLOCK_E: gl.constexpr, BLOCK_K: gl.constexpr,
               LOG2_BLOCK_E: gl.constexpr, LOG2_BLOCK_K: gl.constexpr, COL_BITS: gl.constexpr,
               LANES: gl.constexpr):
    WARPS: gl.constexpr = gl.num_warps()
    VEC: gl.constexpr = 8  # bf16: 16 bytes per lane
    load_layout: gl.constexpr = gl.BlockedLayout([1, VEC], [32 // LANES, LANES], [WARPS, 1], [1, 0])
    row_layout: gl.constexpr = gl.BlockedLayout([1, BLOCK_E], [32, 1], [WARPS, 1], [1, 0])
    COL_MASK: gl.constexpr = (1 << COL_BITS) - 1

    rows = gl.program_id(0) * BLOCK_T + gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, load_layout))
    cols = gl.arange(0, BLOCK_E, layout=gl.SliceLayout(0, load_layout))
    ptrs = gating_ptr + rows.to(gl.int64)[:, None] * stride_gt + cols[None, :]
    raw = gl.load(ptrs.to(gl.pointer_type(gl.int16)), mask=(rows < T)[:, None], other=0).to(gl.int32)
    mag = raw & 0x7FFF
    sign = raw >> 31
    key = gl.where(mag > 0x7F80, 0x7FFF, (mag ^ sign) - sign)  # sign-magnitude order key, NaN on top
    packed = (key << 16) | (COL_MASK - cols[None, :])
    packed = gl.convert_layout(packed, row_layout)  # the one transpose, through shared memory

    top = _bitonic_topk(packed, BLOCK_T, BLOCK_E, BLOCK_K, LOG2_BLOCK_E, LOG2_BLOCK_K)

    out_layout: gl.constexpr = gl.BlockedLayout([1, BLOCK_K], [32, 1], [WARPS, 1], [1, 0])
    top = gl.convert_layout(top, out_layout)
    slots = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, out_layout))
    out_rows = gl.program_id(0) * BLOCK_T + gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, out_layout))
    out_ok = (out_rows < T)[:, None] & (slots < K)[None, :]
    top_id = gl.where(out_ok, COL_MASK - (top & COL_MASK), 0)
    key16 = top >> 16
    sign16 = key16 >> 31
    v = ((((key16 ^ sign16) - sign16) | (sign16 & 0x8000)) << 16).to(gl.float32, bitcast=True)
    first = gl.max(gl.where(slots[None, :] == 0, v, -float("inf")), axis=1)
    d = v - first[:, None]
    d_back = d + first[:, None]
    d_err = (v - d_back) + (-first[:, None] - (d - d_back))
    d_err = gl.where(d_err == d_err, d_err, 0.0)
    e = gl.exp(d)
    e = gl.where((slots < K)[None, :], e + e * d_err, 0.0)
    probs = e / gl.sum(e, axis=1)[:, None]
    scale = gl.load(scale_ptr + top_id, mask=out_ok, other=0.0)
    out = out_rows.to(gl.int64)[:, None] * K + slots[None, :]
    gl.store(weights_ptr + out, probs * scale, mask=out_ok)
    gl.store(ids_ptr + out, top_id, mask=out_ok)


def launch(gating_output: torch.Tensor, topk: int, scale: torch.Tensor, weights: torch.Tensor,
           ids: torch.Tensor, rows_per_program: int = 32, num_warps: int = 1, lanes: int = 8):
    """Route into preallocated weights/ids (for the probe): rows_per_program = 32 * num_warps."""
    T, E = gating_output.shape
    assert gating_output.dtype == torch.bfloat16 and E == triton.next_power_of_2(E) <= 128
    assert gating_output.stride(1) == 1 and scale.dtype == torch.float32 and scale.stride(0) == 1
    assert rows_per_program == 32 * num_warps
    block_k = triton.next_power_of_2(topk)
    _v4_kernel[(triton.cdiv(T, rows_per_program),)](
        gating_output, scale, weights, ids, T, gating_output.stride(0), K=topk, BLOCK_T=rows_per_program,
        BLOCK_E=E, BLOCK_K=block_k, LOG2_BLOCK_E=E.bit_length() - 1, LOG2_BLOCK_K=block_k.bit_length() - 1,
        COL_BITS=max(1, (E - 1).bit_length()), LANES=min(lanes, E // 8), num_warps=num_warps)
