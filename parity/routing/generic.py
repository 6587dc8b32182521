"""A correct fp32 routing of any Router, with switches that each plant one known bug: the base of
every family's mutants (a mutant is this function with one switch thrown).

Selection follows the oracle's order (lower id on ties, NaN on top) on keys computed in float64, so
a mutant differs from the truth only by its bug and fp32 rounding; weights are computed in fp32.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from parity.routing.contract import validate_router
from parity.routing.oracle import order, selection_keys, top2_sums
from parity.routing.router import Router


def route_fp32(gating_output: torch.Tensor, topk: int, router: Router, *, group_score: str = "top2",
               bias_dtype: torch.dtype | None = None, weights_from: str = "scores",
               renormalize: bool | None = None, score_dtype: torch.dtype = torch.float32,
               scaling_factor: bool = True):
    """(weights fp32 [T, K], ids int32 [T, K]) of ``router``, right unless a switch says otherwise:

    - group_score "max": groups ranked by their largest key instead of the sum of the top two;
    - bias_dtype: the correction bias rounded to this dtype before it is added;
    - weights_from "keys": weights from the biased keys instead of the unbiased scores;
    - renormalize: overrides the router's flag;
    - score_dtype: the dtype the score (softmax or sigmoid) is rounded to before renormalising;
    - scaling_factor False: the routed scaling factor forgotten."""
    p = validate_router(gating_output, topk, router)
    if bias_dtype is not None and router.correction_bias is not None:
        router = replace(router, correction_bias=router.correction_bias.to(bias_dtype).double())
    keys = selection_keys(gating_output, router)
    if router.n_group > 1:
        per = p.E // router.n_group
        if group_score == "max":
            scores = keys.reshape(p.T, router.n_group, per).gather(2, order(keys.reshape(p.T * router.n_group, per))
                                                                  [:, :1].reshape(p.T, router.n_group, 1)).squeeze(2)
        else:
            scores = top2_sums(keys, router.n_group)
        best = order(scores)[:, : router.topk_group]
        allowed = torch.zeros(p.T, router.n_group, dtype=torch.bool).scatter_(1, best.cpu(), True)
        keys = torch.where(allowed.to(keys.device).repeat_interleave(per, dim=1), keys, float("-inf"))
    ids = order(keys)[:, : p.K]
    x = gating_output.float()
    chosen = x.gather(1, ids)
    renorm = router.renormalize if renormalize is None else renormalize
    if router.score == "softmax":
        if renorm:
            e = torch.exp(chosen - chosen[:, :1])
            s = (e / e.sum(-1, keepdim=True)).to(score_dtype).float()
        else:
            s = torch.softmax(x, dim=-1).gather(1, ids).to(score_dtype).float()
    else:
        s = torch.sigmoid(chosen).to(score_dtype).float()
        if weights_from == "keys" and router.correction_bias is not None:
            s = s + router.correction_bias.float()[ids]
        if renorm:
            s = s / s.sum(-1, keepdim=True)
    if scaling_factor:
        s = s * router.scaling_factor
    if router.per_expert_scale is not None:
        s = s * router.per_expert_scale.float()[ids]
    return s.float().contiguous(), ids.to(torch.int32).contiguous()
