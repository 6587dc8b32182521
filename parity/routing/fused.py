"""parity's fused Gemma4 routing kernel: topk, softmax over the K, per-expert scale, in one launch.

Algorithm: packed keys, one reduction per round, with an exact fallback.

1. Each logit becomes a signed int32 *order key*: its fp32 bit pattern with the magnitude bits of
   negative numbers flipped, so integer order is float order. Every NaN maps to the largest key (NaN
   ranks above +inf, as in torch.topk); -0.0 is first turned into +0.0 so the two tie.
2. The key's low COL_BITS bits are replaced by ``BLOCK_E - 1 - expert_id``: one int32 that orders by
   logit, then by lower id, and is unique in its row. A round of top-K is then a single reduction:
   the largest packed value below the previous pick, found as
   ``prev - 1 - min_unsigned((prev - 1) - packed)`` (values at or above ``prev`` wrap to huge
   unsigned numbers and lose). That is two integer ops per element per round, where an iterative
   max with a separate id tie-break costs about six (reports/bench/NOTES.md).
3. Dropping COL_BITS bits is lossless for bf16 and fp16 logits (their fp32 form has >= 13 zero low
   bits) and for fp32 logits whose low bits are zero. Otherwise two logits may share a truncated key
   and be ordered by id instead of value. That is detected exactly (a row with nonzero low bits whose
   consecutive picks, K+1 of them, share a truncated key) and such a block re-runs the exact
   iterative max on full keys: ids stay the oracle's bit for bit.
4. Weights: softmax over the K chosen logits in fp32 (max-subtraction made exact by TwoSum, an
   accurate exp), times per_expert_scale[id].

Why not ``tl.sort``: the Triton interpreter runs it element by element in Python; ``tl.max``/
``tl.min`` run vectorised, so this source serves the GPU and the CPU (shared/FINDINGS.md). Launch
parameters come from ``launch_config``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from parity import device
from parity.routing.contract import validate
from parity.routing.kernel_parts import (dtype_flags, empty_outputs, exp_shifted, load_fp32, order_key,
                                          require_kernel_device)

MAX_EXPERTS = 4096
"""The largest E this kernel takes: one row's keys must fit in one program's registers."""


@triton.jit
def _exact_topk(key, cols, slots, K: tl.constexpr, BLOCK_E: tl.constexpr, top_id):
    """Iterative max on full keys, ties to the lower id: the slow, always-exact path."""
    for k in range(K):
        best = tl.max(key, axis=1)
        pick = tl.min(tl.where(key == best[:, None], cols[None, :], BLOCK_E), axis=1)
        key = tl.where(cols[None, :] == pick[:, None], -2147483647 - 1, key)
        top_id = tl.where(slots[None, :] == k, pick[:, None], top_id)
    return top_id


@triton.jit
def _pairwise_sum(e, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, LOG2_BLOCK_K: tl.constexpr):
    """Row sums of e [BLOCK_T, BLOCK_K] by a fixed pairwise tree of neighbours. tl.sum's tree
    follows the layout (rows per program, warps), so its last bit would change with the launch
    configuration; a sum of two numbers is the same either way round, so summing neighbour pairs
    level by level gives the same bits under any layout, with tl.sum's log2(K) error growth."""
    for level in tl.static_range(LOG2_BLOCK_K):
        e = tl.sum(tl.reshape(e, [BLOCK_T, BLOCK_K >> (level + 1), 2]), axis=2)
    return tl.reshape(e, [BLOCK_T])


