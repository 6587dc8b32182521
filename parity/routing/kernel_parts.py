"""Pieces shared by parity's Triton routing kernels (fused, sort_baseline) and their launchers."""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from parity import device


@triton.jit
def load_fp32(ptrs, mask, IS_BF16: tl.constexpr):
    """Load logits as fp32. bf16 goes through its bits (bf16 -> fp32 is a 16-bit shift): the
    Triton interpreter's own bf16 conversion rounds subnormals wrongly (triton 3.9: bf16 0x007F
    reads as fp32 0x007E0000), which would misorder subnormal logits on the CPU."""
    if IS_BF16:
        raw = tl.load(ptrs.to(tl.pointer_type(tl.int16)), mask=mask, other=0)
        return (raw.to(tl.int32) << 16).to(tl.float32, bitcast=True)
    else:
        return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def scaled_weights(probs, scale_ptrs, mask, SCALE_IS_BF16: tl.constexpr):
    """probs (fp32) times per_expert_scale at scale_ptrs, as fp32 weights. A float64 scale is
    multiplied in float64 and the product rounded once: read as float32, a scale beyond float32's
    range would turn inf, its weights inf and a chosen -inf logit's 0 weight NaN, where the oracle
    gives finite values (tests/test_properties.py::test_float64_scale_beyond_float32_range)."""
    if scale_ptrs.dtype.element_ty == tl.float64:
        return (probs.to(tl.float64) * tl.load(scale_ptrs, mask=mask, other=0.0)).to(tl.float32)
    else:
        return probs * load_fp32(scale_ptrs, mask, SCALE_IS_BF16)


@triton.jit
def sign_magnitude_key(bits, MAG_MASK: tl.constexpr, NAN_MAG: tl.constexpr):
    """IEEE float bits in an int32 -> an int32 key whose signed order is the float order:
    +magnitude for positive numbers, -magnitude for negative ones (so -0.0 and +0.0 tie), and
    MAG_MASK, above +inf, for every NaN (NaN ranks on top, as in torch.topk). fp32 bits as they
    are (MAG_MASK 0x7FFFFFFF); a 16-bit format in the top half, as fused keys it (MAG_MASK
    0x7FFF0000, NAN_MAG shifted up by 16). Three integer ops and a select."""
    mag = bits & MAG_MASK
    sign = bits >> 31
    return tl.where(mag > NAN_MAG, MAG_MASK, (mag ^ sign) - sign)


@triton.jit
def order_key(x):
    """fp32 logits -> (int32 order key, fp32 bits); see sign_magnitude_key."""
    bits = x.to(tl.int32, bitcast=True)
    return sign_magnitude_key(bits, 0x7FFFFFFF, 0x7F800000), bits


@triton.jit
def exp_shifted(v, first, ACCURATE_EXP: tl.constexpr):
    """exp(v - first), accurate to about an ulp whatever the gap.

    d = v - first rounds by up to |d| * 2**-24, which exp turns into a relative error of the same
    size (peaked rows: |d| ~ 30, i.e. tens of ulps). TwoSum recovers that rounding exactly with
    plain adds, and exp(d + err) = exp(d) * (1 + err) to first order. On the GPU, libdevice's exp is
    accurate to ~1 ulp over the whole range, where tl.exp's exp2(d * log2 e) shortcut would round
    the product first and bring the same error back; the interpreter has no libdevice, and its
    tl.exp is numpy's float32 exp, accurate on its own. NaN or +inf in ``first`` gives NaN.
    """
    d = v - first
    d_back = d + first
    d_err = (v - d_back) + (-first - (d - d_back))
    d_err = tl.where(d_err == d_err, d_err, 0.0)  # v = -inf: d = -inf, exp 0, no correction
    if ACCURATE_EXP:
        e = libdevice.exp(d)
    else:
        e = tl.exp(d)
    return e + e * d_err


def dtype_flags(gating_output: torch.Tensor, per_expert_scale: torch.Tensor) -> dict:
    """Compile-time flags every routing kernel takes."""
    return {"ACCURATE_EXP": not device.INTERPRETER, "IS_BF16": gating_output.dtype == torch.bfloat16,
            "SCALE_IS_BF16": per_expert_scale.dtype == torch.bfloat16}


def require_kernel_device(gating_output: torch.Tensor) -> None:
    """Kernels run where parity.device decided; refuse tensors elsewhere before any launch."""
    want = device.default().type
    if gating_output.device.type != want:
        raise ValueError(
            f"gating_output: expected a tensor on {want} (this process runs Triton kernels on {want}"
            f"{' through the interpreter' if device.INTERPRETER else ''}), got {gating_output.device}"
        )


def empty_outputs(gating_output: torch.Tensor, topk: int, per_expert_scale=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights float32 [T, K], ids int32 [T, K]) on the input's device, unwritten. Also the fake
    (meta) implementation of every routing custom op: it only needs shapes."""
    T = gating_output.shape[0]
    return (gating_output.new_empty((T, topk), dtype=torch.float32),
            gating_output.new_empty((T, topk), dtype=torch.int32))
