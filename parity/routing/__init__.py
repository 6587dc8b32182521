"""The routing library: every implementation takes ``(gating_output, topk, per_expert_scale)`` and
returns ``(weights float32 [T, K], ids int32 [T, K])`` on the input's device (docs/DESIGN.md).

The registry is the one piece of global mutable state: ``get(name)``, ``names()``, ``register``.
"""
from __future__ import annotations

import importlib
import os
import sys

from parity import device as _device  # noqa: F401  (decides TRITON_INTERPRET before triton loads)
from parity.routing import fused, mutants, oracle, reference, sort_baseline
from parity.routing.contract import RoutingFn

# The modules keep their names (parity.routing.fused is the module); the implementations are
# reached through the registry, or as parity.routing.fused.fused and so on.
_REGISTRY: dict[str, RoutingFn] = {
    "fused": fused.fused,
    "softmax_all": reference.softmax_all,
    "topk_softmax": reference.topk_softmax,
    "oracle": oracle.oracle,
    "sort_baseline": sort_baseline.sort_baseline,
    **mutants.MUTANTS,
}

ARITHMETIC: dict[str, str] = {
    "oracle": "fp64",
    "fused": "fp32",
    "sort_baseline": "fp32",
    "softmax_all": "input-dtype",
    "topk_softmax": "input-dtype",
}
"""The arithmetic of each of parity's own implementations. These are the *trusted* ones: their
errors against the oracle make the envelopes that judge every candidate (parity.verdict); a name
not here (a user's candidate, a mutant) is judged, never a judge."""


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


def load(spec: str, option: str = "--candidate") -> RoutingFn:
    """A user's routing function from 'module:function' (modules beside the working directory
    are found, as under ``python -m``). ValueError, naming ``option`` and the part that is wrong."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{option}: expected module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever the import raised, say so in one line
        raise ValueError(f"{option} {spec!r}: cannot import module {module!r}: {type(exc).__name__}: {exc}") from exc
    fn = mod
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"{option} {spec!r}: module {module!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"{option} {spec!r}: {attr!r} is a {type(fn).__name__}, not a function")
    return fn
