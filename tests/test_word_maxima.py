"""route_kernel selecting through each word's larger key (fused.picks_by_word, fused.WORD_MAXIMA):
the same ids and weights, bit for bit, as the rounds over every key, and the oracle's ids."""
import pytest
import torch

from parity.routing import fused as fused_module
from parity.routing.fused import fused, plan
from parity.routing.oracle import route64
from routing_cases import logits, scale, tied_logits
from test_fused import EPILOGUE_KERNELS, SEVERAL_ROWS_T, assert_prepared_path_matches, route_at_tile

NAN_BITS = {torch.bfloat16: [0x7FC0, 0xFFC0, 0x7F81, 0xFFFF], torch.float16: [0x7E00, 0xFE00, 0x7C01, 0xFFFF]}


def with_specials(g: torch.Tensor) -> torch.Tensor:
    """g with NaNs of both signs (alone in a word, both halves of a word, a whole row), -inf in
    every other column of a row, signed zeros, +inf, a row of negative logits but one: rows 3 to 11."""
    g = g.clone()
    E = g.shape[1]
    bits = g.view(torch.int16)
    nan = [b - 65536 if b > 32767 else b for b in NAN_BITS[g.dtype]]
    bits[3, min(5, E - 1)] = nan[0]
    bits[4, :] = nan[2]
    bits[5, E - 1] = nan[1]          # a negative NaN in the odd half of the last word
    bits[6, 0], bits[6, 1] = nan[3], nan[1]   # both halves of one word
    bits[7, 0] = nan[1]              # a negative NaN in an even half, its partner an ordinary value
    g[8, ::2] = -float("inf")
    g[9, ::2], g[9, 1::2] = 0.0, -0.0
    g[10, 1::2] = float("inf")
    g[11] = -g[11].abs() - 1         # every key but one below a padding slot's zero
    g[11, 1] = 1.0
    return g


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("E,K", [(128, 8), (128, 64), (100, 6), (60, 4), (8, 4), (256, 32), (4, 2)])
def test_words_pick_as_every_key(E, K, dtype, dev, monkeypatch):
    g = with_specials(logits(150, E, dtype, dev, seed=E + K))
    assert_prepared_path_matches("WORD_MAXIMA", g, K, scale(E, dev), monkeypatch)


@pytest.mark.parametrize("epilogue", ["softmax_all", "sigmoid"])
@pytest.mark.parametrize("E,K", [(60, 4), (128, 8)])
def test_words_pick_under_every_epilogue(E, K, epilogue, dev, monkeypatch):
    """The softmax over all E (Qwen2-MoE: its denominator from the same read) and the sigmoid (Llama 4's
    weights) select through the words as the softmax over the K does."""
    g = with_specials(logits(150, E, torch.bfloat16, dev, seed=E))
    assert_prepared_path_matches("WORD_MAXIMA", g, K, scale(E, dev), monkeypatch, kernel=EPILOGUE_KERNELS[epilogue])


def test_words_pick_bf16_ties_by_the_lower_id(dev, monkeypatch):
    """A coarse grid ties most rows' K-th place; a tie inside one word and across words."""
    g = tied_logits(200, 128, dev, seed=3)
    g[0] = 1.0                     # every word tied in both halves
    g[1, 10], g[1, 11] = 5.0, 5.0  # a tie inside one word, above the rest
    assert_prepared_path_matches("WORD_MAXIMA", g, 8, scale(128, dev), monkeypatch)


@pytest.mark.parametrize("block_t,vec", [(4, 4), (1, 128), (16, 8)])
def test_words_pick_as_every_key_at_other_tiles(block_t, vec, dev, monkeypatch):
    """The GPU's tiles (one row a program with the row one vector; 16 rows of 16-byte vectors) and
    a small one, rows past T included (T = 37)."""
    g = with_specials(logits(37, 128, torch.bfloat16, dev, seed=block_t))
    assert_prepared_path_matches("WORD_MAXIMA", g, 8, scale(128, dev), monkeypatch, tile=(block_t, vec))


