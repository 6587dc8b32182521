"""Pieces shared by parity's Triton routing kernels (fused, sort_baseline), the measured variants
under benchmarks/variants, and their launchers: loads, order keys, the packed-key selection, the
exact fallback, the softmax-and-scale epilogue, and the wrapper that makes a launcher a routing
implementation and a torch custom op (``TritonRouting``)."""
from __future__ import annotations

from typing import Callable

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from parity import device
from parity.routing.contract import validate


@triton.jit
def load_fp32(ptrs, mask, IS_BF16: tl.constexpr, VOLATILE: tl.constexpr = False):
    """Load logits as fp32. bf16 goes through its bits (bf16 -> fp32 is a 16-bit shift): the
    Triton interpreter's own bf16 conversion rounds subnormals wrongly (triton 3.9: bf16 0x007F
    reads as fp32 0x007E0000), which would misorder subnormal logits on the CPU. VOLATILE: a read
    the compiler neither merges with an earlier one of the same values nor moves."""
    if IS_BF16:
        raw = tl.load(ptrs.to(tl.pointer_type(tl.int16)), mask=mask, other=0, volatile=VOLATILE)
        return (raw.to(tl.int32) << 16).to(tl.float32, bitcast=True)
    else:
        return tl.load(ptrs, mask=mask, other=0.0, volatile=VOLATILE).to(tl.float32)


@triton.jit
def load_scale(scale_ptrs, mask, SCALE_IS_BF16: tl.constexpr):
    """The per-expert scale at scale_ptrs: float64 as it is, else as fp32 (see scaled_weights)."""
    if scale_ptrs.dtype.element_ty == tl.float64:
        return tl.load(scale_ptrs, mask=mask, other=0.0)
    else:
        return load_fp32(scale_ptrs, mask, SCALE_IS_BF16)


@triton.jit
def times_scale(probs, scale):
    """probs (fp32) times a loaded scale, as fp32 weights: a float64 scale in float64, rounded once."""
    if scale.dtype == tl.float64:
        return (probs.to(tl.float64) * scale).to(tl.float32)
    else:
        return probs * scale


@triton.jit
def scaled_weights(probs, scale_ptrs, mask, SCALE_IS_BF16: tl.constexpr):
    """probs (fp32) times per_expert_scale at scale_ptrs, as fp32 weights. A float64 scale is
    multiplied in float64 and the product rounded once: read as float32, a scale beyond float32's
    range would turn inf, its weights inf and a chosen -inf logit's 0 weight NaN, where the oracle
    gives finite values (tests/test_properties.py::test_float64_scale_beyond_float32_range)."""
    return times_scale(probs, load_scale(scale_ptrs, mask, SCALE_IS_BF16))


@triton.jit
def sign_magnitude_key(bits, MAG_MASK: tl.constexpr, NAN_MAG: tl.constexpr):
    """IEEE float bits in an int32 -> an int32 key whose signed order is the float order:
    +magnitude for positive numbers, -magnitude for negative ones (so -0.0 and +0.0 tie), and
    MAG_MASK, above +inf, for every NaN (NaN ranks on top, as in torch.topk). fp32 bits as they
    are (MAG_MASK 0x7FFFFFFF); a 16-bit format in the top half, as fused keys it (MAG_MASK
    0x7FFF0000, NAN_MAG shifted up by 16). Three integer ops and a select."""
    return tl.where((bits & MAG_MASK) > NAN_MAG, MAG_MASK, sign_magnitude_unchecked(bits, MAG_MASK))


@triton.jit
def sign_magnitude_unchecked(bits, MAG_MASK: tl.constexpr):
    """sign_magnitude_key without its NaN case, ``((bits & MAG_MASK) ^ s) - s`` (s the sign): a NaN's
    key lands beyond +inf's or below -inf's, which the caller checks for (half_keys_hold_nan,
    fp32_keys_on_top)."""
    sign = bits >> 31
    return ((bits & MAG_MASK) ^ sign) - sign


@triton.jit
def order_key(x):
    """fp32 logits -> (int32 order key, fp32 bits); see sign_magnitude_key."""
    bits = x.to(tl.int32, bitcast=True)
    return sign_magnitude_key(bits, 0x7FFFFFFF, 0x7F800000), bits


