"""v7 (a measured variant, not used by parity.routing.fused): v6's persistent kernel with a loop
body Triton's software pipeliner accepts, so the next blocks' words travel by cp.async into shared
memory while the current block is routed, without a second tile in registers.

Why (reports/bench/NOTES.md, "Overlap" and "Pipelined loads"): v6 tried num_stages 1 and 3 and saw
no difference, because the pipeliner never ran: it leaves a loop that holds another loop alone,
and v6's body held the NaN pass (a loop of zero or one pass). Compiled here for sm_90 with triton
3.6.0, v6 at num_stages=3 has no async copy in its TTGIR; this variant's main loop has none
nested (8 async copies, 9 KB of shared memory at three stages).

NaN: the main loop routes every block without the NaN case and ORs the blocks' NaN checks; a
program that saw one routes all its blocks again, NaN-checked, in a second loop after the first
(a loop beside the main loop, not inside it). Same bits as fused (the same keys, rounds and
epilogue); bf16/fp16 contiguous rows of even length, softmax over the K only.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from benchmarks.variants.v6_persistent import _packed, _words, word_kernel_args
from parity.routing.fused import pick_rounds
from parity.routing.kernel_parts import (
    chosen_scores,
    half_keys_hold_nan,
    load_fp32,
    nan_keys_on_top,
    store_routing,
)


@triton.jit
def _route_block(gating_ptr, scale_ptr, weights_ptr, ids_ptr, w, blk, T, stride_gt, stride_s,
                 K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
                 LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr, ACCURATE_EXP: tl.constexpr,
                 IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr, NAN_MAG: tl.constexpr, VEC: tl.constexpr,
                 FIX_NAN: tl.constexpr):
    """Route block ``blk`` from its words w; returns whether it holds a NaN (FIX_NAN: routed NaN-checked)."""
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    slots = tl.arange(0, BLOCK_K)
    rows = blk * BLOCK_T + tl.arange(0, BLOCK_T)
    row_ok = rows < T
    rows64 = rows.to(tl.int64)
    row_ptr = gating_ptr + rows64 * stride_gt
    packed = _packed(w, (blk * BLOCK_T) >> 31, BLOCK_E, VEC, COL_BITS)
    best = tl.max(tl.max(packed, axis=2), axis=1)
    has_nan = half_keys_hold_nan(packed, best, NAN_MAG, COL_BITS)
    if FIX_NAN:
        packed = nan_keys_on_top(packed, NAN_MAG, COL_BITS)
        best = tl.max(tl.max(packed, axis=2), axis=1)
    top, _, _ = pick_rounds(packed, best, slots, K, K, COL_BITS, False)
    out_ok = row_ok[:, None] & (slots < K)[None, :]
    top_id = tl.where(out_ok, COL_MASK - (top & COL_MASK), 0)
    if T > 0:  # always: the gathers inside an if are left out of the pipeline (they depend on the rounds)
        v = load_fp32(row_ptr[:, None] + top_id, out_ok, IS_BF16)
        probs = chosen_scores(v, slots, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, 0, True)
        store_routing(probs, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr, K,
                      SCALE_IS_BF16)
    return has_nan


@triton.jit(do_not_specialize=["T"])
def pipelined_kernel(
    gating_ptr, scale_ptr, weights_ptr, ids_ptr, T, stride_gt, stride_s,
    K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr, ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr,
    SCALE_IS_BF16: tl.constexpr, NAN_MAG: tl.constexpr, VEC: tl.constexpr, STAGES: tl.constexpr,
):
    step = tl.num_programs(0)
    n_blocks = tl.cdiv(T, BLOCK_T)
    nan_seen = tl.zeros([], dtype=tl.int1)
    for blk in tl.range(tl.program_id(0), n_blocks, step, num_stages=STAGES):
        rows = blk * BLOCK_T + tl.arange(0, BLOCK_T)
        w, _ = _words(gating_ptr + rows.to(tl.int64) * stride_gt, rows < T, BLOCK_E, VEC)
        nan_seen = nan_seen | _route_block(gating_ptr, scale_ptr, weights_ptr, ids_ptr, w, blk, T, stride_gt,
                                           stride_s, K, BLOCK_T, BLOCK_E, BLOCK_K, LOG2_BLOCK_K, COL_BITS,
                                           ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, NAN_MAG, VEC, False)
    # a program that met a NaN routes its blocks again, NaN-checked (the same threads store the
    # same elements in both loops, in program order)
    again = tl.where(nan_seen, n_blocks, tl.program_id(0))
    for blk in tl.range(tl.program_id(0), again, step, loop_unroll_factor=1):
        rows = blk * BLOCK_T + tl.arange(0, BLOCK_T)
        w, _ = _words(gating_ptr + rows.to(tl.int64) * stride_gt, rows < T, BLOCK_E, VEC)
        _route_block(gating_ptr, scale_ptr, weights_ptr, ids_ptr, w, blk, T, stride_gt, stride_s, K, BLOCK_T,
                     BLOCK_E, BLOCK_K, LOG2_BLOCK_K, COL_BITS, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, NAN_MAG,
                     VEC, True)


def launcher(g: torch.Tensor, K: int, scale: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, *,
             programs: int, stages: int = 3, block_t: int | None = None, num_warps: int = 1,
             max_registers: int | None = None):
    """A no-argument launch of the pipelined kernel on ``programs`` programs (v6's word_kernel_args)."""
    grid, args = word_kernel_args(g, K, scale, programs, block_t, max_registers)

    def run():
        pipelined_kernel[grid](g, scale, weights, ids, g.shape[0], g.stride(0), scale.stride(0), STAGES=stages,
                               num_warps=num_warps, **args)
    return run
