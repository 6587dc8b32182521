"""v3 (kept as a measured variant, not used by parity.routing.fused): top-K by a bitonic network
in registers, rows laid across lanes.

Idea (2026-11-30): the rounds kernel (v2) spends ~1.5 instructions per logit per round plus a
cross-lane reduction per round. If each thread holds whole rows, a bitonic top-K network does the
selection with no cross-lane traffic and ~10 min/max per logit for 128 -> 8 (2744 SASS instructions
per 32 bf16 rows against v2's ~1536 per 8 rows: 2.3x fewer per logit). The load is shaped
[R, BLOCK_T, LANES, VEC] so that Triton's coalescing pass lays VEC columns per thread, LANES lanes
per row and rows next; LANES = 1 puts one row per thread (checked in the TTGIR: every network
layout is register-only). fp32 needs the (K+1)-th pick for its exactness test: the network then
keeps 2K; a block with an ambiguous row reroutes 8 rows at a time exactly.

Measured on the H200 (benchmarks/probe_fused.py, CUDA-graph replay, ids equal to the oracle and
weights bit-identical to v2 in every configuration): slower than v2 at every T; see
reports/bench/NOTES.md for the table and what it suggests.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from parity import device
from parity.routing.kernel_parts import SOFTMAX_K, exact_topk, load_fp32, order_key, packed_keys, write_routing


@triton.jit
def _compare_exchange(x, BLOCK_T: tl.constexpr, N: tl.constexpr, D: tl.constexpr, S: tl.constexpr):
    """Compare-exchange element i with element i + D (i's bit D clear) in every row of x
    [BLOCK_T, N]: the pair goes larger-first where bit S of i is clear, smaller-first elsewhere."""
    pairs = tl.permute(tl.reshape(x, [BLOCK_T, N // (2 * D), 2, D]), (0, 1, 3, 2))
    lo, hi = tl.split(pairs)
    big = tl.maximum(lo, hi)
    small = tl.minimum(lo, hi)
    larger_first = ((tl.arange(0, N // (2 * D)) * (2 * D)) & S) == 0
    larger_first = larger_first[None, :, None]
    pairs = tl.join(tl.where(larger_first, big, small), tl.where(larger_first, small, big))
    return tl.reshape(tl.permute(pairs, (0, 1, 3, 2)), [BLOCK_T, N])


@triton.jit
def _max_of_pairs(x, BLOCK_T: tl.constexpr, N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Chunk pairs (2c, 2c+1) of x [BLOCK_T, N] -> their elementwise max, [BLOCK_T, N/2]."""
    pairs = tl.permute(tl.reshape(x, [BLOCK_T, N // (2 * BLOCK_K), 2, BLOCK_K]), (0, 1, 3, 2))
    a, b = tl.split(pairs)
    return tl.reshape(tl.maximum(a, b), [BLOCK_T, N // 2])


@triton.jit
def bitonic_topk(x, BLOCK_T: tl.constexpr, N: tl.constexpr, BLOCK_K: tl.constexpr,
                 LOG2_N: tl.constexpr, LOG2_BLOCK_K: tl.constexpr):
    """Rows of unique int32 values x [BLOCK_T, N] -> their top BLOCK_K [BLOCK_T, BLOCK_K], largest
    first."""
    # Sort chunks of BLOCK_K, chunk c larger-first when c is even.
    for stage in tl.static_range(1, LOG2_BLOCK_K + 1):
        for step in tl.static_range(stage):
            x = _compare_exchange(x, BLOCK_T, N, 1 << (stage - 1 - step), 1 << stage)
    for level in tl.static_range(LOG2_N - LOG2_BLOCK_K):
        x = _max_of_pairs(x, BLOCK_T, N >> level, BLOCK_K)
        for step in tl.static_range(LOG2_BLOCK_K):
            x = _compare_exchange(x, BLOCK_T, N >> (level + 1), BLOCK_K >> (step + 1), BLOCK_K)
    return x


@triton.jit
def _unpacked_logits(packed, IS_BF16: tl.constexpr):
    """bf16/fp16 logits as fp32, recovered from packed keys (which hold the whole 16-bit pattern):
    the order map undone. (-0.0 comes back as +0.0, which changes no weight.)"""
    key16 = packed >> 16
    sign = key16 >> 31
    bits16 = ((key16 ^ sign) - sign) | (sign & 0x8000)
    if IS_BF16:
        return (bits16 << 16).to(tl.float32, bitcast=True)
    else:
        return bits16.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _column(tile, slots, i: tl.constexpr):
    """Column i of an int32 tile [BLOCK_T, BLOCK_K] whose columns are slots."""
    return tl.max(tl.where(slots[None, :] == i, tile, -2147483647 - 1), axis=1)


@triton.jit
def _route_rows_exactly(gating_ptr, scale_ptr, weights_ptr, ids_ptr, first_row, T, E, stride_gt, stride_ge,
                        stride_s, K: tl.constexpr, ROWS: tl.constexpr, BLOCK_E: tl.constexpr,
                        BLOCK_K: tl.constexpr, LOG2_BLOCK_K: tl.constexpr, ACCURATE_EXP: tl.constexpr,
                        SCALE_IS_BF16: tl.constexpr):
    """Route fp32 rows first_row .. first_row + ROWS - 1 by the exact iterative max on full keys,
    and write them. The network kernel's path for the rare blocks that truncated keys cannot
    settle; a few rows at a time, so that it needs few registers (a kernel's register count is its
    largest path's, and every block would pay for it in occupancy)."""
    rows = first_row + tl.arange(0, ROWS)
    row_ok = rows < T
    rows64 = rows.to(tl.int64)
    row_ptr = gating_ptr + rows64 * stride_gt
    cols = tl.arange(0, BLOCK_E)
    col_ok = cols < E
    slots = tl.arange(0, BLOCK_K)
    x = load_fp32(row_ptr[:, None] + cols[None, :] * stride_ge, row_ok[:, None] & col_ok[None, :], False)
    key = tl.where(col_ok[None, :], order_key(x)[0], -2147483647 - 1)
    top_id = exact_topk(key[:, None, :], cols[None, None, :], slots, K, BLOCK_E,
                        tl.zeros([ROWS, BLOCK_K], dtype=tl.int32))
    out_ok = row_ok[:, None] & (slots < K)[None, :]
    top_id = tl.where(out_ok, top_id, 0)
    v = load_fp32(row_ptr[:, None] + top_id * stride_ge, out_ok, False)
    write_routing(v, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr,
                  K, ROWS, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, SCALE_IS_BF16)


@triton.jit
def _network_kernel(
    gating_ptr, scale_ptr, weights_ptr, ids_ptr,
    T, E, stride_gt, stride_ge, stride_s,
    K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_E: tl.constexpr, LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr,
    CHECK_LOSS: tl.constexpr, ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr,
    SCALE_IS_BF16: tl.constexpr, VEC: tl.constexpr, EVEN_E: tl.constexpr, KEY16: tl.constexpr,
    NAN_MAG: tl.constexpr, EXACT_ROWS: tl.constexpr, LANES: tl.constexpr,
    PAIRS: tl.constexpr,  # unused: v3 reads 16-bit logits one by one
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    row_ok = rows < T
    rows64 = rows.to(tl.int64)
    row_ptr = gating_ptr + rows64 * stride_gt
    # The tile is loaded as [R, BLOCK_T, LANES, VEC], column (r * LANES + l) * VEC + v: VEC
    # neighbouring columns make one vector load, LANES lanes share a row (LANES * VEC columns side
    # by side: coalesced), and R chunks per row repeat in registers. The network below stays in
    # registers until it merges across those LANES lanes.
    R: tl.constexpr = BLOCK_E // (LANES * VEC)
    cols3 = (((tl.arange(0, R) * LANES)[:, None, None, None] + tl.arange(0, LANES)[None, None, :, None]) * VEC
             + tl.arange(0, VEC)[None, None, None, :])
    col_ok3 = cols3 < E
    packed, _, _ = packed_keys(row_ptr[None, :, None, None] + cols3 * stride_ge, row_ok[None, :, None, None], cols3,
                            col_ok3, COL_BITS, KEY16, EVEN_E, NAN_MAG)
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    packed = tl.reshape(tl.permute(packed, (1, 2, 0, 3)), [BLOCK_T, BLOCK_E])
    # fp32 needs the (K + 1)-th pick too (below): when K fills BLOCK_K, the network keeps twice as
    # many. (Tracking the largest value each level drops would cost fewer operations, but the
    # compiler then keeps every dropped value live: 168 registers instead of 80.)
    WIDE: tl.constexpr = CHECK_LOSS and K == BLOCK_K and BLOCK_E > BLOCK_K
    if WIDE:
        both = bitonic_topk(packed, BLOCK_T, BLOCK_E, 2 * BLOCK_K, LOG2_BLOCK_E, LOG2_BLOCK_K + 1)
        top, rest = tl.split(tl.permute(tl.reshape(both, [BLOCK_T, 2, BLOCK_K]), (0, 2, 1)))
    else:
        top = bitonic_topk(packed, BLOCK_T, BLOCK_E, BLOCK_K, LOG2_BLOCK_E, LOG2_BLOCK_K)

    slots = tl.arange(0, BLOCK_K)
    out_ok = row_ok[:, None] & (slots < K)[None, :]
    top_id = tl.where(out_ok, COL_MASK - (top & COL_MASK), 0)
    if CHECK_LOSS:
        # fp32: truncation may have ordered two different logits by id. Compare the full keys of
        # consecutive picks (K + 1 of them) that share a truncated key; any difference sends the
        # block to the exact path.
        v = load_fp32(row_ptr[:, None] + top_id * stride_ge, out_ok, False)
        full = order_key(v)[0]
        if WIDE:
            after = _column(rest, slots, 0)
        else:
            after = _column(top, slots, K)  # unused (no pick after the K-th) when E == K
        has_after = tl.full([BLOCK_T], E, tl.int32) > K  # a (K + 1)-th pick exists
        after_id = COL_MASK - (after & COL_MASK)
        after_v = tl.load(row_ptr + after_id * stride_ge, mask=row_ok & has_after, other=0.0)
        after_full = order_key(after_v)[0]
        ambiguous = tl.zeros([BLOCK_T], dtype=tl.int1)
        prev_t = _column(top, slots, 0) >> COL_BITS
        prev_f = _column(full, slots, 0)
        for i in tl.static_range(1, K + 1):
            if i < K:
                t = _column(top, slots, i) >> COL_BITS
                f = _column(full, slots, i)
            else:
                t = tl.where(has_after, after >> COL_BITS, prev_t - 1)
                f = after_full
            ambiguous = ambiguous | ((t == prev_t) & (f != prev_f))
            prev_t = t
            prev_f = f
        if tl.max((ambiguous & row_ok).to(tl.int32), axis=0) > 0:
            for start in range(0, BLOCK_T, EXACT_ROWS):
                _route_rows_exactly(gating_ptr, scale_ptr, weights_ptr, ids_ptr, pid * BLOCK_T + start, T, E,
                                    stride_gt, stride_ge, stride_s, K, EXACT_ROWS, BLOCK_E, BLOCK_K,
                                    LOG2_BLOCK_K, ACCURATE_EXP, SCALE_IS_BF16)
        else:
            write_routing(v, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr,
                          K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, SCALE_IS_BF16)
    else:
        v = _unpacked_logits(top, IS_BF16)
        write_routing(v, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr,
                      K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, SCALE_IS_BF16)


EXACT_ROWS = 2**17 if device.INTERPRETER else 8
"""Rows the network kernel's exact path takes at a time (in the interpreter: all of a program's)."""

ROUTE_ONLY = ("SCORE", "RENORM", "ROW_ALIGN", "WORD_MAXIMA", "FP32_UNCHECKED", "ROW_LANES", "FMA_KEYS", "E_CONST")
"""fused.plan's compile-time arguments that only route_kernel takes: the network computes the softmax
over the K, reads a row logit by logit and keeps its fp32 keys NaN-checked."""


def network_args(gating_output: torch.Tensor, constexprs: dict, block_e: int, block_t: int, lanes: int = 1) -> dict:
    """The network kernel's compile-time arguments: fused.plan(...).constexprs less ROUTE_ONLY, and its
    own. Every name must be a parameter of the kernel: the interpreter passes over one it does not take,
    the GPU's launcher raises (a name plan gained once failed every launch on the GPU alone)."""
    if constexprs["SCORE"] != SOFTMAX_K:
        raise ValueError("the network kernel computes the softmax over the K only")
    dtype = gating_output.dtype
    args = {k: v for k, v in constexprs.items() if k not in ROUTE_ONLY}
    args.update({"LOG2_BLOCK_E": block_e.bit_length() - 1, "VEC": min(block_e, 16 // dtype.itemsize),
                 "EXACT_ROWS": min(EXACT_ROWS, block_t),
                 "LANES": min(lanes, max(1, block_e * dtype.itemsize // 16))})
    unknown = set(args) - set(_network_kernel.arg_names)
    if unknown:
        raise TypeError(f"not parameters of the network kernel: {sorted(unknown)} (add them to ROUTE_ONLY, or to the kernel)")
    return args
