"""The kernel variants kept under benchmarks/variants (measured alternatives, not used by parity)
still compile against the current kernel parts and route like ``fused``: ids exactly the
oracle's, weights bit for bit fused's. Keeps benchmarks/probe_fused.py's comparisons meaningful."""
import pytest
import torch
import triton

from benchmarks.variants import v3_bitonic_network as v3
from parity.routing.fused import fused, plan
from parity.routing.oracle import route64
from routing_cases import logits, scale


@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("dtype,E,K", [(torch.bfloat16, 128, 8), (torch.float16, 7, 3), (torch.float32, 100, 6),
                                       (torch.float32, 128, 8)], ids=str)
def test_v3_bitonic_network_routes_like_fused(dtype, E, K, lanes, dev):
    g = logits(200, E, dtype, dev, seed=E + K)
    if dtype == torch.float32:  # near ties: the exactness test and the exact path must run
        g[::3] = (1.0 + 1e-6 * torch.randn(g[::3].shape, generator=torch.Generator().manual_seed(1))).to(dev)
    s = scale(E, dev)
    T, block_t, block_e = g.shape[0], 32, triton.next_power_of_2(E)
    w = torch.full((T, K), float("nan"), device=dev)
    ids = torch.full((T, K), -1, dtype=torch.int32, device=dev)
    v3._network_kernel[(triton.cdiv(T, block_t),)](
        g, s, w, ids, T, E, g.stride(0), g.stride(1), s.stride(0), BLOCK_T=block_t, BLOCK_E=block_e,
        **{**plan(g, K, s).constexprs, **v3.network_args(g, block_e, block_t, lanes)})
    assert torch.equal(ids.long(), route64(g, K, s)[1])
    w_fused, _ = fused(g, K, s)
    assert torch.equal(w, w_fused)


# benchmarks/variants/grouped_v2_lanes.py: the grouped sigmoid router's fast path with rows across
# lanes (a candidate for parity.routing.fused_grouped.grouped_kernel). Small tiles, so that the fast
# path decides rows alone; inputs: random rows, a row with a NaN, one of -inf, and rows planted with
# test_fused_grouped.near_tie_rows (experts 0 and 1 given one bias, 5.0, so the fp32 keys tie where
# the float64 ones do not). "wide" biases saturate the fixed-point distance of many keys, which the
# variant flags only where that can matter (its change 4).
import pytest  # noqa: E402

from benchmarks.variants import grouped_v2_lanes as grouped_v2  # noqa: E402
from parity.routing import fused as fused_module, fused_grouped  # noqa: E402
from parity.routing.kernel_parts import empty_outputs  # noqa: E402
from parity.routing.router import Router  # noqa: E402
from test_fused_grouped import SHAPES, near_tie_rows, router_for  # noqa: E402

GROUPED_V2_CASES = [("deepseek-v3", torch.bfloat16, 8, "spread"), ("deepseek-v3", torch.float32, 4, "spread"),
                    ("kimi-k2", torch.bfloat16, 4, "spread"), ("kimi-k2", torch.float32, 8, "spread"),
                    ("odd-groups", torch.bfloat16, 8, "spread"), ("odd-groups", torch.float32, 4, "spread"),
                    ("deepseek-v3", torch.float32, 8, "wide"), ("kimi-k2", torch.bfloat16, 4, "wide")]


def _grouped_v2_inputs(shape, dtype, bias_kind, dev):
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


@pytest.mark.parametrize("shape,dtype,block_t,bias_kind", GROUPED_V2_CASES, ids=str)
def test_grouped_v2_routes_like_fused_grouped(shape, dtype, block_t, bias_kind, dev):
    g, K, router = _grouped_v2_inputs(shape, dtype, bias_kind, dev)
    bias = router.correction_bias.float()
    s = fused_module.router_scale(router, g.shape[1], g.device)
    launch = fused_grouped.plan(g, K, bias, s, router.n_group, router.topk_group, router.renormalize, block_t=block_t)
    w_ref, ids_ref = empty_outputs(g, K)
    launch.run(g, bias, s, w_ref, ids_ref)
    oid = route64(g, K, router)[1]
    assert torch.equal(ids_ref.long(), oid)

    w, ids = empty_outputs(g, K)
    flags = grouped_v2.run(launch, g, bias, s, w, ids)
    assert torch.equal(ids.long(), oid)
    assert torch.equal(w.view(torch.int32), w_ref.view(torch.int32)), "weights not fused_grouped's bit for bit"

    w_fast, ids_fast = empty_outputs(g, K)
    flags_fast = grouped_v2.run(launch, g, bias, s, w_fast, ids_fast, fallback=False)
    assert torch.equal(flags_fast, flags)
    wrong = (ids_fast.long() != oid).any(1)
    missed = wrong & (flags == 0)
    assert not missed.any(), f"unflagged rows routed wrongly: {missed.nonzero().flatten().tolist()}"
    assert flags[1] == 1, "a NaN key must send its row to the float64 path"
    assert int((flags == 0).sum()) >= 8, "the fast path decides too few rows for the test to show anything"
    if bias_kind == "spread":
        assert wrong[3:7].all(), "the planted rows no longer tie in fp32: the flag test shows nothing"
