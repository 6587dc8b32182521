"""A per-token full-sort Triton routing kernel: the speed baseline that ``fused`` is measured against.

Algorithm (one program per token):

1. Each of the row's E logits (padded to BLOCK_E, the next power of two, at least MIN_BLOCK_E)
   becomes one int64. Its high 32 bits are the logit's *order key* (kernel_parts.order_key, as in
   ``fused``): signed integer order is float order, every NaN maps to the largest key (NaN ranks
   above +inf, as in torch.topk) and -0.0 ties +0.0. Its low 32 bits are ``BLOCK_E - 1 -
   expert_id``, so among equal logits the lower id is the larger value and comes first in a
   descending sort. Padding columns take the smallest int32 key, below every real logit (-inf's key
   is larger). The packed values are unique in their row, so the order is total and needs no stable
   sort.
2. ``tl.sort(descending=True)`` orders the whole row; the first K entries are the chosen experts,
   slot order included. Ids come from the low bits; the K chosen logits are read again by id (as
   ``fused`` does), so the kernel relies only on the key's order, never on its encoding:
   kernel_parts.order_key is free to change how it maps a float to an int32.
3. Weights: softmax over the K chosen logits in fp32 with the largest subtracted, that subtraction's
   rounding recovered by TwoSum, an accurate exp (as ``fused``), times per_expert_scale[id] read as
   fp32.

Why it is the baseline: it is the published algorithm class for fused top-k routing — a full sort
of each token's logits, packed with their ids — simple, obviously correct, and fast enough that the
fused kernel has to beat it rather than the torch code (docs/FINDINGS.md: 333 us against 125 us at
T=250000, E=128 on an H200).

Cost: a bitonic sort of BLOCK_E elements per token, O(E log^2 E) compare-exchanges on 64-bit values
((E/4) * log2(E) * (log2(E) + 1) exactly: 1792 for E = 128), against K rounds of one E-wide 32-bit
reduction for ``fused``. It needs the whole row in one program, hence MAX_EXPERTS. In the Triton
interpreter ``tl.sort`` runs in Python (tenths of a second per 128-wide row, docs/FINDINGS.md):
on the CPU use it on a handful of rows only.
"""
from __future__ import annotations

import triton
import triton.language as tl

from parity import device
from parity.routing.kernel_parts import (TritonRouting, dtype_flags, exp_shifted, load_fp32, order_key,
                                          scaled_weights)

MAX_EXPERTS = 1024
"""The largest E this kernel takes: one program sorts a whole row of int64 keys in registers."""
MIN_BLOCK_E = 16


@triton.jit
def _sort_route_kernel(
    gating_ptr, scale_ptr, weights_ptr, ids_ptr,
    E, stride_gt, stride_ge, stride_s,
    K: tl.constexpr, BLOCK_E: tl.constexpr,
    ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # T * stride can pass 2**31
    cols = tl.arange(0, BLOCK_E)
    col_ok = cols < E
    x = load_fp32(gating_ptr + row * stride_gt + cols * stride_ge, col_ok, IS_BF16)
    key, _ = order_key(x)  # as in fused: NaN on top, -0.0 == +0.0
    key = tl.where(col_ok, key, -2147483647 - 1)
    # key in the high half (sign-extended, so signed int64 order is key order), the reversed id in
    # the low half (non-negative, so it only breaks ties). All widening happens on int64 tensors:
    # the interpreter rejects 64-bit literals beside int32 tensors.
    packed = (key.to(tl.int64) << 32) | (BLOCK_E - 1 - cols).to(tl.int64)
    packed = tl.sort(packed, descending=True)

    # Position j of the sorted row is slot j: the first K positions are the output.
    top = cols < K
    top_id = BLOCK_E - 1 - (packed & (BLOCK_E - 1)).to(tl.int32)
    top_id = tl.where(top, top_id, 0)
    # The chosen logits, read again by id (K loads from the row just read): decoding them from the
    # key's high half would tie this kernel to order_key's encoding, which is not its contract.
    v = load_fp32(gating_ptr + row * stride_gt + top_id * stride_ge, top, IS_BF16)

    # Position 0 holds the largest logit; a sum of one value and zeros extracts it with NaN and inf
    # intact, and a NaN or +inf there makes every weight of this row NaN (all -inf: -inf - -inf too).
    first = tl.sum(tl.where(cols == 0, v, 0.0), axis=0)
    e = tl.where(top, exp_shifted(v, first, ACCURATE_EXP), 0.0)
    probs = e / tl.sum(e, axis=0)
    weights = scaled_weights(probs, scale_ptr + top_id * stride_s, top, SCALE_IS_BF16)
    out = row * K + cols
    tl.store(weights_ptr + out, weights, mask=top)
    tl.store(ids_ptr + out, top_id, mask=top)


def num_warps(block_e: int) -> int:
    """Warps per row: one warp holds a 128-wide row in four registers per thread; wider rows
    spread over four warps so the sort's register footprint per thread stays small."""
    return 1 if block_e <= 128 else 4


def _launch(gating_output, topk, per_expert_scale, weights, ids) -> None:
    T, E = gating_output.shape
    # at least MIN_BLOCK_E columns: tl.sort's bitonic network on 1- or 2-wide rows is an edge case
    # we do not want to depend on (padding columns sort below every logit)
    block_e = max(MIN_BLOCK_E, triton.next_power_of_2(E))
    _sort_route_kernel[(T,)](
        gating_output, per_expert_scale, weights, ids,
        E, gating_output.stride(0), gating_output.stride(1), per_expert_scale.stride(0),
        K=topk, BLOCK_E=block_e, num_warps=num_warps(block_e),
        **dtype_flags(gating_output, per_expert_scale, interpreter=device.INTERPRETER),
    )


sort_baseline = TritonRouting(
    "sort_baseline_route", _launch, MAX_EXPERTS,
    """Per-token full-sort routing: (weights fp32 [T, K], ids int32 [T, K]); ids exactly the oracle's.""")
