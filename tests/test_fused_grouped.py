"""parity's fused kernel for the grouped sigmoid router (DeepSeek-V3 / R1, Kimi K2, GLM-4.5):
ids exactly the oracle's (ties, near ties, NaN on top, groups), weights within FUSED_MAX_ULP fp32
ulps; the fp32 fast path, the exact ordering of nearly tied picks and the float64 fallback each
shown to matter; strides, special values, T = 0, torch.compile."""
from __future__ import annotations

import pytest
import torch

from parity import routing
from parity.numerics import ulp_error
from parity.routing import fused, fused_grouped
from parity.routing.kernel_parts import empty_outputs
from parity.routing.oracle import route64
from parity.routing.router import Router
from routing_cases import DTYPES, FUSED_MAX_ULP, logits, tied_logits

# (E, K, n_group, topk_group, scaling factor): the three models, odd group sizes, K up to 64, six groups of 32
SHAPES = {"deepseek-v3": (256, 8, 8, 4, 2.5), "kimi-k2": (384, 8, 1, 1, 2.827), "glm-4.5": (160, 8, 1, 1, 2.5),
          "odd-groups": (60, 6, 6, 3, 1.0), "k64": (128, 64, 4, 2, 1.0), "tiny": (7, 7, 1, 1, 1.0),
          "six-groups": (192, 8, 6, 3, 1.0)}


def router_for(shape: str, dev, *, bias: str | torch.Tensor = "spread", renormalize: bool = True) -> Router:
    """The shape's router with a named correction bias (spread, tied, wide) or the one given."""
    E, _, n_group, topk_group, sf = SHAPES[shape]
    if isinstance(bias, str):
        gen = torch.Generator().manual_seed(E)
        bias = {"spread": 5.0 + 0.05 * torch.randn(E, generator=gen), "tied": torch.full((E,), 5.0),
                "wide": 3.0 * torch.randn(E, generator=gen)}[bias]
    return Router("sigmoid", renormalize, sf, n_group, topk_group, correction_bias=bias.to(dev))


def check(g, K, router, max_ulp=FUSED_MAX_ULP, out=None):
    w, ids = out if out is not None else fused.route(g, K, router)
    ow, oid = route64(g, K, router)
    assert w.dtype == torch.float32 and ids.dtype == torch.int32 and w.shape == ids.shape == (g.shape[0], K)
    wrong = (ids.long().cpu() != oid.long().cpu()).any(1)
    assert not wrong.any(), f"ids differ from the oracle's in rows {wrong.nonzero().flatten()[:8].tolist()}"
    both_nan = torch.isnan(w.double().cpu()) & torch.isnan(ow.cpu())
    err = ulp_error(w.cpu(), ow.cpu())
    err = torch.where(both_nan | (w.double().cpu() == ow.cpu()), 0.0, err)
    assert float(err.max()) <= max_ulp, f"weights {float(err.max()):.2f} ulp from the oracle"


def plan_for(g, K, router, **overrides):
    """fused_grouped.plan for the router's own bias, scale, groups and renormalisation, with overrides."""
    return fused_grouped.plan(g, K, router.correction_bias.float(), fused.router_scale(router, g.shape[1], g.device),
                              router.n_group, router.topk_group, router.renormalize, **overrides)


def same_with_and_without(switch, g, K, router, block_t=4, same_flags=True, **overrides):
    """One of plan's switches (plan(switch=...)) on and off: weight bits, ids and (same_flags) flags equal, the ids on
    the oracle's; returns both runs' flags (on, off)."""
    outs = {}
    for on in (True, False):
        launch = plan_for(g, K, router, block_t=block_t, **{switch: on}, **overrides)
        assert launch.constexprs[switch.upper()] is on
        w, ids = empty_outputs(g, K)
        flags = launch.run(g, router.correction_bias.float(), fused.router_scale(router, g.shape[1], g.device), w, ids)
        outs[on] = (w.view(torch.int32).cpu(), ids.cpu(), flags.cpu())
        if on:
            check(g, K, router, out=(w, ids))
    for a, b, what in list(zip(outs[True], outs[False], ("weights", "ids", "flags")))[:3 if same_flags else 2]:
        assert torch.equal(a, b), f"{what} differ with {switch} on and off"
    return outs[True][2], outs[False][2]


def launch(g, K, router, **overrides):
    """The kernel with a forced tile (and, for the tests that show the fallback matters, without it)."""
    bias = router.correction_bias.float()
    scale = fused.router_scale(router, g.shape[1], g.device)
    w, ids = empty_outputs(g, K)
    fused_grouped.plan(g, K, bias, scale, router.n_group, router.topk_group, router.renormalize,
                       **overrides).run(g, bias, scale, w, ids)
    return w, ids


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_random_normal_matches_oracle(shape, dtype, dev):
    E, K = SHAPES[shape][:2]
    check(logits(200, E, dtype, dev, seed=E + K, spread=2.0), K, router_for(shape, dev))


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "second-launch"])
@pytest.mark.parametrize("bias", ["tied", "wide"])
@pytest.mark.parametrize("shape", ["deepseek-v3", "odd-groups"])
def test_tied_keys_and_wide_biases(shape, bias, inline, dev):
    """One bias for all (keys tie wherever bf16 logits do, groups tie), or a bias spread so wide that
    keys saturate the fixed-point distance (every row through float64); flagged rows routed again in
    the fast kernel (inline) or by exact_kernel."""
    E, K = SHAPES[shape][:2]
    g, router = tied_logits(300, E, dev, seed=1), router_for(shape, dev, bias=bias)
    check(g, K, router, out=launch(g, K, router, inline=inline))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_saturated_sigmoids(dtype, dev):
    """Logits far out: fp32 sigmoids round to 1 (or 0) where float64 ones still differ."""
    check(logits(200, 256, dtype, dev, seed=4, spread=30.0), 8, router_for("deepseek-v3", dev))


