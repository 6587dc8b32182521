"""The grouped kernel's distances below one reference made from the bias (grouped_kernel's FIXED_REF, by default
where groups are chosen; plan(fixed_ref=True) forces it) where otherwise each row's largest key is taken: ids the
oracle's, weights within bound, for the shapes it applies to, biases tied, spread and wide, NaN keys wherever they
lie (the row's largest no longer flags them), tops far from zero, and a bias written in place."""
from __future__ import annotations

import pytest
import torch

from parity.routing import fused_grouped
from routing_cases import DTYPES, logits, tied_logits
from test_fused_grouped import SHAPES, check, launch, router_for

APPLIES = ["deepseek-v3", "kimi-k2", "six-groups"]   # E > 128: COL_BITS >= 8


def fixed(g, K, router, **overrides):
    return launch(g, K, router, block_t=4, fixed_ref=True, **overrides)


def test_it_applies_to_several_rows_a_program_from_e_256():
    g = torch.empty(64, 256)
    bias, scale = torch.zeros(256), torch.ones(256)
    on = fused_grouped.plan(g, 8, bias, scale, 8, 4, True, block_t=4, fixed_ref=True).constexprs
    assert on["FIXED_REF"]
    for E, block_t in ((256, 1), (128, 4)):
        g = torch.empty(64, E)
        assert not fused_grouped.plan(g, 8, torch.zeros(E), torch.ones(E), 8, 4, True, block_t=block_t,
                                      fixed_ref=True).constexprs["FIXED_REF"]
    assert not fused_grouped.plan(g, 8, torch.zeros(128), torch.ones(128), 8, 4, True,
                                  block_t=4).constexprs["FIXED_REF"]
    # by default on where groups are chosen (faster on the H200), off for one group (Kimi K2 bf16 slower)
    g = torch.empty(64, 256)
    assert fused_grouped.plan(g, 8, bias, scale, 8, 4, True, block_t=4).constexprs["FIXED_REF"]
    assert not fused_grouped.plan(g, 8, bias, scale, 1, 1, True, block_t=4).constexprs["FIXED_REF"]
    assert not fused_grouped.plan(g, 8, bias, scale, 8, 4, True, block_t=4, fixed_ref=False).constexprs["FIXED_REF"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias", ["spread", "tied", "wide"])
@pytest.mark.parametrize("shape", APPLIES)
def test_random_and_tied_rows_match_the_oracle(shape, bias, dtype, dev):
    """Random rows (the fast path decides most) and, with one bias for all, bf16-tied rows; a wide bias puts many
    keys more than 4 below the reference (saturated: flagged where it could matter)."""
    E, K = SHAPES[shape][:2]
    router = router_for(shape, dev, bias=bias)
    g = logits(64, E, dtype, dev, seed=E + 3, spread=2.0)
    check(g, K, router, out=fixed(g, K, router))
    if dtype == torch.bfloat16:
        g = tied_logits(64, E, dev, seed=5)
        check(g, K, router, out=fixed(g, K, router))


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "second-launch"])
@pytest.mark.parametrize("shape", APPLIES)
def test_nan_keys_anywhere_are_flagged(shape, inline, dev):
    """One NaN logit in each row at a different expert (in a group chosen or not, first or last of its group),
    a whole NaN row, and +-inf: the oracle's ids and weights (no row's largest key turns NaN to flag them)."""
    E, K = SHAPES[shape][:2]
    router = router_for(shape, dev)
    g = logits(40, E, torch.float32, dev, seed=9, spread=2.0)
    for r in range(32):
        g[r, (r * 37) % E] = float("nan")
    g[32, :] = float("nan")
    g[33, 0], g[34, E - 1], g[35, :8] = float("inf"), float("-inf"), float("inf")
    check(g, K, router, out=fixed(g, K, router, inline=inline))


@pytest.mark.parametrize("shape", APPLIES)
def test_a_nan_in_a_group_the_keys_would_not_choose(shape, dev):
    """A NaN beside logits of -30 whose biases lie 1.6 below the rest (sigmoids ~0: its group the worst by its
    finite keys, by far, and every key still within reach of the reference) makes its group's score NaN, which the
    oracle ranks first: only the flag sends the row to float64. (A NaN's packed word is negative, but how far below
    zero depends on the NaN's bits: the GPU's canonical NaN gives -256 + id, the interpreter's quiet NaN -2**30 +
    id; the group's finite keys lie far enough that neither makes its score the best.) Rows with two and three NaNs
    too."""
    E, K, n_group = SHAPES[shape][:3]
    per = E // n_group
    bias = 5.0 + torch.linspace(0.0, 0.1, E)
    if n_group > 1:
        bias[E - per:] -= 1.6
    router = router_for(shape, dev, bias=bias)
    assert float(fused_grouped.reference_of(router.correction_bias)[1]) == 1.0, "not the fixed reference's path"
    g = logits(12, E, torch.float32, dev, seed=13, spread=2.0)
    g[:, E - per:] = -30.0
    g[:4, E - 2] = float("nan")
    g[4:8, E - 3], g[4:8, 5] = float("nan"), float("nan")
    g[8:, 7], g[8:, 3], g[8:, E - 1] = float("nan"), float("nan"), float("nan")
    check(g, K, router, out=fixed(g, K, router))


