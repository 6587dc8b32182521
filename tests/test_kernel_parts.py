"""The order key every kernel ranks logits by (kernel_parts.sign_magnitude_key), checked over every
16-bit pattern of bf16 and fp16 and a spread of fp32 ones: integer order is float order, -0.0 ties
+0.0, and every NaN takes one key above +inf's."""
import pytest
import torch
import triton
import triton.language as tl

from parity.routing.fused import NAN_MAGNITUDE
from parity.routing.kernel_parts import high_half_key, low_half_key, sign_magnitude_key, top_half_key_unchecked


@triton.jit
def _keys_kernel(bits_ptr, out_ptr, n, MAG_MASK: tl.constexpr, NAN_MAG: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    bits = tl.load(bits_ptr + offs, mask=ok, other=0)
    tl.store(out_ptr + offs, sign_magnitude_key(bits, MAG_MASK, NAN_MAG), mask=ok)


def keys(bits: torch.Tensor, mag_mask: int, nan_mag: int) -> torch.Tensor:
    out = torch.empty_like(bits)
    _keys_kernel[(triton.cdiv(bits.numel(), 1 << 16),)](bits, out, bits.numel(), MAG_MASK=mag_mask,
                                                        NAN_MAG=nan_mag, BLOCK=1 << 16)
    return out


def check_order(values: torch.Tensor, key: torch.Tensor, top: int) -> None:
    """values float64, key int64, same length."""
    nan = torch.isnan(values)
    assert (key[nan] == top).all(), "every NaN maps to the top key"
    v, k = values[~nan], key[~nan]
    assert (k < top).all(), "only NaN reaches the top key"
    order = torch.argsort(v, stable=True)
    v, k = v[order], k[order]
    same_value = v[1:] == v[:-1]
    assert (k[1:][same_value] == k[:-1][same_value]).all(), "equal values (-0.0, +0.0) share a key"
    assert (k[1:][~same_value] > k[:-1][~same_value]).all(), "a larger value has a larger key"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_every_16_bit_pattern(dtype, dev):
    patterns = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32)
    values = patterns.to(torch.int16).view(dtype).double()
    # fused keys a 16-bit pattern in the top half of an int32 (low half zero), as loaded.
    key = keys((patterns << 16).to(dev), 0x7FFF0000, NAN_MAGNITUDE[dtype] << 16).cpu().long()
    check_order(values, key, 0x7FFF0000)
    assert torch.isnan(values).sum() > 0 and (values == float("inf")).sum() == 1


def test_fp32_patterns(dev):
    gen = torch.Generator().manual_seed(0)
    random_bits = torch.randint(-(1 << 31), 1 << 31, (1 << 18,), generator=gen, dtype=torch.int64).to(torch.int32)
    special = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), -float("nan"), 1.0, -1.0,
                            torch.finfo(torch.float32).tiny, -torch.finfo(torch.float32).tiny, 1e-45, -1e-45,
                            torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max]).view(torch.int32)
    patterns = torch.cat([random_bits, special, special + 1, special - 1])
    values = patterns.view(torch.float32).double()
    key = keys(patterns.to(dev), 0x7FFFFFFF, NAN_MAGNITUDE[torch.float32]).cpu().long()
    check_order(values, key, 0x7FFFFFFF)


@triton.jit
def _half_keys_kernel(words_ptr, out_ptr, fma_ptr, n, zero, HIGH: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    w = tl.load(words_ptr + offs, mask=ok, other=0)
    low = offs % 128
    if HIGH:
        tl.store(out_ptr + offs, top_half_key_unchecked(w, low), mask=ok)
        tl.store(fma_ptr + offs, high_half_key(w, low, zero), mask=ok)
    else:
        tl.store(out_ptr + offs, top_half_key_unchecked(w << 16, low), mask=ok)
        tl.store(fma_ptr + offs, low_half_key(w, low, zero), mask=ok)


@pytest.mark.parametrize("high", [False, True], ids=["low_half_key", "high_half_key"])
def test_keys_by_multiplies_are_the_alu_keys_for_every_pattern(high, dev):
    """low_half_key and high_half_key (the keys by multiplies, fused.FMA_KEYS) equal top_half_key_unchecked
    of the half's pattern moved to the top, id bits added, for every 16-bit pattern in their half and a
    spread of patterns in the other half (which they must ignore), NaNs and both zeros included."""
    every = torch.arange(0, 1 << 16, dtype=torch.int32)
    gen = torch.Generator().manual_seed(1)
    other = torch.randint(0, 1 << 16, (1 << 16,), generator=gen, dtype=torch.int32)
    if high:
        words = torch.cat([every << 16, (every << 16) | other, (every << 16) | every])
    else:
        words = torch.cat([every, (other << 16) | every, (every << 16) | every])
    words = words.to(dev)
    want, got = torch.empty_like(words), torch.empty_like(words)
    _half_keys_kernel[(triton.cdiv(words.numel(), 1 << 16),)](words, want, got, words.numel(), 0, HIGH=high,
                                                               BLOCK=1 << 16)
    assert torch.equal(got, want)