def test_without_renormalisation(dev):
    check(logits(100, 160, torch.bfloat16, dev, seed=2), 8, router_for("glm-4.5", dev, renormalize=False))


def near_tie_rows(dev) -> torch.Tensor:
    """Rows of one group with one bias, whose two best logits (ids 0 and 1, expert 1 higher by 5e-7)
    give float64 keys 1.25e-7 apart that round to the same fp32 key: the fp32 keys alone choose
    expert 0 (the lower id) where the oracle chooses 1."""
    g = torch.full((4, 16), -4.0)
    g[:, 0], g[:, 1] = 0.0, 5e-7
    return g.to(dev)


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "second-launch"])
@pytest.mark.parametrize("K", [1, 2])
def test_the_float64_fallback_decides_near_ties(K, inline, dev):
    """K = 1: the tie lies across the K-th place (the block reroutes from float64 keys); K = 2: both
    are chosen and only their order is in question (the K picks are reordered by float64 keys); in
    the fast kernel (inline) or in exact_kernel."""
    router = Router("sigmoid", True, correction_bias=torch.full((16,), 5.0, device=dev))
    g = near_tie_rows(dev)
    assert route64(g, K, router)[1][0, 0] == 1
    w, ids = launch(g, K, router, block_t=1, fallback=False)
    assert (ids[:, 0] == 0).all(), "the planted rows no longer tie in fp32: the test shows nothing"
    check(g, K, router, out=launch(g, K, router, block_t=1, inline=inline))
    check(g, K, router, out=launch(g, K, router, block_t=4, inline=inline))


@pytest.mark.parametrize("block_t", [1, 4])
def test_small_tiles_route_like_one_tile(block_t, dev):
    """The fast path decides most blocks alone when they are small; ids and weights as with one tile
    (which, holding some ambiguous row, routes every row from float64 keys)."""
    router = router_for("deepseek-v3", dev)
    g = logits(32, 256, torch.float32, dev, seed=7, spread=2.0)
    one = launch(g, 8, router, block_t=32, inline=False)
    for inline in (True, False):
        small = launch(g, 8, router, block_t=block_t, inline=inline)
        check(g, 8, router, out=small)
        assert torch.equal(one[1], small[1]) and torch.equal(one[0], small[0])


def test_strided_rows_and_special_values(dev):
    router = router_for("deepseek-v3", dev)
    base = logits(64, 512, torch.float32, dev, seed=3, spread=4.0)
    g = base[::2, ::2]                                   # row and column strides
    g[0, 5], g[1, 7], g[2, :], g[3, :] = float("inf"), float("nan"), float("-inf"), float("nan")
    check(g, 8, router)


def test_empty_batch(dev):
    w, ids = fused.route(torch.empty(0, 256, dtype=torch.bfloat16, device=dev), 8, router_for("deepseek-v3", dev))
    assert w.shape == ids.shape == (0, 8)


def test_torch_compile_captures_the_call(dev):
    router = router_for("deepseek-v3", dev)
    g = logits(33, 256, torch.bfloat16, dev, seed=5)
    w, ids = torch.compile(lambda x: fused.route(x, 8, router), fullgraph=True)(g)
    w2, ids2 = fused.route(g, 8, router)
    assert torch.equal(ids, ids2) and torch.equal(w, w2)


def test_a_softmax_router_with_groups_is_refused_by_name(dev):
    with pytest.raises(ValueError, match="^score: the grouped kernel"):
        fused.route(logits(4, 128, torch.float32, dev), 4, Router("softmax", True, 1.0, 8, 4))


def test_the_family_lists_the_kernel():
    fam = routing.family("deepseek_v3")
    assert fam.kernels == ("fused",) and routing.get("fused", "deepseek_v3") is fused.route


# The fast path's flags: every row it routes wrongly is flagged (small tiles, so that rows are decided
# alone); inputs: random rows, a row with a NaN, one of -inf, and rows planted with near_tie_rows
# (experts 0 and 1 given one bias, 5.0, so the fp32 keys tie where the float64 ones do not). "wide"
# biases saturate the fixed-point distance of many keys, which is flagged only where that can matter.
FLAG_CASES = [("deepseek-v3", torch.bfloat16, 8, "spread"), ("deepseek-v3", torch.float32, 4, "spread"),
              ("kimi-k2", torch.bfloat16, 4, "spread"), ("kimi-k2", torch.float32, 8, "spread"),
              ("odd-groups", torch.bfloat16, 8, "spread"), ("odd-groups", torch.float32, 4, "spread"),
              ("deepseek-v3", torch.float32, 8, "wide"), ("kimi-k2", torch.bfloat16, 4, "wide")]


