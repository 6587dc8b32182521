"""Inputs shared by the routing tests."""
from __future__ import annotations

import torch

from parity import tolerance
from parity.numerics import LOGIT_DTYPES

DTYPES = LOGIT_DTYPES

# The fused kernel's weights must be within this many fp32 ULPs of the fp64 oracle's. A-priori
# budget: exp ~1 ulp (libdevice on the GPU, numpy in the interpreter), the max-subtraction is made
# exact by TwoSum, the sum of K terms ~log2(K)/2 ulp, the division and the scale product 0.5 ulp
# each. Measured on the CPU interpreter over E in {7..1000}, K in {1..32}, spreads 1..30: <= 6.4.
FUSED_MAX_ULP = tolerance.FUSED_ULP


def logits(T: int, E: int, dtype: torch.dtype, device, seed: int = 0, spread: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(T, E, generator=gen) * spread).to(dtype).to(device)


def scale(E: int, device, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    return (torch.rand(E, generator=gen) * 2 - 0.5).to(device)  # includes negatives and near-zeros


def tied_logits(T: int, E: int, device, seed: int = 0) -> torch.Tensor:
    """bf16 logits on a coarse grid: the K-th place is tied in most rows."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(T, E, generator=gen) * 4).round().div(4).to(torch.bfloat16).to(device)
