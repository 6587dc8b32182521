"""parity's fused kernel for routers that choose by biased sigmoid scores, in groups: DeepSeek-V3 /
R1 (8 groups, the best 4), Kimi K2 and GLM-4.5 (one group). One launch: sigmoid, + correction bias,
group scores (the sum of a group's two largest keys), the best topk_group groups, the top K in them,
weights from the unbiased sigmoids renormalised over the K, times the scaling factor (and a
per-expert scale, if the router has one).

Exact ids, cheaply: the oracle's keys are float64 (parity.routing.oracle). ``grouped_kernel``
computes them in fp32 (a fast sigmoid) and turns each into a fixed-point distance below the row's
largest key, ``q = (max - key) * 2**SHIFT`` (an int, saturated at QMAX), packed with the expert id
in the low COL_BITS bits: one int32 that orders by key, then by the lower id, unique in its row. A
round of top-K is then one unsigned-min reduction (as in parity.routing.fused), for the groups' top
2, the groups and the experts alike. Every decision is checked against a bound on the fp32 keys'
error (``thr``): a row where two consecutive picks (the K-th and the next included), or the
topk_group-th group and the next, are closer than the bound, or where a key is NaN or lies so far
below the row's largest that its distance saturates, is flagged, and ``exact_kernel`` routes the
flagged rows again from float64 keys with the oracle's rules (ties to the lower id, NaN on top).
Two launches, no host synchronisation: CUDA graphs capture both. The float64 path computes the
sigmoid with libdevice's exp (numpy's in the interpreter), not torch's; two keys whose float64
values differ by an ulp of float64 could be ordered differently from the oracle, which no input in
the tests comes near.

Why a kernel beside fused.route_kernel rather than more constexpr switches in it: the selection
keys are no longer the logits' bits (neither the 16-bit key packing nor the fp32 lossiness check
carry over), the group stage adds a dimension to the tile, and the exactness test is a bound, not a
bit test. The weight epilogue (kernel_parts.chosen_scores, store_routing) is shared. Speed: far from
the memory floor so far (reports/bench/NOTES.md, "The grouped sigmoid kernel").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from parity import device
from parity.routing.kernel_parts import (
    chosen_scores,
    dtype_flags,
    empty_outputs,
    load_fp32,
    require_kernel_device,
    sigmoid,
    store_routing,
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


@triton.jit
def exact_grouped(x, bias64, valid, col, slots, K: tl.constexpr, TOPK_GROUP: tl.constexpr,
                  N_GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_E: tl.constexpr, ACCURATE_EXP: tl.constexpr):
    """The oracle's selection from float64 keys sigmoid(x) + bias for a block [BLOCK_T, BLOCK_G,
    BLOCK_P]: group scores (top-2 sums in float64), the best TOPK_GROUP groups, the top K in them;
    ties to the lower (group) id, NaN on top. Returns the ids [BLOCK_T, BLOCK_K]."""
    MIN64: tl.constexpr = -9223372036854775807 - 1
    key = tl.where(valid, _f64_key(sigmoid(x.to(tl.float64), ACCURATE_EXP) + bias64), MIN64)
    if N_GROUP > 1:
        k1 = tl.max(key, axis=2)                                              # each group's top 2:
        first = tl.min(tl.where(key == k1[:, :, None], col, BLOCK_E), axis=2)  # the first taken out by id
        k2 = tl.max(tl.where(col == first[:, :, None], MIN64, key), axis=2)
        gid = tl.arange(0, BLOCK_G)[None, :]
        gkey = tl.where(gid < N_GROUP, _f64_key(_f64_of_key(k1) + _f64_of_key(k2)), MIN64)
        chosen = gkey < MIN64                                                 # all False
        for r in tl.static_range(TOPK_GROUP):
            best = tl.max(gkey, axis=1)
            pick = tl.min(tl.where(gkey == best[:, None], gid, BLOCK_G), axis=1)
            hit = gid == pick[:, None]
            chosen = chosen | hit
            gkey = tl.where(hit, MIN64, gkey)
        key = tl.where(chosen[:, :, None], key, MIN64)
    top_id = tl.zeros([x.shape[0], slots.shape[0]], dtype=tl.int32)
    for k in tl.range(K, loop_unroll_factor=1):  # rare path: keep it small
        best = tl.max(tl.max(key, axis=2), axis=1)
        pick = tl.min(tl.min(tl.where(key == best[:, None, None], col, BLOCK_E), axis=2), axis=1)
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
def error_bound(top, SHIFT: tl.constexpr):
    """The bound on two keys' fp32 error in units of 2**-SHIFT, per row (top: the row's largest
    key): the sigmoid 2**-21, the sum's and the bias's rounding 2**-22 |key|, the distance's
    rounding 2**-22 (it is below 4), the floor 1; |key| <= |top| + 5 for every unsaturated key."""
    mag = tl.abs(top) + 5.0
    return (2.0 * ((1 << SHIFT) * (2.0**-21 + 2.0**-22 + 2.0**-22 * mag) + 1.0)).to(tl.int32) + 2


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
    top_id = tl.where(out_ok, top_id, 0)
    v = load_fp32(row_ptr[:, None] + top_id * stride_ge, out_ok, IS_BF16)
    probs = chosen_scores(v, slots, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, 1, RENORM)  # 1: SIGMOID
    store_routing(probs, top_id, rows.to(tl.int64), out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr, K,
                  SCALE_IS_BF16)


@triton.jit(do_not_specialize=["T"])
def grouped_kernel(
    gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, flags_ptr,
    T, stride_gt, stride_ge, stride_b, stride_s,
    K: tl.constexpr, TOPK_GROUP: tl.constexpr, N_GROUP: tl.constexpr, PER: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr, GROUP_BITS: tl.constexpr, SHIFT: tl.constexpr,
    ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr, RENORM: tl.constexpr,
    EVEN: tl.constexpr, INLINE_EXACT: tl.constexpr = False,
):
    """The fast path: fp32 keys as fixed-point distances packed with the ids, every decision
    checked against the keys' error bound; a row where one is too close is flagged (flags_ptr) for
    exact_kernel, which routes it again from float64 keys, or, under INLINE_EXACT, routed again
    here (one launch: small batches, where a second launch costs more than the work)."""
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    QMAX: tl.constexpr = (1 << (31 - COL_BITS)) - 2        # packed values stay below INT32_MAX (padding)
    INT32_MAX: tl.constexpr = 2147483647
    RANGE: tl.constexpr = QMAX / (1 << SHIFT)                 # just below 2**RANGE_BITS
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    slots = tl.arange(0, BLOCK_K)
    row_ok = rows < T
    x, row_ptr, col, valid = _tile(gating_ptr, rows, T, stride_gt, stride_ge, N_GROUP, PER, BLOCK_G, BLOCK_P,
                                   IS_BF16, EVEN)
    b = tl.load(bias_ptr + col * stride_b, mask=valid, other=0.0).to(tl.float32)
    key = fast_sigmoid(x) + b
    if EVEN:
        top = tl.max(tl.max(key, axis=2), axis=1)
    else:
        top = tl.max(tl.max(tl.where(valid, key, -float("inf")), axis=2), axis=1)
    # the fixed-point distance below the row's largest key; NaN saturates (and so is flagged below)
    dist = top[:, None, None] - key
    q = tl.where(dist < RANGE, dist * (1 << SHIFT), QMAX).to(tl.int32)
    packed = (q << COL_BITS) | col
    if not EVEN:
        packed = tl.where(valid, packed, INT32_MAX)
    thr = error_bound(top, SHIFT)
    # a saturated distance (a key 2**RANGE_BITS below the top, or NaN) anywhere: float64 decides
    if EVEN:
        flagged = tl.max(tl.max(packed, axis=2), axis=1) >= (QMAX << COL_BITS)
    else:
        flagged = tl.max(tl.max(tl.where(valid, packed, 0), axis=2), axis=1) >= (QMAX << COL_BITS)

    if N_GROUP > 1:
        GMAX: tl.constexpr = 2147483647
        a1 = tl.min(packed, axis=2)
        a2 = _next_up(a1, packed, 2)
        gq = ((a1 >> COL_BITS) + (a2 >> COL_BITS)) >> 1                       # halved: fits beside the group id
        gids = tl.arange(0, BLOCK_G)[None, :]
        gpacked = tl.where(gids < N_GROUP, (gq << GROUP_BITS) | gids, GMAX)
        cut = tl.min(gpacked, axis=1)
        for r in tl.static_range(1, TOPK_GROUP):
            cut = _next_up(cut, gpacked, 1)
        if TOPK_GROUP < N_GROUP:
            after = _next_up(cut, gpacked, 1)
            flagged = flagged | ((after >> GROUP_BITS) - (cut >> GROUP_BITS) <= thr + 2)
        packed = tl.where((gpacked <= cut[:, None])[:, :, None], packed, INT32_MAX)

    best = tl.min(tl.min(packed, axis=2), axis=1)
    top_packed = tl.where(slots[None, :] == 0, best[:, None], 0)
    for k in tl.static_range(1, K + 1):
        prev = best
        gap = (packed - (prev + 1)[:, None, None]).to(tl.uint32, bitcast=True)
        best = prev + 1 + tl.min(tl.min(gap, axis=2), axis=1).to(tl.int32, bitcast=True)
        # two picks (or the K-th and the next) too close for the fp32 keys to order
        flagged = flagged | ((best >> COL_BITS) - (prev >> COL_BITS) <= thr)
        if k < K:
            top_packed = tl.where(slots[None, :] == k, best[:, None], top_packed)
    out_ok = row_ok[:, None] & (slots < K)[None, :]
    tl.store(flags_ptr + rows, flagged.to(tl.int8), mask=row_ok)
    top_id = top_packed & COL_MASK
    if INLINE_EXACT:
        if tl.max((flagged & row_ok).to(tl.int32), axis=0) > 0:
            b64 = tl.load(bias_ptr + col * stride_b, mask=valid, other=0.0).to(tl.float64)
            exact_id = exact_grouped(x, b64, valid, col, slots, K, TOPK_GROUP, N_GROUP, BLOCK_G, BLOCK_G * BLOCK_P,
                                     ACCURATE_EXP)
            top_id = tl.where(flagged[:, None], exact_id, top_id)
    _weights_and_store(top_id, row_ptr, rows, out_ok, slots, stride_ge, scale_ptr, stride_s, weights_ptr,
                       ids_ptr, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM)


@triton.jit(do_not_specialize=["T"])
def exact_kernel(
    gating_ptr, bias_ptr, scale_ptr, weights_ptr, ids_ptr, flags_ptr,
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
        slots = tl.arange(0, BLOCK_K)
        x, row_ptr, col, valid = _tile(gating_ptr, rows, T, stride_gt, stride_ge, N_GROUP, PER, BLOCK_G, BLOCK_P,
                                       IS_BF16, EVEN)
        b64 = tl.load(bias_ptr + col * stride_b, mask=valid, other=0.0).to(tl.float64)
        top_id = exact_grouped(x, b64, valid, col, slots, K, TOPK_GROUP, N_GROUP, BLOCK_G, BLOCK_G * BLOCK_P, ACCURATE_EXP)
        out_ok = (row_ok & flagged)[:, None] & (slots < K)[None, :]
        _weights_and_store(top_id, row_ptr, rows, out_ok, slots, stride_ge, scale_ptr, stride_s, weights_ptr,
                           ids_ptr, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, IS_BF16, SCALE_IS_BF16, RENORM)


KEYS_PER_WARP = {torch.bfloat16: 256, torch.float16: 256, torch.float32: 256}
"""Keys per warp on the GPU: one 256-expert row per program and warp measured fastest at T=250000
(benchmarks/probe_grouped.py, reports/bench/NOTES.md)."""
INTERPRETER_KEYS_PER_PROGRAM = 2**17
FILL_PROGRAMS = 264
MAX_WARPS = 8
EXACT_ROWS = 4
"""Rows per program of exact_kernel on the GPU (a program with no flagged row returns at once); the
interpreter, which pays per program in Python, takes the fast kernel's large blocks instead."""
EXACT_WARPS = 4
INLINE_MAX_T = 4096
"""Up to this many rows the fast kernel routes its flagged rows again itself (INLINE_EXACT: one
launch); above, exact_kernel does, in a second launch (reports/bench/NOTES.md, "one launch or two")."""