@pytest.mark.parametrize("block_t,vec,lanes", [(16, 8, 2), (4, 4, 8), (8, 8, 4), (16, 8, 16), (1, 8, 16)])
def test_ids_less_their_lanes_part_pick_as_whole_ids(block_t, vec, lanes, dev):
    """Keys packed with ids less their lane's part (ROW_LANES > 1: fused.plan's at the GPU's word tiles) pick as
    keys with whole ids, bit for bit, and as the oracle: ties across lanes (every word of row 0 alike, a
    grid that ties most K-th places), NaNs of both signs, rows past T. Any ROW_LANES must hold (the split
    into lanes is arithmetic; the layout decides only whether it saves instructions): 16 lanes at the
    table's tile, where 2 share a row, and a one-row tile; with the keys by multiplies (FMA_KEYS 1 and 2)."""
    g = with_specials(tied_logits(37, 128, dev, seed=lanes))
    g[0] = 1.0
    g[1, 16], g[1, 17], g[1, 9] = 4.0, 4.0, 4.0   # a tie inside a word and one across vectors
    s = scale(128, dev)
    whole = route_at_tile(g, 8, s, block_t, vec, WORD_MAXIMA=True, ROW_LANES=1, FMA_KEYS=False)
    split = route_at_tile(g, 8, s, block_t, vec, WORD_MAXIMA=True, ROW_LANES=lanes, FMA_KEYS=lanes % 3)
    assert torch.equal(split[1].long(), route64(g, 8, s)[1])
    assert torch.equal(split[1], whole[1])
    assert torch.equal(split[0].nan_to_num(7.0), whole[0].nan_to_num(7.0))


def test_lanes_where_the_words_are_read():
    """With LANE_IDS, the GPU's plan splits the ids by lane under picks_by_word alone, as many lanes as a
    row spreads over; without, never."""
    s128 = scale(128, "cpu")
    g = torch.empty(250000, 128, dtype=torch.bfloat16)
    on = plan(g, 8, s128, interpreter=False, lane_ids=True)
    assert on.constexprs["WORD_MAXIMA"] and on.constexprs["ROW_LANES"] == 32 // on.tile.block_t > 1
    assert plan(g, 4, s128, interpreter=False, lane_ids=True).constexprs["ROW_LANES"] == 1
    assert plan(g, 8, s128, interpreter=False, lane_ids=False).constexprs["ROW_LANES"] == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("E,K,words", [(128, 8, True), (128, 8, False), (60, 4, False), (100, 6, True), (8, 4, False),
                                       (256, 32, False)])
@pytest.mark.parametrize("halves", [1, 2])
def test_fma_keys_pick_as_the_alu_keys(E, K, words, halves, dtype, dev, monkeypatch):
    """The keys by multiplies (fused.FMA_KEYS: the even halves', then both): the same ids and weights, bit
    for bit, as the ALU's keys, and the oracle's ids, with and without picks_by_word."""
    monkeypatch.setattr(fused_module, "WORD_MAXIMA", words)
    g = with_specials(logits(150, E, dtype, dev, seed=E + K + 1))
    assert_prepared_path_matches("FMA_KEYS", g, K, scale(E, dev), monkeypatch, on=halves)


@pytest.mark.parametrize("epilogue", ["softmax_all", "sigmoid"])
def test_fma_keys_under_every_epilogue(epilogue, dev, monkeypatch):
    """Both halves' keys by multiplies under the softmax over all E (Qwen2-MoE) and the sigmoid (Llama 4), on a
    grid that ties most K-th places."""
    g = with_specials(tied_logits(150, 60, dev, seed=5))
    assert_prepared_path_matches("FMA_KEYS", g, 4, scale(60, dev), monkeypatch, kernel=EPILOGUE_KERNELS[epilogue],
                                 on=2)


def test_words_only_where_a_row_holds_k_words(dev, monkeypatch):
    """plan turns picks_by_word off where it cannot hold: fewer words than K (E = 6, K = 5),
    rows not read as words (odd E, fp32, a column-major view), K = 1 (one round: nothing to save)."""
    monkeypatch.setattr(fused_module, "WORD_MAXIMA", True)
    s8, s7 = scale(8, dev), scale(7, dev)
    g = logits(SEVERAL_ROWS_T, 8, torch.bfloat16, dev)
    assert plan(g, 4, s8).constexprs["WORD_MAXIMA"]
    assert not plan(g[:, :6].contiguous(), 5, s8[:6]).constexprs["WORD_MAXIMA"]
    assert not plan(g, 1, s8).constexprs["WORD_MAXIMA"]
    assert not plan(logits(SEVERAL_ROWS_T, 7, torch.bfloat16, dev), 4, s7).constexprs["WORD_MAXIMA"]
    assert not plan(g.float(), 4, s8).constexprs["WORD_MAXIMA"]
    assert not plan(g.t().contiguous().t(), 4, s8).constexprs["WORD_MAXIMA"]
    assert not plan(g, 4, s8, word_maxima=False).constexprs["WORD_MAXIMA"]
    e6 = g[:, :6].contiguous()
    assert torch.equal(fused(e6, 5, s8[:6])[1].long(), route64(e6, 5, s8[:6])[1])