def _flag_inputs(shape, dtype, bias_kind, dev):
    E, K, n_group, topk_group, sf = SHAPES[shape]
    b = router_for(shape, dev, bias=bias_kind).correction_bias.clone()
    b[0] = b[1] = 5.0
    router = Router("sigmoid", True, sf, n_group, topk_group, correction_bias=b)
    g = logits(32, E, torch.float32, dev, seed=E + K, spread=2.0)
    g[1, 7] = float("nan")
    g[2, :] = float("-inf")
    g[3:7, :] = -4.0
    g[3:7, :16] = near_tie_rows(dev)
    return g.to(dtype), K, router


@pytest.mark.parametrize("shape,dtype,block_t,bias_kind", FLAG_CASES, ids=str)
def test_the_flags_catch_every_row_the_fp32_keys_get_wrong(shape, dtype, block_t, bias_kind, dev):
    g, K, router = _flag_inputs(shape, dtype, bias_kind, dev)
    oid = route64(g, K, router)[1]
    w, ids = launch(g, K, router, block_t=block_t)
    assert torch.equal(ids.long().cpu(), oid.cpu())
    w2, ids2 = launch(g, K, router, block_t=block_t, inline=False)
    assert torch.equal(ids2, ids) and torch.equal(w2.view(torch.int32), w.view(torch.int32)), \
        "exact_kernel's second launch and the inline path differ"

    bias = router.correction_bias.float()
    s = fused.router_scale(router, g.shape[1], g.device)
    w_fast, ids_fast = empty_outputs(g, K)
    flags = fused_grouped.plan(g, K, bias, s, router.n_group, router.topk_group, router.renormalize,
                               block_t=block_t, fallback=False).run(g, bias, s, w_fast, ids_fast).cpu()
    wrong = (ids_fast.long().cpu() != oid.cpu()).any(1)
    missed = wrong & (flags == 0)
    assert not missed.any(), f"unflagged rows routed wrongly: {missed.nonzero().flatten().tolist()}"
    assert flags[1] == 1, "a NaN key must send its row to the float64 path"
    assert int((flags == 0).sum()) >= 8, "the fast path decides too few rows for the test to show anything"
    if bias_kind == "spread":
        assert wrong[3:7].all(), "the planted rows no longer tie in fp32: the flag test shows nothing"


ONE_ROW_FLAG_CASES = [("deepseek-v3", torch.bfloat16, 1, "spread"), ("kimi-k2", torch.float32, 1, "spread")]
"""One row a program: the near picks are reordered beside the fast path, for every row (SPECULATE)."""


@pytest.mark.parametrize("shape,dtype,block_t,bias_kind", FLAG_CASES[:6] + ONE_ROW_FLAG_CASES, ids=str)
def test_near_picks_reordered_route_as_the_whole_rows_float64_pass(shape, dtype, block_t, bias_kind, dev):
    """A flagged row whose doubt is only the order of its K + 1 first picks is settled from those
    float64 keys (flag 1); the rest (NaN, groups in doubt, a third key near the K-th: flag 2) take
    the whole row's float64 pass. Both give the oracle's ids and the same bits as routing every
    flagged row the whole way."""
    g, K, router = _flag_inputs(shape, dtype, bias_kind, dev)
    bias = router.correction_bias.float()
    s = fused.router_scale(router, g.shape[1], g.device)
    outs, flags = {}, {}
    for reorder in (True, False):
        w, ids = empty_outputs(g, K)
        flags[reorder] = fused_grouped.plan(g, K, bias, s, router.n_group, router.topk_group, router.renormalize,
                                            block_t=block_t, reorder=reorder).run(g, bias, s, w, ids).cpu()
        outs[reorder] = (w, ids)
    check(g, K, router, out=outs[True])
    assert torch.equal(outs[True][1], outs[False][1])
    assert torch.equal(outs[True][0].view(torch.int32), outs[False][0].view(torch.int32))
    assert flags[True][1] == 2, "a NaN key needs the whole row's float64 pass"
    assert (flags[True][3:7] == 1).all(), "the planted near ties are settled by reordering the picks"
    assert torch.equal(flags[True] != 0, flags[False] != 0)


def _planted_deepseek_rows(logit_at: dict, quiet_groups: range, dev) -> torch.Tensor:
    """Four DeepSeek-V3 rows of -4.0 with the logits ``logit_at`` (column -> value) and, in each
    quiet group, two experts at -1 - 0.1 * group: those groups' scores below, and apart."""
    g = torch.full((4, 256), -4.0)
    for col, x in logit_at.items():
        g[:, col] = x
    for grp in quiet_groups:
        g[:, grp * 32:grp * 32 + 2] = -1.0 - 0.1 * grp
    return g.to(dev)


