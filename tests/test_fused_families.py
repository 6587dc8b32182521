"""parity's fused kernel for the families whose selection is Gemma4's (the top K logits, ties to the
lower id), through its four weight epilogues: softmax over the K (GPT-OSS, renormalising Mixtral /
Qwen3), softmax over all E (Qwen2-MoE), a sigmoid per chosen logit (Llama 4), renormalised sigmoids
with a scaling factor. Ids exactly the oracle's, ties included; weights within FUSED_MAX_ULP fp32
ulps of the fp64 oracle; every dtype, odd E, K up to 64, strided rows, NaN/inf rows, T = 0,
torch.compile. The grouped sigmoid router's kernel: tests/test_fused_grouped.py."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from parity import routing
from parity.numerics import ulp_error
from parity.routing import fused
from parity.routing.kernel_parts import SOFTMAX_ALL, empty_outputs
from parity.routing.oracle import route64
from parity.routing.router import Router
from routing_cases import DTYPES, FUSED_MAX_ULP, logits, tied_logits

ROUTERS = {"gpt_oss": Router("softmax", renormalize=True), "llama4": Router("sigmoid", renormalize=False),
           "qwen2_moe": Router("softmax", renormalize=False),
           "sigmoid_renormalised_scaled": Router("sigmoid", renormalize=True, scaling_factor=2.827)}


def assert_oracle_weights(w, ow, max_ulp=FUSED_MAX_ULP, what="weights"):
    """w within max_ulp fp32 ulps of the oracle's ow (NaN where it is NaN)."""
    w, ow = w.double().cpu(), ow.cpu()
    err = torch.where((w.isnan() & ow.isnan()) | (w == ow), 0.0, ulp_error(w, ow))
    assert float(err.max()) <= max_ulp, f"{what} {float(err.max()):.2f} ulp from the oracle"


def check(g, K, router, max_ulp=FUSED_MAX_ULP):
    w, ids = fused.route(g, K, router)
    ow, oid = route64(g, K, router)
    assert w.dtype == torch.float32 and ids.dtype == torch.int32 and w.shape == ids.shape == (g.shape[0], K)
    assert torch.equal(ids.long().cpu(), oid.long().cpu()), "ids differ from the oracle's"
    assert_oracle_weights(w, ow, max_ulp)


