"""The kernel variants kept under reports/bench/variants (measured alternatives, not used by parity)
still compile against the current kernel parts and route like ``fused``: ids exactly the
oracle's, weights bit for bit fused's. Keeps scripts/probe_fused.py's comparisons meaningful."""
import importlib.util
import pathlib

import pytest
import torch
import triton

from parity.routing import fused
from parity.routing.fused import kernel_args
from parity.routing.oracle import route64
from routing_cases import logits, scale

VARIANTS = pathlib.Path(__file__).resolve().parents[1] / "reports/bench/variants"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, VARIANTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("dtype,E,K", [(torch.bfloat16, 128, 8), (torch.float16, 7, 3), (torch.float32, 100, 6),
                                       (torch.float32, 128, 8)], ids=str)
def test_v3_bitonic_network_routes_like_fused(dtype, E, K, lanes, dev):
    v3 = load("v3_bitonic_network")
    g = logits(200, E, dtype, dev, seed=E + K)
    if dtype == torch.float32:  # near ties: the exactness test and the exact path must run
        g[::3] = (1.0 + 1e-6 * torch.randn(g[::3].shape, generator=torch.Generator().manual_seed(1))).to(dev)
    s = scale(E, dev)
    T, block_t, block_e = g.shape[0], 32, triton.next_power_of_2(E)
    w = torch.full((T, K), float("nan"), device=dev)
    ids = torch.full((T, K), -1, dtype=torch.int32, device=dev)
    v3._network_kernel[(triton.cdiv(T, block_t),)](
        g, s, w, ids, T, E, g.stride(0), g.stride(1), s.stride(0), BLOCK_T=block_t, BLOCK_E=block_e,
        **kernel_args(g, K, s), **v3.network_args(g, block_e, block_t, lanes))
    assert torch.equal(ids.long(), route64(g, K, s)[1])
    w_fused, _ = fused(g, K, s)
    assert torch.equal(w, w_fused)