@triton.jit
def exp_accurate(x, ACCURATE_EXP: tl.constexpr):
    """exp(x): libdevice's on the GPU (about an ulp over the whole range, fp32 or fp64), tl.exp in
    the interpreter (numpy's, accurate on its own), which has no libdevice."""
    if ACCURATE_EXP:
        return libdevice.exp(x)
    else:
        return tl.exp(x)


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
    e = exp_accurate(d, ACCURATE_EXP)
    return e + e * d_err


@triton.jit
def ranks_before(key_a, id_a, key_b, id_b):
    """Whether pick a ranks before pick b (broadcast): the larger key first, equal keys by the lower
    id, the oracle's tie rule (parity.routing.oracle)."""
    return (key_a > key_b) | ((key_a == key_b) & (id_a < id_b))


@triton.jit
def by_rank(rank, values, slots):
    """values [BLOCK_T, BLOCK_C] (ints) placed by rank into slots [BLOCK_T, BLOCK_K] (a sum of one
    value and zeros: the bits as they are)."""
    return tl.sum(tl.where(rank[:, :, None] == slots[None, None, :], values[:, :, None], 0), axis=1)


@triton.jit
def exact_topk(key, cols, slots, K: tl.constexpr, BLOCK_E: tl.constexpr, top_id):
    """Iterative max on full keys [BLOCK_T, C, V] (column ids cols [1, C, V]), ties to the lower
    id: the slow, always-exact path."""
    for k in tl.range(K, loop_unroll_factor=1):  # rare path: keep it small (unrolled it doubles the kernel)
        best = tl.max(tl.max(key, axis=2), axis=1)
        pick = tl.min(tl.min(tl.where(key == best[:, None, None], cols, BLOCK_E), axis=2), axis=1)
        key = tl.where(cols == pick[:, None, None], -2147483647 - 1, key)
        top_id = tl.where(slots[None, :] == k, pick[:, None], top_id)
    return top_id


@triton.jit
def pairwise_sum(e, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, LOG2_BLOCK_K: tl.constexpr):
    """Row sums of e [BLOCK_T, BLOCK_K] by a fixed pairwise tree of neighbours. tl.sum's tree
    follows the layout (rows per program, warps), so its last bit would change with the launch
    configuration; a sum of two numbers is the same either way round, so summing neighbour pairs
    level by level gives the same bits under any layout, with tl.sum's log2(K) error growth."""
    for level in tl.static_range(LOG2_BLOCK_K):
        e = tl.sum(tl.reshape(e, [BLOCK_T, BLOCK_K >> (level + 1), 2]), axis=2)
    return tl.reshape(e, [BLOCK_T])


SOFTMAX_K, SIGMOID, SOFTMAX_ALL = 0, 1, 2
"""The score a kernel's weights take (its SCORE constexpr): softmax over the K chosen logits
(renormalised softmax), each chosen logit's sigmoid (renormalised over the K under RENORM), or the
softmax over all E without renormalisation (the caller passes the row's denominator)."""


@triton.jit
def sigmoid(v, ACCURATE_EXP: tl.constexpr):
    """1 / (1 + exp(-v)) in v's precision (fp32, or fp64 in the grouped kernel's exact path): exp
    accurate to about an ulp, then one add and one division; +inf gives 1, -inf 0, NaN NaN."""
    return 1.0 / (1.0 + exp_accurate(-v, ACCURATE_EXP))


@triton.jit
def chosen_scores(v, slots, K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
                  LOG2_BLOCK_K: tl.constexpr, ACCURATE_EXP: tl.constexpr, SCORE: tl.constexpr,
                  RENORM: tl.constexpr):
    """Scores [BLOCK_T, BLOCK_K] of the chosen logits v (largest first) for SCORE SOFTMAX_K or
    SIGMOID: the softmax over the first K, or each logit's sigmoid, renormalised over the K when
    RENORM. Sums run in a fixed pairwise tree, so no launch layout changes a bit."""
    slot_ok = slots < K
    if SCORE == 1:
        probs = sigmoid(v, ACCURATE_EXP)
        if RENORM:
            probs = tl.where(slot_ok[None, :], probs, 0.0)
            probs = probs / pairwise_sum(probs, BLOCK_T, BLOCK_K, LOG2_BLOCK_K)[:, None]
    else:
        # The first slot holds the largest logit; a sum of one value and zeros extracts it with NaN
        # and inf intact, and a NaN or +inf there makes every weight of that row (only) NaN.
        first = tl.sum(tl.where(slots[None, :] == 0, v, 0.0), axis=1)
        e = tl.where(slot_ok[None, :], exp_shifted(v, first[:, None], ACCURATE_EXP), 0.0)
        probs = e / pairwise_sum(e, BLOCK_T, BLOCK_K, LOG2_BLOCK_K)[:, None]
    return probs