def _routed_with_flags(g, block_t, dev, **overrides):
    """DeepSeek-V3's shape with bias 5.0 everywhere: the router, its oracle's ids, the kernel's
    flags and its (weights, ids) at block_t rows a program."""
    E, K, n_group, topk_group, sf = SHAPES["deepseek-v3"]
    router = Router("sigmoid", True, sf, n_group, topk_group, correction_bias=torch.full((E,), 5.0, device=dev))
    bias = router.correction_bias.float()
    s = fused.router_scale(router, E, g.device)
    w, ids = empty_outputs(g, K)
    flags = fused_grouped.plan(g, K, bias, s, n_group, topk_group, router.renormalize,
                               block_t=block_t, **overrides).run(g, bias, s, w, ids).cpu()
    return router, route64(g, K, router)[1].cpu(), flags, (w, ids)


@pytest.mark.parametrize("block_t", [1, 4])
def test_a_third_pick_near_the_kth_takes_the_whole_rows_pass(block_t, dev):
    """_third_near_kth: when the (K+2)-th pick lies near the K-th, the top K may lie beyond the K + 1
    first picks, so the row must take the whole row's float64 pass (flag 2), not the reorder (which
    would choose the (K+1)-th). The planted rows' 8th, 9th and 10th fp32 picks tie: experts 65, 97
    and 98 at logits 0, 1e-7 and 5e-7 (float64 keys ~1e-7 apart, one fp32 key); the fp32 keys pick
    them in id order, but the oracle's 8th is 98. Seven clear picks before them lie in groups 0-2
    (three, three, one), so the groups' lists do not run out. One row a program (the speculative
    path) and four (the groups' lists)."""
    planted = _planted_deepseek_rows({0: 1.0, 1: 0.9, 2: 0.8, 32: 0.95, 33: 0.85, 34: 0.75, 64: 0.7, 65: 0.0,
                                      97: 1e-7, 98: 5e-7}, range(4, 8), dev)
    g = torch.cat([logits(4, 256, torch.float32, dev, seed=3), planted])
    router, oid, flags, out = _routed_with_flags(g, block_t, dev)
    assert (oid[4:, 7] == 98).all(), "the planted rows' 8th pick is no longer the (K+2)-th fp32 pick"
    assert (flags[4:] == 2).all(), f"flags {flags.tolist()}: the planted rows must take the whole row's pass"
    check(g, 8, router, out=out)


@pytest.mark.parametrize("group_test", [False, True], ids=["", "group-test"])
@pytest.mark.parametrize("block_t", [1, 4])
def test_groups_too_close_to_order_take_the_whole_rows_pass(block_t, group_test, dev):
    """The 4th and 5th groups' scores (sums of their top two keys) 1.25e-7 apart, one fp32 key each
    (groups 3 and 4, logits 0 and 0 against 0 and 5e-7, bias 5.0): the fp32 keys choose group 3 (the
    lower id) where the oracle chooses group 4, and the picks 7 and 8 come from that group. Only a
    group gap checked against the error bound sends the row to the whole row's float64 pass."""
    planted = _planted_deepseek_rows({0: 1.0, 1: 0.9, 32: 0.95, 33: 0.85, 64: 0.8, 65: 0.75, 96: 0.0, 97: 0.0,
                                      128: 0.0, 129: 5e-7}, range(5, 8), dev)
    g = torch.cat([logits(4, 256, torch.float32, dev, seed=5), planted])
    router, oid, flags, out = _routed_with_flags(g, block_t, dev, group_test=group_test)
    assert set(oid[4, 6:].tolist()) == {128, 129}, "the oracle no longer chooses group 4: the test shows nothing"
    assert (flags[4:] == 2).all(), f"flags {flags.tolist()}: groups in doubt need the whole row's pass"
    check(g, 8, router, out=out)


@pytest.mark.parametrize("shape,dtype,block_t,bias_kind", ONE_ROW_FLAG_CASES, ids=str)
def test_one_row_reorder_after_the_store_routes_as_speculated(shape, dtype, block_t, bias_kind, dev):
    """plan(speculate=True) reorders a one-row program's near picks for every row beside the fast
    path; the default after its store, for flagged rows only (the probes' A/B): the same ids, weight
    bits and flags either way."""
    g, K, router = _flag_inputs(shape, dtype, bias_kind, dev)
    bias = router.correction_bias.float()
    s = fused.router_scale(router, g.shape[1], g.device)
    outs = {}
    for speculate in (True, False):   # the pair test off: it would settle some of the rows speculation reorders
        launch = fused_grouped.plan(g, K, bias, s, router.n_group, router.topk_group, router.renormalize,
                                    block_t=block_t, speculate=speculate, pair_test=False)
        assert launch.kernel_options()["SPECULATE"] is speculate
        w, ids = empty_outputs(g, K)
        flags = launch.run(g, bias, s, w, ids).cpu()
        outs[speculate] = (w.view(torch.int32).cpu(), ids.cpu(), flags)
    assert (outs[False][2][3:7] == 1).all(), "the planted near ties are no longer reordered: the test shows nothing"
    for a, b, what in zip(outs[True], outs[False], ("weights", "ids", "flags")):
        assert torch.equal(a, b), f"{what} differ between the speculative reorder and the reorder after the store"


