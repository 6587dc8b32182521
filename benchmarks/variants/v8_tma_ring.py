"""v8 (prepared 2026-12-05 without a GPU, NOT yet run on one): route_kernel as a persistent Gluon kernel whose rows arrive by TMA into a ring of shared-memory stages, read back in
the rows-across-lanes layout without bank conflicts (128-byte swizzle), so a warp's next blocks are
in flight while it routes the current one, and the words in flight hold no registers.

Why (reports/bench/NOTES.md, "Overlap", "Pipelined loads" and "What this leaves for the targets"):
Gemma4 bf16 at T=250000 takes 34.7 µs where its instructions alone take ~21.7 µs at one a clock
and its bytes ~18.9 µs at the copy rate; Nsight Compute puts 19% of its stall samples on the
first use of the loaded words (long scoreboard) at 4-5 warps a scheduler. Two ways to overlap were
measured and lost: v6 loaded the next block into registers (158-168 registers, 35.8 µs at best) and
v7 let Triton's pipeliner move it by cp.async into a shared layout Triton chose, which every row
reads at the same banks (38.5 µs at one stage, slower with each stage more). Here: the copy is one
TMA instruction a block (no address registers, no issue slots a lane), the shared layout is the
128-byte swizzle (row r's 16-byte chunk c of a box at c ^ (r mod 8): eight consecutive rows, a
quarter of the warp, read one chunk each from eight distinct bank groups; the kernel asserts at
compile time, through gl.bank_conflicts, that its read has no conflict, and tests/test_sass_probe.py
checks that it would refuse one), and STAGES blocks are in flight. Registers (sm_90, triton 3.6.0,
Gemma4 bf16): 111 uncapped, 95 under a cap of 96 without a spill, route_kernel's occupancy; fp32
(rows of 128 in four boxes) 80 uncapped, 64 under a cap of 64 without a spill, route_kernel's count.

Keys and selection are fused's (kernel_parts' keys; fused.picks_of, route_kernel's own selection, for
fp32 and under FUSED_ROUNDS; by default for 16-bit rows the same rounds written for the tile as it
arrives), the epilogue chosen_scores' softmax, so ids and weights equal fused's bit for bit where
both run. Gluon has no interpreter: this runs on a GPU only (sm_90: TMA). Scope: bf16/fp16 rows of
64, 128 or 256 logits, fp32 rows of 128 (Gemma4's), contiguous, a 16-byte-aligned base, the softmax
over the K.
"""
from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from parity.routing.fused import NAN_MAGNITUDE, picks_of, ranked_by_logit
from parity.routing.kernel_parts import (
    exp_shifted,
    half_keys_hold_nan,
    half_nan_bounds,
    key_value,
    load_fp32,
    nan_keys_on_top,
    pairwise_sum,
    sign_magnitude_key,
    store_routing,
    top_half_key_unchecked,
)

_TMA_LOAD = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared
"""The TMA load: tma.async_load in Triton 3.9 (CI's), where async_copy_global_to_shared raises; the latter in
3.6 (the device's), which has no async_load."""
_CTA_BARRIER = getattr(gl, "thread_barrier", None) or gl.barrier
"""gl.thread_barrier in Triton 3.6, gl.barrier in 3.9."""
BOX_WORDS = gl.constexpr(32)
"""A TMA box's row: 32 words, 128 bytes (the 128-byte swizzle's width): 64 bf16/fp16 logits or 32 fp32."""


@gluon.jit
def _row_max(packed):
    """The largest key of each row of a block's keys [BOXES, BLOCK_T, BOX_WORDS, 2]."""
    return gl.max(gl.max(gl.max(packed, axis=3), axis=2), axis=0)


@gluon.jit
def _row_min(packed):
    return gl.min(gl.min(gl.min(packed, axis=3), axis=2), axis=0)


@gluon.jit
def _below(prev, packed):
    """The largest packed key below prev [BLOCK_T] in each row: fused.pick_rounds's round."""
    gap = ((prev - 1)[None, :, None, None] - packed).to(gl.uint32, bitcast=True)
    return prev - 1 - _row_min(gap).to(gl.int32, bitcast=True)


@gluon.jit
def _tma_load(desc, blk, BLOCK_T: gl.constexpr, BOXES: gl.constexpr, barrier, stage, pred):
    """One block's words [BOXES, BLOCK_T, BOX_WORDS] into a stage of the ring; barrier counts its bytes."""
    mbarrier.expect(barrier, BOXES * BLOCK_T * BOX_WORDS * 4, pred=pred)
    _TMA_LOAD(desc, [0, blk * BLOCK_T, 0], barrier, stage, pred=pred)


