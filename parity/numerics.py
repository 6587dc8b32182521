"""Floating-point facts every other module reads from here: the logit dtypes parity works in, unit
roundoff and fp32 ULPs."""
from __future__ import annotations

import torch

LOGIT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16)
"""The router-logit dtypes every implementation takes and every grid covers."""
DTYPES: tuple[str, ...] = tuple(str(d).removeprefix("torch.") for d in LOGIT_DTYPES)
"""The same, by name, as records and reports write them."""


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = eps / 2: the largest relative error of one round-to-nearest in ``dtype``."""
    return torch.finfo(dtype).eps / 2


def smallest_step(dtype: torch.dtype) -> float:
    """The spacing of ``dtype`` next to zero (its smallest subnormal): the absolute error floor."""
    return torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps


def fp32_ulp(truth: torch.Tensor) -> torch.Tensor:
    """The float32 ULP at each value of ``truth`` (float64): the spacing of fp32 numbers there."""
    _, exponent = torch.frexp(truth.double())
    # |x| in [2**(e-1), 2**e) has fp32 spacing 2**(e-24); subnormals share the smallest spacing.
    return torch.exp2((exponent - 24).clamp_min(-149).double())


def ulp_error(approx: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """|approx - truth| in fp32 ULPs of truth (float64 tensor; NaN where either is NaN)."""
    return (approx.double() - truth.double()).abs() / fp32_ulp(truth)


def stable_seed(*parts) -> int:
    """A stable 63-bit seed from ``parts`` (joined by '|'): blake2b, the same in every process and
    Python version, unlike ``hash()``."""
    import hashlib

    key = "|".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
