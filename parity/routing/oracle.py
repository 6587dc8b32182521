"""The fp64 oracle: the routing every other implementation is measured against.

Expert order: descending logit; equal logits go to the lower expert id; NaN ranks above +inf (as in
torch.topk), NaNs among themselves by id; -0.0 equals +0.0. Weights: softmax over the K chosen
logits in float64 with the largest subtracted, times ``per_expert_scale[id]`` in float64. A row whose
chosen logits hold NaN or +inf, or are all -inf, gets NaN weights.

The logits are taken as given (already rounded to their dtype): the oracle answers "what is the exact
routing of these inputs", which is what a kernel in any precision should approximate.
"""
from __future__ import annotations

import torch

from parity.routing.contract import validate


def order(gating_output: torch.Tensor) -> torch.Tensor:
    """Every expert of every row ranked by the oracle's rule: [T, E] int64, best first."""
    x = gating_output.double()
    nan = torch.isnan(x)
    key = torch.where(nan, torch.full_like(x, float("inf")), x)
    # Two stable sorts make a lexicographic order: (is NaN, value) descending, then id ascending.
    idx = torch.sort(key, dim=-1, descending=True, stable=True).indices
    if not bool(nan.any()):
        return idx
    second = torch.sort(nan.gather(1, idx).to(torch.uint8), dim=-1, descending=True, stable=True).indices
    return idx.gather(1, second)


def route64(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor):
    """The oracle in full precision: (weights float64 [T, K], ids int64 [T, K])."""
    p = validate(gating_output, topk, per_expert_scale)
    ids = order(gating_output)[:, : p.K]
    values = gating_output.double().gather(1, ids)
    if p.T == 0:
        return values, ids
    shifted = values - values[:, :1]
    e = torch.exp(shifted)
    probs = e / e.sum(dim=-1, keepdim=True)
    return probs * per_expert_scale.double()[ids], ids


def oracle(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor):
    """The oracle under the common contract: fp64 weights rounded once to float32, ids int32."""
    weights, ids = route64(gating_output, topk, per_expert_scale)
    return weights.float(), ids.to(torch.int32)