@triton.jit
def key_value(k, KEY16: tl.constexpr, IS_BF16: tl.constexpr):
    """The logit (fp32) of a sign-magnitude order key (sign_magnitude_key): a 16-bit format's key in
    the low bits (KEY16: a packed key shifted down by 16), or an fp32 key. The NaN key gives NaN,
    both zeros +0.0."""
    neg = k < 0
    mag = tl.where(neg, -k, k)
    if KEY16:
        bits = mag | tl.where(neg, 0x8000, 0)
        if IS_BF16:
            return (bits << 16).to(tl.float32, bitcast=True)
        else:
            return bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    else:
        return (mag | tl.where(neg, -2147483647 - 1, 0)).to(tl.float32, bitcast=True)


@triton.jit
def softmax_denominator(x, first, LOG2_BLOCK_E: tl.constexpr, ACCURATE_EXP: tl.constexpr,
                        EXACT_DIFF: tl.constexpr):
    """The sum over each row of exp(x - first), x the row's logits (padding -inf): fp32 logits as
    [BLOCK_T, C, V]; 16-bit ones as pairs of columns (2i, 2i + 1) on a last axis of 2, [BLOCK_T, C,
    V // 2, 2] as packed_pair_keys reads words, or [BLOCK_T, P, 2] (column_pairs) for rows read
    otherwise; first [BLOCK_T] the row's largest. The same bits in any layout and either read: each
    term (a pair's two added in fp32 first: a + b == b + a) is truncated to a multiple of 2**-F, F = 61 -
    LOG2_BLOCK_E, and the integers are summed exactly in int64 (no order of addition changes an
    integer sum), then rounded once. The truncation costs at most BLOCK_E * 2**-F = 2**(2 LOG2_BLOCK_E
    - 61) against a sum of at least 1/2: far below an fp32 ulp. (The pairwise tree this replaces
    reloaded the row in a second layout and reshaped it level by level: reports/bench/NOTES.md,
    "Softmax over all E".)

    EXACT_DIFF (fp32 logits): the terms by exp_shifted, which recovers the rounding of x - first.
    16-bit logits (shifted_exp2_args): each term is exp2 of one fma, x * L - c, c the row's first * L
    rounded, which is exp(x - first) * 2**r for the row's r = first * L - c (exact); the sum is scaled
    back by 2**-r once. A row whose largest is NaN, +inf or -inf gives NaN."""
    F: tl.constexpr = 61 - LOG2_BLOCK_E
    if EXACT_DIFF:
        e = exp_shifted(x, first[:, None, None], ACCURATE_EXP)
        q = (e * (2.0**F)).to(tl.int64)
        total = tl.sum(tl.sum(q, axis=2), axis=1).to(tl.float32) * (2.0**-F)
    else:
        scale, c, r = shifted_exp2_args(first)
        # ex2.approx (2 ulp; the interpreter's exp2 is numpy's): a term's error is relative to its
        # share of the sum, so the sum keeps about 2 ulp (tolerance.FUSED_ULP)
        if len(x.shape) == 4:
            e_even, e_odd = tl.split(tl.exp2(tl.fma(x, scale[:, None, None, None], -c[:, None, None, None])))
        else:
            e_even, e_odd = tl.split(tl.exp2(tl.fma(x, scale[:, None, None], -c[:, None, None])))
        # a pair's two terms added first: half the conversions and int64 adds
        q = ((e_even + e_odd) * (2.0**F)).to(tl.int64)
        if len(x.shape) == 4:
            q = tl.sum(q, axis=2)
        total = tl.sum(q, axis=1).to(tl.float32) * (2.0**-F)
        # times 2**-r = 1 + g, g = -t + t**2 / 2 (t = r ln 2, |t| < 2**-8.5: the next term is below
        # 2**-28), in one fma: one rounding more than the sum's own, half an ulp
        t = r * 0.6931471805599453
        total = tl.fma(total, t * (0.5 * t - 1.0), total)
    return tl.where(first - first == 0.0, total, float("nan"))


