"""parity's fused Gemma4 routing kernel: topk, softmax over the K, per-expert scale, in one launch.

Algorithm (blocked iterative max). A program owns BLOCK_T rows and holds each row's E logits in
registers as int32 *order keys*: the fp32 bit pattern turned into an integer whose signed order is
the float order (negative floats have their magnitude bits flipped), with every NaN mapped to the
largest key (NaN ranks above +inf, as torch.topk does), -0.0 mapped to +0.0, and padding columns to
INT32_MIN, below -inf. K rounds then take the row maximum of the keys and, among the columns that
hold it, the smallest id (the tie rule: equal logits go to the lower expert id), and knock that
column out. The chosen key converts back to its float exactly, so no second gather of the logits is
needed. Integer max/min are exact, so the choice of experts is the oracle's bit for bit; only the
softmax (fp32 exp, sum, divide) and the scale multiply round.

Why not ``tl.sort``: the Triton interpreter runs its compare-and-swap element by element in Python
(seconds per tile); ``tl.max``/``tl.min`` run vectorised there, so the same source serves the GPU and
the CPU (shared/FINDINGS.md). Launch parameters come from ``launch_config``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from parity import device
from parity.routing.contract import validate

MAX_EXPERTS = 4096
"""The largest E this kernel takes: one row's keys must fit in one program's registers."""


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


def launch_config(T: int, E: int, K: int, dtype: torch.dtype) -> dict:
    """Rows per program and warps for one call: the one table of launch parameters.

    On the GPU, a program holds about 2048 keys (rows x padded E) over 4 warps. In the interpreter
    each program costs Python overhead, so programs are made large (2**17 elements) instead.
    """
    block_e = triton.next_power_of_2(E)
    budget = 2**17 if device.INTERPRETER else 2048
    block_t = max(1, min(budget // block_e, triton.next_power_of_2(max(T, 1))))
    num_warps = 4 if block_t * block_e >= 1024 else 1
    return {"BLOCK_T": block_t, "BLOCK_E": block_e, "num_warps": num_warps}


@torch.library.custom_op("parity::fused_route", mutates_args=())
def _fused_route(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    T, E = gating_output.shape
    weights = torch.empty((T, topk), dtype=torch.float32, device=gating_output.device)
    ids = torch.empty((T, topk), dtype=torch.int32, device=gating_output.device)
    if T == 0:
        return weights, ids
    cfg = launch_config(T, E, topk, gating_output.dtype)
    grid = (triton.cdiv(T, cfg["BLOCK_T"]),)
    _route_kernel[grid](
        gating_output, per_expert_scale, weights, ids,
        T, E, gating_output.stride(0), gating_output.stride(1), per_expert_scale.stride(0),
        K=topk, BLOCK_T=cfg["BLOCK_T"], BLOCK_E=cfg["BLOCK_E"],
        BLOCK_K=triton.next_power_of_2(topk), ACCURATE_EXP=not device.INTERPRETER, num_warps=cfg["num_warps"],
    )
    return weights, ids


@_fused_route.register_fake
def _(gating_output, topk, per_expert_scale):
    T = gating_output.shape[0]
    return (
        gating_output.new_empty((T, topk), dtype=torch.float32),
        gating_output.new_empty((T, topk), dtype=torch.int32),
    )


def fused(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor):
    """Fused routing: (weights fp32 [T, K], ids int32 [T, K]); ids exactly the oracle's."""
    validate(gating_output, topk, per_expert_scale, max_experts=MAX_EXPERTS)
    want = device.default().type
    if gating_output.device.type != want:
        raise ValueError(
            f"gating_output: expected a tensor on {want} (this process runs Triton kernels on {want}"
            f"{' through the interpreter' if device.INTERPRETER else ''}), got {gating_output.device}"
        )
    return _fused_route(gating_output, int(topk), per_expert_scale)
