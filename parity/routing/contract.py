"""The contract every routing implementation shares (docs/DESIGN.md, "Contracts").

``validate`` checks arguments before any launch; ``check_output`` checks what an implementation
returned. Both raise with messages that name the argument, what was expected and what came.
"""
from __future__ import annotations

import numbers
import weakref
from dataclasses import dataclass
from typing import Callable

import torch

from parity.numerics import LOGIT_DTYPES

RoutingFn = Callable[[torch.Tensor, int, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]

GATING_DTYPES = LOGIT_DTYPES
SCALE_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


class Unsupported(NotImplementedError):
    """Raised by a routing function for a router or shape it does not compute (e.g. an engine's kernel
    that needs E a power of two): sweeps record the case as not computed by it, not as a failure, and
    bench skips it. Any other exception, a plain NotImplementedError included (torch raises one for
    an op without a kernel on a device), is a failure."""


@dataclass(frozen=True)
class Problem:
    """The shape of one routing call, once its arguments are known to be valid."""

    T: int
    E: int
    K: int


def _check_logits(gating_output, topk, max_experts: int | None) -> Problem:
    if not isinstance(gating_output, torch.Tensor):
        raise TypeError(f"gating_output: expected a torch.Tensor, got {type(gating_output).__name__}")
    if gating_output.dtype not in GATING_DTYPES:
        raise TypeError(
            f"gating_output: expected dtype float32, bfloat16 or float16, got {gating_output.dtype}"
        )
    if gating_output.dim() != 2:
        raise ValueError(
            f"gating_output: expected a 2-D tensor [T, E], got {gating_output.dim()}-D with shape "
            f"{tuple(gating_output.shape)}"
        )
    T, E = gating_output.shape
    if E < 1:
        raise ValueError(f"gating_output: expected at least one expert (E >= 1), got E={E}")
    if max_experts is not None and E > max_experts:
        raise ValueError(
            f"gating_output: expected at most {max_experts} experts for this implementation, got E={E}"
        )
    if isinstance(topk, bool) or not isinstance(topk, numbers.Integral):
        raise TypeError(f"topk: expected an int, got {type(topk).__name__} ({topk!r})")
    if not 1 <= topk <= E:
        raise ValueError(f"topk: expected 1 <= topk <= E={E}, got topk={topk}")
    return Problem(T=T, E=E, K=int(topk))


def _check_vector(name: str, v, gating_output: torch.Tensor) -> None:
    """A per-expert tensor [E] of a floating dtype, on the logits' device."""
    E = gating_output.shape[1]
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(v).__name__}")
    if v.dtype not in SCALE_DTYPES:
        raise TypeError(f"{name}: expected a floating dtype, got {v.dtype}")
    if v.dim() != 1 or v.shape[0] != E:
        raise ValueError(f"{name}: expected shape ({E},) to match gating_output's E={E}, got {tuple(v.shape)}")
    if v.device != gating_output.device:
        raise ValueError(f"{name}: expected device {gating_output.device} (gating_output's), got {v.device}")


def validate(gating_output, topk, per_expert_scale, *, max_experts: int | None = None) -> Problem:
    """Check a Gemma4 routing call's arguments (the upstream signature); return its (T, E, K).
    Raises TypeError/ValueError."""
    p = _check_logits(gating_output, topk, max_experts)
    _check_vector("per_expert_scale", per_expert_scale, gating_output)
    return p


_FINITE: dict[int, tuple] = {}   # id(tensor) -> (weak reference to it, the version found finite)


def _known_finite(t: torch.Tensor) -> bool:
    """Whether every value of t is finite: read from the device once per tensor and version (the
    read synchronises with the device, which a CUDA graph capture forbids: the first, uncaptured call
    checks, the captured ones reuse it), and assumed while torch.compile traces."""
    if torch.compiler.is_compiling():
        return True
    seen = _FINITE.get(id(t))
    if seen is None or seen[0]() is not t or seen[1] != t._version:
        if not bool(torch.isfinite(t).all()):
            return False
        _FINITE[id(t)] = (weakref.ref(t, lambda _, key=id(t): _FINITE.pop(key, None)), t._version)
    return True


def validate_router(gating_output, topk, router, *, max_experts: int | None = None) -> Problem:
    """Check a routing call under a Router's parameters (parity.routing.router): the logits and
    topk as ``validate`` does, then every parameter against them. Raises TypeError/ValueError
    naming the parameter, what was expected and what came."""
    from parity.routing.router import Router

    p = _check_logits(gating_output, topk, max_experts)
    if not isinstance(router, Router):
        raise TypeError(f"router: expected a parity.routing.router.Router, got {type(router).__name__}")
    for name in ("per_expert_scale", "correction_bias"):
        v = getattr(router, name)
        if v is not None:
            _check_vector(name, v, gating_output)
    if router.correction_bias is not None and not _known_finite(router.correction_bias):
        raise ValueError("correction_bias: expected finite values, got NaN or inf")
    if router.n_group > 1:
        if p.E % router.n_group:
            raise ValueError(f"n_group: expected a divisor of E={p.E}, got n_group={router.n_group}")
        per_group = p.E // router.n_group
        if per_group < 2:
            raise ValueError(f"n_group: expected at least 2 experts per group (a group's score is the sum of its "
                             f"top 2), got n_group={router.n_group} for E={p.E}")
        if p.K > router.topk_group * per_group:
            raise ValueError(f"topk: expected at most topk_group * E / n_group = {router.topk_group * per_group} "
                             f"experts in the chosen groups, got topk={p.K}")
    return p


def check_output(name: str, out, problem: Problem, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Check that an implementation returned (weights float32 [T, K], ids int32 [T, K] within
    [0, E)) on device.

    Raises ``ContractError`` naming the implementation and what was wrong.
    """
    want = (problem.T, problem.K)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ContractError(f"{name}: expected a (weights, ids) pair, got {type(out).__name__}")
    weights, ids = out
    for label, t, dtype in (("weights", weights, torch.float32), ("ids", ids, torch.int32)):
        if not isinstance(t, torch.Tensor):
            raise ContractError(f"{name}: {label}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dtype != dtype:
            raise ContractError(f"{name}: {label}: expected dtype {dtype}, got {t.dtype}")
        if tuple(t.shape) != want:
            raise ContractError(f"{name}: {label}: expected shape {want}, got {tuple(t.shape)}")
        if t.device != device:
            raise ContractError(f"{name}: {label}: expected device {device}, got {t.device}")
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= problem.E:
            raise ContractError(f"{name}: ids: expected expert ids in [0, {problem.E}), got values in [{lo}, {hi}]")
    return weights, ids


def by_id(weights: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A routing's slots sorted by expert id (stable), ids as int64: how two routings are compared
    expert by expert, whatever their slot order."""
    order = torch.argsort(ids.long(), dim=-1, stable=True)
    return weights.gather(1, order), ids.long().gather(1, order)


class ContractError(RuntimeError):
    """An implementation returned something that breaks the output contract."""
