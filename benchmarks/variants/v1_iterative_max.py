"""Variant v1 (kept for the benchmark notes): the first fused kernel, iterative max + min-id per round."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice




@triton.jit
def _route_kernel(
    gating_ptr, scale_ptr, weights_ptr, ids_ptr,
    T, E, stride_gt, stride_ge, stride_s,
    K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
    ACCURATE_EXP: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    slots = tl.arange(0, BLOCK_K)
    row_ok = rows < T
    col_ok = cols < E
    rows64 = rows.to(tl.int64)  # T * stride can pass 2**31

    x = tl.load(
        gating_ptr + rows64[:, None] * stride_gt + cols[None, :] * stride_ge,
        mask=row_ok[:, None] & col_ok[None, :], other=0.0,
    ).to(tl.float32)

    # float -> order key. Arithmetic shift smears the sign bit: 0 for x >= 0, all ones for x < 0.
    bits = x.to(tl.int32, bitcast=True)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    key = tl.where(x == 0.0, 0, key)            # -0.0 ties with +0.0
    key = tl.where(x != x, 0x7FFFFFFF, key)     # every NaN above +inf (0x7F800000)
    int32_min = tl.full([BLOCK_T, BLOCK_E], -2147483647 - 1, tl.int32)
    key = tl.where(col_ok[None, :], key, int32_min)

    top_key = tl.zeros([BLOCK_T, BLOCK_K], dtype=tl.int32)
    top_id = tl.zeros([BLOCK_T, BLOCK_K], dtype=tl.int32)
    for k in range(K):
        best = tl.max(key, axis=1)
        # lowest column holding the maximum; E <= BLOCK_E, so BLOCK_E means "none" and never wins
        pick = tl.min(tl.where(key == best[:, None], cols[None, :], BLOCK_E), axis=1)
        key = tl.where(cols[None, :] == pick[:, None], int32_min, key)
        top_key = tl.where(slots[None, :] == k, best[:, None], top_key)
        top_id = tl.where(slots[None, :] == k, pick[:, None], top_id)

    # order key -> float, exactly (the map is its own inverse on the bits)
    vbits = top_key ^ ((top_key >> 31) & 0x7FFFFFFF)
    v = vbits.to(tl.float32, bitcast=True)
    slot_ok = slots < K
    first = tl.max(tl.where(slot_ok[None, :], v, float("-inf")), axis=1)
    # A NaN or +inf among the chosen makes `first` NaN/+inf and every weight NaN: that row only.
    # d = v - first rounds by up to |d| * 2**-24, which exp turns into a relative error of the
    # same size (peaked rows: |d| ~ 30, i.e. tens of ulps). TwoSum recovers the rounding error
    # exactly with plain adds; exp(d + err) = exp(d) * (1 + err) to first order. On the GPU,
    # libdevice's exp is accurate to ~1 ulp over the whole range, where tl.exp's exp2(d * log2 e)
    # shortcut would round the product first and bring the same |d| * 2**-24 error back. The
    # interpreter has no libdevice; its tl.exp is numpy's float32 exp, accurate on its own.
    d = v - first[:, None]
    d_back = d + first[:, None]
    d_err = (v - d_back) + (-first[:, None] - (d - d_back))
    d_err = tl.where(d_err == d_err, d_err, 0.0)  # v = -inf: d = -inf, exp 0, no correction
    if ACCURATE_EXP:
        e = libdevice.exp(d)
    else:
        e = tl.exp(d)
    e = tl.where(slot_ok[None, :], e + e * d_err, 0.0)
    probs = e / tl.sum(e, axis=1)[:, None]
    out_ok = row_ok[:, None] & slot_ok[None, :]
    scale = tl.load(scale_ptr + top_id * stride_s, mask=out_ok, other=0.0).to(tl.float32)
    out = rows64[:, None] * K + slots[None, :]
    tl.store(weights_ptr + out, probs * scale, mask=out_ok)
    tl.store(ids_ptr + out, top_id, mask=out_ok)