def test_words_by_default_where_timed():
    """Off the tests' switch (WORD_MAXIMA None), the GPU's plan selects through the words at the shapes
    of WORD_MAXIMA_SHAPES only, and only at tiles of several rows, its registers capped there; the
    interpreter, which has no registers to cap, takes the same path uncapped."""
    assert fused_module.WORD_MAXIMA is None
    s128, s60 = scale(128, "cpu"), scale(60, "cpu")

    def gpu_plan(T, E, K, dtype=torch.bfloat16, s=s128):
        return plan(torch.empty(T, E, dtype=dtype), K, s, interpreter=False)

    for dtype in (torch.bfloat16, torch.float16):
        on = gpu_plan(250000, 128, 8, dtype)
        assert on.constexprs["WORD_MAXIMA"] and on.max_registers == fused_module.WORD_MAXIMA_MAX_REGISTERS
        assert on.options()["maxnreg"] == fused_module.WORD_MAXIMA_MAX_REGISTERS
    for off in (gpu_plan(250000, 128, 4), gpu_plan(250000, 60, 4, s=s60), gpu_plan(64, 128, 8),
                gpu_plan(250000, 128, 8, torch.float32)):
        assert not off.constexprs["WORD_MAXIMA"] and off.max_registers is None and "maxnreg" not in off.options()
    interpreted = plan(torch.empty(1000, 128, dtype=torch.bfloat16), 8, s128, interpreter=True)
    assert interpreted.constexprs["WORD_MAXIMA"] and interpreted.max_registers is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("E,K", [(60, 4), (100, 6), (128, 8)])
def test_e_as_a_constant_routes_as_e_at_run_time(E, K, dtype, dev, monkeypatch):
    """E a compile-time constant (fused.E_CONSTANT: the prepared Qwen2-MoE path) changes no bit."""
    g = logits(150, E, dtype, dev, seed=E)
    if dtype != torch.float32:
        g = with_specials(g)
    s = scale(E, dev)
    monkeypatch.setattr(fused_module, "E_CONSTANT", False)
    base = fused(g, K, s)
    monkeypatch.setattr(fused_module, "E_CONSTANT", True)
    assert fused_module.plan(g, K, s).constexprs["E_CONST"] == E
    new = fused(g, K, s)
    assert torch.equal(new[1].long(), route64(g, K, s)[1])
    assert torch.equal(new[1], base[1]) and torch.equal(new[0].nan_to_num(7.0), base[0].nan_to_num(7.0))


def test_fma_keys_by_default_where_timed():
    """Off the tests' switches, the GPU's plan makes the 16-bit keys by multiplies as the H100 timed them: the even
    halves' under picks_by_word (with ids less their lane's part), both halves' elsewhere, neither at one row a
    program (not timed there)."""
    assert fused_module.FMA_KEYS is None and fused_module.LANE_IDS and not fused_module.E_CONSTANT
    s128, s60 = scale(128, "cpu"), scale(60, "cpu")

    def gpu(T, E, K, dtype=torch.bfloat16, s=s128):
        return plan(torch.empty(T, E, dtype=dtype), K, s, interpreter=False).constexprs

    for dtype in (torch.bfloat16, torch.float16):
        words = gpu(250000, 128, 8, dtype)
        assert words["WORD_MAXIMA"] and words["FMA_KEYS"] == 1 and words["ROW_LANES"] == 2 and words["E_CONST"] == 0
    for c in (gpu(250000, 128, 4), gpu(250000, 60, 4, s=s60), gpu(65536, 128, 1)):
        assert not c["WORD_MAXIMA"] and c["FMA_KEYS"] == 2 and c["ROW_LANES"] == 1
    assert gpu(64, 128, 8)["FMA_KEYS"] == 0   # one row a program
    assert plan(torch.empty(250000, 128, dtype=torch.bfloat16), 8, s128, interpreter=False,
                fma_keys=0).constexprs["FMA_KEYS"] == 0
