"""v6 (a measured variant, not used by parity.routing.fused): route_kernel's bf16/fp16 pair path as
a persistent kernel, each program looping over row blocks, optionally loading the next block's
words before routing the current one (PREFETCH: the loads of one block overlap the rounds of the
previous in the same warp, at the cost of a second tile of words in registers).

Why (reports/bench/NOTES.md, "Overlap"): Gemma4 bf16 at T=250000 issues ~1454 instructions a warp
of 16 rows, 21.7 µs at one a clock on every scheduler, and reads 64 MB, 18.9 µs at the copy rate,
yet takes 34.7 µs: closer to the sum than to the larger. A warp that waits for its loads with
nothing else to do leaves its scheduler to the other resident warps; with ~21 warps an SM that
is not always enough. Same bits as fused (the same keys, rounds and epilogue); bf16/fp16
contiguous rows of even length, softmax over the K only.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from parity.routing.fused import pick_rounds, plan
from parity.routing.kernel_parts import (
    chosen_scores,
    half_keys_hold_nan,
    load_fp32,
    nan_keys_on_top,
    store_routing,
    top_half_key_unchecked,
)


@triton.jit
def _words(row_ptr, row_ok, BLOCK_E: tl.constexpr, VEC: tl.constexpr):
    """The rows' 32-bit words [BLOCK_T, BLOCK_E // VEC, VEC // 2] (two logits each) and their indices."""
    words = ((tl.arange(0, BLOCK_E // VEC) * (VEC // 2))[:, None] + tl.arange(0, VEC // 2)[None, :])[None, :, :]
    w = tl.load(row_ptr.to(tl.pointer_type(tl.int32))[:, None, None] + words, mask=row_ok[:, None, None], other=0)
    return w, words


@triton.jit
def _packed(w, zero, BLOCK_E: tl.constexpr, VEC: tl.constexpr, COL_BITS: tl.constexpr):
    """kernel_parts.packed_pair_keys' keys (unchecked) from words already read. ``zero``: 0, but
    not known to be so at compile time: the ids then depend on the loop, so the compiler does not
    hoist them out of it, where they held 64 registers through the whole loop."""
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    words = ((tl.arange(0, BLOCK_E // VEC) * (VEC // 2))[:, None] + tl.arange(0, VEC // 2)[None, :])[None, :, :] + zero
    even = top_half_key_unchecked(w << 16, COL_MASK - 2 * words)
    odd = top_half_key_unchecked(w, COL_MASK - 1 - 2 * words)
    return tl.reshape(tl.join(even, odd), [w.shape[0], BLOCK_E // VEC, VEC])


@triton.jit(do_not_specialize=["T"])
def persistent_kernel(
    gating_ptr, scale_ptr, weights_ptr, ids_ptr, T, stride_gt, stride_s,
    K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr, ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr,
    SCALE_IS_BF16: tl.constexpr, NAN_MAG: tl.constexpr, VEC: tl.constexpr, PREFETCH: tl.constexpr,
):
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    slots = tl.arange(0, BLOCK_K)
    step = tl.num_programs(0)
    n_blocks = tl.cdiv(T, BLOCK_T)
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    w, _unused = _words(gating_ptr + rows.to(tl.int64) * stride_gt, rows < T, BLOCK_E, VEC)  # PREFETCH's first
    for blk in tl.range(tl.program_id(0), n_blocks, step, loop_unroll_factor=1):
        rows = blk * BLOCK_T + tl.arange(0, BLOCK_T)
        row_ok = rows < T
        rows64 = rows.to(tl.int64)
        row_ptr = gating_ptr + rows64 * stride_gt
        if not PREFETCH:
            w, _ = _words(row_ptr, row_ok, BLOCK_E, VEC)
        packed = _packed(w, (blk * BLOCK_T) >> 31, BLOCK_E, VEC, COL_BITS)
        if PREFETCH:   # after the keys: the words of this block are dead by then
            ahead = rows + step * BLOCK_T
            w_next, _ = _words(gating_ptr + ahead.to(tl.int64) * stride_gt, ahead < T, BLOCK_E, VEC)
        best = tl.max(tl.max(packed, axis=2), axis=1)
        for _ in tl.range(half_keys_hold_nan(packed, best, NAN_MAG, COL_BITS).to(tl.int32), loop_unroll_factor=1):
            packed = nan_keys_on_top(packed, NAN_MAG, COL_BITS)
            best = tl.max(tl.max(packed, axis=2), axis=1)
        top, _, _ = pick_rounds(packed, best, slots, K, K, COL_BITS, False)
        out_ok = row_ok[:, None] & (slots < K)[None, :]
        top_id = tl.where(out_ok, COL_MASK - (top & COL_MASK), 0)
        v = load_fp32(row_ptr[:, None] + top_id, out_ok, IS_BF16)
        probs = chosen_scores(v, slots, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, 0, True)
        store_routing(probs, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr, K,
                      SCALE_IS_BF16)
        if PREFETCH:
            w = w_next


def word_kernel_args(g: torch.Tensor, K: int, scale: torch.Tensor, programs: int, block_t: int | None = None,
                     max_registers: int | None = None):
    """(grid, compile-time arguments) of a persistent kernel over ``programs`` programs that reads
    contiguous bf16/fp16 rows of a power-of-two length as words (this variant and v7_pipelined):
    the tile and arguments as fused.plan gives them; max_registers: ptxas's cap."""
    launch = plan(g, K, scale)
    assert launch.constexprs["PAIRS"] and launch.constexprs["EVEN_E"], \
        "the persistent variants read contiguous 16-bit rows of a power-of-two length as words"
    c = launch.constexprs
    bt = block_t or launch.tile.block_t
    grid = (max(1, min(programs, triton.cdiv(g.shape[0], bt))),)
    return grid, {"K": K, "BLOCK_T": bt, "BLOCK_E": launch.tile.block_e, "BLOCK_K": c["BLOCK_K"],
                  "LOG2_BLOCK_K": c["LOG2_BLOCK_K"], "COL_BITS": c["COL_BITS"], "ACCURATE_EXP": c["ACCURATE_EXP"],
                  "IS_BF16": c["IS_BF16"], "SCALE_IS_BF16": c["SCALE_IS_BF16"], "NAN_MAG": c["NAN_MAG"],
                  "VEC": launch.tile.vec if bt > 1 else 8, **({"maxnreg": max_registers} if max_registers else {})}


def launcher(g: torch.Tensor, K: int, scale: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, *,
             programs: int, prefetch: bool, num_stages: int = 1, block_t: int | None = None,
             max_registers: int | None = None):
    """A no-argument launch of the persistent kernel on ``programs`` programs (word_kernel_args;
    max_registers: the prefetching kernel needs a cap: uncapped it takes 168 registers, at 128 it
    compiles without a spill, sm_90, triton 3.6)."""
    grid, args = word_kernel_args(g, K, scale, programs, block_t, max_registers)

    def run():
        persistent_kernel[grid](g, scale, weights, ids, g.shape[0], g.stride(0), scale.stride(0),
                                PREFETCH=prefetch, num_warps=1, num_stages=num_stages, **args)
    return run
