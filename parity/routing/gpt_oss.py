"""GPT-OSS: the top K logits, softmax over the K.

The same function as Gemma4's without a per-expert scale (softmax over the chosen K is the
renormalised softmax over all E), computed in another order. transformers' GptOssTopKRouter takes
the top K of its logits (the router's linear has a bias, which is part of the logits here) and a
softmax over the K values *in the logits' dtype*; OpenAI's triton_kernels and the engines compute
that softmax in fp32 (``softmax_fp32``).
"""
from __future__ import annotations

import torch

from parity.routing import fused
from parity.routing.contract import validate_router
from parity.routing.family import Family, Layer, Model, Mutant
from parity.routing.generic import route_fp32
from parity.routing.router import Router


def hf_gpt_oss(gating_output: torch.Tensor, topk: int, router: Router):
    """transformers' GPT-OSS router after its linear: top K logits, softmax over them in their dtype."""
    validate_router(gating_output, topk, router)
    values, ids = torch.topk(gating_output, topk, dim=-1)
    return torch.softmax(values, dim=1, dtype=values.dtype).float(), ids.to(torch.int32)


def softmax_fp32(gating_output: torch.Tensor, topk: int, router: Router):
    """Top K logits, softmax over them in fp32 (the kernels' formulation)."""
    validate_router(gating_output, topk, router)
    values, ids = torch.topk(gating_output, topk, dim=-1)
    return torch.softmax(values.float(), dim=1), ids.to(torch.int32)


def softmax_over_all(gating_output, topk, router):
    """Softmax over all E experts, kept for the chosen K and not renormalised (the Mixtral path
    reused for GPT-OSS): weights sum below one."""
    return route_fp32(gating_output, topk, router, renormalize=False)


def weights_in_bf16(gating_output, topk, router):
    """An fp32 kernel that stores its weights in a bf16 buffer (2**-9 relative)."""
    return route_fp32(gating_output, topk, router, score_dtype=torch.bfloat16)


FAMILY = Family(
    name="gpt_oss",
    math="the top K logits; softmax over the K",
    router=Router("softmax", renormalize=True),
    models=(
        Model("gpt-oss-120b", 128, 4, {}, "gpt-oss-120b: 128 experts, top 4",
              Layer(2880, 2880, source="gpt-oss: hidden 2880, intermediate 2880 (transformers' defaults; its clamped "
                                       "SwiGLU with biases is in the transformers layer, not the synthetic one)")),
        Model("gpt-oss-20b", 32, 4, {}, "gpt-oss-20b: 32 experts, top 4",
              Layer(2880, 2880, source="gpt-oss: hidden 2880, intermediate 2880")),
    ),
    implementations={"fused": fused.route, "hf_gpt_oss": hf_gpt_oss, "softmax_fp32": softmax_fp32},
    stand_in="fused",
    kernels=("fused",),
    reference="hf_gpt_oss",
    arithmetic={"fused": "fp32", "hf_gpt_oss": "input-dtype", "softmax_fp32": "fp32"},
    roundings={"hf_gpt_oss": 1},   # the softmax's result
    mutants={
        "mutant-softmax-over-all": Mutant(softmax_over_all, "Softmax over all E, not renormalised over the K (weights sum below one); any weight comparison catches it."),
        "mutant-weights-in-bf16": Mutant(weights_in_bf16, "Stores fp32 weights through a bf16 buffer (2**-9 relative); needs rtol well below 1e-2."),
    },
    distributions=("upstream", "randn", "peaked", "flat", "bf16-grid", "integer", "heavy-tail", "imbalanced", "special"),
    sources="transformers 5.17 models/gpt_oss: GptOssTopKRouter.forward after F.linear (its bias included in the logits)",
)
