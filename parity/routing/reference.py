"""Gemma4's torch references.

``softmax_all`` is the formulation of the upstream kernel test (the model's routing as engines
port it): softmax over all E experts in the input dtype, keep the top K of the logits through an
indicator, renormalise, gather, multiply by the scale cast down to the input dtype.
``topk_softmax`` is the formulation most engines use: topk first, softmax over the K chosen logits.
Both round at every step in bf16/fp16; that rounding is the reference's own error, which parity
separates from the kernel's with the fp64 oracle.
``hf_gemma4`` is the model code itself (transformers' Gemma4TextRouter after its projection):
softmax in fp32 over all E, the top K of those *probabilities*, renormalised, times the scale. Its
choice is made on rounded probabilities, so logits that differ can tie there: the analyzer shows it.
Expert choice follows ``torch.topk``, whose tie rule differs between backends: that difference is
measured by the analyzer, not hidden here.
"""
from __future__ import annotations

import torch

from parity.routing.contract import validate


def softmax_all(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor):
    """The model's formulation, in the input dtype. Returns (weights fp32 [T, K], ids int32 [T, K])."""
    p = validate(gating_output, topk, per_expert_scale)
    dtype = gating_output.dtype
    probs = torch.softmax(gating_output, dim=-1)  # rounded to the input dtype
    _, ids = torch.topk(gating_output, p.K, dim=-1)
    indicator = torch.nn.functional.one_hot(ids, num_classes=p.E).sum(dim=1).to(dtype)
    kept = probs * indicator
    kept = kept / kept.sum(dim=-1, keepdim=True)
    weights = kept.gather(1, ids) * per_expert_scale.to(dtype)[ids]
    return weights.float(), ids.to(torch.int32)


def topk_softmax(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor):
    """Topk first, softmax over the K chosen logits, in the input dtype."""
    p = validate(gating_output, topk, per_expert_scale)
    dtype = gating_output.dtype
    values, ids = torch.topk(gating_output, p.K, dim=-1)
    weights = torch.softmax(values, dim=-1) * per_expert_scale.to(dtype)[ids]
    return weights.float(), ids.to(torch.int32)


def hf_gemma4(gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor):
    """transformers' Gemma4 router on its projection's output: fp32 softmax, top K of the
    probabilities, renormalised, times the scale (in fp32, as a float32 parameter would)."""
    validate(gating_output, topk, per_expert_scale)
    probs = torch.softmax(gating_output, dim=-1, dtype=torch.float32)
    weights, ids = torch.topk(probs, topk, dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    weights = weights * per_expert_scale.float()[ids]
    return weights.float(), ids.to(torch.int32)