@triton.jit
def _route_kernel(
    gating_ptr, scale_ptr, weights_ptr, ids_ptr,
    T, E, stride_gt, stride_ge, stride_s,
    K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr, CHECK_LOSS: tl.constexpr,
    ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    slots = tl.arange(0, BLOCK_K)
    row_ok = rows < T
    col_ok = cols < E
    rows64 = rows.to(tl.int64)  # T * stride can pass 2**31
    row_ptr = gating_ptr + rows64 * stride_gt
    tile_mask = row_ok[:, None] & col_ok[None, :]

    x = load_fp32(row_ptr[:, None] + cols[None, :] * stride_ge, tile_mask, IS_BF16)
    key, bits = order_key(x)
    key = tl.where(col_ok[None, :], key, -2147483647 - 1)  # padding below -inf
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    packed = (key & ~COL_MASK) | (COL_MASK - cols)[None, :]

    top_id = tl.zeros([BLOCK_T, BLOCK_K], dtype=tl.int32)
    best = tl.max(packed, axis=1)
    ambiguous = tl.zeros([BLOCK_T], dtype=tl.int1)
    ROUNDS: tl.constexpr = K + 1 if CHECK_LOSS else K  # one more pick shows a tie across the K-th place
    for k in range(ROUNDS):
        if k > 0:
            prev = best
            gap = ((prev - 1)[:, None] - packed).to(tl.uint32, bitcast=True)
            best = prev - 1 - tl.min(gap, axis=1).to(tl.int32, bitcast=True)
            ambiguous = ambiguous | ((best >> COL_BITS) == (prev >> COL_BITS))
        top_id = tl.where(slots[None, :] == k, (COL_MASK - (best & COL_MASK))[:, None], top_id)

    if CHECK_LOSS:
        lossy = tl.max(bits & COL_MASK, axis=1) != 0
        if tl.max((ambiguous & lossy & row_ok).to(tl.int32), axis=0) > 0:
            top_id = _exact_topk(key, cols, slots, K, BLOCK_E, top_id)

    slot_ok = slots < K
    out_ok = row_ok[:, None] & slot_ok[None, :]
    top_id = tl.where(out_ok, top_id, 0)
    v = load_fp32(row_ptr[:, None] + top_id * stride_ge, out_ok, IS_BF16)
    # The first slot holds the largest logit; a sum of one value and zeros extracts it with NaN and
    # inf intact, and a NaN or +inf there makes every weight of that row (only) NaN.
    first = tl.sum(tl.where(slots[None, :] == 0, v, 0.0), axis=1)
    e = tl.where(slot_ok[None, :], exp_shifted(v, first[:, None], ACCURATE_EXP), 0.0)
    probs = e / _pairwise_sum(e, BLOCK_T, BLOCK_K, LOG2_BLOCK_K)[:, None]
    scale = load_fp32(scale_ptr + top_id * stride_s, out_ok, SCALE_IS_BF16)
    out = rows64[:, None] * K + slots[None, :]
    tl.store(weights_ptr + out, probs * scale, mask=out_ok)
    tl.store(ids_ptr + out, top_id, mask=out_ok)


# Launch table, measured on one H200 (reports/bench/NOTES.md). Large T: keys per warp, by logit
# dtype; few warps per row keep the per-round reductions inside threads, and fp32 rows carry more
# live registers (full keys for the exact fallback). Small T is latency-bound: rows are spread so
# that at least FILL_PROGRAMS programs run (about two per SM), down to one row per program.
KEYS_PER_WARP = {torch.bfloat16: 1024, torch.float16: 1024, torch.float32: 256}
FILL_PROGRAMS = 264
INTERPRETER_KEYS_PER_PROGRAM = 2**17  # the interpreter pays per program in Python: make them large


def launch_config(T: int, E: int, K: int, dtype: torch.dtype) -> dict:
    """Rows per program and warps for one call: the one table of launch parameters."""
    block_e = triton.next_power_of_2(E)
    rows_needed = triton.next_power_of_2(max(T, 1))
    if device.INTERPRETER:
        return {"BLOCK_T": max(1, min(INTERPRETER_KEYS_PER_PROGRAM // block_e, rows_needed)),
                "BLOCK_E": block_e, "num_warps": 1}
    per_warp = KEYS_PER_WARP[dtype]
    fill = 1 << max(0, (max(T, 1) // FILL_PROGRAMS).bit_length() - 1)  # rows that still fill the GPU
    block_t = max(1, min(per_warp // block_e, rows_needed, fill))
    num_warps = min(8, max(1, block_t * block_e // per_warp))
    return {"BLOCK_T": block_t, "BLOCK_E": block_e, "num_warps": num_warps}


def kernel_args(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor) -> dict:
    """Compile-time arguments that follow from the problem, not from tuning."""
    E = gating_output.shape[1]
    col_bits = max(1, (triton.next_power_of_2(E) - 1).bit_length())
    # The packed key keeps 32 - COL_BITS bits of the fp32 key: enough for every bf16 (16 bits) and
    # fp16 (19 bits) value while COL_BITS <= 13; fp32 logits are checked at run time.
    assert col_bits <= 13, "MAX_EXPERTS must keep COL_BITS <= 13"
    return {
        "K": topk, "BLOCK_K": triton.next_power_of_2(topk),
        "LOG2_BLOCK_K": triton.next_power_of_2(topk).bit_length() - 1, "COL_BITS": col_bits,
        "CHECK_LOSS": gating_output.dtype == torch.float32, **dtype_flags(gating_output, per_expert_scale),
    }


@torch.library.custom_op("parity::fused_route", mutates_args=())
def _fused_route(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    T, E = gating_output.shape
    weights, ids = empty_outputs(gating_output, topk)
    if T == 0:
        return weights, ids
    cfg = launch_config(T, E, topk, gating_output.dtype)
    _route_kernel[(triton.cdiv(T, cfg["BLOCK_T"]),)](
        gating_output, per_expert_scale, weights, ids,
        T, E, gating_output.stride(0), gating_output.stride(1), per_expert_scale.stride(0),
        BLOCK_T=cfg["BLOCK_T"], BLOCK_E=cfg["BLOCK_E"], num_warps=cfg["num_warps"],
        **kernel_args(gating_output, topk, per_expert_scale),
    )
    return weights, ids


_fused_route.register_fake(empty_outputs)


def fused(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor):
    """Fused routing: (weights fp32 [T, K], ids int32 [T, K]); ids exactly the oracle's."""
    validate(gating_output, topk, per_expert_scale, max_experts=MAX_EXPERTS)
    require_kernel_device(gating_output)
    return _fused_route(gating_output, int(topk), per_expert_scale)