@pytest.mark.parametrize("family", ROUTERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("E,K", [(7, 1), (7, 7), (96, 4), (128, 1), (128, 4), (128, 64), (1000, 8)])
def test_random_normal_matches_oracle(family, E, K, dtype, dev):
    check(logits(300, E, dtype, dev, seed=E + K, spread=3.0), K, ROUTERS[family])


@pytest.mark.parametrize("family", ROUTERS)
def test_bf16_ties_follow_the_lower_id_rule(family, dev):
    check(tied_logits(2000, 128, dev), 4, ROUTERS[family])


@pytest.mark.parametrize("family", ROUTERS)
def test_strided_rows_and_special_values(family, dev):
    base = logits(64, 256, torch.float32, dev, seed=3, spread=4.0)
    g = base[::2, ::2]                                   # row and column strides
    g[0, 5], g[1, 7], g[2, :] = float("inf"), float("nan"), float("-inf")
    check(g, 4, ROUTERS[family])


@pytest.mark.parametrize("family", ROUTERS)
def test_empty_batch(family, dev):
    w, ids = fused.route(torch.empty(0, 128, dtype=torch.bfloat16, device=dev), 4, ROUTERS[family])
    assert w.shape == ids.shape == (0, 4)


@pytest.mark.parametrize("family", ["gpt_oss", "llama4", "mixtral", "deepseek_v3"])
def test_the_family_takes_the_kernel_as_its_own(family):
    fam = routing.family(family)
    assert fam.kernels == ("fused",) and fam.stand_in == "fused" and fam.arithmetic["fused"] == "fp32"
    assert routing.get("fused", family) is fused.route


def test_torch_compile_captures_the_call(dev):
    g = logits(33, 128, torch.bfloat16, dev, seed=5)
    fn = torch.compile(lambda x: fused.route(x, 4, ROUTERS["llama4"]), fullgraph=True)
    w, ids = fn(g)
    w2, ids2 = fused.route(g, 4, ROUTERS["llama4"])
    assert torch.equal(ids, ids2) and torch.equal(w, w2)


def test_a_positive_infinity_makes_a_softmax_over_all_nan_as_torch_does(dev):
    """Softmax over all E of a row holding +inf: NaN for every weight (inf - inf), as torch.softmax
    and float64 arithmetic give; the oracle once gave NaN, 0, 0 (nan_to_num turned +inf finite)."""
    g = logits(3, 16, torch.float32, dev, seed=9)
    g[1, 4] = float("inf")
    router = ROUTERS["qwen2_moe"]
    assert torch.isnan(torch.softmax(g[1].cpu(), -1)).all()
    assert torch.isnan(route64(g, 2, router)[0][1]).all()
    assert torch.isnan(fused.route(g, 2, router)[0][1]).all()
    check(g, 2, router)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_the_softmax_over_all_has_the_same_bits_in_every_tile(dtype, dev):
    """The denominator over all E is summed in whatever layout the tile gives (rows per program,
    logits per vector): its bits must not depend on it (batch invariance). An fp32 tl.sum would
    fail this: a whole-row vector and 16-byte vectors associate the row's terms differently. Each
    tile's weights are also the oracle's within the bound: adding neighbouring columns' terms in fp32
    before the int64 sum (git 4bdd4b7) gave wrong denominators on CUDA in four of these five tiles,
    which agreed with one another (reports/bench/NOTES.md, "Seventeenth round" and "Eighteenth round")."""
    g = logits(64, 60, dtype, dev, seed=11, spread=3.0)
    g[5, 7] = float("nan")
    g[9, :] = float("-inf")
    scale = fused.constant_vector(60, 1.0, torch.float32, g.device)
    base = fused.plan(g, 4, scale, score=SOFTMAX_ALL, renormalize=False)
    ow = route64(g, 4, ROUTERS["qwen2_moe"])[0]
    outs = []
    for block_t, vec in [(1, 64), (1, 16 // g.element_size()), (4, 16 // g.element_size()), (64, 64), (16, 2)]:
        w, ids = empty_outputs(g, 4)
        replace(base, tile=fused.Tile(block_t, 64, vec, 1)).run(g, scale, w, ids)
        assert_oracle_weights(w, ow, what=f"tile {block_t, vec}: weights")
        outs.append(w)
    assert outs[0][5].isnan().all() and outs[0][9].isnan().all()
    assert all(torch.equal(outs[0].nan_to_num(), w.nan_to_num()) for w in outs[1:])
    check(g, 4, ROUTERS["qwen2_moe"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_a_softmax_over_all_far_from_zero_matches_the_oracle(dtype, dev):
    """16-bit logits' denominator terms are exp2(x log2e - c), c the row's largest times log2e rounded,
    and the sum is scaled back by the residue r = first log2e - c (kernel_parts.shifted_exp2_args):
    largest where |first| is large (fp16 near its largest finite value: r up to 2**-8), and beyond
    2**16 (bf16 only) c = first with scale 1, where every term is 1 or 0. Rows there, ties at the top
    and rows of one value included, route as the oracle does, weights within the bound."""
    if dtype == torch.float16:
        tops = [1.0, -1.0, 60000.0, -60000.0, 65504.0, 2048.0]   # fp16 rows stay below 2**16
    else:
        tops = [1.0, -1.0, 60000.0, 65536.0, -70000.0, 1.0e6, -3.0e5, 1.0e30, -3.0e38, 3.0e38]
    rows = []
    for i, top in enumerate(tops):
        gen = torch.Generator().manual_seed(i)
        spread = max(abs(top) * 2.0**-9, 1.0)   # a few of the dtype's steps below the top, and further
        r = top - spread * torch.rand(8, 60, generator=gen) * torch.linspace(0, 24, 60)
        r[1, 7] = r[1].max()    # a tie at the top
        r[2, :] = top           # every logit the same
        rows.append(r)
    g = torch.cat(rows).to(dtype).to(dev)
    assert torch.isfinite(g).all()
    check(g, 4, ROUTERS["qwen2_moe"])
    check(g[:, :59], 4, ROUTERS["qwen2_moe"])   # odd E: rows read one logit at a time, as column pairs


def test_routers_with_a_bias_or_groups_go_to_the_grouped_kernel(dev, monkeypatch):
    from parity.routing import fused_grouped

    seen = []
    monkeypatch.setattr(fused_grouped, "route", lambda g, K, r: seen.append(r) or ("grouped", K))
    bias = torch.zeros(128, device=dev)
    for router in (Router("sigmoid", True, 2.5, 8, 4), Router("sigmoid", True, correction_bias=bias)):
        assert fused.route(logits(4, 128, torch.float32, dev), 4, router) == ("grouped", 4)
    assert len(seen) == 2
