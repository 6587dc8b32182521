"""The fused Triton kernel against the fp64 oracle: ids exactly, weights within FUSED_MAX_ULP."""
import dataclasses

import pytest
import torch
import triton

from parity.analysis import kth_logit
from parity.check import assert_routing_close
from parity.routing import fused as fused_module
from parity.routing import kernel_parts
from parity.routing.fused import MAX_EXPERTS, fused, reads_pairs, tile
from parity.routing.oracle import route64
from routing_cases import DTYPES, FUSED_MAX_ULP, logits, scale, tied_logits

EPILOGUE_KERNELS = {"softmax_k": fused, "softmax_all": fused_module.fused_softmax_all,
                    "sigmoid": fused_module.fused_sigmoid}
"""route_kernel's weight epilogues by the name the tests parametrize them with."""


def route_at_tile(g, K, s, block_t, vec=4, **constexprs):
    """route_kernel launched directly at a tile the launch table would not choose: block_t rows a
    program, ``vec``-wide vectors, one warp; the plan's compile-time arguments, with overrides. (weights, ids)"""
    T, E = g.shape
    const = {**fused_module.plan(g, K, s).constexprs, **constexprs}
    w = torch.empty(T, K, device=g.device)
    ids = torch.empty(T, K, dtype=torch.int32, device=g.device)
    fused_module.route_kernel[(triton.cdiv(T, block_t),)](g, s, w, ids, T, E, g.stride(0), g.stride(1), s.stride(0),
                                                          BLOCK_T=block_t, BLOCK_E=triton.next_power_of_2(E), VEC=vec,
                                                          num_warps=1, **const)
    return w, ids


SEVERAL_ROWS_T = 16 * fused_module.FILL_PROGRAMS
"""Rows enough that the GPU's plan takes its largest tile (fewer are spread down to a row a program,
where plan keeps the word maxima and the unchecked fp32 keys off)."""


