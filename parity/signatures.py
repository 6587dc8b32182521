"""Adapters from the signatures routing kernels have in the wild to parity's contract.

parity calls every implementation as ``fn(gating_output, topk, argument)`` (the argument:
Gemma4's per_expert_scale tensor, a parity Router for every other family) and reads
``(weights float32 [T, K], ids int32 [T, K])``. A kernel as it is in an engine is wrapped by
``adapt(fn, signature)``:

- ``parity``: already parity's order;
- ``sglang``: ``fn(gating_output, per_expert_scale, topk)`` (Gemma4);
- ``keywords``: ``fn(gating_output=..., topk=..., <router parameters>)``, passing only the router
  parameters the function names (per_expert_scale, correction_bias, renormalize,
  scaling_factor, n_group, topk_group, score): one adapter for any family;
- ``outputs-last``: ``fn(gating_output, topk, argument, weights_out, ids_out)``, writing into
  preallocated float32 and int32 [T, K] tensors (parity fills them with NaN and -1 first, so
  slots left unwritten show);
- ``module:function``: an adapter the user writes, taking the kernel and returning a function of
  parity's signature.

Whatever the signature, outputs are read leniently where the conversion is exact: ``(ids,
weights)`` in that order, integer ids of any width, bf16 or fp16 weights (which keep their
rounding and are judged with it).
"""
from __future__ import annotations

import inspect
from typing import Callable

# Nothing here imports torch or parity.routing at import time: the CLI reads SIGNATURES while it
# builds its parser, before --device has decided where kernels run.

ROUTER_PARAMETERS = ("per_expert_scale", "correction_bias", "renormalize", "scaling_factor",
                     "n_group", "topk_group", "score")


def _parity(fn):
    return fn


def _sglang(fn):
    def call(g, topk, arg):
        from parity.routing.router import Router

        if isinstance(arg, Router):
            raise TypeError("signature 'sglang': (gating_output, per_expert_scale, topk) is Gemma4's; for another "
                            "family use --signature keywords or write an adapter")
        return fn(g, arg, topk)
    return call


def _keywords(fn):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        raise TypeError(f"signature 'keywords': cannot read the parameters of {fn!r}") from None
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for needed in ("gating_output", "topk"):
        if needed not in params and not takes_all:
            raise TypeError(f"signature 'keywords': the function has no parameter {needed!r} "
                            f"(it has {', '.join(params) or 'none'})")

    def call(g, topk, arg):
        from parity.routing.router import as_router

        router = as_router(arg)
        kwargs = {k: getattr(router, k) for k in ROUTER_PARAMETERS if takes_all or k in params}
        return fn(gating_output=g, topk=topk, **kwargs)
    return call


def _outputs_last(fn):
    def call(g, topk, arg):
        import torch

        weights = torch.full((g.shape[0], topk), float("nan"), dtype=torch.float32, device=g.device)
        ids = torch.full((g.shape[0], topk), -1, dtype=torch.int32, device=g.device)
        fn(g, topk, arg, weights, ids)
        return weights, ids
    return call


SIGNATURES: dict[str, tuple[str, Callable]] = {
    "parity": ("fn(gating_output, topk, per_expert_scale | Router) -> (weights, ids)", _parity),
    "sglang": ("fn(gating_output, per_expert_scale, topk) -> (weights, ids)  (Gemma4)", _sglang),
    "keywords": ("fn(gating_output=, topk=, <the router parameters it names>) -> (weights, ids)", _keywords),
    "outputs-last": ("fn(gating_output, topk, per_expert_scale | Router, weights_out, ids_out), writing into "
                     "float32 and int32 [T, K]", _outputs_last),
}


def describe() -> str:
    return "; ".join(f"{k}: {d}" for k, (d, _) in SIGNATURES.items()) + "; or module:function, an adapter of yours"


def adapter(signature) -> Callable[[Callable], Callable]:
    """The adapter for ``signature``: a name in SIGNATURES, a 'module:function' adapter, or a
    callable adapter itself. ValueError for anything else, listing what is known."""
    if callable(signature):
        return signature
    if not isinstance(signature, str):
        raise ValueError(f"signature: expected a name or an adapter, got {type(signature).__name__}")
    if signature in SIGNATURES:
        return SIGNATURES[signature][1]
    if ":" in signature:
        from parity.routing import load

        return load(signature, "--signature")
    raise ValueError(f"signature: unknown signature {signature!r}; known: {', '.join(SIGNATURES)}, "
                     "or module:function (an adapter you write: takes the kernel, returns "
                     "fn(gating_output, topk, argument) -> (weights, ids))")


def normalize(out, E: int, name: str = "candidate"):
    """A kernel's output as parity's (weights float32, ids int32), converting only what converts
    exactly: (ids, weights) order, integer ids of any width (within [0, E)), bf16 and fp16
    weights. Anything else (float64 weights, which would round) is passed on for the contract
    check to name."""
    import torch

    from parity.routing.contract import ContractError

    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return out
    a, b = out
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return out
    if not a.is_floating_point() and b.is_floating_point():
        a, b = b, a
    weights, ids = a, b
    if weights.dtype in (torch.bfloat16, torch.float16):
        weights = weights.float()
    if not ids.is_floating_point() and ids.dtype not in (torch.int32, torch.bool):
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= E:
                raise ContractError(f"{name}: ids: expected expert ids in [0, {E}), got values in [{lo}, {hi}]")
        ids = ids.to(torch.int32)
    return weights, ids


def wrap(fn: Callable, signature="parity", name: str = "candidate") -> Callable:
    """``fn`` as a parity implementation: its signature adapted, its outputs normalised."""
    call = adapter(signature)(fn)

    def routed(g, topk, arg):
        return normalize(call(g, topk, arg), g.shape[-1], name)
    routed.__name__ = getattr(fn, "__name__", name)
    routed.__wrapped__ = fn
    return routed
