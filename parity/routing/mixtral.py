"""The softmax-then-top-K family: Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE.

Softmax over all E logits, the top K, renormalised over the K when the model says so (Mixtral
always; Qwen and OLMoE by ``norm_topk_prob``). In exact arithmetic, with renormalisation, this is
Gemma4's routing without a per-expert scale; only the rounding order differs.

References, as transformers 5.x writes them (MixtralTopKRouter, Qwen2MoeTopKRouter,
Qwen3MoeTopKRouter, OlmoeTopKRouter, after their linear): the softmax in fp32, the top K of those
probabilities, renormalised in fp32; Mixtral keeps fp32 weights, Qwen and OLMoE cast them back to
the logits' dtype. ``softmax_topk`` is the reference that rounds in the logits' dtype throughout, as
hand-written engine tests often do: its rounded probabilities tie where the logits do not.
"""
from __future__ import annotations

import torch

from parity.routing import fused
from parity.routing.contract import validate_router
from parity.routing.family import Family, Layer, Model, Mutant
from parity.routing.generic import route_fp32
from parity.routing.router import Router


def hf_mixtral(gating_output: torch.Tensor, topk: int, router: Router):
    """transformers' Mixtral router: fp32 softmax, top K of the probabilities, renormalised
    (Mixtral's router always renormalises; here the Router's flag decides), fp32 weights."""
    validate_router(gating_output, topk, router)
    probs = torch.softmax(gating_output, dim=-1, dtype=torch.float32)
    weights, ids = torch.topk(probs, topk, dim=-1)
    if router.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids.to(torch.int32)


def hf_qwen_moe(gating_output: torch.Tensor, topk: int, router: Router):
    """transformers' Qwen2-MoE / Qwen3-MoE / OLMoE router: as Mixtral's, renormalised only under
    norm_topk_prob, and the weights cast back to the logits' dtype."""
    weights, ids = hf_mixtral(gating_output, topk, router)
    return weights.to(gating_output.dtype).float(), ids


def softmax_topk(gating_output: torch.Tensor, topk: int, router: Router):
    """Every step in the logits' dtype: softmax, top K of the rounded probabilities, renormalised."""
    validate_router(gating_output, topk, router)
    probs = torch.softmax(gating_output, dim=-1)
    weights, ids = torch.topk(probs, topk, dim=-1)
    if router.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.float(), ids.to(torch.int32)


def renorm_flag_ignored(gating_output, topk, router):
    """Does the opposite of the model's renormalisation flag (norm_topk_prob read from the wrong
    config field)."""
    return route_fp32(gating_output, topk, router, renormalize=not router.renormalize)


def probs_in_bf16(gating_output, topk, router):
    """The probabilities stored in a bf16 buffer before the renormalisation of an fp32 kernel."""
    return route_fp32(gating_output, topk, router, score_dtype=torch.bfloat16)


FAMILY = Family(
    name="mixtral",
    math="softmax over all E; the top K; renormalised over the K when the model says so",
    router=Router("softmax", renormalize=True),
    models=(
        Model("qwen3-moe", 128, 8, {"renormalize": True}, "Qwen3-235B-A22B / 30B-A3B: 128 experts, top 8, norm_topk_prob",
              Layer(2048, 768, source="Qwen3-30B-A3B: hidden 2048, moe_intermediate_size 768 (transformers' defaults)")),
        Model("mixtral-8x7b", 8, 2, {"renormalize": True}, "Mixtral 8x7B / 8x22B: 8 experts, top 2",
              Layer(4096, 14336, source="Mixtral 8x7B: hidden 4096, intermediate 14336 (transformers' defaults)")),
        Model("qwen2-moe", 60, 4, {"renormalize": False}, "Qwen1.5/Qwen2-MoE: 60 experts, top 4, no renormalisation",
              Layer(2048, 1408, source="Qwen1.5-MoE-A2.7B: hidden 2048, moe_intermediate_size 1408 (transformers' "
                                       "defaults; the shared expert is not routed)")),
    ),
    implementations={"fused": fused.route, "hf_mixtral": hf_mixtral, "hf_qwen_moe": hf_qwen_moe,
                     "softmax_topk": softmax_topk},
    stand_in="fused",
    kernels=("fused",),
    reference="hf_qwen_moe",
    arithmetic={"fused": "fp32", "hf_mixtral": "fp32", "hf_qwen_moe": "input-dtype", "softmax_topk": "input-dtype"},
    roundings={"hf_qwen_moe": 1, "softmax_topk": 3},   # the cast back; softmax, sum, division
    mutants={
        "mutant-renorm-flag-ignored": Mutant(renorm_flag_ignored, "Renormalises when the model says not to and the reverse; any weight comparison catches it."),
        "mutant-probs-in-bf16": Mutant(probs_in_bf16, "Rounds the probabilities to bf16 before renormalising (2**-9 relative); needs rtol well below 1e-2."),
    },
    distributions=("upstream", "randn", "peaked", "flat", "bf16-grid", "integer", "heavy-tail", "imbalanced", "special"),
    sources="transformers 5.17 models/mixtral, qwen2_moe, qwen3_moe, olmoe: the TopKRouter forward after F.linear",
)
