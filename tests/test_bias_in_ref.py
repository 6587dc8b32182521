"""The grouped kernel's distances below the fixed reference taken from each expert's offset (grouped_kernel's
BIAS_IN_REF; by default for bf16 logits, plan(bias_in_ref=...) sets it): where plan lets it, the offsets
reference_of makes (their layout, their rounding, their cache), and the same weight bits, ids and flags as without it
(ids the oracle's) for random and tied rows under the three biases, a bias too wide (the branch that reads the logits
again), NaN and infinite logits, lists that run out, near ties and groups in doubt, tops far from zero, and with the
bf16 logits read two a register (WORD_LOADS) and without."""
from __future__ import annotations

import pytest
import torch

from parity.routing import fused_grouped
from routing_cases import logits, tied_logits
from test_fused_grouped import (SHAPES, _planted_deepseek_rows, near_tie_rows, plan_for, router_for,
                                same_with_and_without)

SHIFT = 21   # COL_BITS 8: the only shift plan lets the fold take


def test_plan_lets_it_only_under_the_fixed_reference_at_col_bits_8():
    router = router_for("deepseek-v3", "cpu")
    g = torch.empty(64, 256, dtype=torch.bfloat16)
    assert plan_for(g, 8, router, block_t=4, bias_in_ref=True).constexprs["BIAS_IN_REF"]
    assert plan_for(g.float(), 8, router, block_t=4, bias_in_ref=True).constexprs["BIAS_IN_REF"]
    assert plan_for(g, 8, router, block_t=4).constexprs["BIAS_IN_REF"]   # on by default for bf16 (timed there)
    assert not plan_for(g.float(), 8, router, block_t=4).constexprs["BIAS_IN_REF"]   # fp32 not timed: off by default
    assert not plan_for(g, 8, router, block_t=4, bias_in_ref=False).constexprs["BIAS_IN_REF"]
    assert not plan_for(g, 8, router, block_t=1, bias_in_ref=True).constexprs["BIAS_IN_REF"]   # one row: no reference
    assert not plan_for(g, 8, router, block_t=4, fixed_ref=False, bias_in_ref=True).constexprs["BIAS_IN_REF"]
    glm = router_for("glm-4.5", "cpu")   # E = 160 in a tile of 256: COL_BITS 8, the reference forced
    E, K = SHAPES["glm-4.5"][:2]
    assert plan_for(torch.empty(64, E), K, glm, block_t=4, fixed_ref=True, bias_in_ref=True).constexprs["BIAS_IN_REF"]
    kimi = router_for("kimi-k2", "cpu")   # E = 384: COL_BITS 9, a unit 2**-20 of a key, where the bound has no room
    E, K = SHAPES["kimi-k2"][:2]
    assert not plan_for(torch.empty(64, E), K, kimi, block_t=4, fixed_ref=True,
                     bias_in_ref=True).constexprs["BIAS_IN_REF"]


@pytest.mark.parametrize("bias", ["spread", "tied", "wide"])
def test_the_offsets_lie_within_half_a_unit_of_the_exact_ones(bias):
    """reference_of(bias, SHIFT): the reference, the flag, two zeros (the offsets 16-byte aligned), then each expert's
    8 + 2**-17 + (reference - b) 2**(SHIFT - 20) within half a unit (2**-21 of a float in [8, 16)) of the exact value,
    in [8, 16) where the flag says the bias lies within reach; one tensor a bias and shift, the plain reference for
    no shift."""
    b = router_for("deepseek-v3", "cpu", bias=bias).correction_bias.float()
    ref = fused_grouped.reference_of(b, SHIFT)
    assert ref.shape == (4 + b.numel(),) and ref[2:4].eq(0).all()
    assert fused_grouped.reference_of(b, SHIFT) is ref
    plain = fused_grouped.reference_of(b)
    assert plain.shape == (2,) and torch.equal(plain, ref[:2])
    exact = 8.0 + 2.0**-17 + (ref[0].double() - b.double()) * 2.0 ** (SHIFT - 20)
    if ref[1] == 1.0:   # (a hair over 2**-21 for the float64 step's rounding)
        assert (ref[4:].double() - exact).abs().max() <= 2.0**-21 * (1 + 2.0**-20)
        assert (ref[4:] >= 8.0).all() and (ref[4:] < 16.0).all()
        assert (ref[4:] - 2.0 * 1.0 >= 8.0).all(), "a sigmoid of 1 would take a distance below 8"
    else:
        assert bias == "wide"


