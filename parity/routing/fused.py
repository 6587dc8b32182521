"""parity's fused Gemma4 routing kernel: topk, softmax over the K, per-expert scale, in one launch.

Algorithm: packed keys, one reduction per round, with an exact fallback.

1. Each logit becomes a signed int32 *order key* (kernel_parts.sign_magnitude_key): +magnitude for
   positive numbers, -magnitude for negative ones, so integer order is float order and -0.0 ties
   +0.0; every NaN maps to the largest key (NaN ranks above +inf, as in torch.topk). bf16 and fp16
   logits are keyed by their 16 bits placed in the top half of an int32 (contiguous rows of even
   length are read as 32-bit words, two logits each), without the NaN case, which a block's extreme
   keys reveal and a second pass fixes (kernel_parts.top_half_key_unchecked); fp32 logits by their
   32 bits.
2. The key's low COL_BITS bits are replaced by ``BLOCK_E - 1 - expert_id``: one int32 that orders by
   logit, then by lower id, and is unique in its row. A round of top-K is then a single reduction:
   the largest packed value below the previous pick, found as
   ``prev - 1 - min_unsigned((prev - 1) - packed)`` (values at or above ``prev`` wrap to huge
   unsigned numbers and lose). That is two integer ops per element per round, where an iterative
   max with a separate id tie-break costs about six (reports/bench/NOTES.md).
3. Dropping COL_BITS bits is lossless for bf16 and fp16 logits (their keys have 16 zero low bits)
   and for fp32 logits whose low bits are zero. Otherwise two logits may share a truncated key
   and be ordered by id instead of value. That is detected exactly (a row with nonzero low bits whose
   consecutive picks, K+1 of them, share a truncated key): when the K-th and (K+1)-th picks differ
   the set is certain and the K picks are ranked again by their logits (ranked_by_logit); otherwise
   the block re-runs the exact iterative max on full keys: ids stay the oracle's bit for bit.
4. Weights: softmax over the K chosen logits in fp32 (max-subtraction made exact by TwoSum, an
   accurate exp), times per_expert_scale[id].

Layout: the tile is [BLOCK_T, BLOCK_E // VEC, VEC] (VEC logits per 16-byte load), which Triton
lays out rows across lanes first: with BLOCK_T = 16 rows per warp, each row sits in 2 lanes. A
round's reduction is then mostly in-thread, with one or two shuffles, where the plain [BLOCK_T,
BLOCK_E] tile spread each row over 16 lanes and paid four shuffle steps per row group per round
(the SASS counts and timings are in reports/bench/NOTES.md, "rows across lanes").

Why not ``tl.sort``: the Triton interpreter runs it element by element in Python; ``tl.max``/
``tl.min`` run vectorised, so this source serves the GPU and the CPU (docs/FINDINGS.md). Every
launch parameter comes from ``plan``: the table's tile and the compile-time arguments, decided once
per call. A bitonic top-K network with rows held in single threads issues 2.3x fewer instructions
per logit but measured slower on the H200; it is kept as a variant
(benchmarks/variants/v3_bitonic_network.py, reports/bench/NOTES.md).

The selection pieces (packed keys, the exact fallback, the softmax-and-scale epilogue) live in
kernel_parts, where the variants reuse them.

Two later paths, each exact (tests/test_word_maxima.py, tests/test_fp32_unchecked.py): rounds over
each 32-bit word's larger key (picks_by_word; on where WORD_MAXIMA_SHAPES says, capped at
WORD_MAXIMA_MAX_REGISTERS) and fp32 keys without the NaN select (FP32_UNCHECKED, on); both at tiles
of several rows only (reports/bench/NOTES.md, "Twelfth round" and "Fourteenth round").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from parity import device
from parity.routing.kernel_parts import (
    TritonRouting,
    by_rank,
    dtype_flags,
    SIGMOID,
    SOFTMAX_ALL,
    SOFTMAX_K,
    chosen_scores,
    column_pairs,
    columns_in_row,
    exact_topk,
    half_keys_hold_nan,
    lane_offsets,
    nan_keys_on_top,
    order_key,
    key_value,
    top_half_key,
    fp32_keys_on_top,
    ranks_before,
    load_fp32,
    packed_keys,
    packed_pair_keys,
    softmax_denominator,
    softmax_over_all,
    store_routing,
)

MAX_EXPERTS = 4096
"""The largest E this kernel takes: one row's keys must fit in one program's registers."""


# T only bounds the row mask, so specialising on it (T == 1, T % 16 == 0) cannot help vectorised
# loads or stores; not specialising saves a recompile per such class as batch sizes vary (the GPU
# property tests draw many T). Not timed separately: the kernel's code does not depend on T.
@triton.jit(do_not_specialize=["T"])
def route_kernel(
    gating_ptr, scale_ptr, weights_ptr, ids_ptr,
    T, E, stride_gt, stride_ge, stride_s,
    K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
    LOG2_BLOCK_K: tl.constexpr, COL_BITS: tl.constexpr, CHECK_LOSS: tl.constexpr,
    ACCURATE_EXP: tl.constexpr, IS_BF16: tl.constexpr, SCALE_IS_BF16: tl.constexpr,
    EVEN_E: tl.constexpr, KEY16: tl.constexpr, NAN_MAG: tl.constexpr, PAIRS: tl.constexpr, VEC: tl.constexpr,
    SCORE: tl.constexpr, RENORM: tl.constexpr, LOG2_BLOCK_E: tl.constexpr, ROW_ALIGN: tl.constexpr = 1,
    WORD_MAXIMA: tl.constexpr = False, FP32_UNCHECKED: tl.constexpr = False, ROW_LANES: tl.constexpr = 1,
    FMA_KEYS: tl.constexpr = 0, E_CONST: tl.constexpr = 0,
):
    tl.static_assert(PAIRS or not WORD_MAXIMA, "picks_by_word reads rows as words")
    if E_CONST > 0:   # E as a compile-time constant (E_CONSTANT): the columns' masks and addresses fold
        E = E_CONST
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    pid = tl.program_id(0)
    rows = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    slots = tl.arange(0, BLOCK_K)
    row_ok = rows < T
    rows64 = rows.to(tl.int64)  # T * stride can pass 2**31
    row_off = rows64 * stride_gt
    if ROW_ALIGN > 1:  # a hint of 1 would replace what the compiler knows of a stride specialised as 16k
        row_off = tl.multiple_of(row_off, [ROW_ALIGN])
    row_ptr = gating_ptr + row_off
    cols = ((tl.arange(0, BLOCK_E // VEC) * VEC)[:, None] + tl.arange(0, VEC)[None, :])[None, :, :]

    # bf16/fp16 keys are made without the NaN case (three integer ops a key where it took seven);
    # a block that holds a NaN, seen from its extreme keys, makes those keys NaN-checked ones
    # (reports/bench/NOTES.md, "Keys without the NaN select"; under the softmax over all E too
    # since its rows are read as vectors: Qwen2-MoE 19.99 -> 18.99 us on the H200, "Padding read as -inf").
    # fp32 keys likewise where the row has no padding: a block holding a NaN or an inf (x * 0 is NaN
    # there: FMA-pipe work where the keys' is ALU) makes its keys NaN-checked ones (padding reads -inf)
    UNCHECKED: tl.constexpr = KEY16 or (EVEN_E and FP32_UNCHECKED)
    # ROW_LANES > 1: the keys' ids lack their lane's part (kernel_parts.lane_offsets), which comes back where
    # keys of different lanes meet: in each round (pick_rounds) and in the rows' largest
    lane_off = lane_offsets(BLOCK_E, VEC, ROW_LANES)   # [1, C]
    # 0 at run time (T < 2**31), which the compiler cannot fold: the keys' multipliers (FMA_KEYS) are made from it
    zero = T >> 31
    if PAIRS:
        packed, x = packed_pair_keys(row_ptr, row_ok, E, BLOCK_E, VEC, COL_BITS, EVEN_E, NAN_MAG, IS_BF16, SCORE == 2,
                                     NAN_CHECKED=not UNCHECKED, ROW_ALIGN=ROW_ALIGN, BY_WORD=WORD_MAXIMA,
                                     ROW_LANES=ROW_LANES, FMA_KEYS=FMA_KEYS, zero=zero)
        key = packed  # unused: 16-bit keys are packed whole, CHECK_LOSS is off
    else:
        packed, key, x = packed_keys(row_ptr[:, None, None] + cols * stride_ge, row_ok[:, None, None], cols,
                                     columns_in_row(cols, E, BLOCK_E, VEC, ROW_ALIGN), COL_BITS, KEY16, EVEN_E, NAN_MAG, IS_BF16,
                                     not KEY16 and (SCORE == 2 or UNCHECKED), NAN_CHECKED=not UNCHECKED)

    if WORD_MAXIMA:
        # the rounds run over each word's larger key; picks_by_word adds the smaller ones back
        every_key = tl.reshape(packed, [BLOCK_T, BLOCK_E // VEC, VEC])   # for the NaN check's min
        packed = tl.max(packed, axis=3)
    else:
        every_key = packed
    best = tl.max(tl.max(packed, axis=2) - lane_off, axis=1)
    if UNCHECKED and not KEY16:
        nan_or_inf = tl.sum(tl.sum(tl.sum(x * 0.0, axis=2), axis=1), axis=0)
        for _ in tl.range((nan_or_inf != nan_or_inf).to(tl.int32), loop_unroll_factor=1):
            key = fp32_keys_on_top(key)
            packed = (key & ~COL_MASK) | (packed & COL_MASK)   # the ids packed_keys put in
            best = tl.max(tl.max(packed, axis=2), axis=1)
    if UNCHECKED and KEY16:
        # a loop of zero or one pass, not an if: ptxas then keeps the registers of the path without NaN
        for _ in tl.range(half_keys_hold_nan(every_key, best, NAN_MAG, COL_BITS).to(tl.int32), loop_unroll_factor=1):
            if WORD_MAXIMA:
                # read the row again (a rare path) rather than keep both keys of every word live; a
                # volatile read, which the compiler cannot move out of the branch: with a plain one the
                # pass was if-converted and its ~600 instructions issued in every block (SASS, sm_90)
                word_pair, _ = packed_pair_keys(row_ptr, row_ok, E, BLOCK_E, VEC, COL_BITS, EVEN_E, NAN_MAG, IS_BF16,
                                                ROW_ALIGN=ROW_ALIGN, BY_WORD=True, VOLATILE=True, ROW_LANES=ROW_LANES)
                packed = tl.max(word_pair, axis=3)
            else:
                packed = nan_keys_on_top(packed, NAN_MAG, COL_BITS)
            best = tl.max(tl.max(packed, axis=2) - lane_off, axis=1)
    if SCORE == 2:
        # the softmax's denominator over all E, from the tile already in registers (x: the logits
        # as fp32, decoded for this score only), before the rounds need the registers
        if KEY16:
            row_max = key_value(best >> 16, KEY16, IS_BF16)
            if not PAIRS:
                # the denominator adds a word's two terms first (softmax_denominator): rows not read
                # as words are read again (cache hits) as pairs of columns, so that both give the same bits
                x = column_pairs(row_ptr, row_ok, E, stride_ge, BLOCK_E, IS_BF16)
        else:
            row_max = key_value(tl.max(tl.max(key, axis=2), axis=1), KEY16, IS_BF16)
        den = softmax_denominator(x, row_max, LOG2_BLOCK_E, ACCURATE_EXP, not KEY16)
    out_ok = row_ok[:, None] & (slots < K)[None, :]
    if WORD_MAXIMA:
        top_id = picks_by_word(packed, best, row_ptr, out_ok, slots, K, COL_BITS, NAN_MAG, lane_off[:, :, None])
        order_in_doubt = 0
    else:
        top_id, order_in_doubt = picks_of(packed, key, best, cols, slots, row_ok, K, BLOCK_E, COL_BITS, CHECK_LOSS,
                                          lane_off[:, :, None])

    top_id = tl.where(out_ok, top_id, 0)
    # Gathering the chosen logits again (cache hits) also moves the K picks from the reduction's
    # layout, where each row's picks sit in every lane of the row, to a compact one: decoding them
    # from the packed keys instead left the softmax below replicated 16 times (reports/bench/NOTES.md,
    # "v2, trimmed").
    v = load_fp32(row_ptr[:, None] + top_id * stride_ge, out_ok, IS_BF16)
    if CHECK_LOSS:
        if order_in_doubt:
            top_id, v = ranked_by_logit(top_id, v, slots, K, PAIRWISE=BLOCK_T == 1 and BLOCK_K <= 16)
    if SCORE == 2:
        probs = softmax_over_all(v, den, slots, ACCURATE_EXP)
    else:
        probs = chosen_scores(v, slots, K, BLOCK_T, BLOCK_K, LOG2_BLOCK_K, ACCURATE_EXP, SCORE, RENORM)
    store_routing(probs, top_id, rows64, out_ok, slots, scale_ptr, stride_s, weights_ptr, ids_ptr, K, SCALE_IS_BF16)


@triton.jit
def pick_rounds(packed, best, slots, K: tl.constexpr, ROUNDS: tl.constexpr, COL_BITS: tl.constexpr,
                CHECK_LOSS: tl.constexpr, lane_off=0):
    """The picks' packed keys [BLOCK_T, BLOCK_K] by slot, largest first, from packed keys
    [BLOCK_T, C, V] whose rows' largest is ``best``: each round the largest key below the last
    pick, ``prev - 1 - min_unsigned((prev - 1) - packed)`` (``lane_off``: what each key exceeds its
    true value by, [1, C, 1] or 0; route_kernel's ROW_LANES). Also, under CHECK_LOSS, which rows
    have two consecutive picks of the ROUNDS sharing a truncated key, and which have the K-th and
    the (K + 1)-th sharing one (ROUNDS = K + 1)."""
    top = tl.where(slots[None, :] == 0, best[:, None], 0)
    ambiguous = best < best   # all False, in best's layout (a Gluon caller's too: tl.zeros would need one)
    at_kth = ambiguous
    for k in tl.static_range(1, ROUNDS):
        prev = best
        gap = (((prev - 1)[:, None, None] + lane_off) - packed).to(tl.uint32, bitcast=True)
        best = prev - 1 - tl.min(tl.min(gap, axis=2), axis=1).to(tl.int32, bitcast=True)
        if CHECK_LOSS:
            tie = (best >> COL_BITS) == (prev >> COL_BITS)
            ambiguous = ambiguous | tie
            if k == K:
                at_kth = tie
        if k < K:
            top = tl.where(slots[None, :] == k, best[:, None], top)
    return top, ambiguous, at_kth


@triton.jit
def picks_of(packed, key, best, cols, slots, row_ok, K: tl.constexpr, BLOCK_E: tl.constexpr, COL_BITS: tl.constexpr,
             CHECK_LOSS: tl.constexpr, lane_off=0):
    """The K picks' ids [BLOCK_T, BLOCK_K] from packed keys [BLOCK_T, C, V] (``best``: the rows'
    largest; ``key``: the full keys, for fp32's exact path; ``cols``: the columns [1, C, V]), and,
    under CHECK_LOSS, whether some row's picks are right as a set but in doubt as to their order
    (the caller ranks them again by their logits: ranked_by_logit). route_kernel and the TMA-ring
    variant (benchmarks/variants/v8_tma_ring.py) select through here."""
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    ROUNDS: tl.constexpr = K + 1 if CHECK_LOSS else K  # one more pick shows a tie across the K-th place
    top, ambiguous, at_kth = pick_rounds(packed, best, slots, K, ROUNDS, COL_BITS, CHECK_LOSS, lane_off)
    top_id = COL_MASK - (top & COL_MASK)
    order_in_doubt = 0
    if CHECK_LOSS:
        # Truncated fp32 keys that tie are ordered by id, not by their dropped bits. A tie inside
        # the K picks leaves the set right and only its order in doubt: the picks are ranked again
        # by their logits (the caller). A tie across the K-th place leaves the set in doubt: the
        # block takes the exact iterative max (reports/bench/NOTES.md, "fp32 truncated ties inside the K").
        # Whether a tied row's keys lost bits to their ids at all (max(key & COL_MASK), two instructions a
        # key) is asked only in a block where some row's truncated picks tie (0.26% of four-row blocks of
        # randn rows): on the H200 Gemma4 fp32 at T = 250000 54.11 -> 52.59 µs, where every block asked
        # ("Thirty-first round"). As an `if`: as a zero-or-one loop the compiler hoisted the reduction out.
        in_doubt = ambiguous & row_ok
        if tl.max(in_doubt.to(tl.int32), axis=0) > 0:
            in_doubt = in_doubt & (tl.max(tl.max(key & COL_MASK, axis=2), axis=1) != 0)
        set_in_doubt = tl.max((in_doubt & at_kth).to(tl.int32), axis=0)
        if set_in_doubt > 0:
            top_id = exact_topk(key, cols, slots, K, BLOCK_E, top_id)
        order_in_doubt = tl.max(in_doubt.to(tl.int32), axis=0) > set_in_doubt
    return top_id, order_in_doubt


@triton.jit
def picks_by_word(word_max, best, row_ptr, out_ok, slots, K: tl.constexpr, COL_BITS: tl.constexpr,
                  NAN_MAG: tl.constexpr, lane_off=0):
    """The K picks' ids [BLOCK_T, BLOCK_K] of bf16/fp16 rows read as 32-bit words, from each word's
    larger packed key (word_max [BLOCK_T, C, V]; ``best``: the rows' largest). The rounds run over
    the words' maxima, half the keys: their K largest are the K words that can hold a pick (a key
    among the row's K largest is either its word's larger, then among the K largest maxima, or its
    smaller, whose word's larger ranks above it). Those K words are read again (from L1, where the
    row's load left them), and the rounds run once more over their 2K keys."""
    COL_MASK: tl.constexpr = (1 << COL_BITS) - 1
    top, _, _ = pick_rounds(word_max, best, slots, K, K, COL_BITS, False, lane_off)
    col = COL_MASK - (top & COL_MASK)
    w = tl.load(row_ptr.to(tl.pointer_type(tl.int32))[:, None] + (col >> 1), mask=out_ok, other=0)
    # the other logit of each chosen word: the low half when the pick is the odd column
    partner = top_half_key(tl.where((col & 1) == 1, w << 16, w), NAN_MAG) | (COL_MASK - (col ^ 1))
    slot_ok = (slots < K)[None, :]
    candidates = tl.join(tl.where(slot_ok, top, -2147483647 - 1), tl.where(slot_ok, partner, -2147483647 - 1))
    top, _, _ = pick_rounds(candidates, best, slots, K, K, COL_BITS, False)
    return COL_MASK - (top & COL_MASK)


@triton.jit
def ranked_by_logit(top_id, v, slots, K: tl.constexpr, PAIRWISE: tl.constexpr = False):
    """The K picks (ids [BLOCK_T, BLOCK_K] and their fp32 logits v) put in the oracle's order:
    larger logit first (by order key: every NaN ties above +inf, -0.0 ties +0.0), then lower id.
    Ranks by all pairs, one pick against the row's K per pass (K passes to rank, K to place, not
    unrolled: a rare path); slots from K on stay where they are. Values move as sums of one term
    and zeros, the logits by their bits (a float sum would turn -0.0 into +0.0).
    PAIRWISE (one row a program, BLOCK_K <= 16: the GPU's tile at small T) compares all pairs at
    once in a [BLOCK_T, BLOCK_K, BLOCK_K] tile, which the GPU lays out through shared memory (1 KB),
    instead of 2K dependent passes of cross-lane sums: a program with such a row is the slowest of a
    small batch, and sets its time (reports/bench/NOTES.md, "All pairs at once"). Larger tiles keep
    the passes: the pairs' tile grows with BLOCK_T, past the interpreter's largest tensor at K = 64."""
    f = order_key(v)[0]
    bits = v.to(tl.int32, bitcast=True)
    if PAIRWISE:
        j_first = ranks_before(f[:, None, :], top_id[:, None, :], f[:, :, None], top_id[:, :, None])  # [row, i, j]
        rank = tl.sum((j_first & (slots < K)[None, None, :]).to(tl.int32), axis=2)
        rank = tl.where(slots[None, :] < K, rank, slots[None, :])
        ranked_id = by_rank(rank, top_id, slots)
        ranked_bits = by_rank(rank, bits, slots)
    else:
        rank = top_id * 0   # zeros in top_id's layout (tl.zeros_like needs a layout under Gluon)
        for j in tl.range(K, loop_unroll_factor=1):
            at_j = slots[None, :] == j
            f_j = tl.sum(tl.where(at_j, f, 0), axis=1)[:, None]
            id_j = tl.sum(tl.where(at_j, top_id, 0), axis=1)[:, None]
            rank += ranks_before(f_j, id_j, f, top_id).to(tl.int32)
        rank = tl.where(slots[None, :] < K, rank, slots[None, :])
        ranked_id = top_id
        ranked_bits = bits
        for i in tl.range(K, loop_unroll_factor=1):
            at_i = slots[None, :] == i
            to = slots[None, :] == tl.sum(tl.where(at_i, rank, 0), axis=1)[:, None]
            ranked_id = tl.where(to, tl.sum(tl.where(at_i, top_id, 0), axis=1)[:, None], ranked_id)
            ranked_bits = tl.where(to, tl.sum(tl.where(at_i, bits, 0), axis=1)[:, None], ranked_bits)
    return ranked_id, ranked_bits.to(tl.float32, bitcast=True)


# The launch table, chosen by measurement on one H200 (reports/bench/NOTES.md, "v5: rows across
# lanes", has the timings of every alternative). Large T: keys per warp, by logit dtype, one warp
# per program. The tile puts rows across lanes first, so keys per warp also set the lanes per row:
# bf16/fp16 at 2048 keys run 16 rows of 128 per warp, 2 lanes a row, and 8 rows of 256; fp32 at 512
# keys, 4 rows of 128, 8 lanes a row (8 rows were as fast at T=250000 and slower at T=2048).
# Small T is latency-bound: rows are spread so that at least FILL_PROGRAMS programs run (about two
# per SM), down to one row per program.
KEYS_PER_WARP = {torch.bfloat16: 2048, torch.float16: 2048, torch.float32: 512}
SOFTMAX_ALL_KEYS_PER_WARP = 1024
"""Keys per warp, at most, under the softmax over all E, whose denominator keeps the row's logits
live beside the keys: Qwen2-MoE (E=60, bf16) at T=250000 took 41.9 us at 2048 keys (32 rows, 141
registers) and 29.2 us at 512 (8 rows) on the H200 (reports/bench/NOTES.md, "Softmax over all E");
with its rows' alignment told (ROW_ALIGN) 27.2 at 2048, 22.1 at 1024, 23.0 at 512 ("Rows that
start aligned")."""
FILL_PROGRAMS = 264
INTERPRETER_KEYS_PER_PROGRAM = 2**19  # the interpreter pays per program in Python: make them large (2**17: 11.6 s for 250000 bf16 rows of 128 on the 2-core CPU, 2**19: 7.7 s; 2**21 passes triton's largest tensor)
MAX_WARPS = 8
WHOLE_ROW_VEC_MAX_E = 128
"""Up to this BLOCK_E, a bf16/fp16 row that a program routes alone (BLOCK_T = 1) is one vector of
BLOCK_E logits instead of 16-byte vectors: each round's reduction then lowers to one REDUX instead of
SHFL trees, the same bits and faster on the H200 up to E = 128; at E = 256, and for fp32, it was
not (reports/bench/NOTES.md, "Whole-row vectors")."""


def warps_for(block_t: int, block_e: int, dtype: torch.dtype) -> int:
    """Warps for a tile of block_t rows of block_e logits: one per KEYS_PER_WARP keys, 1 to MAX_WARPS."""
    return min(MAX_WARPS, max(1, block_t * block_e // KEYS_PER_WARP[dtype]))


def largest_block_t(block_e: int, dtype: torch.dtype) -> int:
    """The most rows a tile may hold: MAX_WARPS warps at KEYS_PER_WARP keys each (at least one row).
    Larger tiles spill registers, and ptxas then takes minutes: on sm_90, 64 rows of 1024 bf16
    logits on one warp did not compile in 400 s here (reports/bench/NOTES.md)."""
    return max(1, MAX_WARPS * KEYS_PER_WARP[dtype] // block_e)


def sixteen_byte_vec(block_e: int, dtype: torch.dtype, E: int | None = None) -> int:
    """Logits in one 16-byte load (fewer when the padded row is shorter), or in one 8-, 4- or 2-byte
    load when a row of E logits is not a multiple of 16 bytes long: its rows then start only on
    such boundaries, and a vector that straddles them lays the tile out across the vector instead
    of across rows (Qwen2-MoE's 120-byte rows: 31.3 us at 16 bytes, 28.2 at 8 on the H200;
    reports/bench/NOTES.md, "Vectors that fit the row")."""
    row_bytes = (E or block_e) * dtype.itemsize
    return max(1, min(block_e, min(16, row_bytes & -row_bytes) // dtype.itemsize))


def vec_for(block_t: int, block_e: int, dtype: torch.dtype, E: int | None = None) -> int:
    """Logits per vector of the tile: one load (sixteen_byte_vec), or the whole row for a bf16/fp16
    row of at most WHOLE_ROW_VEC_MAX_E logits routed alone."""
    if block_t == 1 and dtype.itemsize == 2 and block_e <= WHOLE_ROW_VEC_MAX_E:
        return block_e
    return sixteen_byte_vec(block_e, dtype, E)


@dataclass(frozen=True)
class Tile:
    """How rows are spread over programs: rows per program, the padded row, logits per vector, warps."""

    block_t: int
    block_e: int
    vec: int
    num_warps: int


def tile(T: int, E: int, dtype: torch.dtype, *, interpreter: bool, score: int = SOFTMAX_K) -> Tile:
    """The launch table: one tile for a batch of T rows of E logits of ``dtype`` (``score``: the
    weights' epilogue, kernel_parts.SOFTMAX_K, SIGMOID or SOFTMAX_ALL)."""
    block_e = triton.next_power_of_2(E)
    rows_needed = triton.next_power_of_2(max(T, 1))
    if interpreter:
        block_t = max(1, min(INTERPRETER_KEYS_PER_PROGRAM // block_e, rows_needed))
        return Tile(block_t, block_e, vec_for(block_t, block_e, dtype, E), 1)
    per_warp = KEYS_PER_WARP[dtype] if score != SOFTMAX_ALL else min(KEYS_PER_WARP[dtype], SOFTMAX_ALL_KEYS_PER_WARP)
    fill = 1 << max(0, (max(T, 1) // FILL_PROGRAMS).bit_length() - 1)  # rows that still fill the GPU
    block_t = max(1, min(per_warp // block_e, rows_needed, fill))
    return Tile(block_t, block_e, vec_for(block_t, block_e, dtype, E), warps_for(block_t, block_e, dtype))


NAN_MAGNITUDE = {torch.bfloat16: 0x7F80, torch.float16: 0x7C00, torch.float32: 0x7F800000}
"""Largest non-NaN magnitude (the bits of +inf) per logit dtype, for sign_magnitude_key."""


def reads_pairs(gating_output: torch.Tensor) -> bool:
    """Whether the kernel may read a bf16/fp16 row as 32-bit words, two logits each: rows
    contiguous, of even length, starting on 4-byte boundaries, so no word straddles two rows or
    the end of the tensor."""
    T, E = gating_output.shape
    return (gating_output.dtype.itemsize == 2 and E % 2 == 0 and gating_output.stride(1) == 1
            and (gating_output.stride(0) % 2 == 0 or T == 1) and gating_output.data_ptr() % 4 == 0)


def row_align(E: int, stride: int, vec: int) -> int:
    """route_kernel's ROW_ALIGN: the largest power of two, at most ``vec``, that divides both E and
    the row stride (in logits), so every row starts on a multiple of it and is a whole number of
    them long. Told to the compiler, the loads are that wide (reports/bench/NOTES.md, "Rows that
    start aligned"): a stride that is no multiple of 16 bytes is otherwise taken as unaligned."""
    return min(vec, E & -E, stride & -stride if stride else vec)


WORD_MAXIMA: bool | None = None
"""Whether plan lets route_kernel select through each 32-bit word's larger key (picks_by_word): the
rounds over half the keys, then once more over the K chosen words' 2K. None: at the shapes of
WORD_MAXIMA_SHAPES; True: wherever the row holds K words (the tests force it there); False: never."""

WORD_MAXIMA_SHAPES = frozenset({(128, 8)})
"""(padded E, K) where picks_by_word is on by default, at tiles of several rows. Timed on an H100
(benchmarks/probe_fused.py --configs words, three runs, medians, git c19e0c7; reports/bench/NOTES.md,
"Fourteenth round"), T = 250000 / 65536 bf16: E=128, K=8 (Gemma4, Qwen3) 36.18 -> 34.57 / 12.29 ->
11.91 us at WORD_MAXIMA_MAX_REGISTERS (uncapped, 118 registers: 37.57, slower); E=128, K=4 (GPT-OSS)
30.54 -> 30.07 / 10.36 -> 10.45, under the 2% a path must win by; E=60, K=4 with the softmax over all E
(Qwen2-MoE) 19.69 -> 20.65, slower. Other shapes are not timed and keep the rounds over every key."""

WORD_MAXIMA_MAX_REGISTERS = 96
"""ptxas's register cap (maxnreg) wherever picks_by_word runs on the GPU: uncapped it holds 118
(17 one-warp programs an SM), at 96 it keeps the table's 21 without a spill; 88 / 80 / 72 were slower
on the H100 (35.26 / 36.2 / 38.7 us, Gemma4 bf16 at T = 250000)."""

FMA_KEYS: int | None = None
"""How plan lets route_kernel make the 16-bit keys of rows read as words: 0 on the ALU pipe; 1 the even columns' by
two multiplies (kernel_parts.low_half_key, FMA pipe) where four ALU-pipe instructions made them; 2 the odd columns'
too (high_half_key); None (the default) as measured: at tiles of several rows 1 where picks_by_word runs (with
LANE_IDS) and 2 elsewhere, at one-row programs (small T, latency-bound, not timed) 0. SASS sm_90 (triton 3.6) at the T =
250000 tiles, path / ALU-pipe instructions a warp: Gemma4 bf16 1291 / 820 -> 1184 / 671 (1 with LANE_IDS; 96 -> 82
registers), GPT-OSS 930 / 606 -> 903 / 544 at 1, Qwen2-MoE 772 / 400 -> 786 / 341 at 2. Timed on an H100 (probe_fused
--configs fmakeys,econst, four calls back to back, every row the oracle's; reports/bench/probes/fma-keys-h100.json),
T = 250000 / 65536, µs: Gemma4 bf16 34.55 / 12.69 -> 33.16-33.20 / 12.44-12.52 at 1 with LANE_IDS (12.38-12.41 at 1
without, 33.92 at 250000; at 2 without LANE_IDS 34.96 / 13.14, slower); GPT-OSS 30.29 / 11.16 -> 29.47 / 10.75 at 2
(29.72 / 10.87 at 1); Llama 4 26.47 / 9.53 -> 25.99 / 9.31 at 2; Qwen2-MoE 19.06-19.12 / 7.35 -> 18.34-18.39 / 7.22-7.26
at 2 (18.48-18.54 / 7.48-7.50 at 1: slower at 65536). reports/bench/NOTES.md, "Twenty-fourth round"."""

LANE_IDS: bool = True
"""Whether plan lets route_kernel pack ids less their lane's part under picks_by_word (ROW_LANES;
kernel_parts.lane_offsets): the id then costs no instruction of its own. SASS sm_90, Gemma4 bf16 with FMA_KEYS = 1:
1267 / 760 -> 1184 / 671, 96 (the cap) -> 82 registers. Elsewhere ptxas kept every round's lane offsets live (GPT-OSS
90 -> 125 registers, Llama 4 118 -> 145), so words only. On the H100 with FMA_KEYS = 1, Gemma4 bf16 33.92 -> 33.16-33.20
µs at T = 250000, 12.38-12.41 -> 12.44-12.52 at 65536; alone (keys on the ALU pipe) slower, 34.55 -> 34.72 / 12.69 ->
13.14 (fma-keys-h100.json)."""

E_CONSTANT: bool = False
"""Whether plan makes E a compile-time constant of route_kernel (E_CONST; one kernel per E, where BLOCK_E alone told
rows of 33 to 64 logits apart): the columns' masks fold where a thread's vectors lie inside the row, and Qwen2-MoE's
rows of 60 load from one address and immediate offsets (SASS sm_90, its bf16 tile: 772 -> 740 instructions, 79 -> 72
registers). Timed on an H100 (0ef1cd6 against ef8d848, reverted in 6830002): T = 250000 -0.8%, 65536 +3.7%, mixed;
prepared again as a switch so that one tree times it (reports/bench/NOTES.md, "Nineteenth round"). On an H100 with
FMA_KEYS = 2, Qwen2-MoE bf16 18.34 -> 18.16 µs at T = 250000, 7.26 -> 7.22 at 65536 (-1.0%, -0.6%: under the 2% a path
must win by; alone 19.05 -> 18.76 and 7.37 -> 7.62, as in the nineteenth round). Off."""

FP32_UNCHECKED = True
"""Whether plan lets route_kernel key fp32 logits without the NaN select where rows need no padding
(E a power of two): three ALU instructions a key where the select took five, and one sum of x * 0
over the block (FMA pipe) that is NaN where a NaN or an inf sits, which sends that block through
fp32_keys_on_top. SASS sm_90 (triton 3.6), Gemma4 fp32's T=250000 tile: ALU-pipe instructions
390 -> 346 a warp. On an H100 (probe_fused --configs fp32keys, three runs, medians, git c19e0c7),
Gemma4 fp32: T = 250000 58.5-59.1 -> 57.5 us, T = 65536 18.1 -> 17.55 (reports/bench/NOTES.md,
"Fourteenth round")."""


@dataclass(frozen=True)
class Launch:
    """One call's launch, decided once from the validated problem: its tile (so its grid and
    warps) and every compile-time argument of route_kernel."""

    T: int
    E: int
    tile: Tile
    constexprs: dict
    max_registers: int | None = None

    def options(self) -> dict:
        """route_kernel's keyword arguments beyond its tensors and sizes: tile, warps, compile-time
        arguments and the register cap (run, and benchmarks/sass_grouped.py's compile, launch with these)."""
        t = self.tile
        cap = {} if self.max_registers is None else {"maxnreg": self.max_registers}
        return {"BLOCK_T": t.block_t, "BLOCK_E": t.block_e, "VEC": t.vec, "num_warps": t.num_warps,
                **self.constexprs, **cap}

    @property
    def grid(self) -> tuple[int]:
        return (triton.cdiv(self.T, self.tile.block_t),)

    def run(self, gating_output, per_expert_scale, weights, ids) -> None:
        route_kernel[self.grid](
            gating_output, per_expert_scale, weights, ids,
            self.T, self.E, gating_output.stride(0), gating_output.stride(1), per_expert_scale.stride(0),
            **self.options(),
        )


def plan(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor, *,
         interpreter: bool = device.INTERPRETER, score: int = SOFTMAX_K, renormalize: bool = True,
         word_maxima: bool | None = None, fp32_unchecked: bool | None = None, fma_keys: int | None = None,
         lane_ids: bool | None = None, e_constant: bool | None = None) -> Launch:
    """The launch for these (validated) arguments: the table's tile, and the compile-time
    arguments that follow from the problem, not from tuning. ``score``: what the weights are
    (kernel_parts.SOFTMAX_K, SIGMOID, SOFTMAX_ALL); ``renormalize``: a sigmoid's renormalisation
    over the K; ``word_maxima``: select through each word's larger key (picks_by_word) where the
    row is read as words and holds at least K of them (None: as WORD_MAXIMA says, and where that is None
    as WORD_MAXIMA_SHAPES does), its registers capped on the GPU; ``fp32_unchecked``:
    fp32 keys without the NaN case, a block holding a NaN or an inf checked once (None: as
    FP32_UNCHECKED says); ``fma_keys`` (0, 1, 2; None: by the tile, fma_keys_for), ``lane_ids``, ``e_constant``: as
    FMA_KEYS, LANE_IDS and E_CONSTANT say (None: as they say)."""
    T, E = gating_output.shape
    t = tile(T, E, gating_output.dtype, interpreter=interpreter, score=score)
    pairs = reads_pairs(gating_output)
    col_bits = max(1, (t.block_e - 1).bit_length())
    # The packed key keeps 32 - COL_BITS bits of the fp32 key: enough for every bf16 (16 bits) and
    # fp16 (19 bits) value while COL_BITS <= 13; fp32 logits are checked at run time.
    assert col_bits <= 13, "MAX_EXPERTS must keep COL_BITS <= 13"
    block_k = triton.next_power_of_2(topk)
    words = WORD_MAXIMA if word_maxima is None else word_maxima
    if words is None:
        words = (t.block_e, topk) in WORD_MAXIMA_SHAPES
    words = words and pairs and 1 < topk <= t.block_e // 2 and t.block_t > 1
    fma = FMA_KEYS if fma_keys is None else fma_keys
    return Launch(T, E, t, {
        "K": topk, "BLOCK_K": block_k, "LOG2_BLOCK_K": block_k.bit_length() - 1, "COL_BITS": col_bits,
        "CHECK_LOSS": gating_output.dtype == torch.float32,
        **dtype_flags(gating_output, per_expert_scale, interpreter=interpreter),
        "EVEN_E": E == t.block_e, "KEY16": gating_output.dtype.itemsize == 2,
        "NAN_MAG": NAN_MAGNITUDE[gating_output.dtype], "PAIRS": pairs,
        "SCORE": score, "RENORM": renormalize, "LOG2_BLOCK_E": t.block_e.bit_length() - 1,
        "ROW_ALIGN": row_align(E, gating_output.stride(0), t.vec),
        # both later paths save pipe work, not latency: a program of one row (small T, latency-bound)
        # would only pay their extra dependent steps (a gather's round trip, a cross-lane sum)
        "WORD_MAXIMA": words,
        "ROW_LANES": (max(1, min(t.block_e // t.vec, 32 * t.num_warps // t.block_t))
                  if words and (LANE_IDS if lane_ids is None else lane_ids) else 1),
        "FMA_KEYS": fma_keys_for(t, words, gating_output.dtype) if fma is None else int(fma),
        "E_CONST": E if (E_CONSTANT if e_constant is None else e_constant) else 0,
        "FP32_UNCHECKED": ((FP32_UNCHECKED if fp32_unchecked is None else fp32_unchecked)
                           and gating_output.dtype == torch.float32 and t.block_t > 1),
    }, WORD_MAXIMA_MAX_REGISTERS if words and not interpreter else None)


def fma_keys_for(t: Tile, words: bool, dtype: torch.dtype) -> int:
    """FMA_KEYS's default (None) for a tile: 0 at one row a program and for fp32 logits (whose keys it does not
    make), else 1 under picks_by_word, 2 elsewhere."""
    return 0 if t.block_t == 1 or dtype == torch.float32 else 1 if words else 2


def _launcher(score: int, renormalize: bool = True):
    def launch(gating_output, topk, per_expert_scale, weights, ids) -> None:
        plan(gating_output, topk, per_expert_scale, score=score, renormalize=renormalize).run(
            gating_output, per_expert_scale, weights, ids)
    return launch


SCORES = {("softmax", True): (SOFTMAX_K, True), ("softmax", False): (SOFTMAX_ALL, True),
          ("sigmoid", False): (SIGMOID, False), ("sigmoid", True): (SIGMOID, True)}
"""A router's (score, renormalize) -> plan's (score, renormalize): the kernel's weight epilogue."""

fused = TritonRouting("fused_route", _launcher(*SCORES[("softmax", True)]), MAX_EXPERTS,
                      """Fused routing: (weights fp32 [T, K], ids int32 [T, K]); ids exactly the oracle's.""")
fused_sigmoid = TritonRouting("fused_sigmoid_route", _launcher(*SCORES[("sigmoid", False)]), MAX_EXPERTS,
                              """Fused routing with a sigmoid per chosen logit (the same selection, Llama 4's
                              weights): (weights fp32 [T, K], ids int32 [T, K]).""")
fused_sigmoid_renorm = TritonRouting("fused_sigmoid_renorm_route", _launcher(*SCORES[("sigmoid", True)]), MAX_EXPERTS,
                                     """Fused routing with the chosen logits' sigmoids renormalised over the K.""")
fused_softmax_all = TritonRouting("fused_softmax_all_route", _launcher(*SCORES[("softmax", False)]), MAX_EXPERTS,
                                  """Fused routing with the softmax over all E, not renormalised (Qwen2-MoE):
                                  (weights fp32 [T, K], ids int32 [T, K]).""")
EPILOGUES = {("softmax", True): fused, ("softmax", False): fused_softmax_all,
             ("sigmoid", False): fused_sigmoid, ("sigmoid", True): fused_sigmoid_renorm}
"""One kernel source, four weight epilogues (compile-time SCORE and RENORM): the router's
(score, renormalize) picks the op."""

_CONSTANTS: dict = {}


def constant_vector(E: int, value: float, dtype: torch.dtype, device_: torch.device) -> torch.Tensor:
    """A vector of E copies of value on the device, made once and cached (a unit scale, a scaling
    factor, a zero bias) rather than on every call."""
    key = (E, value, dtype, str(device_))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.full((E,), value, dtype=dtype, device=device_)
    return _CONSTANTS[key]


def router_scale(router, E: int, device_: torch.device) -> torch.Tensor:
    """The scale the kernel multiplies the weights by: the router's per_expert_scale, times its
    scaling_factor in float64 when that is not 1 (the kernel multiplies a float64 scale in float64
    and rounds once, as the oracle does), or a cached vector of ones / of the factor."""
    sf = router.scaling_factor
    if router.per_expert_scale is not None:
        return router.per_expert_scale if sf == 1.0 else router.per_expert_scale.double() * sf
    return constant_vector(E, sf, torch.float32 if sf == 1.0 else torch.float64, device_)


def grouped(router) -> bool:
    """Whether the router chooses by biased sigmoid scores or in groups (parity.routing.fused_grouped's
    kernel), not by the logits (this module's)."""
    return router.correction_bias is not None or router.n_group > 1


def route(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """parity's fused kernels for a family's Router (parity.routing.router). Selection by the logits
    (no correction bias, one group): this module's kernel, ids exactly the oracle's (ties to the
    lower id), weights by the router's score: softmax over the K (Gemma4, GPT-OSS, renormalising
    Mixtral/Qwen), softmax over all E (Qwen2-MoE), a sigmoid per chosen logit, renormalised or not
    (Llama 4); times the per-expert scale and the scaling factor. Selection by biased sigmoid scores
    and groups (DeepSeek-V3, Kimi K2, GLM-4.5): parity.routing.fused_grouped."""
    from parity.routing.contract import validate_router

    validate_router(gating_output, topk, router, max_experts=MAX_EXPERTS)
    if grouped(router):
        from parity.routing import fused_grouped
        return fused_grouped.route(gating_output, topk, router)
    kernel = EPILOGUES[(router.score, router.renormalize)]
    return kernel(gating_output, topk, router_scale(router, gating_output.shape[1], gating_output.device))
