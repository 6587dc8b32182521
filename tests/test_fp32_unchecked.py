"""route_kernel keying fp32 logits without the NaN select (fused.FP32_UNCHECKED): the same ids and
weights, bit for bit, as the NaN-checked keys, and the oracle's ids."""
import pytest
import torch

from parity.routing import fused as fused_module
from parity.routing.fused import plan
from routing_cases import logits, scale
from test_fused import EPILOGUE_KERNELS, SEVERAL_ROWS_T, assert_prepared_path_matches

NAN_BITS = [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF]
"""NaNs of both signs, the smallest payloads (which truncating the key's low bits would make +inf's
or -inf's) and the largest."""


def with_specials(g: torch.Tensor) -> torch.Tensor:
    """fp32 g with NaNs (rows 3 to 6 and 12), +inf and -inf, signed zeros, and rows of ties once
    truncated (rows 10 and 11: values one ulp apart, so the packed keys' dropped bits decide)."""
    g = g.clone()
    bits = g.view(torch.int32)
    as_int = [b - (1 << 32) if b > 0x7FFFFFFF else b for b in NAN_BITS]
    bits[3, 5] = as_int[2]
    bits[4, :] = as_int[0]
    bits[5, 7], bits[5, 9] = as_int[1], as_int[3]   # negative NaNs, one of the smallest payload
    bits[6, 0], bits[6, 1], bits[6, 2] = as_int[4], as_int[5], as_int[2]
    g[7, ::3] = float("inf")
    g[8, ::2] = -float("inf")
    g[9, ::2], g[9, 1::2] = 0.0, -0.0
    one = torch.tensor(1.0).view(torch.int32).item()
    bits[10, :16] = one + torch.arange(16, dtype=torch.int32)            # 16 keys within one truncation step
    bits[11, :] = one + torch.randperm(g.shape[1], generator=torch.Generator().manual_seed(1)).to(torch.int32) % 3
    bits[12, 2], bits[12, 5] = as_int[2], as_int[0]   # NaNs tie whatever their payload: the lower id first
    return g


@pytest.mark.parametrize("E,K", [(128, 8), (128, 64), (64, 6), (256, 32), (16, 16), (100, 8)])
def test_unchecked_fp32_keys_pick_as_checked_ones(E, K, dev, monkeypatch):
    """E = 100 pads its rows (-inf): those keep the NaN-checked keys."""
    g = with_specials(logits(150, E, torch.float32, dev, seed=E + K))
    assert_prepared_path_matches("FP32_UNCHECKED", g, K, scale(E, dev), monkeypatch)


@pytest.mark.parametrize("epilogue", ["softmax_all", "sigmoid"])
def test_unchecked_fp32_keys_under_every_epilogue(epilogue, dev, monkeypatch):
    g = with_specials(logits(150, 64, torch.float32, dev, seed=2))
    assert_prepared_path_matches("FP32_UNCHECKED", g, 4, scale(64, dev), monkeypatch, kernel=EPILOGUE_KERNELS[epilogue])


@pytest.mark.parametrize("block_t,vec", [(1, 4), (4, 4), (2, 128)])
def test_unchecked_fp32_keys_at_other_tiles(block_t, vec, dev, monkeypatch):
    """The GPU's tiles (one row a program; four rows of 16-byte vectors) and the row as one vector;
    blocks with and without a NaN (T = 37)."""
    g = with_specials(logits(37, 128, torch.float32, dev, seed=block_t))
    assert_prepared_path_matches("FP32_UNCHECKED", g, 8, scale(128, dev), monkeypatch, tile=(block_t, vec))


def test_unchecked_fp32_keys_only_for_fp32(dev, monkeypatch):
    monkeypatch.setattr(fused_module, "FP32_UNCHECKED", True)
    s = scale(128, dev)
    g = logits(SEVERAL_ROWS_T, 128, torch.float32, dev)
    assert plan(g, 8, s).constexprs["FP32_UNCHECKED"]
    assert not plan(g.bfloat16(), 8, s).constexprs["FP32_UNCHECKED"]
    assert not plan(g, 8, s, fp32_unchecked=False).constexprs["FP32_UNCHECKED"]


def test_unchecked_fp32_keys_by_default_at_tiles_of_several_rows():
    """On by default (FP32_UNCHECKED), for fp32 at tiles of several rows; a row a program (small T on the
    GPU) keeps the checked keys."""
    assert fused_module.FP32_UNCHECKED is True
    s = scale(128, "cpu")
    g = torch.empty(250000, 128)
    assert plan(g, 8, s, interpreter=False).constexprs["FP32_UNCHECKED"]
    assert not plan(g[:64], 8, s, interpreter=False).constexprs["FP32_UNCHECKED"]