def _same_as_the_default(g, K, router, **overrides):
    """With the offsets and without: see same_with_and_without."""
    return same_with_and_without("bias_in_ref", g, K, router, **overrides)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("bias", ["spread", "tied", "wide"])
def test_random_and_tied_rows_as_the_default(bias, dtype, dev):
    """A wide bias takes the branch that reads the logits again (the row's largest key, the saturating min)."""
    E, K = SHAPES["deepseek-v3"][:2]
    router = router_for("deepseek-v3", dev, bias=bias)
    assert (fused_grouped.reference_of(router.correction_bias.float())[1] == 0.0) == (bias == "wide")
    _same_as_the_default(logits(96, E, dtype, dev, seed=23, spread=2.0), K, router)
    if dtype == torch.bfloat16:
        _same_as_the_default(tied_logits(96, E, dev, seed=29), K, router)


@pytest.mark.parametrize("bias", ["spread", "wide"])
@pytest.mark.parametrize("group_test", [False, True], ids=["", "group-test"])
def test_nan_and_infinite_logits_lists_that_run_out_and_groups_in_doubt(group_test, bias, dev):
    E, K = SHAPES["deepseek-v3"][:2]
    per = E // SHAPES["deepseek-v3"][2]
    router = router_for("deepseek-v3", dev, bias=bias)
    g = logits(52, E, torch.float32, dev, seed=31, spread=2.0)
    g[40:44, per:2 * per] += 6.0                   # group 1 holds every top key: its list runs out
    g[44, :] = float("nan")
    g[45, 77] = float("nan")                        # one NaN key, in a group the row may not choose
    g[46, 3] = float("inf")
    g[47, 100:140] = -float("inf")
    g[48:51, :] = -4.0
    g[48:51, :16] = near_tie_rows(dev)[:3]
    flags = _same_as_the_default(g, K, router, group_test=group_test)[0]
    assert flags[44] != 0 and flags[45] != 0, f"flags {flags.tolist()}: NaN rows no longer flagged"
    planted_router = router_for("deepseek-v3", dev, bias="tied")
    planted = _planted_deepseek_rows({0: 1.0, 1: 0.9, 32: 0.95, 33: 0.85, 64: 0.8, 65: 0.75, 96: 0.0, 97: 5e-7,
                                      128: 0.0, 129: 0.0}, range(5, 8), dev)   # groups 3 and 4 near (the group test)
    flags = _same_as_the_default(planted, K, planted_router, group_test=group_test)[0]
    assert (flags != 0).all(), f"flags {flags.tolist()}: the planted rows are no longer flagged"


@pytest.mark.parametrize("top", [50.0, 3000.0])
def test_tops_far_from_zero(top, dev):
    """A bias far from zero and within reach (every key near top): the offsets stay in [8, 16) however large the
    reference, where the default's keys lie on a coarser grid: at 3000 the fp32 keys' ulp is 512 units, the bound
    ~3000 units (|key| 2**-22 of it), and the rows flagged near the bound differ (15 and 12 of 64 here), the ids and
    weights the same."""
    E, K = SHAPES["deepseek-v3"][:2]
    bias = top + torch.linspace(-0.9, 0.9, E, device=dev)
    router = router_for("deepseek-v3", dev, bias=bias)
    assert float(fused_grouped.reference_of(router.correction_bias.float())[1]) == 1.0
    _same_as_the_default(logits(64, E, torch.bfloat16, dev, seed=37, spread=2.0), K, router, same_flags=top < 1000)


@pytest.mark.parametrize("word_loads", [True, False], ids=["word-loads", "no-word-loads"])
def test_with_and_without_word_loads(word_loads, dev):
    """The offsets with the bf16 logits read two a register (both on: the default since the thirty-fifth round) and
    without (on the GPU the pair conversion feeds the sigmoids; on the CPU the interpreter runs no inline PTX)."""
    E, K = SHAPES["deepseek-v3"][:2]
    router = router_for("deepseek-v3", dev, bias="spread")
    g = torch.cat([logits(64, E, torch.bfloat16, dev, seed=41, spread=2.0), tied_logits(32, E, dev, seed=43)])
    assert plan_for(g, K, router, block_t=4, word_loads=word_loads).constexprs["WORD_LOADS"] is word_loads
    _same_as_the_default(g, K, router, word_loads=word_loads)
