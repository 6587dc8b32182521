"""A routing kernel as an engine exposes it, for `parity sweep --signature sglang`: SGLang's
argument order ``(gating_output, per_expert_scale, topk)`` and int64 ids, as engines' kernels
return them. Here the kernel is parity's own fused one; put yours in its place.

    parity sweep --grid-file examples/my_grid.toml \\
        --candidate examples.sglang_order:gemma4_routing --signature sglang --out reports/mine
"""
from parity.routing import get

_fused = get("fused", "gemma4")


def gemma4_routing(gating_output, per_expert_scale, topk):
    weights, ids = _fused(gating_output, topk, per_expert_scale)
    return weights, ids.long()