def assert_prepared_path_matches(flag, g, K, s, monkeypatch, kernel=fused, tile=None, on=True):
    """A prepared route_kernel path (``flag``: its fused module constant and compile-time argument,
    WORD_MAXIMA, FP32_UNCHECKED or FMA_KEYS; ``on``: its value when on) gives the oracle's ids and the
    default path's ids and weights bit for bit: through the public op, or at ``tile`` = (block_t, vec)
    launched directly. On the GPU the public
    op's rows are repeated until plan takes its largest tile: both paths run only at tiles of several
    rows, and a batch of a few hundred rows is routed a row a program there."""
    if not tile and g.is_cuda:
        g = g.repeat(-(-SEVERAL_ROWS_T // g.shape[0]), 1)
    if tile:
        base = route_at_tile(g, K, s, *tile, **{flag: False})
        new = route_at_tile(g, K, s, *tile, **{flag: on})
    else:
        monkeypatch.setattr(fused_module, flag, False)
        base = kernel(g, K, s)
        monkeypatch.setattr(fused_module, flag, on)
        assert fused_module.plan(g, K, s).constexprs[flag]   # the path under test is the one launched
        new = kernel(g, K, s)
    assert torch.equal(new[1].long(), route64(g, K, s)[1])
    assert torch.equal(new[1], base[1])
    assert torch.equal(new[0].nan_to_num(7.0), base[0].nan_to_num(7.0))


def check_against_oracle(g, K, s):
    assert_routing_close(fused(g, K, s), route64(g, K, s), ordered=True, max_ulp=FUSED_MAX_ULP)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("T", [1, 2, 7, 1000, 65536])
def test_random_normal_matches_oracle(T, dtype, dev):
    check_against_oracle(logits(T, 128, dtype, dev, seed=T), 8, scale(128, dev))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("E,K", [(7, 1), (7, 6), (7, 7), (96, 1), (96, 6), (96, 8), (96, 32),
                                 (128, 1), (128, 6), (128, 32), (256, 8), (256, 32),
                                 (1000, 1), (1000, 6), (1000, 8), (1000, 32), (MAX_EXPERTS, 64)])
def test_expert_counts_and_topk(E, K, dtype, dev):
    T = 300 if E < MAX_EXPERTS else 40
    check_against_oracle(logits(T, E, dtype, dev, seed=E + K), K, scale(E, dev))


@pytest.mark.parametrize("spread", [8.0, 30.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_peaked_logits_keep_the_ulp_bound(spread, dtype, dev):
    """Large logit gaps: the max-subtraction's rounding would cost tens of ulps without TwoSum."""
    check_against_oracle(logits(4096, 128, dtype, dev, seed=3, spread=spread), 8, scale(128, dev))


@pytest.mark.parametrize("E", [128, 1000])
def test_fp32_near_ties_take_the_exact_path(E, dev):
    """fp32 logits 1 + 1e-6 * noise share their truncated packed keys: the kernel must notice and
    fall back to the exact comparison, so ids still equal the oracle's."""
    gen = torch.Generator().manual_seed(7)
    g = (1.0 + 1e-6 * torch.randn(512, E, generator=gen)).to(dev)
    check_against_oracle(g, 8, scale(E, dev))


@pytest.mark.parametrize("T", [1, 64])
def test_fp32_truncated_ties_inside_the_k_are_ranked_by_logit(T, dev):
    """Two logits one ulp apart share their truncated packed key and come out by id, the larger
    logit (higher id) second: the kernel ranks such picks again by their logits. A tie across the
    K-th place, added to the same batch, takes the whole block through the exact path instead;
    either way ids are the oracle's, in its order."""
    gen = torch.Generator().manual_seed(T)
    g = torch.randn(T, 128, generator=gen)
    for r in range(T):
        a, b = sorted(torch.randperm(128, generator=gen)[:2].tolist())
        g[r, a] = 5.0 + r % 3
        g[r, b] = torch.nextafter(g[r, a], torch.tensor(float("inf")))  # one ulp above, the higher id
    check_against_oracle(g.to(dev), 8, scale(128, dev))
    g[T // 2] = torch.arange(128.0).flip(0) / 64  # ids 0..7 on top, then the K-th and the next:
    g[T // 2, 8] = torch.nextafter(g[T // 2, 7], torch.tensor(float("inf")))  # across the K-th place
    check_against_oracle(g.to(dev), 8, scale(128, dev))


def test_one_row_programs_rank_tied_picks_by_all_pairs(dev):
    """One row a program (the GPU's tile at T <= 512) ranks picks whose truncated keys tie by all
    pairs at once (ranked_by_logit's PAIRWISE; other tiles take 2K passes of sums): the oracle's
    ids in its order, and the weights of the other tiles' kernel bit for bit. Rows hold one-ulp
    pairs, a run of three, -0.0 beside +0.0 and a NaN among the picks."""
    T, E, K = 16, 128, 8
    gen = torch.Generator().manual_seed(11)
    g = torch.randn(T, E, generator=gen)
    up = lambda x: torch.nextafter(x, torch.tensor(float("inf")))  # noqa: E731
    for r in range(T):
        a, b, c = sorted(torch.randperm(E, generator=gen)[:3].tolist())
        g[r, a] = 4.0 + r % 3
        g[r, b] = up(g[r, a])
        if r % 2:
            g[r, c] = up(g[r, b])  # three picks sharing one truncated key, the larger logits later
    g[5] = -3.0 - torch.rand(E, generator=gen)  # low bits set: the zeros' truncated tie is ranked
    g[5, :K] = 0.0
    g[5, 3] = -0.0  # ties +0.0: the lower id first
    g[6, 9] = float("nan")
    g = g.to(dev)
    s = scale(E, dev)
    w, ids = route_at_tile(g, K, s, block_t=1)
    assert torch.equal(ids.long(), route64(g, K, s)[1])
    want_w, want_ids = fused(g, K, s)
    assert torch.equal(ids, want_ids) and torch.equal(w.view(torch.int32), want_w.view(torch.int32))  # NaN weights too


@pytest.mark.parametrize("block_t", [1, 4])
@pytest.mark.parametrize("K", [3, 8])
def test_ranked_picks_tie_by_the_lower_id_and_skip_the_slots_past_k(K, block_t, dev):
    """fp32 picks whose truncated keys tie are ranked again by their logits (ranked_by_logit: all
    pairs at one row a program, passes otherwise): equal logits among them (two copies of x, -0.0
    beside +0.0) keep the lower id first, and with K below its power of two (K = 3) the empty slots
    past K take no part in the rank. Every logit is negative or zero, so an empty slot (read as
    +0.0, id 0) would rank before them if it were counted."""
    T, E = 8, 128
    gen = torch.Generator().manual_seed(K)
    g = -8.0 - torch.rand(T, E, generator=gen)
    up = lambda x: torch.nextafter(x, torch.tensor(float("inf")))  # noqa: E731
    for r in range(T):
        a, b, c = sorted(torch.randperm(E, generator=gen)[:3].tolist())
        if r % 2:
            x = torch.tensor(-1.0 - r / 8)
            g[r, a], g[r, b], g[r, c] = x, x, up(x)   # oracle: c, a, b; truncated keys tie (id order a, b, c)
        else:
            g[r, a], g[r, b], g[r, c] = -0.0, 0.0, 1e-45  # oracle: c, a, b (-0.0 ties +0.0)
    g = g.to(dev)
    s = scale(E, dev)
    want_ids = route64(g, K, s)[1]
    assert want_ids[:, 0].tolist() == [max(row) for row in want_ids[:, :3].tolist()], "the planted order changed"
    assert fused_module.plan(g, K, s).constexprs["CHECK_LOSS"], "fp32 logits: the truncated keys must be checked"
    w, ids = route_at_tile(g, K, s, block_t)
    assert torch.equal(ids.long().cpu(), want_ids.cpu())
    want_w, _ = fused(g, K, s)
    assert torch.equal(w.view(torch.int32), want_w.view(torch.int32))


def test_fp32_exact_ties_on_a_coarse_grid(dev):
    """fp32 logits holding bf16 values: exact ties, lossless truncated keys, ties to the lower id."""
    g = tied_logits(2048, 128, dev).float()
    check_against_oracle(g, 8, scale(128, dev))


def test_bf16_ties_follow_the_lower_id_rule(dev):
    g = tied_logits(4096, 128, dev)
    kth = kth_logit(g.cpu(), 8)[:, None]
    tied_rows = ((g.cpu().double() == kth).sum(-1) > 1).sum().item()
    assert tied_rows > 1000, "the input should hold many ties at the K-th place"
    check_against_oracle(g, 8, scale(128, dev))


def test_any_row_stride_and_scale_layout(dev):
    base = logits(257, 128, torch.bfloat16, dev, seed=5)
    s = scale(256, dev)[::2]                       # non-contiguous scale
    transposed = base.t().contiguous().t()         # strides (1, 257)
    sliced = logits(257, 256, torch.bfloat16, dev, seed=5)[:, ::2]  # strides (256, 2)
    for g in (transposed, sliced):
        assert not g.is_contiguous()
        check_against_oracle(g, 8, s)
        assert torch.equal(fused(g, 8, s)[1], fused(g.contiguous(), 8, s.contiguous())[1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("E", [128, 100, 6, 2, 7])
def test_pair_reads_route_like_single_reads(dtype, E, dev):
    """Contiguous 16-bit rows of even length are read as 32-bit words (two logits each); any other
    layout one logit at a time. Both must give the same bits, special values included."""
    g = logits(300, E, dtype, dev, seed=E)
    g[5] = float("nan")
    g[6, ::2] = -float("inf")
    g[7, ::2], g[7, 1::2] = 0.0, -0.0
    g[8, 1::2] = float("inf")
    g[9, ::3] = -float("nan")
    s = scale(E, dev)
    column_major = g.t().contiguous().t()
    shifted = torch.empty(g.numel() + 1, dtype=dtype, device=dev)[1:].view(g.shape)  # 2-byte aligned
    shifted.copy_(g)
    assert reads_pairs(g) == (E % 2 == 0)
    assert not reads_pairs(column_major) and not reads_pairs(shifted)
    w, ids = fused(g, min(E, 8), s)
    assert torch.equal(ids.long(), route64(g, min(E, 8), s)[1])
    for other in (column_major, shifted):
        w2, ids2 = fused(other, min(E, 8), s)
        assert torch.equal(ids, ids2)
        assert torch.equal(w.nan_to_num(7.0), w2.nan_to_num(7.0))


@pytest.mark.parametrize("epilogue", ["softmax_k", "softmax_all", "sigmoid"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("E", [128, 100, 7])
def test_nan_of_either_sign_and_any_payload_ranks_on_top(dtype, E, epilogue, dev):
    """bf16/fp16 keys are made without the NaN case and a block holding a NaN picks again
    (kernel_parts.half_keys_hold_nan): NaNs of both signs and several payloads, as bits (torch
    turns -nan into +nan on the way to bf16), among blocks of ordinary rows, in pairs and single
    reads, at one row a program and several: every NaN ties the others, lower id first."""
    nan_bits = [0x7FC0, 0xFFC0, 0x7F81, 0xFFFF, 0x7FFF, 0xFF81] if dtype == torch.bfloat16 else \
               [0x7E00, 0xFE00, 0x7C01, 0xFFFF, 0x7FFF, 0xFC01]
    g = logits(200, E, dtype, dev, seed=E)
    bits = g.view(torch.int16)
    gen = torch.Generator().manual_seed(E)
    for r in range(0, 200, 9):  # one row in nine: NaNs in some blocks, none in others
        cols = torch.randperm(E, generator=gen)[:1 + r % 5]
        for i, c in enumerate(cols.tolist()):
            bits[r, c] = torch.tensor(nan_bits[(r + i) % len(nan_bits)], dtype=torch.int32).to(torch.int16)
    g[3] = -float("inf")
    bits[3, E // 2] = nan_bits[1] - 65536 if nan_bits[1] > 32767 else nan_bits[1]  # a negative NaN among -inf
    s = scale(E, dev)
    K = min(E, 8)
    want = route64(g, K, s)[1]
    kernel = EPILOGUE_KERNELS[epilogue]
    for other in (g, g.t().contiguous().t()):
        for rows in (slice(0, 1), slice(0, 7), slice(0, 200), slice(3, 4)):   # 3:4: a negative NaN alone
            assert torch.equal(kernel(other[rows], K, s)[1].long(), want[rows])


def test_vectors_fit_the_row():
    """A load never straddles rows that start off its size: 16 bytes where a row is a multiple of
    16 bytes long, else the largest power of two that divides its length (Qwen2-MoE's 120 bytes: 8)."""
    v = fused_module.sixteen_byte_vec
    assert v(128, torch.bfloat16, 128) == 8 and v(128, torch.float32, 128) == 4
    assert v(64, torch.bfloat16, 60) == 4 and v(64, torch.float32, 60) == 4
    assert v(128, torch.bfloat16, 100) == 4 and v(8, torch.bfloat16, 7) == 1 and v(8, torch.float32, 7) == 1
    assert v(4, torch.bfloat16) == 4  # the padded row alone: no more than its length
    assert fused_module.tile(250000, 60, torch.bfloat16, interpreter=False, score=kernel_parts.SOFTMAX_ALL).vec == 4


@pytest.mark.parametrize("epilogue", ["softmax_k", "softmax_all", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("E,K", [(60, 4), (7, 7), (100, 8), (6, 6)])
def test_padding_reads_as_minus_inf_and_ranks_after_every_expert(E, K, dtype, epilogue, dev):
    """Columns past E read as -inf and tie a real -inf's key: their ids must put them after every
    expert (rows of -inf, rows with fewer than K finite logits, K = E), in pair and single reads,
    at one row a program and several."""
    g = logits(40, E, dtype, dev, seed=E + K)
    g[0] = -float("inf")
    g[1, 1:] = -float("inf")
    g[2, : E - K + 1] = -float("inf")        # K - 1 finite logits
    g[3, ::2] = -float("inf")
    g[4] = float("nan")
    g[5, -1] = float("nan")
    s = scale(E, dev)
    kernel = EPILOGUE_KERNELS[epilogue]
    want = route64(g, K, s)[1]
    for other in (g, g.t().contiguous().t()):
        for T in (1, 6, 40):
            ids = kernel(other[:T], K, s)[1].long()
            assert torch.equal(ids, want[:T])
            assert (ids < E).all()


@pytest.mark.parametrize("block_t", [4, 16])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("E", [60, 100])
def test_single_reads_of_aligned_rows_pad_with_minus_inf(E, dtype, block_t, dev):
    """Contiguous 16-bit rows read one logit at a time (pair reads off) with ROW_ALIGN the vector,
    launched as the probe that found it: given as the masked load's value, a 16-bit -inf reached
    the odd halves of the vectorised loads as NaN on the H200 (triton 3.6), and padding ranked on
    top (every row of 4096 wrong; the interpreter was right). Regression test for the GPU."""
    T, K = (4096 if torch.device(dev).type == "cuda" else 64), 4  # the interpreter pays per program
    g = logits(T, E, dtype, dev, seed=E)
    s = scale(E, dev)
    w, ids = route_at_tile(g, K, s, block_t, PAIRS=False, ROW_ALIGN=fused_module.row_align(E, E, 4))
    assert torch.equal(ids.long(), route64(g, K, s)[1])


def test_row_align_divides_the_stride_and_the_row():
    """ROW_ALIGN, what route_kernel tells the compiler of its rows' alignment, divides both the row
    stride and E and is at most the vector: a promise the compiler cannot check."""
    a = fused_module.row_align
    assert a(60, 60, 4) == 4 and a(60, 64, 4) == 4 and a(60, 62, 4) == 2 and a(60, 61, 4) == 1
    assert a(128, 128, 8) == 8 and a(128, 4096, 8) == 8 and a(100, 100, 4) == 4 and a(7, 7, 1) == 1
    assert a(60, 0, 4) == 4 and a(62, 64, 64) == 2


@pytest.mark.parametrize("epilogue", ["softmax_k", "softmax_all", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("E", [60, 100])
def test_rows_read_by_vectors_stop_at_the_row(E, dtype, epilogue, dev):
    """Where ROW_ALIGN is the vector, the loads are masked a vector at a time
    (kernel_parts.columns_in_row): rows whose next columns in memory hold NaN and +inf (strides
    E + 4, + 2, + 1) route as the contiguous rows do, bits and all, and as the oracle does."""
    s = scale(E, dev)
    kernel = EPILOGUE_KERNELS[epilogue]
    contiguous = logits(300, E, dtype, dev, seed=E)
    w, ids = kernel(contiguous, 4, s)
    assert torch.equal(ids.long(), route64(contiguous, 4, s)[1])
    vec = tile(300, E, dtype, interpreter=fused_module.device.INTERPRETER).vec
    for extra in (4, 2, 1):
        g = torch.empty(300, E + extra, dtype=dtype, device=dev)
        g[:] = float("nan")
        g[:, E + 1:] = float("inf")
        g = g[:, :E]
        g.copy_(contiguous)
        assert fused_module.plan(g, 4, s).constexprs["ROW_ALIGN"] == fused_module.row_align(E, E + extra, vec)
        w2, ids2 = kernel(g, 4, s)
        assert torch.equal(ids2, ids)
        assert torch.equal(w2.view(torch.int32), w.view(torch.int32))


@pytest.mark.parametrize("scale_dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_scale_in_any_float_dtype(scale_dtype, dev):
    g = logits(100, 128, torch.float32, dev, seed=6)
    s = scale(128, dev).to(scale_dtype)
    w, _ = fused(g, 8, s)
    # the kernel multiplies in float32 (a float64 scale in float64) and rounds once: within the
    # bound of the oracle with the scale as given
    assert_routing_close((w, fused(g, 8, s)[1]), route64(g, 8, s), max_ulp=FUSED_MAX_ULP)


def test_empty_batch(dev):
    w, ids = fused(torch.empty(0, 128, device=dev), 8, torch.ones(128, device=dev))
    assert w.shape == (0, 8) and w.dtype == torch.float32
    assert ids.shape == (0, 8) and ids.dtype == torch.int32


def test_every_output_element_is_written(dev, monkeypatch):
    """Poison the launcher's allocations: a slot left unwritten would show as NaN / -1."""
    real = kernel_parts.empty_outputs
    calls = []

    def poisoned(g, k):
        w, ids = real(g, k)
        calls.append(1)
        return w.fill_(float("nan")), ids.fill_(-1)

    monkeypatch.setattr(kernel_parts, "empty_outputs", poisoned)
    w, ids = fused(logits(1000, 96, torch.float16, dev), 6, scale(96, dev))
    assert calls, "the poisoned allocator was not used"
    assert not torch.isnan(w).any() and (ids >= 0).all()


def test_launch_config_is_a_table_not_constants():
    for interpreter in (True, False):
        cfg = tile(65536, 128, torch.bfloat16, interpreter=interpreter)
        assert cfg.block_e == 128 and cfg.block_t >= 1
        assert tile(1, 1000, torch.float32, interpreter=interpreter).block_e == 1024


def test_the_launch_is_decided_once_from_the_problem(dev):
    g, s = logits(300, 96, torch.bfloat16, dev), scale(96, dev)
    launch = fused_module.plan(g, 6, s)
    assert launch.tile == tile(300, 96, torch.bfloat16, interpreter=fused_module.device.INTERPRETER)
    assert launch.grid == ((300 + launch.tile.block_t - 1) // launch.tile.block_t,)
    assert launch.constexprs["K"] == 6 and launch.constexprs["BLOCK_K"] == 8 and not launch.constexprs["EVEN_E"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_launch_table_stays_within_the_largest_tile(dtype, monkeypatch):
    """The GPU table (read here without a GPU) never builds a tile larger than largest_block_t
    allows, and gives it the warps warps_for does: the test that forces BLOCK_T relies on both."""
    for T in (0, 1, 7, 264, 529, 4096, 250000):
        for E in (1, 2, 6, 100, 128, 257, 1000, 1024):
            cfg = tile(T, E, dtype, interpreter=False)
            assert 1 <= cfg.block_t <= fused_module.largest_block_t(cfg.block_e, dtype), (T, E, cfg)
            assert cfg.num_warps == fused_module.warps_for(cfg.block_t, cfg.block_e, dtype), (T, E, cfg)
            assert 1 <= cfg.num_warps <= fused_module.MAX_WARPS


@pytest.mark.parametrize("layout", ["contiguous", "odd_stride"])
@pytest.mark.parametrize("E", [32, 100, 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_whole_row_vectors_route_like_16_byte_vectors(dtype, E, layout, dev, monkeypatch):
    """One row per program, the row as one vector of BLOCK_E logits (what vec_for gives bf16/fp16
    up to WHOLE_ROW_VEC_MAX_E) routes the bits of 16-byte vectors, with and without pair reads."""
    wide = logits(13, E + 1, dtype, dev, seed=31)
    g = wide[:, :E] if layout == "odd_stride" else wide[:, :E].contiguous()
    s = scale(E, dev)
    real = fused_module.tile

    def route(vec):
        forced = lambda *a, **k: dataclasses.replace(real(*a, **k), block_t=1, vec=vec, num_warps=1)  # noqa: E731
        monkeypatch.setattr(fused_module, "tile", forced)
        return fused(g, 8, s)

    block_e = triton.next_power_of_2(E)
    assert fused_module.vec_for(1, block_e, dtype) == block_e
    by_16_bytes, whole = route(fused_module.sixteen_byte_vec(block_e, dtype)), route(block_e)
    assert torch.equal(whole[1], by_16_bytes[1])
    assert torch.equal(whole[0].view(torch.int32), by_16_bytes[0].view(torch.int32))
    check_against_oracle(g, 8, s)  # the table is still forced to whole-row vectors here


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_upstream_size_matches_oracle(dtype, dev):
    check_against_oracle(logits(250000, 128, dtype, dev, seed=1), 8, scale(128, dev))