@gluon.jit
def _route_stage(words, blk, gating_ptr, scale_ptr, weights_ptr, ids_ptr, T, stride_gt, stride_s,
                 K: gl.constexpr, BLOCK_T: gl.constexpr, BOXES: gl.constexpr, BLOCK_K: gl.constexpr,
                 LOG2_BLOCK_K: gl.constexpr, COL_BITS: gl.constexpr, ACCURATE_EXP: gl.constexpr,
                 KEY16: gl.constexpr, IS_BF16: gl.constexpr, SCALE_IS_BF16: gl.constexpr, NAN_MAG: gl.constexpr,
                 WORDS_LAYOUT: gl.constexpr, OUT_LAYOUT: gl.constexpr, FUSED_ROUNDS: gl.constexpr,
                 DECODE: gl.constexpr):
    """Route block ``blk`` from its words [BOXES, BLOCK_T, BOX_WORDS]: a bf16/fp16 word j of box b holds
    logits b * 64 + 2j (low half) and b * 64 + 2j + 1 (high half), an fp32 word logit b * 32 + j."""
    COL_MASK: gl.constexpr = (1 << COL_BITS) - 1
    zero = (blk * BLOCK_T) >> 31   # 0, unknown to the compiler: the ids stay inside the loop (v6; without
                                   # it ptxas hoists them out of the loop and takes 144 registers, not 111)
    box = gl.arange(0, BOXES, layout=gl.SliceLayout(1, gl.SliceLayout(2, WORDS_LAYOUT)))[:, None, None]
    j = gl.arange(0, BOX_WORDS, layout=gl.SliceLayout(0, gl.SliceLayout(1, WORDS_LAYOUT)))[None, None, :]
    row_layout: gl.constexpr = gl.SliceLayout(1, OUT_LAYOUT)
    rows = blk * BLOCK_T + gl.arange(0, BLOCK_T, layout=row_layout)
    row_ok = rows < T
    slots = gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, OUT_LAYOUT))
    order_in_doubt = 0
    if not KEY16:      # fp32: fused's keys and its whole selection, the exact paths included (picks_of)
        col = box * BOX_WORDS + j + zero
        key = sign_magnitude_key(words, 0x7FFFFFFF, NAN_MAG)
        packed = (key & ~COL_MASK) | (COL_MASK - col)
        C: gl.constexpr = BOXES * BOX_WORDS // 4
        packed = gl.reshape(gl.permute(packed, (1, 0, 2)), [BLOCK_T, C, 4])   # fused's [rows, C, V]
        key = gl.reshape(gl.permute(key, (1, 0, 2)), [BLOCK_T, C, 4])
        tile: gl.constexpr = packed.type.layout
        cols = (gl.arange(0, C, layout=gl.SliceLayout(0, gl.SliceLayout(2, tile)))[None, :, None] * 4
                + gl.arange(0, 4, layout=gl.SliceLayout(0, gl.SliceLayout(1, tile)))[None, None, :])
        best = gl.max(gl.max(packed, axis=2), axis=1)
        top_id, order_in_doubt = picks_of(packed, key, best, cols, gl.arange(0, BLOCK_K, layout=gl.SliceLayout(
            0, gl.SliceLayout(2, tile))), gl.convert_layout(row_ok, gl.SliceLayout(1, gl.SliceLayout(2, tile))), K,
            BOXES * BOX_WORDS, COL_BITS, True)
        top_id = gl.convert_layout(top_id, OUT_LAYOUT)
    else:
        col = box * (2 * BOX_WORDS) + 2 * j + zero            # the even column of each word
        packed = gl.join(top_half_key_unchecked(words << 16, COL_MASK - col),
                         top_half_key_unchecked(words, COL_MASK - 1 - col))   # [BOXES, BLOCK_T, BOX_WORDS, 2]
        if FUSED_ROUNDS:   # fused's own functions on the tile as fused holds it, [rows, C, V]
            packed = gl.reshape(gl.permute(packed, (1, 0, 2, 3)), [BLOCK_T, BOXES * BOX_WORDS, 2])
            best = gl.max(gl.max(packed, axis=2), axis=1)
            for _ in range(half_keys_hold_nan(packed, best, NAN_MAG, COL_BITS).to(gl.int32)):
                packed = nan_keys_on_top(packed, NAN_MAG, COL_BITS)
                best = gl.max(gl.max(packed, axis=2), axis=1)
            # without CHECK_LOSS picks_of reads neither the full keys, the columns nor row_ok: stand-ins
            top_id, _ = picks_of(packed, packed, best, packed, gl.arange(0, BLOCK_K, layout=gl.SliceLayout(
                0, gl.SliceLayout(2, packed.type.layout))), best > 0, K, 2 * BOXES * BOX_WORDS, COL_BITS, False)
            top_id = gl.convert_layout(top_id, OUT_LAYOUT)
        else:              # the same rounds over the tile as it arrives, [boxes, rows, words, 2]
            best = _row_max(packed)
            inf_top, below_neg_inf = half_nan_bounds(NAN_MAG, COL_BITS)
            has_nan = (gl.max(best, axis=0) > inf_top) | (gl.min(_row_min(packed), axis=0) < below_neg_inf)
            for _ in range(has_nan.to(gl.int32)):   # a block with a NaN: its keys made NaN-checked ones (fused)
                packed = nan_keys_on_top(packed, NAN_MAG, COL_BITS)
                best = _row_max(packed)
            top = gl.where(slots[None, :] == 0, gl.convert_layout(best, row_layout)[:, None], 0)
            for k in gl.static_range(1, K):
                best = _below(best, packed)
                top = gl.where(slots[None, :] == k, gl.convert_layout(best, row_layout)[:, None], top)
            top_id = COL_MASK - (top & COL_MASK)

    rows64 = rows.to(gl.int64)
    out_ok = row_ok[:, None] & (slots < K)[None, :]
    top_id = gl.where(out_ok, top_id, 0)
    if DECODE and KEY16 and not FUSED_ROUNDS:
        # the picks' logits decoded from their keys (exact for 16-bit logits; a NaN's as a NaN), not
        # gathered: TMA does not fill L1, so the gather route_kernel makes from L1 goes to L2 here
        v = key_value(top >> 16, True, IS_BF16)
    else:
        v = load_fp32(gating_ptr + rows64[:, None] * stride_gt + top_id, out_ok, IS_BF16)
    if not KEY16:
        if order_in_doubt:
            top_id, v = ranked_by_logit(top_id, v, slots, K)
    # kernel_parts.chosen_scores (softmax over the K) with its row sums brought back to the rows' layout
    first = gl.sum(gl.where(slots[None, :] == 0, v, 0.0), axis=1)
    e = gl.where((slots < K)[None, :], exp_shifted(v, first[:, None], ACCURATE_EXP), 0.0)
    total = gl.convert_layout(pairwise_sum(e, BLOCK_T, BLOCK_K, LOG2_BLOCK_K), row_layout)
    probs = e / total[:, None]
    store_routing(probs, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr, K, SCALE_IS_BF16)


