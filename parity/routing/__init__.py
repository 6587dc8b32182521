"""The routing library, by family (parity.routing.family): every implementation of a family takes
``(gating_output, topk, argument)`` (Gemma4: its per_expert_scale tensor, the upstream signature;
every other family: a parity.routing.router.Router) and returns ``(weights float32 [T, K], ids
int32 [T, K])`` on the input's device (docs/DESIGN.md).

The registry is the one piece of global mutable state: ``get(name, family)``, ``names(family)``,
``register``; ``FAMILIES`` lists the families.
"""
from __future__ import annotations

import importlib
import os
import sys

from parity import device as _device  # noqa: F401  (decides TRITON_INTERPRET before triton loads)
from parity.routing import deepseek_v3, gemma4, gpt_oss, llama4, mixtral, oracle
from parity.routing.contract import RoutingFn, Unsupported  # noqa: F401  (Unsupported: for candidates to raise)
from parity.routing.family import Family

FAMILIES: dict[str, Family] = {f.name: f for f in (gemma4.FAMILY, mixtral.FAMILY, gpt_oss.FAMILY,
                                                   deepseek_v3.FAMILY, llama4.FAMILY)}
DEFAULT_FAMILY = "gemma4"

# The modules keep their names (parity.routing.fused is the module); the implementations are
# reached through the registry, or as parity.routing.fused.fused and so on.
_REGISTRY: dict[tuple[str, str], RoutingFn] = {}
for _f in FAMILIES.values():
    _REGISTRY.update({(_f.name, n): fn for n, fn in _f.implementations.items()})
    _REGISTRY[(_f.name, "oracle")] = oracle.oracle
    _REGISTRY.update({(_f.name, n): m.fn for n, m in _f.mutants.items()})

ARITHMETIC: dict[str, str] = {"oracle": "fp64", **gemma4.FAMILY.arithmetic}
"""Gemma4's trusted implementations and their arithmetic (every family has its own: Family.arithmetic);
their errors against the oracle make the envelopes that judge every candidate (parity.verdict); a
name not there (a user's candidate, a mutant) is judged, never a judge."""


def family(name: str) -> Family:
    """The family called ``name``."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"family: unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


def register(name: str, fn: RoutingFn, family: str = DEFAULT_FAMILY) -> None:
    """Add an implementation (a user's candidate, a mutant) of ``family`` under ``name``."""
    if not callable(fn):
        raise TypeError(f"register: expected a callable for {name!r}, got {type(fn).__name__}")
    if (family, name) in _REGISTRY and _REGISTRY[(family, name)] is not fn:
        raise ValueError(f"register: the name {name!r} is taken in {family}; choose another")
    _REGISTRY[(family, name)] = fn


def get(name: str, family: str = DEFAULT_FAMILY) -> RoutingFn:
    """The implementation of ``family`` registered as ``name``."""
    try:
        return _REGISTRY[(family, name)]
    except KeyError:
        raise KeyError(f"no routing implementation named {name!r}; known: {', '.join(names(family))} "
                       f"(family {family})") from None


def names(family: str = DEFAULT_FAMILY) -> list[str]:
    return sorted(n for f, n in _REGISTRY if f == family)


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