@triton.jit
def column_pairs(row_ptr, row_ok, E, stride_ge, BLOCK_E: tl.constexpr, IS_BF16: tl.constexpr):
    """The logits of rows [BLOCK_T] as fp32 pairs of columns (2i, 2i + 1), [BLOCK_T, P, 2] (P pairs
    cover BLOCK_E), padding -inf: what softmax_denominator takes for 16-bit rows not read as words."""
    P: tl.constexpr = (BLOCK_E + 1) // 2
    pair_cols = ((tl.arange(0, P) * 2)[:, None] + tl.arange(0, 2)[None, :])[None, :, :]
    in_row = pair_cols < E
    x = load_fp32(row_ptr[:, None, None] + pair_cols * stride_ge, row_ok[:, None, None] & in_row, IS_BF16)
    return tl.where(in_row, x, float("-inf"))


@triton.jit
def shifted_exp2_args(first):
    """(scale, c, r) per row, for terms exp2(fma(x, scale, -c)) of 16-bit logits x <= first (the
    row's largest, finite) that are exp(x - first) * 2**r. Where |first| < 2**16 (every fp16; bf16
    but absurd rows): scale = L = log2(e) in fp32, c = first * L rounded, r = first * L - c, exact
    (an fma gives it) and at most 2**-8 in size, so no term passes 2**(2**-8). Each term's argument
    x * L - c = (x - first) * L + r is rounded once, as (x - first) * L was after its exact
    subtraction, in one instruction instead of two. Beyond, a bf16 row's logits other than its
    largest lie at least 2**8 below it, where exp and exp2 are both 0 in fp32: scale = 1, c = first,
    r = 0 give the same terms, 1 and 0."""
    L: tl.constexpr = 1.4426950408889634
    moderate = tl.abs(first) < 65536.0
    scale = tl.where(moderate, L, 1.0)
    c = tl.where(moderate, first * L, first)
    r = tl.where(moderate, tl.fma(first, L, -c), 0.0)
    return scale, c, r


@triton.jit
def softmax_over_all(v, den, slots, ACCURATE_EXP: tl.constexpr):
    """Softmax probabilities over all E of the chosen logits v [BLOCK_T, BLOCK_K] (largest first),
    not renormalised: exp(v - max) / den, den the row's softmax_denominator (NaN for a row with a
    NaN or +inf, or of -inf: NaN weights, as the oracle's float64 arithmetic gives)."""
    first = tl.sum(tl.where(slots[None, :] == 0, v, 0.0), axis=1)[:, None]
    return exp_shifted(v, first, ACCURATE_EXP) / den[:, None]


@triton.jit
def store_routing(probs, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr,
                  K: tl.constexpr, SCALE_IS_BF16: tl.constexpr):
    """Weights = probs times the expert's scale (a float64 scale in float64, rounded once); store
    weights and ids [BLOCK_T, BLOCK_K] for the first K slots of the rows in range."""
    store_weights(scaled_weights(probs, scale_ptr + top_id * stride_s, out_ok, SCALE_IS_BF16), top_id, rows64,
                  out_ok, slots, weights_ptr, ids_ptr, K)


@triton.jit
def store_weights(weights, top_id, rows64, out_ok, slots, weights_ptr, ids_ptr, K: tl.constexpr):
    """Store weights and ids [BLOCK_T, BLOCK_K] for the first K slots of the rows in range."""
    out = rows64[:, None] * K + slots[None, :]
    tl.store(weights_ptr + out, weights, mask=out_ok)
    tl.store(ids_ptr + out, top_id, mask=out_ok)


@triton.jit
def write_routing(v, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr,
                   K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
                   LOG2_BLOCK_K: tl.constexpr, ACCURATE_EXP: tl.constexpr, SCALE_IS_BF16: tl.constexpr,
                   SCORE: tl.constexpr = 0, RENORM: tl.constexpr = True):
    """Weights from the chosen logits v [BLOCK_T, BLOCK_K] (largest first) and their ids
    (chosen_scores, then store_routing). Every kernel that ends here (fused, the variants under
    benchmarks/variants) gives the same weights bit for bit whenever its ids agree."""
    probs = chosen_scores(v, slots, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, SCORE, RENORM)
    store_routing(probs, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr, K, SCALE_IS_BF16)


@triton.jit
def top_half_key(bits, NAN_MAG: tl.constexpr):
    """Order key of the bf16/fp16 pattern in the top half of an int32 (the low half is ignored),
    keyed where it lies: a packed key keeps all of it, and the expert id takes the low 16 bits."""
    return sign_magnitude_key(bits, 0x7FFF0000, NAN_MAG << 16)


