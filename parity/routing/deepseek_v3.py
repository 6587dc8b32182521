"""The grouped sigmoid router: DeepSeek-V3, Kimi K2, GLM-4.5.

Sigmoid scores; a per-expert correction bias added for selection only; the experts in n_group
equal groups, a group scored by the sum of its two largest biased scores; the top K within the
topk_group best groups; weights from the unbiased scores, renormalised over the K, times the
routed scaling factor.

References:
- ``hf_deepseek_v3``: transformers 5.x DeepseekV3TopkRouter (GLM-4.5's Glm4MoeTopkRouter is the
  same code): everything in fp32 (the logits are upcast), ``topk(sorted=False)`` at both stages,
  groups outside the chosen ones masked to -inf, the renormalising sum plus 1e-20.
- ``deepseek_official``: DeepSeek-V3's own inference/model.py Gate: the sigmoid in the logits' dtype
  (bf16 in the model), the fp32 bias promoting the biased scores to fp32, the weights from the
  logits-dtype scores, renormalised without epsilon, times the scaling factor, returned in the
  logits' dtype.

The correction bias of real checkpoints is a large offset with a small spread (DeepSeek-V3 about 5;
GLM-5.2 measured in [6.817, 7.063]): bf16 steps by 0.03125 there, so a bias rounded to bf16 loses
most of what tells the experts apart (the mutant ``bias-in-bf16``).
"""
from __future__ import annotations

import torch

from parity.routing import fused
from parity.routing.contract import validate_router
from parity.routing.family import Family, Layer, Model, Mutant
from parity.routing.generic import route_fp32
from parity.routing.router import Router

BIAS_OFFSET, BIAS_SPREAD = 5.0, 0.05
"""The correction bias drawn for a case: offset + spread * randn (fp32), as real checkpoints hold."""


def _grouped_topk(scores_for_choice: torch.Tensor, topk: int, router: Router) -> torch.Tensor:
    """Ids [T, K] chosen as the model code does: groups by their top-2 sum, the best topk_group
    groups, the rest masked to -inf, the top K (torch.topk, sorted=False at both stages)."""
    T, E = scores_for_choice.shape
    if router.n_group > 1:
        per = E // router.n_group
        group_scores = scores_for_choice.view(T, router.n_group, per).topk(2, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=router.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(T, router.n_group, per).reshape(T, E)
        scores_for_choice = scores_for_choice.masked_fill(~score_mask.bool(), float("-inf"))
    return torch.topk(scores_for_choice, k=topk, dim=-1, sorted=False)[1]


def hf_deepseek_v3(gating_output: torch.Tensor, topk: int, router: Router):
    """transformers' DeepSeek-V3 / GLM-4.5 router after its linear, all in fp32."""
    validate_router(gating_output, topk, router)
    scores = gating_output.float().sigmoid()
    ids = _grouped_topk(scores + router.correction_bias.float(), topk, router)
    weights = scores.gather(1, ids)
    if router.renormalize:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * router.scaling_factor, ids.to(torch.int32)


def deepseek_official(gating_output: torch.Tensor, topk: int, router: Router):
    """DeepSeek-V3's inference/model.py Gate: scores in the logits' dtype, the fp32 bias promoting
    the selection keys to fp32, weights from the logits-dtype scores, returned in that dtype."""
    validate_router(gating_output, topk, router)
    scores = gating_output.sigmoid()
    ids = _grouped_topk(scores + router.correction_bias.float(), topk, router)
    weights = scores.gather(1, ids)
    if router.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    weights = weights * router.scaling_factor
    return weights.to(gating_output.dtype).float(), ids.to(torch.int32)


def bias_in_weights(gating_output, topk, router):
    """Weights from the biased scores (the bias meant for selection only): vLLM #12002."""
    return route_fp32(gating_output, topk, router, weights_from="keys")


def groups_by_max(gating_output, topk, router):
    """Groups ranked by their largest score instead of the sum of the top two: vLLM #13474."""
    return route_fp32(gating_output, topk, router, group_score="max")


def bias_in_bf16(gating_output, topk, router):
    """The correction bias stored in bf16: SGLang #37133 (238 distinct biases became 8)."""
    return route_fp32(gating_output, topk, router, bias_dtype=torch.bfloat16)


def scaling_factor_missing(gating_output, topk, router):
    """The routed scaling factor left out (applied nowhere else either)."""
    return route_fp32(gating_output, topk, router, scaling_factor=False)


def _tensors(model: Model, dist: str, gen: torch.Generator) -> dict:
    E = model.E
    if dist == "group-ties":  # one bias for all: groups tie when their logits do
        return {"correction_bias": torch.full((E,), BIAS_OFFSET)}
    return {"correction_bias": BIAS_OFFSET + BIAS_SPREAD * torch.randn(E, generator=gen)}


FAMILY = Family(
    name="deepseek_v3",
    math="sigmoid scores; + correction bias for selection; top-2-sum groups; top K within the best groups; "
         "unbiased weights renormalised, times the routed scaling factor",
    router=Router("sigmoid", renormalize=True),
    models=(
        Model("deepseek-v3", 256, 8, {"n_group": 8, "topk_group": 4, "scaling_factor": 2.5},
              "DeepSeek-V3 / R1: 256 experts, top 8, 8 groups, the best 4, routed_scaling_factor 2.5",
              Layer(7168, 2048, source="DeepSeek-V3: hidden 7168, moe_intermediate_size 2048 (transformers' defaults)")),
        Model("kimi-k2", 384, 8, {"scaling_factor": 2.827}, "Kimi K2: 384 experts, top 8, one group, 2.827",
              Layer(7168, 2048, source="Kimi K2: DeepSeek-V3's layer sizes")),
        Model("glm-4.5", 160, 8, {"scaling_factor": 2.5}, "GLM-4.5: 160 experts, top 8, one group, 2.5",
              Layer(5120, 1536, source="GLM-4.5: hidden 5120, moe_intermediate_size 1536")),
    ),
    implementations={"fused": fused.route, "hf_deepseek_v3": hf_deepseek_v3, "deepseek_official": deepseek_official},
    stand_in="fused",
    kernels=("fused",),
    reference="deepseek_official",
    arithmetic={"fused": "fp32", "hf_deepseek_v3": "fp32", "deepseek_official": "input-dtype"},
    roundings={"deepseek_official": 4},   # sigmoid, sum, division, scaling
    mutants={
        "mutant-bias-in-weights": Mutant(bias_in_weights, "Weights from the biased scores (vLLM #12002); any weight comparison catches it."),
        "mutant-groups-by-max": Mutant(groups_by_max, "Ranks groups by their largest score instead of the top-2 sum (vLLM #13474); only ids against the exact rule catch it, and only with several groups."),
        "mutant-bias-in-bf16": Mutant(bias_in_bf16, "Stores the correction bias in bf16 (SGLang #37133): other experts wherever the bias spread decides."),
        "mutant-scaling-factor-missing": Mutant(scaling_factor_missing, "Forgets the routed scaling factor; any weight comparison catches it."),
    },
    distributions=("upstream", "randn", "peaked", "flat", "bf16-grid", "integer", "heavy-tail", "imbalanced", "special",
                   "sigmoid-saturating", "group-ties"),
    tensors=_tensors,
    sources="transformers 5.17 models/deepseek_v3 (and glm4_moe): DeepseekV3TopkRouter.forward after F.linear; "
            "DeepSeek-V3 inference/model.py Gate.forward",
)