@dataclass(frozen=True)
class GroupedLaunch:
    """One call's launch: rows per program and warps of the fast kernel, its compile-time
    arguments, and how flagged rows are routed again: by exact_kernel after it, by the fast kernel
    itself (inline), or not at all (fallback off: tests and probes)."""

    T: int
    block_t: int
    num_warps: int
    constexprs: dict
    fallback: bool = True
    exact_rows: int = EXACT_ROWS
    inline: bool = False

    SHARED = ("K", "TOPK_GROUP", "N_GROUP", "PER", "BLOCK_G", "BLOCK_P", "BLOCK_K", "LOG2_BLOCK_K", "ACCURATE_EXP",
              "IS_BF16", "SCALE_IS_BF16", "RENORM", "EVEN")

    def run(self, gating_output, bias, scale, weights, ids, fast_kernel=None) -> torch.Tensor:
        """Launch the fast kernel (grouped_kernel, or a variant with its arguments), then, with
        fallback, exact_kernel for the rows it flagged; returns the flags (int8 [T])."""
        flags = torch.empty(self.T, dtype=torch.int8, device=gating_output.device)
        args = (gating_output, bias, scale, weights, ids, flags,
                self.T, gating_output.stride(0), gating_output.stride(1), bias.stride(0), scale.stride(0))
        inline = {"INLINE_EXACT": True} if self.fallback and self.inline else {}
        (fast_kernel or grouped_kernel)[(triton.cdiv(self.T, self.block_t),)](
            *args, BLOCK_T=self.block_t, num_warps=self.num_warps, **self.constexprs, **inline)
        if self.fallback and not self.inline:
            exact_kernel[(triton.cdiv(self.T, self.exact_rows),)](*args, BLOCK_T=self.exact_rows, num_warps=EXACT_WARPS,
                                                             **{k: self.constexprs[k] for k in self.SHARED})
        return flags