@triton.jit
def top_half_key_unchecked(bits, low):
    """top_half_key without its NaN case, with ``low`` (an expert id's bits) added in the low half:
    ``((bits & 0x7FFF0000) ^ s) - s + low``, s the sign, three integer ops where top_half_key and
    the id's OR take seven (SASS, reports/bench/NOTES.md "Keys without the NaN select"). Equal to
    ``top_half_key(bits) | low`` for every pattern but NaN: a NaN's key lands beyond +inf's or
    below -inf's, which half_keys_hold_nan detects from a block's extreme keys."""
    return sign_magnitude_unchecked(bits, 0x7FFF0000) + low


@triton.jit
def half_nan_bounds(NAN_MAG: tl.constexpr, COL_BITS: tl.constexpr):
    """The two bounds of top_half_key_unchecked keys that are no NaN's: +inf's key with the largest
    id bits (a positive NaN's lies above it) and a key just below -inf's (a negative NaN's lies
    below it; padding columns read as -inf and stay above it)."""
    return (NAN_MAG << 16) | ((1 << COL_BITS) - 1), -(NAN_MAG << 16) - 1


@triton.jit
def half_keys_hold_nan(packed, best, NAN_MAG: tl.constexpr, COL_BITS: tl.constexpr):
    """Whether any of these top_half_key_unchecked keys [BLOCK_T, C, V] is a NaN's (half_nan_bounds;
    ``best``: the rows' largest keys). One min per key; a block that holds a NaN makes those keys
    top_half_key's (nan_keys_on_top)."""
    inf_top, below_neg_inf = half_nan_bounds(NAN_MAG, COL_BITS)
    return (tl.max(best, axis=0) > inf_top) | (tl.min(tl.min(tl.min(packed, axis=2), axis=1), axis=0) < below_neg_inf)


@triton.jit
def nan_keys_on_top(packed, NAN_MAG: tl.constexpr, COL_BITS: tl.constexpr):
    """top_half_key_unchecked keys made top_half_key's: a NaN's key (outside half_nan_bounds)
    becomes the NaN key, 0x7FFF0000, with its id bits kept."""
    inf_top, below_neg_inf = half_nan_bounds(NAN_MAG, COL_BITS)
    is_nan = (packed > inf_top) | (packed < below_neg_inf)
    return tl.where(is_nan, 0x7FFF0000 | (packed & ((1 << COL_BITS) - 1)), packed)


@triton.jit
def fp32_keys_on_top(key):
    """fp32 keys made without the NaN case made sign_magnitude_key's: a NaN's key (beyond +inf's or
    below -inf's) becomes the NaN key, 0x7FFFFFFF."""
    return tl.where((key > 0x7F800000) | (key < -0x7F800000), 0x7FFFFFFF, key)