@pytest.mark.parametrize("shape,block_t", [("deepseek-v3", 4), ("deepseek-v3", 2), ("odd-groups", 4), ("k64", 8)],
                         ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_group_lists_pick_as_the_whole_tile(shape, block_t, dtype, dev):
    """With groups and several rows a program the picks come from each chosen group's GROUP_LIST
    smallest keys; a block where a group's list could run out before the (K+2)-th pick takes the
    rounds over the whole tile. Both give the bits and flags of the whole tile's rounds (lists=False); the inputs
    hold blocks of each kind (random rows, rows whose top keys all lie in one group, near ties)."""
    E, K, n_group, topk_group, _ = SHAPES[shape]
    per = E // n_group
    router = router_for(shape, dev)
    g = logits(48, E, torch.float32, dev, seed=11, spread=2.0)
    g[40:44, :per] += 6.0                          # one group holds every top key: its list runs out
    g[44, :] = float("nan")
    g[45:48, :] = -4.0
    g[45:48, :16] = near_tie_rows(dev)[:3]
    g = g.to(dtype)
    picks = min(K + 1, topk_group * per)                # the K + 1 picks (as many as the chosen groups hold)
    ids64 = route64(g, picks, router)[1].cpu()
    counts = torch.zeros(len(g), n_group, dtype=torch.long).scatter_add_(
        1, ids64 // per, torch.ones(len(g), picks, dtype=torch.long))
    ran_out = (counts.max(1).values >= fused_grouped.GROUP_LIST).view(-1, block_t).any(1)
    assert ran_out.any() and ((~ran_out).any() or K > n_group * fused_grouped.GROUP_LIST), \
        "the inputs no longer hold blocks of both kinds"

    bias = router.correction_bias.float()
    s = fused.router_scale(router, E, g.device)
    outs = {}
    for lists in (True, False):
        w, ids = empty_outputs(g, K)
        flags = fused_grouped.plan(g, K, bias, s, n_group, topk_group, router.renormalize, block_t=block_t,
                                   lists=lists).run(g, bias, s, w, ids).cpu()
        outs[lists] = (w.view(torch.int32).cpu(), ids.cpu(), flags)
    check(g, K, router, out=launch(g, K, router, block_t=block_t))
    for a, b, what in zip(outs[True], outs[False], ("weights", "ids", "flags")):
        assert torch.equal(a, b), f"{what} differ between the group lists and the whole tile's rounds"



@pytest.mark.parametrize("block_t", [1, 4])
@pytest.mark.parametrize("bias", [126.0, -126.0, 252.5, 3e4, -1e6, 1e9, -1e9])
def test_tops_far_from_zero_route_as_the_oracle(bias, block_t, dev):
    """The fast path's distance below the row's top is the mantissa of fl(t1 - 2 key), a float in
    [8, 16), with t1 = fl(2 top + 8 + 2**-17): keys around 2**7 (t1 one binade above 2 top, its grid
    twice as coarse), 2**8, far beyond, negative, and so large that the sigmoids vanish in the fp32
    keys (every key's float collapses to 8 or saturates: flagged), each with one saturated logit on
    top (key exactly 1 + B) and with none: ids the oracle's, as at DeepSeek-V3's usual bias of ~5."""
    E, K, n_group, topk_group, sf = SHAPES["deepseek-v3"]
    g = logits(8, E, torch.float32, dev, seed=11, spread=2.0)
    g[:4, 3] = 100.0
    router = Router("sigmoid", True, sf, n_group, topk_group,
                    correction_bias=torch.full((E,), bias, device=dev) + 0.01 * torch.arange(E, device=dev) % 7)
    check(g, K, router, out=launch(g, K, router, block_t=block_t))


def _pair_rows(dev) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3 rows (fp32 logits) and a bias, whose 8th and 9th picks lie within the fp32 keys'
    bound, above a clear 10th: seven picks in groups 0-3 well above them, every other expert at -4.
    Bias 5.0, but expert 1's 5.1. In the first ten rows the pair is experts 0 and 1: expert 0's
    logit 0, expert 1's chosen so that its sigmoid is 0.5 - (5.1 - 5.0) + gap, so that the keys
    differ by gap while the sigmoids differ by 0.1. The gaps: 2e-6 either way (the pair test proves
    the order wherever the fp32 keys have it right), and 1e-9 to 3e-8 either way (no fp32 arithmetic
    orders those: float64 must). In the last two the pair is experts 3 and 4, of one bias, whose fp32
    keys tie: expert 3 above by 5e-7 (the fp32 keys' order, lower id first, is right), then below."""
    E = 256
    gaps = [2e-6, -2e-6, 1e-9, -1e-9, 3e-9, -3e-9, 1e-8, -1e-8, 3e-8, -3e-8]
    bias = torch.full((E,), 5.0)
    bias[1] = 5.1
    g = torch.full((len(gaps) + 2, E), -4.0)
    for col, x in {32: 1.0, 33: 0.9, 64: 0.8, 65: 0.7, 96: 0.6, 97: 0.5, 2: 0.3}.items():
        g[:, col] = x
    sigmoid_1 = 0.5 - (float(bias[1]) - 5.0) + torch.tensor(gaps, dtype=torch.float64)
    g[:len(gaps), 0], g[:len(gaps), 1] = 0.0, torch.logit(sigmoid_1).float()
    g[len(gaps):, 3], g[len(gaps):, 4] = torch.tensor([5e-7, -5e-7]), 0.0
    return g.to(dev), bias.to(dev)


@pytest.mark.parametrize("block_t", [1, 4])
def test_the_pair_test_proves_near_picks_or_leaves_them_to_float64(block_t, dev):
    """_picks_in_order: a near row whose fp32 order the pair test proves keeps the fast path's picks
    and weights (flag 3); a row in the wrong order, or too close for fp32 arithmetic, is reordered
    from float64 keys (flag 1). Either way the oracle's ids, and the bits of the path without the
    test. One row a program and four (the groups' lists)."""
    g, b = _pair_rows(dev)
    E, K, n_group, topk_group, sf = SHAPES["deepseek-v3"]
    g = torch.cat([g, logits(4, E, torch.float32, dev, seed=9)])
    router = Router("sigmoid", True, sf, n_group, topk_group, correction_bias=b)
    s = fused.router_scale(router, E, g.device)
    outs, flags = {}, {}
    for pair_test in (True, False):
        launch_ = fused_grouped.plan(g, K, b, s, n_group, topk_group, True, block_t=block_t, pair_test=pair_test)
        assert launch_.kernel_options()["PAIR_TEST"] is pair_test
        w, ids = empty_outputs(g, K)
        flags[pair_test] = launch_.run(g, b, s, w, ids).cpu()
        outs[pair_test] = (w, ids)
        check(g, K, router, out=outs[pair_test])
    planted = flags[True][:12]
    assert (planted != 0).all() and (planted != 2).all(), f"flags {planted.tolist()}: the planted rows must be near"
    assert planted[0] == planted[1] == 3 and planted[10] == 3, f"flags {planted.tolist()}: the pair test proves nothing"
    assert (planted[2:10] == 1).all() and planted[11] == 1, f"flags {planted.tolist()}: gaps below the bound proven"
    assert torch.equal(flags[False] == 0, flags[True] == 0) and (flags[False] != 3).all()
    assert torch.equal(outs[True][1], outs[False][1])
    assert torch.equal(outs[True][0].view(torch.int32), outs[False][0].view(torch.int32))


@pytest.mark.parametrize("block_t", [1, 4])
def test_the_pair_test_never_proves_a_wrong_order(block_t, dev):
    """Many near pairs at random: one group of 160 experts, seven clear picks (experts 150-156), and in
    row r the pair 2r' and 2r' + 1 (r' = r mod 70), expert 2r' + 1's bias 5 + beta (beta 0, small or
    up to 0.3, so that the sigmoids' difference 1 - e**d takes both of the test's forms), expert 2r''s
    logit in [-0.6, 0.3] (keys 5.35 to 5.57, above every other expert's, at most 5.3) and expert
    2r' + 1's set so that the two keys differ by a gap drawn from 1e-10 to 1e-5, either way (fp32
    rounding of the logit moves it by up to ~3e-8). Every id the oracle's, whichever rows the test
    proves. (The interpreter's exp2 and division are more accurate than the GPU's ex2 and rcp: this
    test cannot show the bound too tight here; the GPU suite runs it too.)"""
    E, K, T = 160, 8, 280
    gen = torch.Generator().manual_seed(16)
    beta = torch.cat([torch.zeros(24), 0.01 * (torch.rand(23, generator=gen) - 0.5),
                      0.6 * (torch.rand(23, generator=gen) - 0.5)]).double()
    bias = torch.full((E,), 5.0, dtype=torch.float64)
    bias[1:140:2] += beta
    bias = bias.float()
    g = torch.full((T, E), -12.0, dtype=torch.float64)
    g[:, 150:157] = torch.linspace(1.0, 0.4, 7, dtype=torch.float64)
    rows = torch.arange(T)
    first = 2 * (rows % 70)
    x0 = 0.9 * torch.rand(T, generator=gen, dtype=torch.float64) - 0.6
    gap = torch.where(torch.rand(T, generator=gen) < 0.5, -1.0, 1.0).double() * \
        10.0 ** (-10 + 5 * torch.rand(T, generator=gen, dtype=torch.float64))
    sig1 = torch.sigmoid(x0) + (bias[first].double() - bias[first + 1].double()) + gap
    g[rows, first], g[rows, first + 1] = x0, torch.logit(sig1)
    g = g.float().to(dev)
    router = Router("sigmoid", True, 2.5, correction_bias=bias.to(dev))
    s = fused.router_scale(router, E, g.device)
    w, ids = empty_outputs(g, K)
    flags = fused_grouped.plan(g, K, router.correction_bias, s, 1, 1, True, block_t=block_t).run(
        g, router.correction_bias, s, w, ids).cpu()
    check(g, K, router, out=(w, ids))
    assert int((flags == 3).sum()) >= 80 and int((flags == 1).sum()) >= 80 and int((flags == 2).sum()) == 0, \
        f"flags {torch.bincount(flags.long()).tolist()}: the rows no longer test both outcomes"


@pytest.mark.parametrize("block_t", [1, 4])
def test_the_group_test_proves_groups_the_fp32_scores_cannot_order(block_t, dev):
    """_groups_in_order (plan(group_test=True)): the planted rows of the test above with group 3 the
    higher by as much (logits 0 and 5e-7 against 0 and 0): the fp32 scores tie and choose group 3
    (the lower id), which is right, and the group test proves it, so the rows skip the whole row's
    float64 pass (no flag 2); without the test they take it. Ids the oracle's, weights bit for bit."""
    planted = _planted_deepseek_rows({0: 1.0, 1: 0.9, 32: 0.95, 33: 0.85, 64: 0.8, 65: 0.75, 96: 0.0, 97: 5e-7,
                                      128: 0.0, 129: 0.0}, range(5, 8), dev)
    g = torch.cat([logits(4, 256, torch.float32, dev, seed=5), planted])
    outs = {}
    for group_test in (False, True):
        router, oid, flags, out = _routed_with_flags(g, block_t, dev, group_test=group_test)
        assert set(oid[4, 6:].tolist()) == {96, 97}, "the oracle no longer chooses group 3: the test shows nothing"
        check(g, 8, router, out=out)
        outs[group_test] = (flags, out)
    assert (outs[False][0][4:] == 2).all(), f"flags {outs[False][0].tolist()}: the rows no longer tie in fp32"
    assert ((outs[True][0][4:] == 1) | (outs[True][0][4:] == 3)).all(), \
        f"flags {outs[True][0].tolist()}: the group test did not prove the planted rows' groups"
    assert torch.equal(outs[True][1][1], outs[False][1][1])
    assert torch.equal(outs[True][1][0].view(torch.int32), outs[False][1][0].view(torch.int32))


@pytest.mark.parametrize("shape", ["deepseek-v3", "kimi-k2", "glm-4.5"])
def test_one_row_picks_in_runs_of_one_vector(shape, dev):
    """One row a program takes its picks from each vector's eight keys sorted where the row has
    groups (DeepSeek-V3: ``_vector_lists``; on the GPU a thread's vector), else from a pass over
    every key (Kimi K2, GLM-4.5): rows whose K + 2 first picks are one run of experts, in shuffled
    order, from a vector's start or its seventh, whose whole vector holds the eight first (a list used
    to its last key), route as the oracle's on the fp32 keys alone (no row
    flagged), and with the fallback."""
    E, K, n_group, topk_group, sf = SHAPES[shape]
    router = Router("sigmoid", True, sf, n_group, topk_group, correction_bias=torch.full((E,), 5.0, device=dev))
    gen = torch.Generator().manual_seed(E + K)
    rows, per, run = 8, E // n_group, K + 2
    g = torch.randn(rows, E, generator=gen) * 0.3 - 3.0
    starts = []
    for r in range(rows):
        starts.append(8 * int(torch.randint(0, (per - 16) // 8 + 1, (1,), generator=gen)) + per * (r % n_group)
                      + 6 * (r % 2))
        # the whole vector's keys the top eight (in shuffled order), the run's other two the 9th and 10th
        ranks = torch.cat([8 + torch.randperm(run - 8, generator=gen), torch.randperm(8, generator=gen)])
        g[r, starts[r]:starts[r] + run] = 3.0 - 0.2 * (ranks if r % 2 else ranks.roll(-2)).float()
    g = g.to(torch.bfloat16).to(dev)
    oid = route64(g, K, router)[1].cpu()
    assert all(((ids >= start) & (ids < start + run)).all() for ids, start in zip(oid, starts)), "picks not in runs"
    w, ids = empty_outputs(g, K)
    bias, s = router.correction_bias.float(), fused.router_scale(router, E, g.device)
    flags = fused_grouped.plan(g, K, bias, s, n_group, topk_group, router.renormalize, block_t=1,
                               fallback=False).run(g, bias, s, w, ids).cpu()
    assert (flags == 0).all(), f"flags {flags.tolist()}: the runs' keys are far apart, the fast path decides"
    assert torch.equal(ids.cpu().long(), oid.long()), "the fp32 keys alone chose otherwise than the oracle"
    check(g, K, router, out=launch(g, K, router, block_t=1))


def test_the_group_test_is_on_by_default_for_one_row_launches_from_its_row_count():
    """The GPU's launch table (plan, interpreter=False): one-row programs put rows whose groups are in
    doubt to the group test from GROUP_TEST_MIN_ROWS rows (where it pays in expectation, by the
    H100's timing), not below, and not in the four-row tile (it spills there); an override wins."""
    router = router_for("deepseek-v3", "cpu")
    E, K, n_group, topk_group, _ = SHAPES["deepseek-v3"]
    s = fused.router_scale(router, E, "cpu")

    def launch(T, **kw):
        g = torch.empty(T, E, dtype=torch.bfloat16)
        return fused_grouped.plan(g, K, router.correction_bias, s, n_group, topk_group, True, interpreter=False, **kw)

    low, high = fused_grouped.GROUP_TEST_MIN_ROWS // 2, fused_grouped.GROUP_TEST_MIN_ROWS
    big = 4 * fused_grouped.FILL_PROGRAMS
    assert launch(high).block_t == 1 and launch(big).block_t > 1, "the launch table moved: the test shows nothing"
    assert not launch(1).kernel_options()["GROUP_TEST"] and not launch(low).kernel_options()["GROUP_TEST"]
    assert launch(high).kernel_options()["GROUP_TEST"] and launch(2048).kernel_options()["GROUP_TEST"]
    assert not launch(big).kernel_options()["GROUP_TEST"]
    assert launch(low, group_test=True).kernel_options()["GROUP_TEST"]
    assert not launch(high, group_test=False).kernel_options()["GROUP_TEST"]


@pytest.mark.parametrize("block_t", [1, 4])
def test_the_group_test_never_proves_a_wrong_choice(block_t, dev):
    """Many rows whose 4th and 5th groups compete (groups 3 and 4, two experts each above the rest;
    experts 128 and 129 biased 5.1, the others 5.0) with their scores a gap apart drawn from 1e-10
    to 1e-5 either way (group 4's logits set so that each of its keys sits 0.1 of sigmoid against the
    bias, fp32 rounding moving the gap by up to ~3e-8): every id the oracle's, the rows proven and
    the rows sent to float64 both many."""
    E, K, n_group, topk_group, sf = SHAPES["deepseek-v3"]
    T = 160
    gen = torch.Generator().manual_seed(17)
    bias = torch.full((E,), 5.0, dtype=torch.float64)
    bias[128:130] = 5.1
    bias = bias.float()
    g = torch.full((T, E), -12.0, dtype=torch.float64)
    for col, x in {0: 1.0, 1: 0.9, 32: 0.95, 33: 0.85, 64: 0.8, 65: 0.75}.items():
        g[:, col] = x
    g[:, 96] = 0.6 * torch.rand(T, generator=gen, dtype=torch.float64) - 0.5
    g[:, 97] = 0.6 * torch.rand(T, generator=gen, dtype=torch.float64) - 0.5
    gap = torch.where(torch.rand(T, generator=gen) < 0.5, -1.0, 1.0).double() * \
        10.0 ** (-10 + 5 * torch.rand(T, generator=gen, dtype=torch.float64))
    shift = float(bias[128].double() - bias[96].double())
    g[:, 128] = torch.logit(torch.sigmoid(g[:, 96]) - shift + gap / 2)
    g[:, 129] = torch.logit(torch.sigmoid(g[:, 97]) - shift + gap / 2)
    for grp in range(5, 8):
        g[:, grp * 32:grp * 32 + 2] = -1.0 - 0.1 * grp
    g = g.float().to(dev)
    router = Router("sigmoid", True, sf, n_group, topk_group, correction_bias=bias.to(dev))
    s = fused.router_scale(router, E, g.device)
    w, ids = empty_outputs(g, K)
    flags = fused_grouped.plan(g, K, router.correction_bias, s, n_group, topk_group, True, block_t=block_t,
                               group_test=True).run(g, router.correction_bias, s, w, ids).cpu()
    check(g, K, router, out=(w, ids))
    assert int((flags == 2).sum()) >= 30 and int(((flags == 1) | (flags == 3)).sum()) >= 30, \
        f"flags {torch.bincount(flags.long()).tolist()}: the rows no longer test both outcomes"


@pytest.mark.parametrize("block_t", [1, 4])
def test_the_group_test_leaves_what_it_cannot_prove_to_float64(block_t, dev):
    """Two ways the group test's conditions matter beyond the two scores (fp32 logits, bias 5.0):
    the next group's second key ties in fp32 with its third, which is the true second (experts 129
    and 130 at 0 and 5e-7): group 4's true score exceeds group 3's (96 and 97 at 0 and 2.4e-7) though
    its fp32 top two do not; a third group near the boundary (group 5 at 0 and 8e-7 above groups
    3 and 4 at 4e-7 and 0, all one fp32 score, chosen by id): the oracle takes group 5, the fp32 scores
    group 3; and a chosen group near the next one from above (groups 2, 3, 4 at 0, 8e-7 and 4e-7: the
    fp32 scores choose 2 and 3, the oracle 3 and 4, and 3 above 4 is provable). Every row must take the
    whole row's float64 pass (flag 2), and route as the oracle."""
    base = {0: 1.0, 1: 0.9, 32: 0.95, 33: 0.85, 64: 0.8, 65: 0.75}
    third_key = _planted_deepseek_rows({**base, 96: 0.0, 97: 2.4e-7, 128: 0.0, 129: 0.0, 130: 5e-7}, range(5, 8), dev)
    third_group = _planted_deepseek_rows({**base, 96: 0.0, 97: 4e-7, 128: 0.0, 129: 0.0, 160: 0.0, 161: 8e-7},
                                         range(6, 8), dev)
    group_above = _planted_deepseek_rows({0: 1.0, 1: 0.9, 32: 0.95, 33: 0.85, 64: 0.0, 65: 0.0, 96: 0.0, 97: 8e-7,
                                          128: 0.0, 129: 4e-7}, range(5, 8), dev)
    g = torch.cat([third_key[:2], third_group[:2], group_above[:2]])
    router, oid, flags, out = _routed_with_flags(g, block_t, dev, group_test=True)
    assert set(oid[0, 6:].tolist()) == {128, 130} and set(oid[2, 6:].tolist()) == {160, 161}, \
        "the oracle's choice of groups moved: the test shows nothing"
    assert {96, 97, 128, 129} <= set(oid[4].tolist()) and not {64, 65} & set(oid[4].tolist()), \
        "the oracle's choice of groups moved: the test shows nothing"
    assert (flags == 2).all(), f"flags {flags.tolist()}: a doubtful group proven"
    check(g, 8, router, out=out)