def plan(gating_output: torch.Tensor, topk: int, bias: torch.Tensor, scale: torch.Tensor, n_group: int,
         topk_group: int, renormalize: bool, *, interpreter: bool = device.INTERPRETER,
         block_t: int | None = None, num_warps: int | None = None, fallback: bool = True,
         inline: bool | None = None) -> GroupedLaunch:
    """The launch for validated arguments. Overrides for probes and tests: block_t, num_warps,
    fallback=False (no float64 routing of the flagged rows: the fp32 keys alone) and inline (the
    flagged rows routed again in the fast kernel; default: up to INLINE_MAX_T rows)."""
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
    return GroupedLaunch(T, block_t, num_warps, {
        "K": topk, "TOPK_GROUP": topk_group, "N_GROUP": n_group, "PER": per,
        "BLOCK_G": block_g, "BLOCK_P": block_p, "BLOCK_K": block_k, "LOG2_BLOCK_K": block_k.bit_length() - 1,
        "COL_BITS": col_bits, "GROUP_BITS": max(1, (block_g - 1).bit_length()), "SHIFT": 31 - RANGE_BITS - col_bits,
        **dtype_flags(gating_output, scale, interpreter=interpreter),
        "RENORM": renormalize, "EVEN": block_g == n_group and block_p == per,
    }, fallback, block_t if interpreter else EXACT_ROWS, T <= INLINE_MAX_T if inline is None else inline)


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
