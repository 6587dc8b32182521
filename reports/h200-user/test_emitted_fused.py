"""Routing tests for the gemma4 router with parity's derived tolerances.

Written by `parity tolerances --emit pytest` from a sweep on NVIDIA H200, git 2b68819, torch 2.11.0+cu130, triton 3.6.0, grid default, 2026-12-03.
Each case draws parity's inputs (distribution, T, dtype), routes them through CANDIDATE and
asserts with parity.testing.check_routing: expert ids against the fp64 oracle by id (ties at the
K-th place told apart; TIES says which way they must go), weights within the fp32 envelope below.
"""
import pytest

from parity.testing import check_routing

# parity's own fused, so that this module runs as it is: put your kernel here, e.g.
# from my_engine.ops import my_routing as CANDIDATE
from parity.routing import get

CANDIDATE = get("fused", "gemma4")

FAMILY = "gemma4"
SIGNATURE = "parity"   # parity.signatures: parity, sglang, keywords, outputs-last, or module:function
PRECISION = "fp32"
TIES = "lower id"            # "higher id" or "any" if your kernel breaks ties another way

# (atol, rtol) against the fp64 oracle, by logit dtype
TOLERANCES = {
    "bfloat16": (8.262397896639083e-09, 9.5367431640625e-07),  # fp32 envelope of fused, sort_baseline: 66 cases, held-out margin 0.296
    "float16": (1.0322242850679698e-09, 9.5367431640625e-07),  # fp32 envelope of fused, sort_baseline: 66 cases, held-out margin 0.355
    "float32": (9.460911290251548e-09, 9.5367431640625e-07),  # fp32 envelope of fused, softmax_all, sort_baseline, topk_softmax: 132 cases, held-out margin 0.314
}


@pytest.mark.parametrize("dist", ['upstream', 'randn', 'peaked', 'flat', 'bf16-grid', 'integer', 'heavy-tail', 'imbalanced', 'special'])
@pytest.mark.parametrize("dtype", sorted(TOLERANCES))
@pytest.mark.parametrize("T", [1, 2, 2048])
def test_routing(T, dtype, dist):
    check_routing(CANDIDATE, family=FAMILY, T=T, dtype=dtype, dist=dist, signature=SIGNATURE,
                  tolerance=TOLERANCES[dtype], precision=PRECISION, ties=TIES)
