"""grouped v2 (a measured-variant candidate, not used by parity.routing.fused_grouped): the grouped
sigmoid router's fast path (fused_grouped.grouped_kernel: same arguments, same weights, ids and
flags contract) recast to issue fewer instructions per row. NOT TIMED YET.

Why: grouped_kernel is issue-bound on the H200 (reports/bench/probes/grouped-sass.md): 635 SASS
instructions per row at its table tile (BLOCK_T=1, 1 warp; 649 per row at BLOCK_T=4), 3.4x
fused.route_kernel's 189, and 199 us at T=250000 bf16 E=256 against fused's 66 us. Its layout puts a
whole warp on one row, so every row-wide reduction pays a 5-level shuffle tree per row (77 SHFL per
row); at BLOCK_T > 1 the fp32 bias load's layout wins and the logit tile goes through shared memory.

The idea, four changes (a prototype's SASS per row in grouped-sass.md, sm_90, triton 3.6, 1 warp):
1. Rows across lanes, whole groups in one thread: the tile is [BLOCK_T, BLOCK_G, BLOCK_P // VEC,
   VEC] (expert g * PER + c * VEC + v, VEC = 8) and the bias is loaded through a pointer tile of the
   same shape (bias_ptr + col + 0 * rows), so both loads get one layout ([1,1,1,8]/[8,4,1,1]) and
   nothing is converted: a group's top 2 is in-thread, a row reduction 2 shuffle levels shared by 8
   rows. 635 -> 329 per row at BLOCK_T=8 (354 at BLOCK_T=4).
2. FTZ (constexpr; off in the interpreter, which cannot run inline asm): the sigmoid as
   ex2.approx.ftz + rcp.approx.ftz, one MUFU each, without div.full's denormal handling: 329 -> 310.
   Only a sigmoid below 2**-126 changes (to 0), and rcp.approx is within 1 ulp where div.full is
   within 2: inside fast_sigmoid's 2**-21 bound, so ``thr`` holds.
3. The distance in one FFMA, fma(key, -2**SHIFT, top * 2**SHIFT) (bit for bit the old
   (top - key) * 2**SHIFT: power-of-2 scaling), saturated by fmin (NaN and far keys -> QMAX), and made
   an int by adding 2**23 and taking the bits (COL_BITS >= 8: the exponent shifts out of the packed
   word; smaller COL_BITS keep the truncating conversion). Rounding to nearest instead of truncating
   is still monotone, and each key's error is now within 1/2 unit where ``thr`` allows a whole unit
   per key (its "floor 1"), so ``thr`` is kept as it is.
4. No saturation-max reduction: the row top is a NaN-propagating max (a NaN key makes top NaN, every
   distance saturates, the row is flagged), and a row is flagged when a saturated key could matter:
   some valid group's second key is saturated (when groups are chosen at all) or the (K+1)-th pick is.
   (A saturated key among the picks fails the consecutive-gap test already: equal distances.)
With 1-4: 289 per row at BLOCK_T=8 (128 registers), 315 at BLOCK_T=4 (72 registers), MUFU 16 and F2I 0
per row; the prototype's interpreter check flagged the rows grouped_kernel flags.

Prediction (issue-bound at fused's measured 0.69-0.76 of the issue peak): ~90-110 us at T=250000 bf16
E=256 (DeepSeek-V3) on the H200, from grouped_kernel's 199 us. Not timed yet: benchmarks/probe_grouped.py
--variant v2 times it beside the table's kernel. ``run`` launches it and then fused_grouped.exact_kernel
for the flagged rows, as GroupedLaunch.run does.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import triton
import triton.language as tl

from parity import device
from parity.routing.fused_grouped import (
    GroupedLaunch,
    _next_up,
    _weights_and_store,
    error_bound,
    fast_sigmoid,
)
from parity.routing.kernel_parts import load_fp32

FTZ = not device.INTERPRETER
"""The .ftz MUFU sigmoid wherever inline asm runs (not in the Triton interpreter)."""


@triton.jit
def _sigmoid_ftz(x):
    """fast_sigmoid as one ex2.approx.ftz and one rcp.approx.ftz (GPU only)."""
    e = tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [x * -1.4426950408889634],
                                  dtype=tl.float32, is_pure=True, pack=1)
    return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [1.0 + e],
                                     dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _max_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _group_min(x):
    """The minimum over each group: the last two axes of [BLOCK_T, BLOCK_G, BLOCK_P // VEC, VEC]."""
    return tl.min(tl.min(x, axis=3), axis=2)


@triton.jit
def _group_next_up(prev, packed):
    """fused_grouped._next_up over each group's two axes: the smallest packed value above prev [BT, G]."""
    gap = (packed - (prev + 1)[:, :, None, None]).to(tl.uint32, bitcast=True)
    return prev + 1 + _group_min(gap).to(tl.int32, bitcast=True)


@triton.jit(do_not_specialize=["T"])
def grouped_v2_kernel(
    gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, flags_ptr,
    T, stride_gt, stride_ge, stride_b, stride_s,
    K: tl.constexpr, TOPK_GROUP: tl.constexpr, N_GROUP: tl.constexpr, PER: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr, GROUP_BITS: tl.constexpr, SHIFT: tl.constexpr,
    ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr, RENORM: tl.constexpr,
    EVEN: tl.constexpr, FTZ: tl.constexpr = FTZ,
):
    """fused_grouped.grouped_kernel's contract (weights and ids of the unflagged rows, flags for
    exact_kernel) with changes 1-4 of the module docstring."""
    VEC: tl.constexpr = 8 if BLOCK_P >= 8 else BLOCK_P
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    QMAX: tl.constexpr = (1 << (31 - COL_BITS)) - 2        # packed values stay below INT32_MAX (padding)
    SAT: tl.constexpr = QMAX << COL_BITS                     # packed at or above: a saturated distance
    INT32_MAX: tl.constexpr = 2147483647
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    slots = tl.arange(0, BLOCK_K)
    row_ok = rows < T
    row_ptr = gating_ptr + rows.to(tl.int64) * stride_gt
    grp = tl.arange(0, BLOCK_G)[None, :, None, None]
    pos = tl.arange(0, BLOCK_P // VEC)[None, None, :, None] * VEC + tl.arange(0, VEC)[None, None, None, :]
    col = grp * PER + pos                                     # [1, BLOCK_G, BLOCK_P // VEC, VEC]
    bias_ptrs = bias_ptr + col * stride_b + 0 * rows[:, None, None, None]   # the logits' shape: one layout
    if EVEN:
        x = load_fp32(row_ptr[:, None, None, None] + col * stride_ge, row_ok[:, None, None, None], IS_BF16)
        b = tl.load(bias_ptrs).to(tl.float32)
    else:
        valid = (grp < N_GROUP) & (pos < PER)
        x = load_fp32(row_ptr[:, None, None, None] + col * stride_ge, row_ok[:, None, None, None] & valid, IS_BF16)
        b = tl.load(bias_ptrs, mask=valid, other=0.0).to(tl.float32)
    if FTZ:
        key = _sigmoid_ftz(x) + b
    else:
        key = fast_sigmoid(x) + b
    if not EVEN:
        key = tl.where(valid, key, -float("inf"))
    # NaN-propagating: a NaN key makes top NaN, every distance below saturates and the row is flagged
    top = tl.reduce(tl.reduce(tl.reduce(key, 3, _max_nan), 2, _max_nan), 1, _max_nan)
    flagged = top != top
    # (top - key) * 2**SHIFT in one rounding (exact power-of-2 scaling); NaN and far keys -> QMAX
    d = tl.minimum(tl.fma(key, -float(1 << SHIFT), (top * float(1 << SHIFT))[:, None, None, None]), QMAX * 1.0)
    if COL_BITS >= 8:   # the nearest int in the low 23 bits of d + 2**23; the exponent bits shift out
        q = (d + 8388608.0).to(tl.int32, bitcast=True)
    else:               # QMAX >= 2**23: truncate, as grouped_kernel does
        q = d.to(tl.int32)
    packed = (q << COL_BITS) | col
    if not EVEN:
        packed = tl.where(valid, packed, INT32_MAX)
    # grouped_kernel's bound on two keys' fp32 error, in units of 2**-SHIFT (see there; rounding to
    # nearest errs by at most 1/2 a unit per key where the bound allows 1)
    thr = error_bound(top, SHIFT)

    if N_GROUP > 1:
        a1 = _group_min(packed)                                               # [BLOCK_T, BLOCK_G]
        a2 = _group_next_up(a1, packed)
        gids = tl.arange(0, BLOCK_G)[None, :]
        if TOPK_GROUP < N_GROUP:   # a saturated second key: that group's score is unsure
            if BLOCK_G == N_GROUP:
                flagged = flagged | (tl.max(a2, axis=1) >= SAT)
            else:
                flagged = flagged | (tl.max(tl.where(gids < N_GROUP, a2, 0), axis=1) >= SAT)
        gq = ((a1 >> COL_BITS) + (a2 >> COL_BITS)) >> 1                       # halved: fits beside the group id
        gpacked = tl.where(gids < N_GROUP, (gq << GROUP_BITS) | gids, INT32_MAX)
        cut = tl.min(gpacked, axis=1)
        for r in tl.static_range(1, TOPK_GROUP):
            cut = _next_up(cut, gpacked, 1)
        if TOPK_GROUP < N_GROUP:
            after = _next_up(cut, gpacked, 1)
            flagged = flagged | ((after >> GROUP_BITS) - (cut >> GROUP_BITS) <= thr + 2)
        packed = tl.where((gpacked <= cut[:, None])[:, :, None, None], packed, INT32_MAX)

    best = tl.min(_group_min(packed), axis=1)
    top_packed = tl.where(slots[None, :] == 0, best[:, None], 0)
    for k in tl.static_range(1, K + 1):
        prev = best
        gap = (packed - (prev + 1)[:, None, None, None]).to(tl.uint32, bitcast=True)
        best = prev + 1 + tl.min(_group_min(gap), axis=1).to(tl.int32, bitcast=True)
        # two picks (or the K-th and the next) too close for the fp32 keys to order
        flagged = flagged | ((best >> COL_BITS) - (prev >> COL_BITS) <= thr)
        if k < K:
            top_packed = tl.where(slots[None, :] == k, best[:, None], top_packed)
    flagged = flagged | (best >= SAT)   # the (K+1)-th pick saturated
    out_ok = row_ok[:, None] & (slots < K)[None, :]
    tl.store(flags_ptr + rows, flagged.to(tl.int8), mask=row_ok)
    _weights_and_store(top_packed & COL_MASK, row_ptr, rows, out_ok, slots, stride_ge, scale_ptr, stride_s, weights_ptr,
                       ids_ptr, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM)


def run(launch: GroupedLaunch, gating_output, bias, scale, weights, ids, fallback: bool = True) -> torch.Tensor:
    """GroupedLaunch.run with grouped_v2_kernel as the fast path (its tile, warps and constexprs;
    ``fallback``, not launch.fallback, decides whether exact_kernel routes the flagged rows again;
    always in a second launch: the variant has no INLINE_EXACT).
    Returns the fast path's flags (int8 [T])."""
    return replace(launch, fallback=fallback, inline=False).run(gating_output, bias, scale, weights, ids,
                                                                fast_kernel=grouped_v2_kernel)
