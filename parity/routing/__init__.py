"""The routing library: every implementation takes ``(gating_output, topk, per_expert_scale)`` and
returns ``(weights float32 [T, K], ids int32 [T, K])`` on the input's device (shared/DESIGN.md).

The registry is the one piece of global mutable state: ``get(name)``, ``names()``, ``register``.
"""
from __future__ import annotations

from parity import device as _device  # noqa: F401  (decides TRITON_INTERPRET before triton loads)
from parity.routing.contract import RoutingFn
from parity.routing.fused import fused
from parity.routing.mutants import MUTANTS
from parity.routing.oracle import oracle
from parity.routing.reference import softmax_all, topk_softmax
from parity.routing.sort_baseline import sort_baseline

_REGISTRY: dict[str, RoutingFn] = {
    "fused": fused,
    "softmax_all": softmax_all,
    "topk_softmax": topk_softmax,
    "oracle": oracle,
    "sort_baseline": sort_baseline,
    **MUTANTS,
}


def register(name: str, fn: RoutingFn) -> None:
    """Add an implementation (a user's candidate, a mutant) under ``name``."""
    if not callable(fn):
        raise TypeError(f"register: expected a callable for {name!r}, got {type(fn).__name__}")
    if name in _REGISTRY and _REGISTRY[name] is not fn:
        raise ValueError(f"register: the name {name!r} is taken; choose another")
    _REGISTRY[name] = fn


def get(name: str) -> RoutingFn:
    """The implementation registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no routing implementation named {name!r}; known: {', '.join(names())}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)