@pytest.mark.parametrize("bias", [126.0, -126.0, 252.5, 3e4, -1e6, 1e9])
def test_tops_far_from_zero(bias, dev):
    """As test_fused_grouped's, with the reference from the bias: keys around 2**7, 2**8, far beyond, negative,
    and so large that the sigmoids vanish in the fp32 keys."""
    E, K = SHAPES["deepseek-v3"][:2]
    g = logits(8, E, torch.float32, dev, seed=11, spread=2.0)
    g[:4, 3] = 100.0
    router = router_for("deepseek-v3", dev,
                        bias=torch.full((E,), bias, device=dev) + 0.01 * torch.arange(E, device=dev) % 7)
    check(g, K, router, out=fixed(g, K, router))


def test_the_fast_path_decides_the_same_rows(dev):
    """Without the float64 passes (fallback off), the reference changes no pick of a row the keys decide: the
    fast path routes random DeepSeek-V3 rows alike from either reference."""
    E, K = 256, 8
    router = router_for("deepseek-v3", dev)
    g = logits(64, E, torch.bfloat16, dev, seed=21, spread=2.0)
    own = launch(g, K, router, block_t=4, fallback=False, fixed_ref=False)
    ref = launch(g, K, router, block_t=4, fallback=False, fixed_ref=True)
    assert torch.equal(own[1], ref[1])
    assert torch.equal(own[0], ref[0])


def test_a_bias_written_in_place_makes_a_new_reference(dev):
    """reference_of keeps one reference a bias tensor and version: raised in place by 3 (so every key lies above
    the old reference), the bias gets a new one and the rows still route as the oracle."""
    E, K = 256, 8
    router = router_for("deepseek-v3", dev)
    bias = router.correction_bias
    first = fused_grouped.reference_of(bias).clone()
    assert fused_grouped.reference_of(bias) is fused_grouped.reference_of(bias)
    assert float(first[0]) >= float(bias.max()) + 1.0
    bias += 3.0
    assert float(fused_grouped.reference_of(bias)[0]) >= float(first[0]) + 3.0
    g = logits(32, E, torch.float32, dev, seed=2, spread=2.0)
    check(g, K, router, out=fixed(g, K, router))


def test_the_reference_says_where_no_distance_needs_saturating(dev):
    """reference_of's second value: 1.0 where the reference lies within UNSATURATED_REACH of the bias's smallest
    (the bench's bias, 5 + 0.05 randn; a spread of 1.9), 0.0 for a wide bias, a top far from zero (the reference's
    margin alone is ~1000 at 1e9), a NaN or an infinite bias."""
    def unsaturated(b):
        return float(fused_grouped.reference_of(b.to(dev))[1])
    spread = router_for("deepseek-v3", dev).correction_bias
    assert unsaturated(spread) == 1.0
    assert unsaturated(5.0 + torch.linspace(0.0, 1.9, 256)) == 1.0
    assert unsaturated(router_for("deepseek-v3", dev, bias="wide").correction_bias) == 0.0
    assert unsaturated(torch.full((256,), 1e9)) == 0.0
    for special in (float("nan"), float("inf"), float("-inf")):
        b = torch.full((256,), 5.0)
        b[7] = special
        assert unsaturated(b) == 0.0


@pytest.mark.parametrize("shape", APPLIES)
def test_keys_across_the_whole_reach_go_unsaturated(shape, dev):
    """A bias spread over 1.9 and logits of +-30 (sigmoids 1 and 0): keys from the reference down to nearly 3 below
    it, every distance unsaturated (its float up to ~14, below 16): the oracle's ids."""
    E, K = SHAPES[shape][:2]
    gen = torch.Generator().manual_seed(3)
    bias = (5.0 + 1.9 * torch.rand(E, generator=gen)).to(dev)
    bias[0], bias[1] = 5.0, 6.9
    router = router_for(shape, dev, bias=bias)
    assert float(fused_grouped.reference_of(bias)[1]) == 1.0
    g = logits(32, E, torch.float32, dev, seed=17, spread=2.0)
    g[:, ::3] = 30.0
    g[:, 1::3] = -30.0
    g[:8, 0], g[8:16, 1] = -30.0, 30.0
    check(g, K, router, out=fixed(g, K, router))


@pytest.mark.parametrize("shape", APPLIES)
def test_a_few_experts_far_below_keep_the_saturation(shape, dev):
    """Three experts biased ~11.5 below the rest, their logits -30 (sigmoids 0): their distances' floats (8 + 2 d,
    ~33) leave [8, 16) for a binade whose words read as nearer than any other key, so the reference must not let
    the distances go unsaturated (the rows' other keys all lie within 2 of it, so no word turns negative to flag
    them). With UNSATURATED_REACH 100 the far experts are picked first."""
    E, K = SHAPES[shape][:2]
    gen = torch.Generator().manual_seed(4)
    bias = 5.0 + 0.05 * torch.randn(E, generator=gen)
    far = [3, E // 2 + 1, E - 2]
    bias[far] = float(bias.max()) + 1.0 - 12.55
    router = router_for(shape, dev, bias=bias)
    assert float(fused_grouped.reference_of(router.correction_bias)[1]) == 0.0
    g = logits(32, E, torch.float32, dev, seed=19, spread=2.0)
    g[:, far] = -30.0
    check(g, K, router, out=fixed(g, K, router))
