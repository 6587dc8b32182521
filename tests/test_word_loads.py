"""The grouped kernel's bf16 logits made fp32 a 32-bit word at a time (grouped_kernel's WORD_LOADS, plan(word_loads=
True); prepared, off by default): where plan lets it, and, on the GPU (the inline PTX the interpreter does not run),
ids the oracle's and weights within bound for random, tied, special and strided rows at both tiles. On the CPU these
run the default conversion; the GPU is where they test the switch (h200_run.sh's tests and kernels steps)."""
from __future__ import annotations

import pytest
import torch

from parity.routing import fused_grouped
from routing_cases import logits, tied_logits
from test_fused_grouped import SHAPES, check, launch, router_for


def words(g, K, router, **overrides):
    return launch(g, K, router, word_loads=True, **overrides)


def test_plan_lets_it_only_for_unit_stride_bf16_rows_of_whole_groups():
    bias, scale = torch.zeros(256), torch.ones(256)
    g = torch.empty(64, 256, dtype=torch.bfloat16)
    assert fused_grouped.plan(g, 8, bias, scale, 8, 4, True, word_loads=True).constexprs["WORD_LOADS"]
    assert fused_grouped.plan(g, 8, bias, scale, 8, 4, True).constexprs["WORD_LOADS"]   # on by default (35th round)
    assert not fused_grouped.plan(g, 8, bias, scale, 8, 4, True, word_loads=False).constexprs["WORD_LOADS"]
    odd = torch.empty(64, 257, dtype=torch.bfloat16)   # an odd row stride; [:, 1:] also starts 2 bytes in
    for other in (g.float(), g.half(), torch.empty(64, 512, dtype=torch.bfloat16)[:, ::2], odd[:, 1:], odd[:, :256]):
        assert not fused_grouped.plan(other, 8, bias, scale, 8, 4, True, word_loads=True).constexprs["WORD_LOADS"]
    # groups of a length that is no multiple of 16 (GLM-4.5's one group of 160 is padded to 256: not EVEN)
    g = torch.empty(64, 160, dtype=torch.bfloat16)
    assert not fused_grouped.plan(g, 8, torch.zeros(160), torch.ones(160), 1, 1, True,
                                  word_loads=True).constexprs["WORD_LOADS"]


@pytest.mark.parametrize("block_t", [1, 4])
@pytest.mark.parametrize("bias", ["spread", "tied", "wide"])
def test_random_and_tied_rows_match_the_oracle(bias, block_t, dev):
    E, K = SHAPES["deepseek-v3"][:2]
    router = router_for("deepseek-v3", dev, bias=bias)
    for g in (logits(130, E, torch.bfloat16, dev, seed=11, spread=2.0), tied_logits(130, E, dev, seed=7)):
        check(g, K, router, out=words(g, K, router, block_t=block_t))


@pytest.mark.parametrize("block_t", [1, 4])
def test_special_values_and_each_column_in_its_place(block_t, dev):
    """NaN and +-inf in low and high halves of words, subnormals, and one row a column larger than the rest (a
    swap of a word's halves moves it to its neighbour)."""
    E, K = SHAPES["deepseek-v3"][:2]
    router = router_for("deepseek-v3", dev)
    g = logits(2 * E + 8, E, torch.bfloat16, dev, seed=3)
    for e in range(E):
        g[e, e] = 30.0                       # row e: column e is the largest, even and odd columns alike
        g[E + e, e] = -30.0
    g[2 * E, 0], g[2 * E + 1, 1] = float("nan"), float("nan")
    g[2 * E + 2, 2], g[2 * E + 3, 3] = float("inf"), -float("inf")
    g[2 * E + 4] = torch.tensor(1e-40).to(torch.bfloat16)   # a row of subnormals
    check(g, K, router, out=words(g, K, router, block_t=block_t))


def test_rows_at_an_even_stride(dev):
    E, K = SHAPES["deepseek-v3"][:2]
    router = router_for("deepseek-v3", dev)
    wide = logits(96, E + 64, torch.bfloat16, dev, seed=5)
    g = wide[:, 32:32 + E]
    assert fused_grouped.plan(g, K, torch.zeros(E, device=dev), torch.ones(E, device=dev), 8, 4, True,
                              word_loads=True).constexprs["WORD_LOADS"]
    check(g, K, router, out=words(g, K, router, block_t=4))