@gluon.jit
def tma_ring_kernel(
    desc, gating_ptr, scale_ptr, weights_ptr, ids_ptr, T, stride_gt, stride_s,
    K: gl.constexpr, BLOCK_T: gl.constexpr, BOXES: gl.constexpr, BLOCK_K: gl.constexpr,
    LOG2_BLOCK_K: gl.constexpr, COL_BITS: gl.constexpr, ACCURATE_EXP: gl.constexpr, KEY16: gl.constexpr,
    IS_BF16: gl.constexpr, SCALE_IS_BF16: gl.constexpr, NAN_MAG: gl.constexpr, STAGES: gl.constexpr,
    FUSED_ROUNDS: gl.constexpr = False, DECODE: gl.constexpr = False,
):
    if KEY16:
        # one warp: lanes 0..BLOCK_T-1 hold rows, each row's 16-byte chunks dealt to its lanes in turn (as
        # in fused's tile: one block routed outside a loop takes 92 registers so, 101 with each lane a box)
        WORDS_LAYOUT: gl.constexpr = gl.BlockedLayout([1, 1, 4], [1, BLOCK_T, 32 // BLOCK_T], [1, 1, 1], [1, 2, 0])
    else:
        # fp32, 128 logits (four boxes) a row, four rows: lane bits 0-1 the row, bit 2 the chunk's bit 2
        # (4 chunks apart: with the swizzle, a quarter-warp's four rows and two chunks fall in eight
        # distinct bank groups), bits 3-4 its bits 0-1; registers the chunk's four words and the box
        gl.static_assert(BOXES == 4 and BLOCK_T == 4, "the fp32 ring is laid out for rows of 128 logits")
        WORDS_LAYOUT: gl.constexpr = gl.DistributedLinearLayout(
            [[0, 0, 1], [0, 0, 2], [1, 0, 0], [2, 0, 0]], [[0, 1, 0], [0, 2, 0], [0, 0, 16], [0, 0, 4], [0, 0, 8]],
            [], [], [BOXES, BLOCK_T, BOX_WORDS])
    OUT_LAYOUT: gl.constexpr = gl.BlockedLayout([1, 1], [BLOCK_T, 32 // BLOCK_T], [1, 1], [0, 1])
    ring = gl.allocate_shared_memory(gl.int32, [STAGES, BOXES, BLOCK_T, BOX_WORDS], desc.layout)
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(ready.index(s), count=1)
    fence_async_shared()

    step = gl.num_programs(0)
    n_blocks = gl.cdiv(T, BLOCK_T)
    first = gl.program_id(0)
    for s in gl.static_range(STAGES):   # this program's first STAGES blocks in flight
        _tma_load(desc, first + s * step, BLOCK_T, BOXES, ready.index(s), ring.index(s), first + s * step < n_blocks)
    for i in range(gl.cdiv(n_blocks - first, step)):
        stage = i % STAGES
        mbarrier.wait(ready.index(stage), (i // STAGES) & 1)
        words = ring.index(stage).load(WORDS_LAYOUT)
        gl.static_assert(gl.bank_conflicts(words.type, ring.index(stage).type) == 0,
                         "the words' read from the ring must not conflict in the banks")
        _route_stage(words, first + i * step, gating_ptr, scale_ptr, weights_ptr, ids_ptr, T, stride_gt, stride_s,
                     K, BLOCK_T, BOXES, BLOCK_K, LOG2_BLOCK_K, COL_BITS, ACCURATE_EXP, KEY16, IS_BF16,
                     SCALE_IS_BF16, NAN_MAG, WORDS_LAYOUT, OUT_LAYOUT, FUSED_ROUNDS, DECODE)
        # the stage's words are consumed (the keys are made of them): refill it with the block STAGES ahead
        _CTA_BARRIER()
        nxt = first + (i + STAGES) * step
        _tma_load(desc, nxt, BLOCK_T, BOXES, ready.index(stage), ring.index(stage), nxt < n_blocks)

    for s in gl.static_range(STAGES):
        mbarrier.invalidate(ready.index(s))


def ring_layout(swizzle: int = 128) -> gl.NVMMASharedLayout:
    """The shared layout of a stage's words: 128-byte box rows under the 128-byte swizzle (``swizzle``
    other than 128: for the test that a conflicting read does not compile)."""
    return gl.NVMMASharedLayout(swizzle_byte_width=swizzle, element_bitwidth=32, rank=3)


def kernel_args(g: torch.Tensor, K: int, scale: torch.Tensor, *, stages: int, swizzle: int = 128,
                fused_rounds: bool = False, decode: bool = False) -> tuple:
    """The descriptor and compile-time arguments for a batch g (checked against the variant's scope).
    fused_rounds: the rounds by fused.pick_rounds itself on the tile reshaped to fused's [rows, C, V]
    (the code route_kernel runs; 110 registers, and spills under a cap of 96), else the same rule
    written for the tile as it arrives (95 registers under the cap, no spill)."""
    T, E = g.shape
    if not (g.dtype in (torch.bfloat16, torch.float16) and E in (64, 128, 256) or g.dtype == torch.float32 and E == 128):
        raise ValueError(f"v8 takes bf16/fp16 rows of 64, 128 or 256 logits or fp32 rows of 128, not {g.dtype} x {E}")
    if g.stride(1) != 1 or g.stride(0) != E or g.data_ptr() % 16 or T == 0:
        raise ValueError("v8 takes contiguous rows from a 16-byte-aligned base, at least one")
    w = BOX_WORDS.value
    row_words = E * g.dtype.itemsize // 4
    boxes = row_words // w
    block_t = (2048 if g.dtype.itemsize == 2 else 512) // E   # fused's keys a warp
    block_k = triton.next_power_of_2(K)
    # the words as [box, row, word]: box b of row r at r * row_words + 32 b, so that a block lands in
    # shared memory box by box, each box's rows consecutive 128-byte lines (what the swizzle spreads)
    desc = TensorDescriptor(g.view(torch.int32), [boxes, T, w], [w, row_words, 1], [boxes, block_t, w],
                            ring_layout(swizzle))
    return desc, dict(
        K=K, BLOCK_T=block_t, BOXES=boxes, BLOCK_K=block_k, LOG2_BLOCK_K=block_k.bit_length() - 1,
        COL_BITS=max(1, (E - 1).bit_length()), ACCURATE_EXP=True, KEY16=g.dtype.itemsize == 2,
        IS_BF16=g.dtype == torch.bfloat16,
        SCALE_IS_BF16=scale.dtype == torch.bfloat16, NAN_MAG=NAN_MAGNITUDE[g.dtype], STAGES=stages,
        FUSED_ROUNDS=fused_rounds, DECODE=decode)


def launcher(g: torch.Tensor, K: int, scale: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, *,
             programs: int, stages: int = 3, max_registers: int | None = None, fused_rounds: bool = False,
             decode: bool = False):
    """A no-argument launch of the ring kernel on ``programs`` one-warp programs (kernel_args)."""
    desc, args = kernel_args(g, K, scale, stages=stages, fused_rounds=fused_rounds, decode=decode)
    grid = (max(1, min(programs, triton.cdiv(g.shape[0], args["BLOCK_T"]))),)
    extra = {} if max_registers is None else {"maxnreg": max_registers}

    def run():
        tma_ring_kernel[grid](desc, g, scale, weights, ids, g.shape[0], g.stride(0), scale.stride(0), num_warps=1,
                              **args, **extra)
    return run
