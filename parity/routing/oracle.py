"""The fp64 oracle: the routing every other implementation is measured against.

It computes parity.routing.router's definition in float64 on the logits as given (already rounded
to their dtype): it answers "what is the exact routing of these inputs", which is what an
implementation in any precision should approximate.

Expert order: descending selection key (the logit, or sigmoid(logit) + correction_bias); equal keys
go to the lower expert id; NaN ranks above +inf (as in torch.topk), NaNs among themselves by id;
-0.0 equals +0.0. Groups (n_group > 1): a group's score is the sum of its two largest keys, ranked
by the same rule (equal scores: the lower group id); experts outside the topk_group best groups
are not chosen. Weights: softmax over the chosen logits with the largest subtracted (renormalised
softmax: the same thing), or over all E (not renormalised), or the sigmoid of each chosen logit,
renormalised over the chosen when the router says so; times scaling_factor and per_expert_scale[id].
Special values follow float64 arithmetic from there: for softmax, a row whose chosen logits hold NaN
or +inf, or are all -inf, gets NaN weights.
"""
from __future__ import annotations

import torch

from parity.routing.contract import validate, validate_router
from parity.routing.router import Router, as_router


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


def selection_keys(gating_output: torch.Tensor, router: Router) -> torch.Tensor:
    """The keys experts are chosen by (float64 [T, E]): the logits, or sigmoid + correction bias."""
    x = gating_output.double()
    if router.correction_bias is None:
        return x
    return torch.sigmoid(x) + router.correction_bias.double()


def top2_sums(keys: torch.Tensor, n_group: int) -> torch.Tensor:
    """Each group's score [T, n_group]: the sum of its two largest keys (NaN ranks on top)."""
    T, E = keys.shape
    # torch.topk ranks NaN above +inf as the oracle does; which of two equal keys it takes
    # changes no sum
    return torch.topk(keys.reshape(T, n_group, E // n_group), 2, dim=-1).values.sum(-1)


def chosen_groups(keys: torch.Tensor, router: Router) -> torch.Tensor:
    """The groups taking part, as a bool mask [T, n_group] (all True without groups)."""
    T = keys.shape[0]
    mask = torch.zeros(T, router.n_group, dtype=torch.bool, device=keys.device)
    if router.n_group == 1:
        return mask | True
    best = order(top2_sums(keys, router.n_group))[:, : router.topk_group]
    return mask.scatter_(1, best, True)


def route64(gating_output: torch.Tensor, topk: int, per_expert_scale):
    """The oracle in full precision: (weights float64 [T, K], ids int64 [T, K]). The third
    argument: Gemma4's per_expert_scale tensor, or a Router."""
    if isinstance(per_expert_scale, Router):
        router, p = per_expert_scale, validate_router(gating_output, topk, per_expert_scale)
    else:
        p = validate(gating_output, topk, per_expert_scale)
        router = as_router(per_expert_scale)
    keys = selection_keys(gating_output, router)
    if router.n_group > 1:
        # outside the chosen groups: below every key (sigmoid + a finite bias is never -inf)
        allowed = chosen_groups(keys, router).repeat_interleave(p.E // router.n_group, dim=1)
        ids = order(torch.where(allowed, keys, float("-inf")))[:, : p.K]
    else:
        ids = order(keys)[:, : p.K]
    values = gating_output.double().gather(1, ids)
    if p.T == 0:
        return values, ids
    if router.score == "softmax" and router.renormalize:
        shifted = values - values[:, :1]
        e = torch.exp(shifted)
        weights = e / e.sum(dim=-1, keepdim=True)
    elif router.score == "softmax":
        x = gating_output.double()
        # the row's largest logit, NaN on top (nan_to_num would also turn +inf into the largest
        # finite double, giving a +inf row weights NaN, 0, 0 where float64 arithmetic gives NaN)
        top = torch.where(torch.isnan(x).any(-1, keepdim=True), float("nan"), x.amax(-1, keepdim=True))
        weights = torch.exp(values - top) / torch.exp(x - top).sum(-1, keepdim=True)
    else:
        s = torch.sigmoid(values)
        weights = s / s.sum(dim=-1, keepdim=True) if router.renormalize else s
    if router.scaling_factor != 1.0:
        weights = weights * router.scaling_factor
    if router.per_expert_scale is not None:
        weights = weights * router.per_expert_scale.double()[ids]
    return weights, ids


def oracle(gating_output: torch.Tensor, topk: int, per_expert_scale):
    """The oracle under the common contract: fp64 weights rounded once to float32, ids int32. The
    third argument: Gemma4's per_expert_scale tensor, or a Router."""
    weights, ids = route64(gating_output, topk, per_expert_scale)
    return weights.float(), ids.to(torch.int32)