@triton.jit
def columns_in_row(cols, E, BLOCK_E: tl.constexpr, VEC: tl.constexpr, ROW_ALIGN: tl.constexpr):
    """Which columns ``cols`` (an element's first column, in a tile [BLOCK_T, BLOCK_E // VEC, VEC]
    or its words) lie in a row of E logits. Where ROW_ALIGN (fused's route_kernel) is the vector, E
    is a multiple of VEC and the mask is [1, BLOCK_E // VEC, 1], constant along each vector: the
    load is then one vector wide where a per-element mask splits it (Qwen2-MoE's E=60: four 8-byte
    loads a thread where it took eight 4-byte ones; reports/bench/NOTES.md, "Rows that start aligned")."""
    if ROW_ALIGN == VEC:
        return (tl.arange(0, BLOCK_E // VEC) * VEC)[None, :, None] < E
    else:
        return cols < E


@triton.jit
def packed_keys(ptrs, mask, cols, col_ok, COL_BITS: tl.constexpr, KEY16: tl.constexpr,
                 EVEN_E: tl.constexpr, NAN_MAG: tl.constexpr, IS_BF16: tl.constexpr = True,
                 VALUES: tl.constexpr = False, NAN_CHECKED: tl.constexpr = True):
    """Load logits and pack each into one int32: order key, then BLOCK_E - 1 - id in the low
    COL_BITS bits (unique in its row; larger packed = larger logit, then lower id). Returns
    (packed, full key: the fp32 one for fp32 logits, the 16-bit one for bf16/fp16, and under
    VALUES the logits as fp32 with padding -inf, else a stand-in: the interpreter runs what it is
    given, and decoding unused values cost it time). Columns past E read as -inf (the masked
    load's value for fp32, a select for bf16/fp16; rows past T as 0, whatever they route to is
    not stored): their keys tie a real -inf's and their ids, past E, rank them after every
    expert's (ties go to the lower id), so nothing selects a padding value after the load
    (reports/bench/NOTES.md, "Padding read as -inf").
    Without NAN_CHECKED, bf16/fp16 keys come from top_half_key_unchecked (the caller checks with
    half_keys_hold_nan) and the full key returned is the packed one; fp32 keys are
    sign_magnitude_key's without the NaN case (a NaN's key lands beyond +inf's or below -inf's; the
    caller checks: fp32_keys_on_top)."""
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    if not EVEN_E:
        mask = mask & col_ok
    if KEY16:
        # bf16/fp16: the 16-bit pattern moved to the top half is keyed there, so the packed key
        # keeps all of it and the expert id takes the low 16 bits. (Keying the pattern in the top
        # half, not shifting a 16-bit key up, saves the sign extensions; reports/bench/NOTES.md, "v5".)
        # A 16-bit `other` other than 0 reached a vectorised load's odd halves as 0xFFFF (a NaN) on
        # the H200 (triton 3.6; the interpreter was right): -inf is put in by a select here.
        raw = tl.load(ptrs.to(tl.pointer_type(tl.int16)), mask=mask, other=0)
        if not EVEN_E:
            raw = tl.where(col_ok, raw.to(tl.int32), NAN_MAG - 0x8000)  # -inf's bits, sign-extended
        if NAN_CHECKED:
            key = top_half_key(raw.to(tl.int32) << 16, NAN_MAG)
            packed = key | (COL_MASK - cols)
        else:
            packed = top_half_key_unchecked(raw.to(tl.int32) << 16, COL_MASK - cols)
            key = packed
    else:
        raw = tl.load(ptrs.to(tl.pointer_type(tl.int32)), mask=mask, other=0 if EVEN_E else NAN_MAG - 2147483648)
        if NAN_CHECKED:
            key = sign_magnitude_key(raw, 0x7FFFFFFF, NAN_MAG)
        else:
            key = sign_magnitude_unchecked(raw, 0x7FFFFFFF)
        packed = (key & ~COL_MASK) | (COL_MASK - cols)
    x = key  # a stand-in (compiled functions cannot return None)
    if VALUES:
        if KEY16:
            x = _half_value(raw.to(tl.int32), IS_BF16)
        else:
            x = raw.to(tl.float32, bitcast=True)
    return packed, key, x


@triton.jit
def packed_pair_keys(row_ptr, row_ok, E, BLOCK_E: tl.constexpr, VEC: tl.constexpr, COL_BITS: tl.constexpr,
                      EVEN_E: tl.constexpr, NAN_MAG: tl.constexpr, IS_BF16: tl.constexpr = True,
                      VALUES: tl.constexpr = False, NAN_CHECKED: tl.constexpr = True, ROW_ALIGN: tl.constexpr = 1,
                      BY_WORD: tl.constexpr = False, VOLATILE: tl.constexpr = False, ROW_LANES: tl.constexpr = 1,
                      FMA_KEYS: tl.constexpr = 0, zero=0):
    """packed_keys for contiguous bf16/fp16 rows of even length, read as 32-bit words: [BLOCK_T,
    BLOCK_E // VEC, VEC], column c * VEC + v. A word's top half is its odd column's pattern as is;
    its even column's is the word shifted up by 16. Returns (packed, under VALUES the logits as fp32
    with padding -inf, [BLOCK_T, BLOCK_E // VEC, VEC // 2, 2] (a word's two on the last axis), else a
    stand-in). NAN_CHECKED as in packed_keys; ROW_ALIGN as in
    columns_in_row. BY_WORD: packed as [BLOCK_T, BLOCK_E // VEC, VEC // 2, 2], a word's two keys
    (even column's, odd column's) along the last axis. VOLATILE: a volatile read, for a rare path
    that must stay behind its branch (the compiler may not move it out and predicate it).
    ROW_LANES > 1: the keys' ids less their lane's part (lane_offsets), which the caller subtracts where keys of
    different lanes meet (pick_rounds' lane_off, the rows' largest). FMA_KEYS, zero: keys by multiplies
    (word_keys)."""
    words = ((tl.arange(0, BLOCK_E // VEC) * (VEC // 2))[:, None] + tl.arange(0, VEC // 2)[None, :])[None, :, :]
    in_row = columns_in_row(2 * words, E, BLOCK_E, VEC, ROW_ALIGN)  # E is even: a word is in the row or wholly beyond it
    mask = row_ok[:, None, None]
    if not EVEN_E:
        mask = mask & in_row
    TWO_NEG_INF: tl.constexpr = (NAN_MAG - 0x8000) * 65536 + (NAN_MAG + 0x8000)  # a word of two -inf
    w = tl.load(row_ptr.to(tl.pointer_type(tl.int32))[:, None, None] + words, mask=mask,
                other=0 if EVEN_E else TWO_NEG_INF, volatile=VOLATILE)
    # the ids less their lane's part (lane_offsets): a key returned is the true one plus that part
    in_lane = words - (lane_offsets(BLOCK_E, VEC, ROW_LANES) // 2)[:, :, None]
    even, odd = word_keys(w, in_lane, COL_BITS, NAN_MAG, NAN_CHECKED, FMA_KEYS, zero)
    shape: tl.constexpr = [even.shape[0], BLOCK_E // VEC, VEC]
    x = even  # a stand-in (compiled functions cannot return None)
    if VALUES:
        if IS_BF16:
            x_even = (w << 16).to(tl.float32, bitcast=True)
            x_odd = (w & -65536).to(tl.float32, bitcast=True)
        else:
            x_even = _half_value(w, IS_BF16)
            x_odd = _half_value(w >> 16, IS_BF16)
        # a word's two logits on a last axis of their own, not reshaped into the row's: Triton 3.6
        # reduced a reshape of such pairs over the wrong lanes (reports/bench/NOTES.md, "Eighteenth round")
        x = tl.join(x_even, x_odd)
    if BY_WORD:
        packed = tl.join(even, odd)
    else:
        packed = tl.reshape(tl.join(even, odd), shape)
    return packed, x


@triton.jit
def lane_offsets(BLOCK_E: tl.constexpr, VEC: tl.constexpr, ROW_LANES: tl.constexpr):
    """[1, BLOCK_E // VEC]: each vector's lane's part of its columns, VEC * (c % ROW_LANES), where a row
    of the tile [BLOCK_T, BLOCK_E // VEC, VEC] spreads over ROW_LANES threads (a thread holds the vectors
    c, c + ROW_LANES, ...). Keys packed with ids less this part (packed_pair_keys' ROW_LANES) carry an id
    that is a constant of the register in every lane, which ptxas adds with the key's own add; the lane's
    part comes back once a round (pick_rounds' lane_off). With ROW_LANES = 1: zeros."""
    return (tl.arange(0, BLOCK_E // VEC) % ROW_LANES * VEC)[None, :]


@triton.jit
def word_keys(w, words, COL_BITS: tl.constexpr, NAN_MAG: tl.constexpr, NAN_CHECKED: tl.constexpr = True,
              FMA_KEYS: tl.constexpr = 0, zero=0):
    """The packed keys (packed_keys) of the two bf16/fp16 logits in each 32-bit word w of a row
    (``words``: the words' indices in their rows): (even column's, odd column's). The even column's
    pattern is the word's low half, the odd column's its high half. FMA_KEYS (without NAN_CHECKED): 1, the
    even columns' keys by low_half_key; 2, the odd columns' too, by high_half_key (``zero``: a run-time
    zero the compiler cannot see, which both make their multipliers from)."""
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    if NAN_CHECKED:
        even = top_half_key(w << 16, NAN_MAG) | (COL_MASK - 2 * words)
        odd = top_half_key(w, NAN_MAG) | (COL_MASK - 1 - 2 * words)
    else:
        if FMA_KEYS >= 1:
            even = low_half_key(w, COL_MASK - 2 * words, zero)
        else:
            even = top_half_key_unchecked(w << 16, COL_MASK - 2 * words)
        if FMA_KEYS >= 2:
            odd = high_half_key(w, COL_MASK - 1 - 2 * words, zero)
        else:
            odd = top_half_key_unchecked(w, COL_MASK - 1 - 2 * words)
    return even, odd


@triton.jit
def low_half_key(w, low, zero):
    """top_half_key_unchecked(w << 16, low), the key of the pattern in w's low half, by two multiplies:
    ``(w & 0x7FFF) * m + low`` with m = 65536 for a positive pattern and -65536 for a negative one,
    m = (w & 0x8000) * -4 + 65536. The multiplies' constants are made from ``zero``, 0 at run time
    (route_kernel passes T >> 31), so that neither LLVM nor ptxas can fold them into shifts: they issue as IMAD on the
    FMA pipe, where the shift, sign extension, xor and subtraction took four ALU-pipe instructions
    (the busiest pipe: reports/bench/NOTES.md, "Seventh round"). Equal bits for every pattern; a
    NaN's key lands where top_half_key_unchecked's does."""
    minus_four = zero | -4
    plus_one = (zero | 1) << 16
    return (w & 0x7FFF) * ((w & 0x8000) * minus_four + plus_one) + low


@triton.jit
def high_half_key(w, low, zero):
    """top_half_key_unchecked(w, low), the key of the pattern in w's high half, by multiplies: the sign
    s = umulhi(w, 2) (0 or 1; an IMAD.HI), then ``(w & 0x7FFF0000) * (1 - 2 s) + low`` (two IMAD), one
    ALU-pipe instruction where the shift, xor and subtraction took three (the multipliers made from
    ``zero``, as low_half_key's)."""
    s = tl.umulhi(w.to(tl.uint32, bitcast=True), (zero | 2).to(tl.uint32)).to(tl.int32, bitcast=True)
    one_minus_2s = s * (zero | -2) + (zero | 1)
    return (w & 0x7FFF0000) * one_minus_2s + low


@triton.jit
def _half_value(bits, IS_BF16: tl.constexpr):
    """The bf16/fp16 pattern in the low 16 bits of an int32 as fp32 (exact; the high bits are
    ignored)."""
    if IS_BF16:
        return (bits << 16).to(tl.float32, bitcast=True)
    else:
        return bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)



def dtype_flags(gating_output: torch.Tensor, per_expert_scale: torch.Tensor, *, interpreter: bool) -> dict:
    """Compile-time flags every routing kernel takes (libdevice's exp only where it exists: not in
    the interpreter)."""
    return {"ACCURATE_EXP": not interpreter, "IS_BF16": gating_output.dtype == torch.bfloat16,
            "SCALE_IS_BF16": per_expert_scale.dtype == torch.bfloat16}


def require_kernel_device(gating_output: torch.Tensor) -> None:
    """Kernels run where parity.device decided; refuse tensors elsewhere before any launch."""
    want = device.default().type
    if gating_output.device.type != want:
        raise ValueError(
            f"gating_output: expected a tensor on {want} (this process runs Triton kernels on {want}"
            f"{' through the interpreter' if device.INTERPRETER else ''}), got {gating_output.device}"
        )


def empty_outputs(gating_output: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights float32 [T, K], ids int32 [T, K]) on the input's device, unwritten."""
    T = gating_output.shape[0]
    return (gating_output.new_empty((T, topk), dtype=torch.float32),
            gating_output.new_empty((T, topk), dtype=torch.int32))


def _fake_outputs(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fake (meta) implementation of every routing custom op: outputs need only shapes."""
    return empty_outputs(gating_output, topk)


Launcher = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor, torch.Tensor], None]
"""(gating_output, topk, per_expert_scale, weights, ids): fill the outputs of a non-empty batch."""


class TritonRouting:
    """A Triton kernel's launcher as a routing implementation: arguments checked before any launch
    (contract.validate, the kernel's device), then one torch custom op (``parity::<op_name>``, with
    ``empty_outputs`` as its fake), so ``torch.compile(fullgraph=True)`` captures the call. The
    launcher is read at call time (``self.launch``), so tests can stand in for it."""

    def __init__(self, op_name: str, launch: Launcher, max_experts: int, doc: str) -> None:
        self.launch, self.max_experts, self.op_name, self.__doc__ = launch, max_experts, op_name, doc
        self.__name__ = self.__qualname__ = op_name.removesuffix("_route")

        @torch.library.custom_op(f"parity::{op_name}", mutates_args=())
        def op(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            weights, ids = empty_outputs(gating_output, topk)
            if gating_output.shape[0]:
                self.launch(gating_output, topk, per_expert_scale, weights, ids)
            return weights, ids

        op.register_fake(_fake_outputs)
        self.op = op

    def __repr__(self) -> str:
        return f"<routing {self.__name__}: torch.ops.parity.{self.op_name}>"

    def __call__(self, gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor):
        validate(gating_output, topk, per_expert_scale, max_experts=self.max_experts)
        require_kernel_device(gating_output)
        return self.op(gating_output, int(topk), per_expert_scale)
