"""parity's fused kernel for routers that choose by biased sigmoid scores, in groups: DeepSeek-V3 /
R1 (8 groups, the best 4), Kimi K2 and GLM-4.5 (one group). One launch: sigmoid, + correction bias,
group scores (the sum of a group's two largest keys), the best topk_group groups, the top K in them,
weights from the unbiased sigmoids renormalised over the K, times the scaling factor (and a
per-expert scale, if the router has one).

Exact ids, cheaply: the oracle's keys are float64 (parity.routing.oracle). ``grouped_kernel``
computes them in fp32 (a fast sigmoid) and turns each into a fixed-point distance below the row's
largest key, ``q ~ (max - key) * 2**SHIFT`` (an int, saturated at QMAX), packed with the expert id
in the low COL_BITS bits: one int32 that orders by key, then by the lower id, unique in its row. A
round of top-K is then one unsigned-min reduction (as in parity.routing.fused), for the groups' top
2, the groups and the experts alike. Every decision is checked against a bound on the fp32 keys'
error (``error_bound``): a row where two consecutive picks (the K-th and the next included), or
the topk_group-th group and the next, are closer than the bound, or where a key is NaN or lies so
far below the row's largest that its distance saturates where that could matter, is flagged, and
settled from float64 keys with the oracle's rules (ties to the lower id, NaN on top), by the fast
kernel itself (one launch): where only the order of the K + 1 first picks is in doubt (the groups
certain, no third key near the K-th), first by the pair test (``_picks_in_order``: each consecutive
pair's key difference from exact bias differences and a sigmoid difference accurate to ~2**-19 of
itself, which proves the fp32 order of ~97% of such rows and keeps their fast weights), else from
those K + 1 float64 keys (``_reorder``); otherwise the row is
read again and routed from the whole row's float64 keys (``exact_grouped``). As an option the
probes time, ``exact_kernel`` routes every flagged row the whole way in a second launch. No host
synchronisation: CUDA graphs capture the call. The float64 path computes the sigmoid with
libdevice's exp (numpy's in the interpreter), not torch's; two keys whose float64 values differ by
an ulp of float64 could be ordered differently from the oracle, which no input in the tests comes
near.

Why a kernel beside fused.route_kernel rather than more constexpr switches in it: the selection
keys are no longer the logits' bits (neither the 16-bit key packing nor the fp32 lossiness check
carry over), the group stage adds a dimension to the tile, and the exactness test is a bound, not a
bit test. The weight epilogue (kernel_parts.chosen_scores, the scale, store_weights) is shared. Speed: far from
the memory floor so far, issue-bound (reports/bench/NOTES.md, "The grouped sigmoid kernel";
reports/bench/probes/grouped-sass.md).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch.utils.weak import WeakIdKeyDictionary

from parity import device
from parity.routing.kernel_parts import (
    by_rank,
    chosen_scores,
    dtype_flags,
    empty_outputs,
    load_fp32,
    load_scale,
    ranks_before,
    require_kernel_device,
    sigmoid,
    store_weights,
    times_scale,
)

MAX_EXPERTS = 1024
"""The largest E this kernel takes (one row's keys in one program's registers)."""

RANGE_BITS = 2
"""Keys more than 2**RANGE_BITS below the row's largest saturate; a row where that could matter
routes through the float64 path."""


@triton.jit
def _next_up(prev, packed, AXIS: tl.constexpr):
    """The smallest packed value above prev along the last axis AXIS of packed (values unique; at or
    below prev wrap to huge unsigned numbers and lose)."""
    gap = (packed - tl.expand_dims(prev + 1, AXIS)).to(tl.uint32, bitcast=True)
    return prev + 1 + tl.min(gap, axis=AXIS).to(tl.int32, bitcast=True)


@triton.jit
def _f64_key(v):
    """float64 -> int64 whose order is the float order (-0.0 ties +0.0), every NaN above +inf."""
    bits = v.to(tl.int64, bitcast=True)
    mag = bits & 0x7FFFFFFFFFFFFFFF
    sign = bits >> 63
    return tl.where(mag > 0x7FF0000000000000, 0x7FFFFFFFFFFFFFFF, (mag ^ sign) - sign)


@triton.jit
def _f64_of_key(key):
    """The inverse of _f64_key (NaN for the NaN key)."""
    neg = key < 0
    mag = tl.where(neg, -key, key)
    bits = tl.where(neg, mag | (-9223372036854775807 - 1), mag)
    v = bits.to(tl.float64, bitcast=True)
    return tl.where(key == 0x7FFFFFFFFFFFFFFF, float("nan"), v)


FLAT_ANY_ORDER: tl.constexpr = tl.constexpr("can_reorder" in inspect.signature(tl.reshape).parameters)
"""Whether this Triton still takes tl.reshape(..., can_reorder=True): deprecated in 3.9, to be removed
in 3.10, after which _flat keeps the logical order (what the interpreter, and so the CPU suite,
has always done; the GPU's REDUX lowering there is unmeasured)."""


@triton.jit
def _flat(x):
    """One row's tile [1, ...] -> [1, N] in any order, for reductions over the whole row (a row
    spread over a warp reduces in one REDUX instead of a shuffle tree). One row only, and only for
    reductions or values that carry their own id: the order is the compiler's, across rows too,
    and not the same for two tensors (keys and ids flattened apart were paired wrongly on the GPU)."""
    if FLAT_ANY_ORDER:
        return tl.reshape(x, [x.shape[0], x.numel // x.shape[0]], can_reorder=True)
    else:
        return tl.reshape(x, [x.shape[0], x.numel // x.shape[0]])


@triton.jit
def _row_max3(x):
    """The maximum of each row of [BLOCK_T, A, B]; one row (the GPU's float64 pass) reduces over
    the row flattened (_flat: one REDUX where nested reductions take five shuffles)."""
    if x.shape[0] == 1:
        return tl.max(_flat(x), axis=1)
    else:
        return tl.max(tl.max(x, axis=2), axis=1)


@triton.jit
def _row_min3(x):
    """The minimum of each row of [BLOCK_T, A, B], as _row_max3."""
    if x.shape[0] == 1:
        return tl.min(_flat(x), axis=1)
    else:
        return tl.min(tl.min(x, axis=2), axis=1)


@triton.jit
def _argmax64(key, ids, NONE: tl.constexpr):
    """The smallest id among the largest int64 keys of each row of [BLOCK_T, A, B]: three 32-bit
    reductions (the high halves' max, the low halves' max among those, the id's min), which one
    row spread over a warp takes as three REDUX where two 64-bit reductions take ten shuffles."""
    hi = (key >> 32).to(tl.int32)
    top_hi = hi == _row_max3(hi)[:, None, None]
    lo = tl.where(top_hi, key.to(tl.int32).to(tl.uint32, bitcast=True), 0)
    on_top = top_hi & (lo == _row_max3(lo)[:, None, None])
    return _row_min3(tl.where(on_top, ids, NONE))


@triton.jit
def exact_grouped(x, bias64, valid, col, slots, K: tl.constexpr, TOPK_GROUP: tl.constexpr,
                  N_GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_E: tl.constexpr, ACCURATE_EXP: tl.constexpr):
    """The oracle's selection from float64 keys sigmoid(x) + bias for a block [BLOCK_T, BLOCK_G,
    BLOCK_P]: group scores (top-2 sums in float64), the best TOPK_GROUP groups, the top K in them;
    ties to the lower (group) id, NaN on top. Returns the ids [BLOCK_T, BLOCK_K]. The choices over
    groups and over the row reduce the flattened row (each group's score on its experts), so a row
    spread over a warp takes REDUX steps."""
    MIN64: tl.constexpr = -9223372036854775807 - 1
    key = tl.where(valid, _f64_key(sigmoid(x.to(tl.float64), ACCURATE_EXP) + bias64), MIN64)
    if N_GROUP > 1:
        k1 = tl.max(key, axis=2)                                              # each group's top 2:
        first = tl.min(tl.where(key == k1[:, :, None], col, BLOCK_E), axis=2)  # the first taken out by id
        k2 = tl.max(tl.where(col == first[:, :, None], MIN64, key), axis=2)
        grp = tl.arange(0, BLOCK_G)[None, :, None] + 0 * col
        gkey = tl.where(grp < N_GROUP, _f64_key(_f64_of_key(k1) + _f64_of_key(k2))[:, :, None] + 0 * key, MIN64)
        chosen = grp < 0                                                      # all False
        for r in tl.static_range(TOPK_GROUP):
            pick = _argmax64(gkey, grp, BLOCK_G)
            hit = grp == pick[:, None, None]
            chosen = chosen | hit
            gkey = tl.where(hit, MIN64, gkey)
        key = tl.where(chosen, key, MIN64)
    top_id = tl.zeros([x.shape[0], slots.shape[0]], dtype=tl.int32)
    for k in tl.range(K, loop_unroll_factor=1):  # rare path: keep it small
        pick = _argmax64(key, col, BLOCK_E)
        key = tl.where(col == pick[:, None, None], MIN64, key)
        top_id = tl.where(slots[None, :] == k, pick[:, None], top_id)
    return top_id


@triton.jit
def fast_sigmoid(x):
    """1 / (1 + 2**(-x log2 e)) with ex2.approx and an approximate division: within 2**-21 of the
    sigmoid (the argument's rounding, ex2's 2 ulp and the division's 2 ulp, scaled by s (1 - s) <= 1/4),
    which ``threshold`` allows for; +inf gives 1, -inf 0, NaN NaN."""
    return tl.fdiv(1.0, 1.0 + tl.exp2(x * -1.4426950408889634), ieee_rounding=False)


@triton.jit
def error_bound(top, reach, SHIFT: tl.constexpr):
    """The bound on two keys' fp32 error in units of 2**-SHIFT, per row (top: the row's largest
    key; reach: how far below it, in those units, the farther of the two keys may lie): the sigmoid
    2**-21, the sum's and the bias's rounding 2**-22 (|key| + 1) (the sum rounds by 2**-24 |key|, a
    bias wider than fp32 by 2**-24 |bias| <= 2**-24 (|key| + 1)), the distance's rounding 2**-22 (it
    is below 4), the floor 1. |key| <= |top| + (reach + 2) 2**-SHIFT: a distance is the keys'
    difference to within its rounding."""
    mag = tl.abs(top) + 1.0 + (reach + 2).to(tl.float32) * 2.0**-SHIFT
    return (2.0 * ((1 << SHIFT) * (2.0**-21 + 2.0**-22 + 2.0**-22 * mag) + 1.0)).to(tl.int32) + 2


@triton.jit
def _keys_near(upper, lower, top, COL_BITS: tl.constexpr, SHIFT: tl.constexpr):
    """Whether two packed keys (upper at or above lower in the fp32 order) lie within the keys'
    error bound of each other: the fp32 keys cannot order them."""
    return (lower >> COL_BITS) - (upper >> COL_BITS) <= error_bound(top, lower >> COL_BITS, SHIFT)


@triton.jit
def _scores_near(upper, lower, top, GROUP_BITS: tl.constexpr, SHIFT: tl.constexpr):
    """_keys_near for two packed group scores (halved sums of two distances, beside the group id): a
    group's score is its two keys' mean, so its second key is at most 2 * score + 1 below the top."""
    return (lower >> GROUP_BITS) - (upper >> GROUP_BITS) <= error_bound(top, 2 * (lower >> GROUP_BITS) + 1, SHIFT) + 2


@triton.jit
def _tile(gating_ptr, rows, T, stride_gt, stride_ge, N_GROUP: tl.constexpr, PER: tl.constexpr,
          BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr, IS_BF16: tl.constexpr, EVEN: tl.constexpr):
    """The rows' logits as fp32 [BLOCK_T, BLOCK_G, BLOCK_P] (expert id = group * PER + position),
    their row pointers, the ids and which entries are experts (not padding)."""
    row_ok = rows < T
    row_ptr = gating_ptr + rows.to(tl.int64) * stride_gt
    grp = tl.arange(0, BLOCK_G)[None, :, None]
    col = grp * PER + tl.arange(0, BLOCK_P)[None, None, :]
    if EVEN:
        valid = col >= 0
    else:
        valid = (grp < N_GROUP) & (tl.arange(0, BLOCK_P)[None, None, :] < PER)
    x = load_fp32(row_ptr[:, None, None] + col * stride_ge, row_ok[:, None, None] & valid, IS_BF16)
    return x, row_ptr, col, valid


@triton.jit
def _weights_and_store(top_id, row_ptr, rows, out_ok, slots, stride_ge, scale_ptr, stride_s, weights_ptr, ids_ptr,
                       K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, LOG2_BLOCK_K: tl.constexpr,
                       ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr,
                       RENORM: tl.constexpr):
    """Weights of the chosen ids (their logits read again: cache hits, and their scales), stored
    where out_ok (the float64 passes' rows)."""
    v, scale = _picks_read(top_id, row_ptr, out_ok, stride_ge, scale_ptr, stride_s, IS_BF16, SCALE_IS_BF16)
    _store_weights_of(v, scale, top_id, rows, out_ok, slots, weights_ptr, ids_ptr, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K,
                      ACCURATE_EXP, RENORM)


@triton.jit
def _picks_read(top_id, row_ptr, read_ok, stride_ge, scale_ptr, stride_s, IS_BF16: tl.constexpr,
                SCALE_IS_BF16: tl.constexpr):
    """The chosen ids' logits (fp32: cache hits) and scales [BLOCK_T, BLOCK_K], read where read_ok."""
    at = tl.where(read_ok, top_id, 0)
    scale = load_scale(scale_ptr + at * stride_s, read_ok, SCALE_IS_BF16)
    v = load_fp32(row_ptr[:, None] + at * stride_ge, read_ok, IS_BF16)
    return v, scale


@triton.jit
def _weights_of(v, scale, slots, K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
                LOG2_BLOCK_K: tl.constexpr, ACCURATE_EXP: tl.constexpr, RENORM: tl.constexpr):
    """The weights [BLOCK_T, BLOCK_K] of the chosen logits v with their scales."""
    probs = chosen_scores(v, slots, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, 1, RENORM)  # 1: SIGMOID
    return times_scale(probs, scale)


@triton.jit
def _store_weights_of(v, scale, top_id, rows, out_ok, slots, weights_ptr, ids_ptr, K: tl.constexpr,
                      BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, LOG2_BLOCK_K: tl.constexpr,
                      ACCURATE_EXP: tl.constexpr, RENORM: tl.constexpr):
    """The weights of the chosen logits v with their scales, stored with the ids where out_ok."""
    store_weights(_weights_of(v, scale, slots, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, RENORM), top_id,
                  rows.to(tl.int64), out_ok, slots, weights_ptr, ids_ptr, K)


@triton.jit
def _reroute(gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, rows, redo, T, stride_gt, stride_ge, stride_b,
             stride_s, slots, K: tl.constexpr, TOPK_GROUP: tl.constexpr, N_GROUP: tl.constexpr, PER: tl.constexpr,
             BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
             LOG2_BLOCK_K: tl.constexpr, ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr,
             SCALE_IS_BF16: tl.constexpr, RENORM: tl.constexpr, EVEN: tl.constexpr):
    """The rows [BLOCK_T] read again and routed from float64 keys (exact_grouped); weights and ids
    stored for those where redo holds. Every float64 pass (exact_kernel, the fast kernel's inline
    one, row by row or as a block) goes through here."""
    x, row_ptr, col, valid = _tile(gating_ptr, rows, T, stride_gt, stride_ge, N_GROUP, PER, BLOCK_G, BLOCK_P,
                                   IS_BF16, EVEN)
    b64 = tl.load(bias_ptr + col * stride_b, mask=valid, other=0.0).to(tl.float64)
    top_id = exact_grouped(x, b64, valid, col, slots, K, TOPK_GROUP, N_GROUP, BLOCK_G, BLOCK_G * BLOCK_P, ACCURATE_EXP)
    _weights_and_store(top_id, row_ptr, rows, redo[:, None] & (slots < K)[None, :], slots, stride_ge, scale_ptr,
                       stride_s, weights_ptr, ids_ptr, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, IS_BF16,
                       SCALE_IS_BF16, RENORM)


@triton.jit
def _reroute_flagged(gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, rows, redo, T, stride_gt, stride_ge,
                     stride_b, stride_s, slots, K: tl.constexpr, TOPK_GROUP: tl.constexpr, N_GROUP: tl.constexpr,
                     PER: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr,
                     BLOCK_K: tl.constexpr, LOG2_BLOCK_K: tl.constexpr, ACCURATE_EXP: tl.constexpr,
                     IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr, RENORM: tl.constexpr, EVEN: tl.constexpr,
                     NATIVE: tl.constexpr):
    """_reroute for the rows of a block where redo holds (the fast kernel's inline float64 pass). On
    the GPU (NATIVE) several rows go one at a time: a whole tile of float64 keys raised the registers
    every program is built with from 72 to 146 at BLOCK_T=4, and so cut the warps an SM holds."""
    if NATIVE and BLOCK_T > 1:
        for i in tl.range(BLOCK_T, loop_unroll_factor=1):
            if tl.max(tl.where(tl.arange(0, BLOCK_T) == i, redo.to(tl.int32), 0), axis=0) > 0:
                one = tl.program_id(0) * BLOCK_T + i + tl.arange(0, 1)
                _reroute(gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, one, one < T, T, stride_gt, stride_ge,
                         stride_b, stride_s, slots, K, TOPK_GROUP, N_GROUP, PER, 1, BLOCK_G, BLOCK_P, BLOCK_K,
                         LOG2_BLOCK_K, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM, EVEN)
    else:
        _reroute(gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, rows, redo, T, stride_gt, stride_ge, stride_b,
                 stride_s, slots, K, TOPK_GROUP, N_GROUP, PER, BLOCK_T, BLOCK_G, BLOCK_P, BLOCK_K, LOG2_BLOCK_K,
                 ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM, EVEN)


NATIVE = not device.INTERPRETER
"""Compiled for the GPU: the sigmoid as one ex2.approx.ftz and one rcp.approx.ftz (inline asm), the
row maximum as one NaN-propagating reduction, the inline float64 pass row by row. The Triton
interpreter, which cannot run inline asm and pays per operation in Python, computes the same
values vectorised: fast_sigmoid, tl.max with a NaN test, the flagged rows' block at once."""


@triton.jit
def _ex2(y, NATIVE: tl.constexpr):
    """2**y: one ex2.approx.ftz on the GPU (NATIVE; within 2 ulp, a result below 2**-126 flushed to
    0), the interpreter's exp2 otherwise."""
    if NATIVE:
        return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [y], dtype=tl.float32, is_pure=True,
                                         pack=1)
    else:
        return tl.exp2(y)


@triton.jit
def _rcp(y, NATIVE: tl.constexpr):
    """1 / y: one rcp.approx.ftz on the GPU (NATIVE; within 1 ulp), a division otherwise."""
    if NATIVE:
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [y], dtype=tl.float32, is_pure=True,
                                         pack=1)
    else:
        return 1.0 / y


@triton.jit
def _bf16_pairs_to_fp32(raw):
    """bf16 bits raw (int16) as fp32, two values a 32-bit register (GPU only): the low one shifted up, the high one
    masked, one instruction each, where the conversion's high half takes a PRMT and a shift."""
    return tl.inline_asm_elementwise("{ shl.b32 $0, $2, 16; and.b32 $1, $2, 0xffff0000; }", "=r,=r,r", [raw],
                                     dtype=tl.float32, is_pure=True, pack=2)


@triton.jit
def _sigmoid_of(x, NATIVE: tl.constexpr):
    """The keys' sigmoid: _sigmoid_ftz on the GPU, fast_sigmoid in the interpreter."""
    if NATIVE:
        return _sigmoid_ftz(x)
    else:
        return fast_sigmoid(x)


@triton.jit
def _sigmoid_ftz(x):
    """fast_sigmoid in two MUFU instructions without div.full's denormal handling (GPU only): only a
    sigmoid below 2**-126 changes (to 0), and rcp.approx is within 1 ulp where div.full is within 2,
    inside fast_sigmoid's 2**-21 bound."""
    return _rcp(1.0 + _ex2(x * -1.4426950408889634, True), True)


PAIR_REL: tl.constexpr = tl.constexpr(2.0**-19)
"""The pair test's relative error bound on s_i - s_j, its fixed part (``_picks_in_order``)."""


@triton.jit
def _picks_in_order(row_ptr, near, bias_ptr, top_packed, after, slots, stride_ge, stride_b, COL_MASK: tl.constexpr,
                    K: tl.constexpr, LAST_ID: tl.constexpr, IS_BF16: tl.constexpr, NATIVE: tl.constexpr):
    """Whether a near row's K + 1 first picks (top_packed's K by slot, then ``after``), in the fp32
    keys' order, are in the strict order of their exact keys sigmoid(x) + b: then they are the
    oracle's order too, and the fast path's picks and weights are the oracle's (the caller has
    ruled out the groups and a third key near the K-th). [BLOCK_T], False where near is False.

    The pair test (reports/bench/NOTES.md, "Twentieth round"): for each pick i and the next, j, the
    sign of D = (b_i - b_j) + (s_i - s_j), with the biases' difference in float64 (exact to 2**-53,
    whatever the bias's dtype) and s_i - s_j = s_i (1 - s_j) (1 - e**d), d = x_j - x_i, each factor
    to a few fp32 ulps of itself: u = 2**(-x log2 e) (ex2, 2 ulp, and the argument's rounding:
    |x| 2**-23.7), s_i = 1 / (1 + u_i), 1 - s_j = u_j / (1 + u_j), and 1 - e**d by a Taylor
    polynomial to d**6 where |d| < 1/4 (truncation 2**-24.3), else 1 - 2**(d log2 e), whose error is
    that of the power times e**d / |1 - e**d| (at most 4.52 there). The fixed parts sum to 6.25 *
    2**-22, under PAIR_REL = 2**-19; the argument roundings add (|x_i| + |x_j|) 2**-23. A pair is
    proven where D exceeds that bound on |s_i - s_j| (times 1.01) plus 2**-40 (|b_i| + |b_j| + 2),
    which covers the float64 sums, the oracle's own float64 keys (their order is the exact keys'
    wherever these differ by more than ~2**-49 of their size) and every flush to zero (under
    2**-125). Anything else (a tie, a NaN from an infinite power, a pair in the wrong order) fails
    the test, and the row is reordered from float64 keys as before. The fp32 keys' own bound is
    ~6.7e-6 at DeepSeek-V3's keys (~5.5); this one is ~2**-19 |s_i - s_j|."""
    nxt = tl.gather(top_packed, tl.broadcast_to(tl.minimum(slots + 1, K - 1)[None, :], top_packed.shape), axis=1)
    nxt = tl.where(slots[None, :] == K - 1, after[:, None], nxt)
    pair = near[:, None] & (slots < K)[None, :]
    i = tl.where(pair, tl.minimum(top_packed & COL_MASK, LAST_ID), 0)
    j = tl.where(pair, tl.minimum(nxt & COL_MASK, LAST_ID), 0)
    diff, bound = _key_difference(row_ptr, bias_ptr, i, j, pair, stride_ge, stride_b, IS_BF16, NATIVE)
    return near & (tl.min(tl.where(pair, (diff > bound).to(tl.int32), 1), axis=1) > 0)


@triton.jit
def _key_difference(row_ptr, bias_ptr, i, j, mask, stride_ge, stride_b, IS_BF16: tl.constexpr, NATIVE: tl.constexpr):
    """The difference of experts i's and j's keys sigmoid(x) + b (row_ptr's rows, broadcast) and a
    bound on its error, both float64, read where mask: the pair test's arithmetic (``_picks_in_order``
    says why the bound holds)."""
    L: tl.constexpr = 1.4426950408889634
    xi = load_fp32(row_ptr[:, None] + i * stride_ge, mask, IS_BF16)
    xj = load_fp32(row_ptr[:, None] + j * stride_ge, mask, IS_BF16)
    bi = tl.load(bias_ptr + i * stride_b, mask=mask, other=0.0).to(tl.float64)
    bj = tl.load(bias_ptr + j * stride_b, mask=mask, other=0.0).to(tl.float64)
    ui = _ex2(xi * -L, NATIVE)
    uj = _ex2(xj * -L, NATIVE)
    d = xj - xi
    e = _ex2(d * L, NATIVE)
    small = tl.abs(d) < 0.25
    taylor = 1.0 + d * (0.5 + d * (1.0 / 6 + d * (1.0 / 24 + d * (1.0 / 120 + d * (1.0 / 720)))))
    g = tl.where(small, -d * taylor, 1.0 - e)                               # 1 - e**d
    ds = _rcp(1.0 + ui, NATIVE) * (uj * _rcp(1.0 + uj, NATIVE)) * g        # s_i - s_j
    rel = PAIR_REL + (tl.abs(xi) + tl.abs(xj)) * 2.0**-23 + \
        tl.where(small, 0.0, (2.0**-22 + tl.abs(d) * 2.0**-22) * (e / tl.abs(g)))
    bound = (rel * 1.01 * tl.abs(ds)).to(tl.float64) + 2.0**-40 * (tl.abs(bi) + tl.abs(bj) + 2.0)
    return (bi - bj) + ds.to(tl.float64), bound


@triton.jit
def _groups_in_order(row_ptr, bias_ptr, doubt, gpacked, cut, after, a1, a2, a3, top, gids, stride_ge, stride_b,
                     COL_BITS: tl.constexpr, GROUP_BITS: tl.constexpr, SHIFT: tl.constexpr,
                     TOPK_GROUP: tl.constexpr, N_GROUP: tl.constexpr, LAST_ID: tl.constexpr, IS_BF16: tl.constexpr,
                     NATIVE: tl.constexpr):
    """Whether a row whose group stage is in doubt (the TOPK_GROUP-th group c and the next, n, too
    close for the fp32 scores: ``doubt``) has its groups right after all, proven on exact
    differences [BLOCK_T]: then the fast path's choice of groups is the oracle's, and the row's picks
    are checked as any row's. Sufficient, and tested here: c's score, from its two largest fp32
    keys c1, c2 (a lower bound of its true score whatever they are), exceeds n's, from n1, n2,
    by more than the pair test's bound on (k_c1 - k_n1) + (k_c2 - k_n2) (``_key_difference``); n's two
    largest are its true two largest (its third fp32 key lies beyond the keys' bound below the
    second); and no third group is near the boundary (the (TOPK_GROUP-1)-th above n, the
    (TOPK_GROUP+2)-th below c, each beyond the scores' bound). Priced on the CPU before it was built
    (scripts/probe_near_rows.py: 404 of 413 such rows settled); reports/bench/NOTES.md, "Twentieth round"."""
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    GROUP_MASK: tl.constexpr = (1 << GROUP_BITS) - 1
    at_c = gids == (cut & GROUP_MASK)[:, None]
    at_n = gids == (after & GROUP_MASK)[:, None]
    n2 = tl.sum(tl.where(at_n, a2, 0), axis=1)
    n3 = tl.sum(tl.where(at_n, a3, 0), axis=1)
    ok = doubt & (_keys_near(n2, n3, top, COL_BITS, SHIFT) == 0)
    if TOPK_GROUP + 1 < N_GROUP:   # the (TOPK_GROUP+2)-th group below c
        after2 = _next_up(after, gpacked, 1)
        ok = ok & (_scores_near(cut, after2, top, GROUP_BITS, SHIFT) == 0)
    if TOPK_GROUP > 1:             # the (TOPK_GROUP-1)-th group above n
        before = tl.max(tl.where(gpacked < cut[:, None], gpacked, -1), axis=1)
        ok = ok & (_scores_near(before, after, top, GROUP_BITS, SHIFT) == 0)
    # (c1, c2) against (n1, n2) on two lanes of a [BLOCK_T, 2] pair
    two = tl.arange(0, 2)[None, :]
    c_ids = tl.where(two == 0, tl.sum(tl.where(at_c, a1, 0), axis=1)[:, None], tl.sum(tl.where(at_c, a2, 0), axis=1)[:, None])
    n_ids = tl.where(two == 0, tl.sum(tl.where(at_n, a1, 0), axis=1)[:, None], n2[:, None])
    pair = ok[:, None] & (two >= 0)
    i = tl.where(pair, tl.minimum(c_ids & COL_MASK, LAST_ID), 0)
    j = tl.where(pair, tl.minimum(n_ids & COL_MASK, LAST_ID), 0)
    diff, bound = _key_difference(row_ptr, bias_ptr, i, j, pair, stride_ge, stride_b, IS_BF16, NATIVE)
    return ok & (tl.sum(diff, axis=1) > tl.sum(bound, axis=1))


@triton.jit
def _max_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _row_max_nan(key, NATIVE: tl.constexpr):
    """The largest key of each row of [BLOCK_T, BLOCK_G, BLOCK_P // VEC, VEC], NaN if any is NaN:
    one NaN-propagating max on the GPU; in the interpreter (where a custom combine runs element by
    element in Python) tl.max and a separate NaN test."""
    if NATIVE:
        return tl.reduce(tl.reduce(tl.reduce(key, 3, _max_nan), 2, _max_nan), 1, _max_nan)
    else:
        top = tl.max(tl.max(tl.max(key, axis=3), axis=2), axis=1)
        nan = tl.max(tl.max(tl.max((key != key).to(tl.int32), axis=3), axis=2), axis=1) > 0
        return tl.where(nan, float("nan"), top)


@triton.jit
def _row_max_int(key):
    """_row_max_nan through the keys' integer order (a signed max: REDUX on the GPU when a row
    spans the warp): NaN if any key is NaN."""
    bits = key.to(tl.int32, bitcast=True)
    ik = tl.where(key != key, 2147483647, bits ^ ((bits >> 31) & 0x7FFFFFFF))
    m = tl.max(_flat(ik), axis=1)
    top = (m ^ ((m >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)
    return tl.where(m == 2147483647, float("nan"), top)


@triton.jit
def _group_min(x):
    """The minimum over each group: the last two axes of [BLOCK_T, BLOCK_G, BLOCK_P // VEC, VEC]."""
    return tl.min(tl.min(x, axis=3), axis=2)


@triton.jit
def _groups_min_wide(g, packed):
    """The smallest of one row's group values g [1, BLOCK_G], each put on its experts' lanes of the
    tile packed and the row flattened: one warp-wide REDUX, where a reduction over g's own layout
    takes a shuffle tree."""
    return tl.min(_flat(g[:, :, None, None] + 0 * packed), axis=1)


@triton.jit
def _group_next_up(prev, packed):
    """_next_up over each group's two axes: the smallest packed value above prev [BLOCK_T, BLOCK_G]."""
    gap = (packed - (prev + 1)[:, :, None, None]).to(tl.uint32, bitcast=True)
    return prev + 1 + _group_min(gap).to(tl.int32, bitcast=True)


@triton.jit
def _next_pick(prev, packed, flat, ONE_ROW: tl.constexpr):
    """The next pick below prev [BLOCK_T] (packed: the tile; flat: one row flattened, ONE_ROW)."""
    if ONE_ROW:
        return _next_up(prev, flat, 1)
    else:
        gap = (packed - (prev + 1)[:, None, None, None]).to(tl.uint32, bitcast=True)
        return prev + 1 + tl.min(_group_min(gap), axis=1).to(tl.int32, bitcast=True)


@triton.jit
def _first_pick(packed, flat, ONE_ROW: tl.constexpr):
    """The smallest packed key of each row [BLOCK_T]."""
    if ONE_ROW:
        return tl.min(flat, axis=1)
    else:
        return tl.min(_group_min(packed), axis=1)


@triton.jit
def _tile_rounds(best, packed, flat, slots, K: tl.constexpr, COL_BITS: tl.constexpr, ONE_ROW: tl.constexpr):
    """K rounds over the whole tile after the first pick best [BLOCK_T]: the K - 1 picks after it
    (with it, top_packed [BLOCK_T, BLOCK_K]), the (K+1)-th pick and the smallest gap between
    consecutive picks."""
    top_packed = tl.where(slots[None, :] == 0, best[:, None], 0)
    closest = tl.full(best.shape, 2147483647, tl.int32)
    for k in tl.static_range(1, K + 1):
        prev = best
        best = _next_pick(prev, packed, flat, ONE_ROW)
        closest = tl.minimum(closest, (best >> COL_BITS) - (prev >> COL_BITS))
        if k < K:
            top_packed = tl.where(slots[None, :] == k, best[:, None], top_packed)
    return top_packed, best, closest


@triton.jit
def _lists_min(h):
    """The smallest of each row's list heads h: [BLOCK_T, BLOCK_G] (a group's list in a thread), or
    one row's [1, BLOCK_G, BLOCK_P // VEC] (a vector's list in a thread: the row flattened, one REDUX)."""
    if len(h.shape) == 3:
        return tl.min(_flat(h), axis=1)
    else:
        return tl.min(h, axis=1)


@triton.jit
def _on_lists(v, h):
    """v [BLOCK_T] on the shape of the list heads h (see _lists_min)."""
    if len(h.shape) == 3:
        return v[:, None, None]
    else:
        return v[:, None]


@triton.jit
def _list_rounds(h1, h2, h3, h4, h5, h6, h7, h8, slots, K: tl.constexpr, COL_BITS: tl.constexpr):
    """_tile_rounds over sorted lists of packed keys (h1 < ... < h8, INT32_MAX where a list has no
    more; each group's GROUP_LIST smallest, or one row's vectors whole: _lists_min): a round is a
    reduction over the lists' heads and a shift of the winning list, not a pass over every key. Also
    returns the (K+2)-th pick. Exact where no list's last key is among the K + 1 picks (the caller
    checks, or the lists are whole): then no list ran out before the (K+2)-th pick."""
    INT32_MAX: tl.constexpr = 2147483647
    best = _lists_min(h1)
    top_packed = tl.where(slots[None, :] == 0, best[:, None], 0)
    closest = tl.full(best.shape, INT32_MAX, tl.int32)
    for k in tl.static_range(1, K + 2):
        hit = h1 == _on_lists(best, h1)
        h1 = tl.where(hit, h2, h1)
        h2 = tl.where(hit, h3, h2)
        h3 = tl.where(hit, h4, h3)
        h4 = tl.where(hit, h5, h4)
        h5 = tl.where(hit, h6, h5)
        h6 = tl.where(hit, h7, h6)
        h7 = tl.where(hit, h8, h7)
        h8 = tl.where(hit, INT32_MAX, h8)
        if k <= K:
            prev = best
            best = _lists_min(h1)
            closest = tl.minimum(closest, (best >> COL_BITS) - (prev >> COL_BITS))
            if k < K:
                top_packed = tl.where(slots[None, :] == k, best[:, None], top_packed)
    return top_packed, best, closest, _lists_min(h1)


@triton.jit
def _exchange(a, b):
    return tl.minimum(a, b), tl.maximum(a, b)


@triton.jit
def _vector_parts(x):
    """The eight positions of each vector of x [1, BLOCK_G, BLOCK_P // VEC, 8] as eight tensors [1,
    BLOCK_G, BLOCK_P // VEC]: the vector's axis cut in halves three times (on the GPU a thread's
    eight registers renamed, no data moved)."""
    y = tl.reshape(x, [x.shape[0], x.shape[1], x.shape[2], 2, 2, 2])
    p, q = tl.split(y)
    p0, p1 = tl.split(p)
    q0, q1 = tl.split(q)
    v0, v1 = tl.split(p0)
    v2, v3 = tl.split(p1)
    v4, v5 = tl.split(q0)
    v6, v7 = tl.split(q1)
    return v0, v1, v2, v3, v4, v5, v6, v7


@triton.jit
def _vector_lists(x):
    """Each vector of x [1, BLOCK_G, BLOCK_P // VEC, 8] sorted (on the GPU, a thread's eight keys in
    its registers): _vector_parts, smallest first, by Knuth's 19-exchange network for eight."""
    v0, v1, v2, v3, v4, v5, v6, v7 = _vector_parts(x)
    v0, v2 = _exchange(v0, v2)
    v1, v3 = _exchange(v1, v3)
    v4, v6 = _exchange(v4, v6)
    v5, v7 = _exchange(v5, v7)
    v0, v4 = _exchange(v0, v4)
    v1, v5 = _exchange(v1, v5)
    v2, v6 = _exchange(v2, v6)
    v3, v7 = _exchange(v3, v7)
    v0, v1 = _exchange(v0, v1)
    v2, v3 = _exchange(v2, v3)
    v4, v5 = _exchange(v4, v5)
    v6, v7 = _exchange(v6, v7)
    v2, v4 = _exchange(v2, v4)
    v3, v5 = _exchange(v3, v5)
    v1, v4 = _exchange(v1, v4)
    v3, v6 = _exchange(v3, v6)
    v1, v2 = _exchange(v1, v2)
    v3, v4 = _exchange(v3, v4)
    v5, v6 = _exchange(v5, v6)
    return v0, v1, v2, v3, v4, v5, v6, v7


@triton.jit
def _expert_tile(ptr, col, stride, rows, valid, EVEN: tl.constexpr):
    """One float per expert (the bias, or the reference's offsets) as fp32 on the tile's layout: a pointer tile of
    the logits' shape (rows broadcast), so that its load and the logits' share one layout; 0 past the experts."""
    ptrs = ptr + col * stride + 0 * rows[:, None, None, None]
    if EVEN:
        return tl.load(ptrs).to(tl.float32)
    else:
        return tl.load(ptrs, mask=valid, other=0.0).to(tl.float32)


@triton.jit
def _masked_keys(key, valid, EVEN: tl.constexpr):
    """The keys, -inf past the experts (where the tile is wider than the row)."""
    if EVEN:
        return key
    else:
        return tl.where(valid, key, -float("inf"))


@triton.jit
def _distance_floats(key, top, DIST_SCALE: tl.constexpr):
    """Each key's distance below its row's top [BLOCK_T] as the mantissa of a float in [8, 16): one FFMA,
    t1 - key * DIST_SCALE, unsaturated. fl(t1 - s top) >= 8 where |s top| < 2**26 (where t1's grid is at most 2**-16
    the margin covers its rounding; where coarser, s top's grid is at most twice as fine, so s top + 8 lies on t1's
    grid or half a step off it and the margin rounds it up), so every key's float is >= 8 (the FFMA rounds
    monotonically). Beyond, the keys' floats are 0 or saturated: the rows are flagged (ties, or a saturated (K+1)-th
    pick)."""
    t1 = top * DIST_SCALE + (8.0 + 2.0**-17)
    return tl.fma(key, -DIST_SCALE, t1[:, None, None, None])


@triton.jit
def _group_after(prev, packed):
    """_group_next_up, INT32_MAX after INT32_MAX (a group with no key left)."""
    return tl.where(prev == 2147483647, prev, _group_next_up(prev, packed))


@triton.jit
def _third_near_kth(top_packed, best, packed, flat, third, top, slots, K: tl.constexpr, COL_BITS: tl.constexpr,
                    SHIFT: tl.constexpr, ONE_ROW: tl.constexpr, LISTS: tl.constexpr):
    """Whether the (K+2)-th pick lies near the K-th (in top_packed), by the keys' error bound: then
    the top K may lie beyond the K + 1 picks, and _reorder cannot settle the row. The (K+2)-th pick
    is ``third`` from the lists (LISTS: the groups' or the vectors'), else the next below best ((K+1)-th)."""
    kth = tl.max(tl.where(slots[None, :] == K - 1, top_packed, 0), axis=1)
    if not LISTS:
        third = _next_pick(best, packed, flat, ONE_ROW)
    return _keys_near(kth, third, top, COL_BITS, SHIFT)


@triton.jit
def _reorder(row_ptr, row_ok, bias_ptr, scale_ptr, top_packed, after, slots, stride_ge, stride_b, stride_s,
             COL_MASK: tl.constexpr, K: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
             BLOCK_E: tl.constexpr, ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr):
    """The top K of K + 1 candidates (the K picks in top_packed and the next, after) by their
    float64 keys, ties to the lower id: ids, logits (fp32) and scales [BLOCK_T, BLOCK_K], by a rank
    by all-pairs comparison of BLOCK_C <= 16 keys a row. The candidates' logits and scales are read
    once, with their biases, and placed by the rank (the weights need no second read). Enough where
    the groups and the K + 1 are certain and only their order (and which of them is out) is not."""
    MIN64: tl.constexpr = -9223372036854775807 - 1
    cslots = tl.arange(0, BLOCK_C)[None, :]
    cand = tl.where(cslots == K, (after & COL_MASK)[:, None], BLOCK_E + cslots)    # beyond K: unique, out of range
    for k in tl.static_range(K):
        pick = tl.sum(tl.where(slots[None, :] == k, top_packed & COL_MASK, 0), axis=1)
        cand = tl.where(cslots == k, pick[:, None], cand)
    ok = cslots <= K
    at = tl.where(ok, cand, 0)
    x = load_fp32(row_ptr[:, None] + at * stride_ge, ok & row_ok[:, None], IS_BF16)
    b = tl.load(bias_ptr + at * stride_b, mask=ok, other=0.0).to(tl.float64)
    scale = load_scale(scale_ptr + at * stride_s, ok, SCALE_IS_BF16)
    key = tl.where(ok, _f64_key(sigmoid(x.to(tl.float64), ACCURATE_EXP) + b), MIN64)
    ki, kj = key[:, :, None], key[:, None, :]
    ahead = ranks_before(kj, cand[:, None, :], ki, cand[:, :, None])
    rank = tl.sum(ahead.to(tl.int32), axis=2)
    ids = by_rank(rank, cand, slots)
    v = by_rank(rank, x.to(tl.int32, bitcast=True), slots).to(tl.float32, bitcast=True)
    if scale.dtype == tl.float64:
        scale = by_rank(rank, scale.to(tl.int64, bitcast=True), slots).to(tl.float64, bitcast=True)
    else:
        scale = by_rank(rank, scale.to(tl.int32, bitcast=True), slots).to(tl.float32, bitcast=True)
    return ids, v, scale


@triton.jit
def _near_rows(redo, hard, top_packed, best, packed, flat, third, top, picks, fast_weights, row_ptr, row_ok, rows,
               bias_ptr, scale_ptr, weights_ptr, ids_ptr, flags_ptr, slots, stride_ge, stride_b, stride_s,
               COL_MASK: tl.constexpr, K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
               LOG2_BLOCK_K: tl.constexpr, BLOCK_E: tl.constexpr, LAST_ID: tl.constexpr, COL_BITS: tl.constexpr,
               SHIFT: tl.constexpr, ONE_ROW: tl.constexpr, LISTS: tl.constexpr, ACCURATE_EXP: tl.constexpr,
               IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr, RENORM: tl.constexpr, NATIVE: tl.constexpr,
               PAIR_TEST: tl.constexpr):
    """The flagged rows ``redo`` settled from their K + 1 first picks where that suffices (not
    ``hard``, and the (K+2)-th pick not near the K-th: the top K are among those K + 1, every other key
    surely below K of them, and only their order is in doubt): the pair test may prove the fp32 keys'
    order (flag 3: the fast weights stored), else _reorder settles it from K + 1 float64 keys (flag 1).
    Their flags stored (2: left to the whole row's pass); the rows left [BLOCK_T]."""
    BLOCK_C: tl.constexpr = 2 * BLOCK_K if K == BLOCK_K else BLOCK_K
    hard = hard | _third_near_kth(top_packed, best, packed, flat, third, top, slots, K, COL_BITS, SHIFT, ONE_ROW,
                                  LISTS)
    near = redo & (hard == 0)
    in_order = near & (near == 0)   # all False
    if PAIR_TEST:
        if tl.max(near.to(tl.int32), axis=0) > 0:
            in_order = _picks_in_order(row_ptr, near, bias_ptr, top_packed, best, slots, stride_ge, stride_b,
                                       COL_MASK, K, LAST_ID, IS_BF16, NATIVE)
            store_weights(fast_weights, picks, rows.to(tl.int64), in_order[:, None] & (slots < K)[None, :], slots,
                          weights_ptr, ids_ptr, K)
        near = near & (in_order == 0)
    tl.store(flags_ptr + rows, (redo.to(tl.int8) + (redo & hard).to(tl.int8) + 2 * in_order.to(tl.int8)),
             mask=redo)   # 2: whole row, 3: the pair test
    if tl.max(near.to(tl.int32), axis=0) > 0:
        near_ids, near_v, near_scale = _reorder(
            row_ptr, row_ok, bias_ptr, scale_ptr, top_packed, best, slots, stride_ge, stride_b, stride_s, COL_MASK, K,
            BLOCK_K, BLOCK_C, BLOCK_E, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16)
        _store_weights_of(near_v, near_scale, near_ids, rows, near[:, None] & (slots < K)[None, :], slots, weights_ptr,
                          ids_ptr, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, RENORM)
    return redo & hard


@triton.jit(do_not_specialize=["T"])
def grouped_kernel(
    gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, flags_ptr, ref_ptr,
    T, stride_gt, stride_ge, stride_b, stride_s,
    K: tl.constexpr, TOPK_GROUP: tl.constexpr, N_GROUP: tl.constexpr, PER: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr, GROUP_BITS: tl.constexpr, SHIFT: tl.constexpr,
    ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr, RENORM: tl.constexpr,
    EVEN: tl.constexpr, INLINE_EXACT: tl.constexpr = False, NATIVE: tl.constexpr = NATIVE,
    ONE_ROW: tl.constexpr = False, REORDER: tl.constexpr = False, GROUP_LISTS: tl.constexpr = False,
    SPECULATE: tl.constexpr = False, PAIR_TEST: tl.constexpr = False, GROUP_TEST: tl.constexpr = False,
    FIXED_REF: tl.constexpr = False, WORD_LOADS: tl.constexpr = False, BIAS_IN_REF: tl.constexpr = False,
):
    """The fast path: fp32 keys as fixed-point distances packed with the ids, every decision
    checked against the keys' error bound; a row where one is too close is flagged (flags_ptr: 1)
    and settled from float64 keys, here (INLINE_EXACT: from its K + 1 first picks with REORDER where
    that suffices, else from the whole row, flag 2) or by exact_kernel in a second launch.

    ONE_ROW (one row a program: small T): the row's reductions (its top, the chosen groups' cut
    and the picks' rounds) run over the flattened row, one REDUX each where nested reductions took a
    shuffle tree (SASS sm_90: 75 -> 10 SHFL); the order of a flattened row is the compiler's, so
    only values that carry their own id (packed keys, group scores) or reductions use it. With
    groups, the chosen ones come from each group's rank against all (one comparison of every pair,
    no rounds), and the picks from each vector's eight keys sorted (VECTOR_LISTS, where VEC is 8: a
    thread's vector, sorted in its registers by ``_vector_lists`` while the group stage runs): a
    pick's round is a REDUX of the lists' heads and a shift of the winner's list, where a pass over
    every key put a subtraction and a three-level min between two REDUX (SASS sm_90, DeepSeek-V3
    bf16: between two REDUX, 7 dependent instructions -> 3). Measured on the H100 (the bench's
    batches, T = 1 / 64 / 512 / 2048): -3.6 / -3.6 / -3.3 / -2.5%. Without groups the sort has nothing
    to hide under: Kimi K2 and GLM-4.5 gained ~3% at T <= 64 and lost 2-8% at T = 2048, so they keep
    the pass over every key (reports/bench/NOTES.md, "Twenty-second round").

    SPECULATE (one row a program, inline, REORDER, no lists; plan(speculate=True)): the near picks'
    float64 keys are computed for every row, beside the fast path, and the weights once. Not the
    default: it cost every one-row program 0.74 µs on the H200 to save 0.1 on a batch with a near row.

    PAIR_TEST (inline, REORDER, not SPECULATE; the default): a near row's picks are first tested pair
    by pair on exact differences (``_picks_in_order``); where that proves the fp32 keys' order, the
    row keeps the fast path's weights (flag 3), and only the rest are reordered from float64 keys.

    GROUP_TEST (with PAIR_TEST, groups chosen; by default one-row programs from GROUP_TEST_MIN_ROWS
    rows, plan(group_test=...)): a row whose group stage is in doubt, left to the whole row's float64
    pass by the near rows' pass, is first put to ``_groups_in_order``, which may prove the fp32 choice
    of groups on exact differences; the rows it proves then go the near rows' way after all (the pair
    test, the reorder), the rest take the whole row's pass.

    FIXED_REF (several rows a program, COL_BITS >= 8; by default where groups are chosen: plan): where every key lies
    within reach of one reference made from the bias (``reference_of``: 1 + the bias's largest, at most
    UNSATURATED_REACH above its smallest, as for real checkpoints' correction biases), the distances are taken below
    it, where otherwise each row's largest key is (31 FMNMX a thread and a shuffle tree), and no distance needs the
    saturating min (every float stays in [8, 16)). The error bound holds for any reference at or above the keys
    (|key| <= |reference| + the distance). A NaN key no longer makes the reference NaN: its distance stays NaN, so
    its packed word is negative (a NaN's exponent bits shift into the sign), the smallest of its group, and the
    row is flagged from its groups' smallest (or its first pick, where every group is read). A bias too wide takes
    the row's largest and the saturating min, as without FIXED_REF (a branch once a program, the same for every
    program). SASS sm_90, DeepSeek-V3's table tile: path 1055 -> 1009 instructions a warp, ALU 492 -> 430
    (reports/bench/NOTES.md, "Thirty-first round").

    BIAS_IN_REF (FIXED_REF at COL_BITS 8; by default for bf16 logits, plan): within reach a key's distance is one
    FFMA of its sigmoid from its expert's offset below the reference (``reference_of``), the bias not read; a bias too
    wide reads the row again in a rare branch and does what FIXED_REF does there (module constant BIAS_IN_REF).

    GROUP_LISTS (groups, several rows a program: a group in one thread): the picks come from each
    chosen group's GROUP_LIST smallest keys (``_list_rounds``), the whole tile's rounds only for a
    block where a list could run out (SASS sm_90, DeepSeek-V3: 1264 -> 1064 instructions a warp).

    Layout (the module docstring's "v2"): the tile is [BLOCK_T, BLOCK_G, BLOCK_P // VEC, VEC]
    (expert g * PER + c * VEC + v), rows across lanes and whole groups in a thread, the bias loaded
    through a pointer tile of the logits' shape so both loads share one layout: a group's top 2 is
    in-thread, a row's reduction two shuffle levels shared by several rows. The distance below the
    row's top (COL_BITS >= 8) is the mantissa of one FFMA, t1 - key * 2**(SHIFT - 20) with t1 = the
    top's the same way + 8 + 2**-17: a float in [8, 16), whose ulp is one unit (2**-SHIFT of a key)
    and whose exponent shifts out of the packed word; saturated by a min (NaN and far keys -> QMAX).
    The FFMA rounds to nearest once: monotone, half a unit off, where ``error_bound`` allows one; the
    row's constant offset (t1's margin, 8 units, and its rounding) cancels in every difference and
    only lengthens the reach. (Until 2dc16af: (top - key) * 2**SHIFT by one FFMA, its min, + 2**23 to
    round: one FADD a key more; SASS sm_90, DeepSeek-V3's table tile: 1111 -> 1080 instructions a warp,
    and with the id OR'ed in as group base and position where a group is a power of two long, 1062.)
    The row top is a NaN-propagating max (a NaN key saturates every distance and flags the row); a
    saturated key flags the row where it could matter: some valid group's second key (when groups are
    chosen) or the (K+1)-th pick."""
    tl.static_assert(BLOCK_T == 1 or not ONE_ROW)
    tl.static_assert(not GROUP_LISTS or (N_GROUP > 1 and not ONE_ROW))
    tl.static_assert(not SPECULATE or (INLINE_EXACT and REORDER and ONE_ROW and not GROUP_LISTS))
    tl.static_assert(not PAIR_TEST or (INLINE_EXACT and REORDER and not SPECULATE))
    tl.static_assert(not GROUP_TEST or (PAIR_TEST and N_GROUP > 1 and TOPK_GROUP < N_GROUP))
    tl.static_assert(not FIXED_REF or (COL_BITS >= 8 and not ONE_ROW))
    tl.static_assert(not BIAS_IN_REF or (FIXED_REF and COL_BITS == 8))
    VEC: tl.constexpr = 8 if BLOCK_P >= 8 else BLOCK_P
    VECTOR_LISTS: tl.constexpr = ONE_ROW and VEC == 8 and N_GROUP > 1   # the sort hidden under the group stage
    LISTS: tl.constexpr = GROUP_LISTS or VECTOR_LISTS
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    QMAX: tl.constexpr = (1 << (31 - COL_BITS)) - 2        # packed values stay below INT32_MAX (padding)
    DIST_SCALE: tl.constexpr = 2.0 ** (SHIFT - 20)           # a key's 2**-SHIFT: one ulp of a float in [8, 16)
    SAT: tl.constexpr = QMAX << COL_BITS                     # packed at or above: a saturated distance
    SAT_FLOAT: tl.constexpr = 8.0 + QMAX * 2.0**-20           # a distance's float saturated: its mantissa QMAX units
    INT32_MAX: tl.constexpr = 2147483647
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    slots = tl.arange(0, BLOCK_K)
    row_ok = rows < T
    row_ptr = gating_ptr + rows.to(tl.int64) * stride_gt
    grp = tl.arange(0, BLOCK_G)[None, :, None, None]
    pos = tl.arange(0, BLOCK_P // VEC)[None, None, :, None] * VEC + tl.arange(0, VEC)[None, None, None, :]
    col = grp * PER + pos                                     # [1, BLOCK_G, BLOCK_P // VEC, VEC]
    valid = (grp < N_GROUP) & (pos < PER)
    x_ptrs = row_ptr[:, None, None, None] + col * stride_ge
    if EVEN:
        if WORD_LOADS and NATIVE:   # bf16 pairs made fp32 a 32-bit word at a time (plan: unit stride)
            x = _bf16_pairs_to_fp32(tl.load(x_ptrs.to(tl.pointer_type(tl.int16)), row_ok[:, None, None, None], other=0))
        else:
            x = load_fp32(x_ptrs, row_ok[:, None, None, None], IS_BF16)
    else:
        x = load_fp32(x_ptrs, row_ok[:, None, None, None] & valid, IS_BF16)
    if BIAS_IN_REF:   # each expert's offset from the reference (16-byte aligned: vector loads), read as the bias was
        offsets = _expert_tile(ref_ptr + 4, col, 1, rows, valid, EVEN)
    else:
        b = _expert_tile(bias_ptr, col, stride_b, rows, valid, EVEN)
    sig = _sigmoid_of(x, NATIVE)
    if BIAS_IN_REF:   # within reach (the common case) no bias read: each expert's offset from the reference, made once
        e = tl.fma(sig, -DIST_SCALE, offsets)
        top = tl.load(ref_ptr) + tl.zeros([BLOCK_T], tl.float32)
        if tl.load(ref_ptr + 1) == 0.0:   # a bias too wide: the row's largest key and the saturating min, as without
            # FIXED_REF. The logits read again (volatile: not the first read's registers, which would keep every
            # sigmoid live beside the distances across the branch: ptxas spilled)
            x = load_fp32(x_ptrs, row_ok[:, None, None, None] & valid, IS_BF16, VOLATILE=True)
            key = _masked_keys(_sigmoid_of(x, NATIVE) + _expert_tile(bias_ptr, col, stride_b, rows, valid, EVEN),
                               valid, EVEN)
            top = _row_max_nan(key, NATIVE)
            e = tl.minimum(_distance_floats(key, top, DIST_SCALE), SAT_FLOAT, propagate_nan=tl.PropagateNan.ALL)
        q = e.to(tl.int32, bitcast=True) << COL_BITS   # a NaN key's word is negative, as under FIXED_REF
    else:
        key = _masked_keys(sig + b, valid, EVEN)
        if ONE_ROW:
            top = _row_max_int(key)
        elif FIXED_REF:   # one reference above every key, every key within reach of it (reference_of): no max over
            # the row, no saturating min; NaN keys flagged below. A bias too wide for that takes the row's max (a
            # branch once a program, the same for every program of the launch).
            within_reach = tl.load(ref_ptr + 1) != 0.0
            if within_reach:
                top = tl.load(ref_ptr) + tl.zeros([BLOCK_T], tl.float32)
            else:
                top = _row_max_nan(key, NATIVE)
        else:
            top = _row_max_nan(key, NATIVE)
        if COL_BITS >= 8:   # the distance as the mantissa of a float in [8, 16): one FFMA and a min
            e = _distance_floats(key, top, DIST_SCALE)
            if FIXED_REF:   # a NaN key's float stays NaN, so its packed word is negative (exponent bits all ones)
                if not within_reach:   # some key may lie 4 or more below the row's top: saturated
                    e = tl.minimum(e, SAT_FLOAT, propagate_nan=tl.PropagateNan.ALL)
            else:
                e = tl.minimum(e, SAT_FLOAT)
            q = e.to(tl.int32, bitcast=True) << COL_BITS   # the exponent's bits shift out
        else:               # QMAX >= 2**23: a fixed point truncated
            d = tl.minimum(tl.fma(key, -float(1 << SHIFT), (top * float(1 << SHIFT))[:, None, None, None]),
                           QMAX * 1.0)
            q = d.to(tl.int32) << COL_BITS
    hard = top != top          # a row flagged for a reason _reorder cannot settle
    if EVEN and (PER & (PER - 1)) == 0:   # the id OR'ed in parts (group base, position): no add a key for its column
        packed = (q | (grp * PER)) | pos
    else:
        packed = q | col
    if not EVEN:
        packed = tl.where(valid, packed, INT32_MAX)
    if VECTOR_LISTS:   # each vector's keys sorted (a thread's, in its registers) beside the group stage
        v1, v2, v3, v4, v5, v6, v7, v8 = _vector_lists(packed)

    if N_GROUP > 1:
        a1 = _group_min(packed)                                               # [BLOCK_T, BLOCK_G]
        a2 = _group_next_up(a1, packed)
        gids = tl.arange(0, BLOCK_G)[None, :]
        if TOPK_GROUP < N_GROUP:   # a saturated second key: that group's score is unsure
            if FIXED_REF:   # or a NaN key (negative: its group's smallest), in any group
                a2_or_nan = tl.where(a1 < 0, SAT, a2)
            else:
                a2_or_nan = a2
            if BLOCK_G == N_GROUP:
                hard = hard | (tl.max(a2_or_nan, axis=1) >= SAT)
            else:
                hard = hard | (tl.max(tl.where(gids < N_GROUP, a2_or_nan, 0), axis=1) >= SAT)
        gq = ((a1 >> COL_BITS) + (a2 >> COL_BITS)) >> 1                       # halved: fits beside the group id
        gpacked = tl.where(gids < N_GROUP, (gq << GROUP_BITS) | gids, INT32_MAX)
        if ONE_ROW:   # each group ranked against all (no rounds); the TOPK_GROUP-th and the next by a REDUX each
            rank = tl.sum((gpacked[:, None, :] < gpacked[:, :, None]).to(tl.int32), axis=2)
            cut = _groups_min_wide(tl.where(rank == TOPK_GROUP - 1, gpacked, INT32_MAX), packed)
            if TOPK_GROUP < N_GROUP:
                after = _groups_min_wide(tl.where(rank == TOPK_GROUP, gpacked, INT32_MAX), packed)
        else:
            cut = tl.min(gpacked, axis=1)
            for r in tl.static_range(1, TOPK_GROUP):
                cut = _next_up(cut, gpacked, 1)
            if TOPK_GROUP < N_GROUP:
                after = _next_up(cut, gpacked, 1)
        if TOPK_GROUP < N_GROUP:
            group_doubt = _scores_near(cut, after, top, GROUP_BITS, SHIFT)
            if not GROUP_TEST:   # else flagged below, and the groups tested before the float64 pass
                hard = hard | group_doubt
        chosen = gpacked <= cut[:, None]                                       # [BLOCK_T, BLOCK_G]
        if GROUP_LISTS:   # each group's six smallest keys; the tile masked only where it is needed
            a3 = _group_after(a2, packed)
            a4 = _group_after(a3, packed)
            a5 = _group_after(a4, packed)
            a6 = _group_after(a5, packed)
        else:
            if GROUP_TEST:   # the group test needs the next group's third key, from the tile unmasked
                a3 = _group_after(a2, packed)
            if VECTOR_LISTS:   # a vector lies in one group: its list's head masked
                chosen_v = _vector_parts(tl.broadcast_to(chosen[:, :, None, None].to(tl.int32), packed.shape))[0]
                v1 = tl.where(chosen_v != 0, v1, INT32_MAX)
            else:
                packed = tl.where(chosen[:, :, None, None], packed, INT32_MAX)

    # the K + 1 first picks (top_packed: the first K) and the smallest gap between consecutive ones
    flat = _flat(packed) if ONE_ROW else packed
    if GROUP_LISTS:
        no_more = tl.full(a1.shape, INT32_MAX, tl.int32)
        top_packed, best, closest, third = _list_rounds(
            tl.where(chosen, a1, INT32_MAX), tl.where(chosen, a2, INT32_MAX), tl.where(chosen, a3, INT32_MAX),
            tl.where(chosen, a4, INT32_MAX), tl.where(chosen, a5, INT32_MAX), tl.where(chosen, a6, INT32_MAX), no_more,
            no_more, slots, K, COL_BITS)
        # a group whose sixth key is among the K + 1 picks may hold the next one: the block takes the
        # rounds over its whole tile (for DeepSeek-V3's random rows, one block of four rows in 70)
        ran_out = chosen & (a6 <= best[:, None])
        if tl.max(tl.max(ran_out.to(tl.int32), axis=1), axis=0) > 0:
            in_chosen = tl.where(chosen[:, :, None, None], packed, INT32_MAX)
            top_packed, best, closest = _tile_rounds(_first_pick(in_chosen, in_chosen, False), in_chosen, in_chosen,
                                                     slots, K, COL_BITS, False)
            third = _next_pick(best, in_chosen, in_chosen, False)
    elif VECTOR_LISTS:   # whole lists: none runs out
        top_packed, best, closest, third = _list_rounds(v1, v2, v3, v4, v5, v6, v7, v8, slots, K, COL_BITS)
    else:
        top_packed, best, closest = _tile_rounds(_first_pick(packed, flat, ONE_ROW), packed, flat, slots, K,
                                                 COL_BITS, ONE_ROW)
        third = best   # a stand-in: _third_near_kth finds the pick itself
    hard = hard | (best >= SAT)   # the (K+1)-th pick saturated
    if FIXED_REF and (N_GROUP == 1 or TOPK_GROUP == N_GROUP):   # every group read: a NaN key is the first pick
        hard = hard | (tl.min(top_packed, axis=1) < 0)
    # two picks (or the K-th and the next) too close for the fp32 keys to order; the (K+1)-th pick
    # is the farthest of them
    flagged = hard | (closest <= error_bound(top, best >> COL_BITS, SHIFT))
    if GROUP_TEST:
        flagged = flagged | group_doubt
    fast = row_ok & (flagged == 0) if INLINE_EXACT else row_ok
    # a flagged row's picks may be padding (ids past E): read at an expert's column whatever they are
    picks = tl.minimum(top_packed & COL_MASK, N_GROUP * PER - 1)
    if SPECULATE:
        # One row a program (small T): the program is the batch's latency, so a reordered row's
        # float64 keys are computed for every row, beside the fast path's weights rather than after
        # them, and the weights are computed once, from whichever picks hold (reports/bench/NOTES.md,
        # "DeepSeek-V3 at one row a program"). Only a row in doubt beyond its K + 1 picks (flag 2)
        # still takes a pass after the store: the whole row's float64 keys.
        hard = hard | _third_near_kth(top_packed, best, packed, flat, third, top, slots, K, COL_BITS, SHIFT, ONE_ROW,
                                      LISTS)
        redo = flagged & row_ok
        near = redo & (hard == 0)
        tl.store(flags_ptr + rows, flagged.to(tl.int8) + (flagged & hard).to(tl.int8), mask=row_ok)   # 2: whole row
        BLOCK_C: tl.constexpr = 2 * BLOCK_K if K == BLOCK_K else BLOCK_K
        # every row reads its candidates now, so the (K+1)-th pick's column is clamped to an expert's
        # (a padding pick there saturates, so that row is hard, never reordered)
        near_ids, near_v, near_scale = _reorder(
            row_ptr, row_ok, bias_ptr, scale_ptr, top_packed, tl.minimum(best, N_GROUP * PER - 1 + (best & ~COL_MASK)),
            slots, stride_ge, stride_b, stride_s, COL_MASK, K, BLOCK_K, BLOCK_C, BLOCK_G * BLOCK_P, ACCURATE_EXP,
            IS_BF16, SCALE_IS_BF16)
        v, scale = _picks_read(picks, row_ptr, row_ok[:, None] & (slots < K)[None, :], stride_ge, scale_ptr, stride_s,
                               IS_BF16, SCALE_IS_BF16)
        chosen_near = near[:, None]
        _store_weights_of(tl.where(chosen_near, near_v, v), tl.where(chosen_near, near_scale, scale),
                          tl.where(chosen_near, near_ids, picks), rows, (fast | near)[:, None] & (slots < K)[None, :],
                          slots, weights_ptr, ids_ptr, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, RENORM)
        redo = redo & hard
        if tl.max(redo.to(tl.int32), axis=0) > 0:
            _reroute_flagged(gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, rows, redo, T, stride_gt, stride_ge,
                             stride_b, stride_s, slots, K, TOPK_GROUP, N_GROUP, PER, BLOCK_T, BLOCK_G, BLOCK_P, BLOCK_K,
                             LOG2_BLOCK_K, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM, EVEN, NATIVE)
    else:
        # every row's weights from its fast picks (a flagged row's picks may be padding, read at an
        # expert's column), stored for the rows decided; a near row whose order the pair test proves
        # stores them below (kept, not computed again: one row a program, that row is the batch's latency).
        # The reads are masked by the rows in range, not by the flags, so they need not wait for the
        # flags (masked by them, ptxas left the scale's read after the weights' sums: SASS sm_90).
        # ptxas does not move them above the flags' store (the pointers may alias). Without groups
        # they come first, so they issue as soon as the K picks are known: on the H100 Kimi K2 T =
        # 65536 / 250000 -3.2 / -3.4%; with groups (DeepSeek-V3) it measured +1.5% to -1.2%, noise
        # (reports/bench/NOTES.md, "Twenty-second round"), and they stay after the store.
        if N_GROUP == 1:
            v, scale = _picks_read(picks, row_ptr, row_ok[:, None] & (slots < K)[None, :], stride_ge, scale_ptr,
                                   stride_s, IS_BF16, SCALE_IS_BF16)
        tl.store(flags_ptr + rows, flagged.to(tl.int8), mask=row_ok)
        if N_GROUP > 1:
            v, scale = _picks_read(picks, row_ptr, row_ok[:, None] & (slots < K)[None, :], stride_ge, scale_ptr,
                                   stride_s, IS_BF16, SCALE_IS_BF16)
        fast_weights = _weights_of(v, scale, slots, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, RENORM)
        store_weights(fast_weights, picks, rows.to(tl.int64), fast[:, None] & (slots < K)[None, :], slots, weights_ptr,
                      ids_ptr, K)
    if INLINE_EXACT and not SPECULATE:
        redo = flagged & row_ok
        if tl.max(redo.to(tl.int32), axis=0) > 0:
            if REORDER:
                # Near picks alone (_near_rows): the pair test, else the K + 1 picks' float64 keys.
                # A row whose groups are in doubt is hard here, as without the group test, so a near
                # row's path does not change with it; GROUP_TEST then tries those rows' groups, and
                # the rows it proves go the near rows' way after all.
                hard_near = hard
                if GROUP_TEST:
                    hard_near = hard | group_doubt
                left = _near_rows(redo, hard_near, top_packed, best, packed, flat,
                                  third, top, picks, fast_weights, row_ptr, row_ok, rows, bias_ptr, scale_ptr,
                                  weights_ptr, ids_ptr, flags_ptr, slots, stride_ge, stride_b, stride_s, COL_MASK, K,
                                  BLOCK_T, BLOCK_K, LOG2_BLOCK_K, BLOCK_G * BLOCK_P, N_GROUP * PER - 1, COL_BITS,
                                  SHIFT, ONE_ROW, LISTS, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM, NATIVE,
                                  PAIR_TEST)
                if GROUP_TEST:
                    doubt = left & group_doubt & (hard == 0)
                    if tl.max(doubt.to(tl.int32), axis=0) > 0:
                        proven = _groups_in_order(row_ptr, bias_ptr, doubt, gpacked, cut, after, a1, a2, a3, top,
                                                  gids, stride_ge, stride_b, COL_BITS, GROUP_BITS, SHIFT, TOPK_GROUP,
                                                  N_GROUP, N_GROUP * PER - 1, IS_BF16, NATIVE)
                        if tl.max(proven.to(tl.int32), axis=0) > 0:
                            left = (left & (proven == 0)) | _near_rows(
                                proven, hard, top_packed, best, packed, flat, third, top, picks, fast_weights, row_ptr,
                                row_ok, rows, bias_ptr, scale_ptr, weights_ptr, ids_ptr, flags_ptr, slots, stride_ge,
                                stride_b, stride_s, COL_MASK, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, BLOCK_G * BLOCK_P,
                                N_GROUP * PER - 1, COL_BITS, SHIFT, ONE_ROW, LISTS, ACCURATE_EXP, IS_BF16,
                                SCALE_IS_BF16, RENORM, NATIVE, PAIR_TEST)
                redo = left
            if tl.max(redo.to(tl.int32), axis=0) > 0:
                _reroute_flagged(gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, rows, redo, T, stride_gt,
                                 stride_ge, stride_b, stride_s, slots, K, TOPK_GROUP, N_GROUP, PER, BLOCK_T, BLOCK_G,
                                 BLOCK_P, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM, EVEN, NATIVE)


@triton.jit(do_not_specialize=["T"])
def exact_kernel(
    gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, flags_ptr, ref_ptr,
    T, stride_gt, stride_ge, stride_b, stride_s,
    K: tl.constexpr, TOPK_GROUP: tl.constexpr, N_GROUP: tl.constexpr, PER: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_K: tl.constexpr, ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr,
    RENORM: tl.constexpr, EVEN: tl.constexpr,
):
    """The rows grouped_kernel flagged, routed again from float64 keys (programs whose rows are
    all unflagged return after reading BLOCK_T bytes)."""
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    row_ok = rows < T
    flagged = tl.load(flags_ptr + rows, mask=row_ok, other=0) != 0
    if tl.max(flagged.to(tl.int32), axis=0) > 0:
        _reroute(gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, rows, row_ok & flagged, T, stride_gt, stride_ge,
                 stride_b, stride_s, tl.arange(0, BLOCK_K), K, TOPK_GROUP, N_GROUP, PER, BLOCK_T, BLOCK_G, BLOCK_P,
                 BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM, EVEN)


KEYS_PER_WARP = {torch.bfloat16: 1024, torch.float16: 1024, torch.float32: 1024}
"""Keys per warp on the GPU: four 256-expert rows per program and warp measured fastest at T=250000
(benchmarks/probe_grouped.py, reports/bench/NOTES.md, "The grouped sigmoid kernel")."""
INTERPRETER_KEYS_PER_PROGRAM = 2**17
FILL_PROGRAMS = 2048
"""Rows are spread so that at least this many programs run, down to one row per program: a flagged
row costs its program a serial float64 pass, which more, smaller programs keep off the critical
path (T=2048, DeepSeek-V3 bf16 on the H200: 7.7 us at one row per program, 12.1 at four)."""
MAX_REGISTERS = 64
"""The fast kernel's register cap (ptxas maxnreg) for rows of at most 256 padded experts, several
rows a program: the inline float64 passes need more registers than the fast path, and capped they
spill only inside those rare passes (checked in SASS sm_90: no spill before the flags' store). On
the H200 at T=250000 (probe_grouped): 111.2 us at 80 against 125.3 uncapped (eb58abc); 103.7-103.9
at 72 against 106.6-106.9 at 80 (3077222, 2ec210a); with the groups' lists (6fd99d8) 88.6 / 89.3 /
92.3 / 98.0 us at 64 / 72 / 80 / 96 (T=65536: 28.5 / 28.8 / 29.7 / 30.6). Wider rows (Kimi K2's 384
experts) would spill on the fast path and are left to ptxas."""
ONE_ROW_MAX_REGISTERS = 96
"""The cap at one row a program (small T), where a flagged row's float64 pass is on the critical
path and its spills cost latency: the H200 at 6fd99d8, one whole-row pass in the batch, T = 512 /
2048: 5.83 / 6.94 us at 72 registers, 5.56 / 6.26 at 80, 5.42 / 6.16 at 96; T = 64 (no flagged row)
2.14-2.21 at every cap."""
MAX_WARPS = 8
GROUP_LIST = 6
"""With groups and several rows a program, the K + 1 picks (and the next, which the reorder test
needs) come from each chosen group's six smallest keys (``_list_rounds``: a round is a reduction
over the groups and a shift of the winner's list, not a pass over every key); a block where a
group's sixth key is among the K + 1 picks takes the rounds over its whole tile instead. Six: for
DeepSeek-V3's random rows a group gives six of the first 9 picks in 0.36% of rows (1.4% of
four-row blocks), five in 4.8% (18% of blocks); numbers from 200000 rows on the CPU
(reports/bench/NOTES.md). Written out in the kernel (a1 .. a6, h1 .. h6)."""
GROUP_TEST_MIN_ROWS = 128
"""A launch of one-row programs (T below 2 * FILL_PROGRAMS) puts a row whose group stage is in
doubt to the group test (``_groups_in_order``) before the whole row's float64 pass from this many
rows up; plan(group_test=...) overrides. Measured on the H100 (bench inputs, DeepSeek-V3 bf16, the
test on against off in turns; reports/bench/probes/group-test-ab-h100.json and
group-test-threshold-h100.json): the test costs every such batch 0.02-0.07 us (T = 1 / 8 / 64 / 512:
+0.03 / +0.03 / +0.06 / +0.07) and saves a batch holding such a row ~2.3 us (T = 1024: 6.44 -> 4.11,
T = 2048: 5.88 -> 3.60). On the bench's random rows 3.9e-4 of rows
are such (scripts/probe_near_rows.py), so a batch of T holds one with probability 1 - exp(-3.9e-4 T):
the test pays in expectation from T ~ 80 (0.03 at 64, 0.18 at 512, 0.55 at 2048). The four-row tile
keeps it off: there it spills before the flags at its 64-register cap (SASS sm_90: 7 spill
instructions) and measured mixed (T = 65536 -1.5%, 250000 +1.0%)."""
REORDER_MAX_CANDIDATES = 16
"""The inline pass settles a row whose only doubt is the order of its K + 1 first picks from those
K + 1 float64 keys (an all-pairs rank: BLOCK_C**2 comparisons a row) when K + 1 is at most this."""
EXACT_ROWS = 4
"""Rows per program of exact_kernel on the GPU (a program with no flagged row returns at once); the
interpreter, which pays per program in Python, takes the fast kernel's large blocks instead."""
EXACT_WARPS = 4


@dataclass(frozen=True)
class GroupedLaunch:
    """One call's launch: rows per program and warps of the fast kernel, its compile-time
    arguments, and how flagged rows are routed again: by the fast kernel itself (inline: one launch,
    the default), by exact_kernel in a second launch, or not at all (fallback off: tests and
    probes). On the H200, inline was faster at every T measured (reports/bench/NOTES.md)."""

    T: int
    block_t: int
    num_warps: int
    constexprs: dict
    fallback: bool = True
    exact_rows: int = EXACT_ROWS
    inline: bool = True
    max_registers: int | None = None
    speculate: bool = False
    pair_test: bool = True
    group_test: bool = False

    SHARED = ("K", "TOPK_GROUP", "N_GROUP", "PER", "BLOCK_G", "BLOCK_P", "BLOCK_K", "LOG2_BLOCK_K", "ACCURATE_EXP",
              "IS_BF16", "SCALE_IS_BF16", "RENORM", "EVEN")

    def kernel_options(self) -> dict:
        """grouped_kernel's keyword arguments for this launch: tile, warps, compile-time arguments,
        the inline float64 pass and the register cap (benchmarks/sass_grouped.py compiles with the
        same)."""
        options = {"BLOCK_T": self.block_t, "num_warps": self.num_warps, **self.constexprs}
        if self.fallback and self.inline:
            options["INLINE_EXACT"] = True
            c = self.constexprs
            options["SPECULATE"] = self.speculate and c["ONE_ROW"] and c["REORDER"] and not c["GROUP_LISTS"]
            options["PAIR_TEST"] = self.pair_test and c["REORDER"] and not options["SPECULATE"]
            options["GROUP_TEST"] = (self.group_test and options["PAIR_TEST"] and c["N_GROUP"] > 1
                                     and c["TOPK_GROUP"] < c["N_GROUP"])
        if self.max_registers is not None:
            options["maxnreg"] = self.max_registers
        return options

    def run(self, gating_output, bias, scale, weights, ids) -> torch.Tensor:
        """Launch grouped_kernel (routing its flagged rows again itself when inline), then, with
        fallback and not inline, exact_kernel for the rows it flagged; returns the flags (int8 [T]: 0
        decided by the fp32 keys, 1 flagged (inline: its K + 1 picks reordered from float64 keys), 2
        flagged and routed by the whole row's float64 pass inline, 3 flagged and its picks' order
        proven by the pair test inline)."""
        flags = torch.empty(self.T, dtype=torch.int8, device=gating_output.device)
        c = self.constexprs
        ref = (reference_of(bias, c["SHIFT"] if c["BIAS_IN_REF"] else None) if c["FIXED_REF"]
               else bias)   # bias: a pointer left unread
        args = (gating_output, bias, scale, weights, ids, flags, ref,
                self.T, gating_output.stride(0), gating_output.stride(1), bias.stride(0), scale.stride(0))
        grouped_kernel[(triton.cdiv(self.T, self.block_t),)](*args, **self.kernel_options())
        if self.fallback and not self.inline:
            exact_kernel[(triton.cdiv(self.T, self.exact_rows),)](*args, BLOCK_T=self.exact_rows, num_warps=EXACT_WARPS,
                                                             **{k: self.constexprs[k] for k in self.SHARED})
        return flags


def plan(gating_output: torch.Tensor, topk: int, bias: torch.Tensor, scale: torch.Tensor, n_group: int,
         topk_group: int, renormalize: bool, *, interpreter: bool = device.INTERPRETER,
         block_t: int | None = None, num_warps: int | None = None, fallback: bool = True,
         inline: bool | None = None, max_registers: int | None = None, reorder: bool | None = None,
         lists: bool | None = None, speculate: bool | None = None, pair_test: bool | None = None,
         group_test: bool | None = None, fixed_ref: bool | None = None,
         word_loads: bool | None = None, bias_in_ref: bool | None = None) -> GroupedLaunch:
    """The launch for validated arguments. Overrides for probes and tests: block_t, num_warps,
    fallback=False (no float64 routing of the flagged rows: the fp32 keys alone) and inline=False
    (the flagged rows routed again by exact_kernel in a second launch, not by the fast kernel);
    max_registers caps the fast kernel's registers (ptxas maxnreg; the probes try it); reorder=False
    sends every flagged row through the whole row's float64 pass (the default reorders near picks
    alone where K + 1 <= REORDER_MAX_CANDIDATES); lists=False takes the K + 1 picks from the whole
    tile where the default takes them from each group's GROUP_LIST smallest keys (rows in groups,
    several rows a program); speculate=True computes a one-row program's reorder for every row, beside
    the fast path (grouped_kernel's SPECULATE), where the default reorders flagged rows only, after the
    store: on the H200 speculating cost every one-row program 0.74 µs (DeepSeek-V3 bf16, the bench's
    batches: T = 1 / 8 2.86 / 2.86 µs speculated, 2.12 / 2.09 not) to save 0.1 on a batch with a near
    row (T = 64: 2.88 against 2.99; reports/bench/NOTES.md, "Tenth round"); pair_test=False reorders every
    near row from float64 keys, where the default first tries the pair test (grouped_kernel's PAIR_TEST);
    group_test=True first tries a like test on a row whose group stage is in doubt (grouped_kernel's
    GROUP_TEST; by default on for one-row programs from GROUP_TEST_MIN_ROWS rows); fixed_ref takes the keys'
    distances below one reference made from the bias where it can (grouped_kernel's FIXED_REF; only where a program
    holds several rows and E > 128, else ignored): by default where groups are chosen (n_group > 1; on the H200,
    DeepSeek-V3 at T = 250000 bf16 88.29 -> 83.69 µs, fp32 125.81 -> 120.22), not for one group (Kimi K2 bf16
    180.50 -> 182.93, though fp32 204.06 -> 197.01; reports/bench/NOTES.md, "Thirty-first round"); word_loads and
    bias_in_ref set WORD_LOADS and BIAS_IN_REF (below) where their layouts allow, by default on for bf16 logits, where
    they were timed together (an H100, DeepSeek-V3 bf16 at T = 250000: 83.78 -> 81.74 µs; reports/bench/NOTES.md,
    "Thirty-fifth round")."""
    T, E = gating_output.shape
    per = E // n_group
    block_g, block_p = triton.next_power_of_2(n_group), triton.next_power_of_2(per)
    block_e = block_g * block_p
    col_bits = max(1, (block_e - 1).bit_length())
    assert col_bits <= 12, "MAX_EXPERTS keeps COL_BITS <= 12"
    rows_needed = triton.next_power_of_2(max(T, 1))
    if block_t is None:
        if interpreter:
            block_t = max(1, min(INTERPRETER_KEYS_PER_PROGRAM // block_e, rows_needed))
        else:
            fill = 1 << max(0, (max(T, 1) // FILL_PROGRAMS).bit_length() - 1)
            block_t = max(1, min(KEYS_PER_WARP[gating_output.dtype] // block_e, rows_needed, fill))
    if num_warps is None:
        num_warps = 1 if interpreter else min(MAX_WARPS, max(1, block_t * block_e // KEYS_PER_WARP[gating_output.dtype]))
    block_k = triton.next_power_of_2(topk)
    inline = True if inline is None else inline
    even = block_g == n_group and block_p == per
    group_lists = (n_group > 1 and block_t > 1) if lists is None else lists
    fixed_ref = (n_group > 1 if fixed_ref is None else fixed_ref) and block_t > 1 and col_bits >= 8
    if max_registers is None and fallback and inline and block_e <= 256:
        max_registers = MAX_REGISTERS if block_t > 1 else ONE_ROW_MAX_REGISTERS
    return GroupedLaunch(T, block_t, num_warps, {
        "K": topk, "TOPK_GROUP": topk_group, "N_GROUP": n_group, "PER": per,
        "BLOCK_G": block_g, "BLOCK_P": block_p, "BLOCK_K": block_k, "LOG2_BLOCK_K": block_k.bit_length() - 1,
        "COL_BITS": col_bits, "GROUP_BITS": max(1, (block_g - 1).bit_length()), "SHIFT": 31 - RANGE_BITS - col_bits,
        **dtype_flags(gating_output, scale, interpreter=interpreter),
        "RENORM": renormalize, "EVEN": even, "ONE_ROW": block_t == 1,
        "REORDER": (topk + 1 <= REORDER_MAX_CANDIDATES) if reorder is None else reorder,
        "GROUP_LISTS": group_lists,
        "FIXED_REF": fixed_ref,
        "WORD_LOADS": ((WORD_LOADS if word_loads is None else word_loads) and gating_output.dtype == torch.bfloat16
                       and even and per % 16 == 0 and gating_output.stride(1) == 1
                       and gating_output.stride(0) % 2 == 0 and gating_output.data_ptr() % 4 == 0),
        "BIAS_IN_REF": ((BIAS_IN_REF and gating_output.dtype == torch.bfloat16 if bias_in_ref is None else bias_in_ref)
                        and fixed_ref and col_bits == 8),
    }, fallback, block_t if interpreter else EXACT_ROWS, inline, None if interpreter else max_registers,
        bool(speculate), True if pair_test is None else pair_test,
        (block_t == 1 and T >= GROUP_TEST_MIN_ROWS) if group_test is None else group_test)


WORD_LOADS = True
"""Whether plan lets grouped_kernel make bf16 logits fp32 two a 32-bit register (inline PTX, _bf16_pairs_to_fp32: the
low one shifted, the high one masked, one instruction each) where rows hold whole groups of a multiple of 16, at unit
stride and 4-byte aligned (so that each register the vector loads fill holds two of a row's logits); otherwise the
conversion takes a PRMT and a shift for each high half. SASS sm_90, DeepSeek-V3 bf16's table tile: 1009 -> 977
instructions a warp. On since the thirty-fifth round with BIAS_IN_REF: on an H100 at T = 250000, 83.78 -> 82.15 µs
alone, 81.74 with it (reports/bench/probes/switch-ab-h100-cd12804.json; reports/bench/NOTES.md)."""

BIAS_IN_REF = True
"""Whether plan lets grouped_kernel take a key's distance below the fixed reference (FIXED_REF) by one FFMA of its
sigmoid, from each expert's offset 8 + 2**-17 + (reference - bias) 2**(SHIFT - 20) made once per bias (reference_of),
where the key's sum with the bias and the distance's FFMA took two (one FADD a key less; the bias not read). The
offset lies in [8, 16) (the bias within UNSATURATED_REACH of the reference), so its rounding is half a unit, the sum's
rounding gone in its place; with the FFMA's half unit this fits the keys' error bound (error_bound) where a unit is
2**-21 of a key (COL_BITS 8: 129 to 256 experts a row, DeepSeek-V3), so plan lets it there only. On since the
thirty-fifth round for bf16 logits, with WORD_LOADS (an H100, DeepSeek-V3 bf16 at T = 250000: 83.78 -> 83.48 µs alone,
81.74 with WORD_LOADS against its 82.15); fp32 was not timed, so plan(bias_in_ref=True) asks for it there
(reports/bench/NOTES.md, "Thirty-fifth round")."""

UNSATURATED_REACH = 3.0
"""How far above the bias's smallest the reference may lie for the distances to go unsaturated: a key is at least its
bias, so it lies less than 4 below the reference (a distance's float 8 + 2 d stays in [8, 16)), with a margin."""
_REFERENCES = WeakIdKeyDictionary()
"""bias tensor -> (its version, the shift asked for, its reference): by identity (a tensor's == is elementwise), dropped
with the tensor."""


def reference_of(bias: torch.Tensor, shift: int | None = None) -> torch.Tensor:
    """Two float32 on the bias's device: a reference at or above every key sigmoid(x) + b the fast kernel can make
    from this bias, 1 + its largest (as float32, which is how the kernel reads it) raised by 2**-20 of its magnitude
    and 2**-20 for the roundings (the key's sum, an approximate sigmoid's last ulp); and 1.0 where the reference
    lies at most UNSATURATED_REACH above the bias's smallest (every key, at least its bias, then lies within it of
    the reference: no distance needs saturating), else 0.0 (a NaN or infinite bias included). Made by torch on the
    device, no sync (a graph replay holds none), once per bias tensor and version: a bias written in place is read
    again. At 0.0 the kernel takes each row's largest key instead, as without FIXED_REF. With shift (BIAS_IN_REF: the
    kernel's SHIFT) two zeros and each expert's offset follow, E float32: 8 + 2**-17 + (reference - b) 2**(shift -
    20), from which the kernel takes a key's distance below the reference by one FFMA of its sigmoid."""
    seen = _REFERENCES.get(bias)
    if seen is not None and seen[:2] == (bias._version, shift):
        return seen[2]
    b = bias.detach().float()
    top = b.amax().reshape(1) + 1.0
    ref = top + (top.abs() + 1.0) * 2.0**-20
    parts = [ref, (ref - b.amin() <= UNSATURATED_REACH).float()]
    if shift is not None:   # from the 5th float (16-byte aligned); float64 rounded once: within half a unit and 2**-49
        offsets = 8.0 + 2.0**-17 + (ref.double() - b.double()) * 2.0 ** (shift - 20)
        parts += [ref.new_zeros(2), offsets.float()]
    ref = torch.cat(parts)
    _REFERENCES[bias] = (bias._version, shift, ref)
    return ref


@torch.library.custom_op("parity::fused_grouped_route", mutates_args=())
def _op(gating_output: torch.Tensor, topk: int, bias: torch.Tensor, scale: torch.Tensor, n_group: int,
        topk_group: int, renormalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    weights, ids = empty_outputs(gating_output, topk)
    if gating_output.shape[0]:
        plan(gating_output, topk, bias, scale, n_group, topk_group, renormalize).run(gating_output, bias, scale, weights, ids)
    return weights, ids


@_op.register_fake
def _(gating_output, topk, bias, scale, n_group, topk_group, renormalize):
    return empty_outputs(gating_output, topk)


def route(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """The grouped sigmoid router (a Router with score "sigmoid"; a correction bias, groups, or
    both): (weights fp32 [T, K], ids int32 [T, K]), ids exactly the oracle's."""
    from parity.routing.contract import validate_router
    from parity.routing.fused import constant_vector, router_scale

    validate_router(gating_output, topk, router, max_experts=MAX_EXPERTS)
    if router.score != "sigmoid":
        raise ValueError(f"score: the grouped kernel chooses by sigmoid scores (+ a correction bias); got "
                         f"score={router.score!r} with groups or a bias")
    require_kernel_device(gating_output)
    E = gating_output.shape[1]
    bias = router.correction_bias
    if bias is None:
        bias = constant_vector(E, 0.0, torch.float32, gating_output.device)
    return _op(gating_output, int(topk), bias, router_scale(router, E, gating_output.device),
               router.n_group, router.topk_group, router.renormalize)
