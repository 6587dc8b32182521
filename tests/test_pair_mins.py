"""The selection rounds' minimum by three-input mins of paired keys (fused.MIN3, kernel_parts.unsigned_min_by_pairs):
the same ids and weights, bit for bit, as tl.min's tree, and the oracle's ids; the reduction itself against torch's
unsigned minimum."""
import pytest
import torch
import triton
import triton.language as tl

from parity.routing import fused as fused_module
from parity.routing.kernel_parts import unsigned_min_by_pairs
from routing_cases import logits, scale, tied_logits
from test_fused import EPILOGUE_KERNELS, assert_prepared_path_matches
from test_word_maxima import with_specials


@triton.jit
def _rows_min_kernel(x_ptr, out_ptr, C: tl.constexpr, V: tl.constexpr, BLOCK_T: tl.constexpr, NATIVE: tl.constexpr):
    rows = tl.arange(0, BLOCK_T)
    cols = (tl.arange(0, C) * V)[None, :, None] + tl.arange(0, V)[None, None, :]
    x = tl.load(x_ptr + rows[:, None, None] * (C * V) + cols)
    tl.store(out_ptr + rows, unsigned_min_by_pairs(x, NATIVE))


@pytest.mark.parametrize("C,V", [(1, 2), (4, 2), (8, 4), (16, 8), (2, 16)])
def test_unsigned_min_by_pairs_is_the_unsigned_minimum(C, V, dev):
    """Rows of int32 patterns read as unsigned (the high bit set in some, so a signed minimum would differ), the minimum
    anywhere in the row: first, last, in either of a pair, in several places at once."""
    gen = torch.Generator().manual_seed(C * 100 + V)
    x = torch.randint(-2**31, 2**31 - 1, (16, C, V), generator=gen, dtype=torch.int64)
    x[1], x[2] = 2**31 - 1, -1                     # all at the signed largest; all at the unsigned largest
    x[3, 0, 0], x[4, -1, -1], x[5, 0, -1] = 0, 0, 5
    x[6, :, 0] = 7                                 # the minimum in every pair's first
    x[7] = torch.randint(-2**31, 0, (C, V), generator=gen)   # every pattern with its high bit set
    x = x.to(torch.int32)
    out = torch.empty(16, dtype=torch.int32)
    x_d, out_d = x.to(dev), out.to(dev)
    _rows_min_kernel[(1,)](x_d, out_d, C, V, 16, dev.type == "cuda", num_warps=1)
    expected = (x.to(torch.int64) & 0xFFFFFFFF).flatten(1).min(dim=1).values
    assert torch.equal(out_d.cpu().to(torch.int64) & 0xFFFFFFFF, expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("E,K,words", [(128, 8, True), (128, 8, False), (128, 4, False), (60, 4, False), (100, 6, True),
                                       (256, 32, False), (8, 4, False)])
def test_pair_mins_pick_as_the_tree(E, K, words, dtype, dev, monkeypatch):
    """16-bit logits with NaNs of both signs, infinities, signed zeros, with and without picks_by_word."""
    monkeypatch.setattr(fused_module, "WORD_MAXIMA", words)
    g = with_specials(logits(150, E, dtype, dev, seed=E + K + 3))
    assert_prepared_path_matches("MIN3", g, K, scale(E, dev), monkeypatch)


@pytest.mark.parametrize("E,K", [(128, 8), (60, 4), (256, 64)])
def test_pair_mins_pick_fp32_as_the_tree(E, K, dev, monkeypatch):
    """fp32, whose rounds also tell truncated keys that tie (CHECK_LOSS): logits on a coarse grid, so that many
    picks tie, and one-ulp neighbours, which tie once truncated."""
    g = logits(150, E, torch.float32, dev, seed=E + K).mul(4).round().div(4)
    g[::3, 1] = torch.nextafter(g[::3, 0], torch.tensor(float("inf"), device=dev))
    g[5, 3], g[6] = float("nan"), float("-inf")
    assert_prepared_path_matches("MIN3", g, K, scale(E, dev), monkeypatch)


@pytest.mark.parametrize("epilogue", ["softmax_all", "sigmoid"])
def test_pair_mins_under_every_epilogue(epilogue, dev, monkeypatch):
    """Under the softmax over all E (Qwen2-MoE) and the sigmoid (Llama 4), on a grid that ties most K-th places."""
    g = with_specials(tied_logits(150, 60, dev, seed=9))
    assert_prepared_path_matches("MIN3", g, 4, scale(60, dev), monkeypatch, kernel=EPILOGUE_KERNELS[epilogue])


@pytest.mark.parametrize("block_t,vec,lanes", [(16, 8, 2), (8, 8, 4), (4, 2, 8), (2, 4, 16), (1, 8, 1)])
def test_pair_mins_pick_as_the_tree_at_other_tiles(block_t, vec, lanes, dev, monkeypatch):
    """At tiles the table does not choose, with the words' ids less their lane's part and without, on tied bf16
    logits: the oracle's ids, and the same ids and weights as tl.min's tree."""
    g = with_specials(tied_logits(32, 128, dev, seed=block_t + vec))
    for words, row_lanes in ((True, lanes), (False, 1)):
        assert_prepared_path_matches("MIN3", g, 8, scale(128, dev), monkeypatch, tile=(block_t, vec),
                                     WORD_MAXIMA=words, ROW_LANES=row_lanes)
