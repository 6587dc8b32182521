"""Llama 4: the top K logits, each through a sigmoid; no renormalisation (K = 1 in the released
models). transformers' Llama4Router takes the top K of its logits and applies the sigmoid in fp32,
then casts the scores back to the logits' dtype (it returns them dense, [T, E]; here the K chosen).
The engines keep the fp32 sigmoid (``sigmoid_fp32``). The weight multiplies the expert's input in
the model, not its output: a routing kernel's contract is the same.
"""
from __future__ import annotations

import torch

from parity.routing import fused
from parity.routing.contract import validate_router
from parity.routing.family import Family, Layer, Model, Mutant
from parity.routing.generic import route_fp32
from parity.routing.router import Router


def hf_llama4(gating_output: torch.Tensor, topk: int, router: Router):
    """transformers' Llama 4 router after its linear: top K logits, sigmoid in fp32, cast back."""
    validate_router(gating_output, topk, router)
    values, ids = torch.topk(gating_output, topk, dim=1)
    return torch.sigmoid(values.float()).to(gating_output.dtype).float(), ids.to(torch.int32)


def sigmoid_fp32(gating_output: torch.Tensor, topk: int, router: Router):
    """Top K logits, sigmoid in fp32, fp32 weights (the kernels' formulation)."""
    validate_router(gating_output, topk, router)
    values, ids = torch.topk(gating_output, topk, dim=1)
    return torch.sigmoid(values.float()), ids.to(torch.int32)


def renormalised(gating_output, topk, router):
    """Renormalises the sigmoid scores over the K (the DeepSeek path reused): at K = 1 every
    weight becomes 1."""
    return route_fp32(gating_output, topk, router, renormalize=True)


def sigmoid_in_bf16(gating_output, topk, router):
    """Rounds the sigmoid to bf16 inside an fp32 kernel (2**-9 relative)."""
    return route_fp32(gating_output, topk, router, score_dtype=torch.bfloat16)


FAMILY = Family(
    name="llama4",
    math="the top K logits; sigmoid of each; no renormalisation",
    router=Router("sigmoid", renormalize=False),
    models=(
        Model("llama4-maverick", 128, 1, {}, "Llama 4 Maverick: 128 experts, top 1",
              Layer(5120, 8192, weighted="input", source="Llama 4: hidden 5120, expert intermediate 8192; the "
                                                          "routing weight scales the expert's input")),
        Model("llama4-scout", 16, 1, {}, "Llama 4 Scout: 16 experts, top 1",
              Layer(5120, 8192, weighted="input", source="Llama 4: hidden 5120, expert intermediate 8192")),
    ),
    implementations={"fused": fused.route, "hf_llama4": hf_llama4, "sigmoid_fp32": sigmoid_fp32},
    stand_in="fused",
    kernels=("fused",),
    reference="hf_llama4",
    arithmetic={"fused": "fp32", "hf_llama4": "input-dtype", "sigmoid_fp32": "fp32"},
    roundings={"hf_llama4": 1},   # the cast back
    mutants={
        "mutant-renormalised": Mutant(renormalised, "Renormalises the sigmoid over the K (every weight 1 at K = 1); any weight comparison catches it."),
        "mutant-sigmoid-in-bf16": Mutant(sigmoid_in_bf16, "Computes the sigmoid in bf16 inside an fp32 kernel (2**-9 relative); needs rtol well below 1e-2."),
    },
    distributions=("upstream", "randn", "peaked", "flat", "bf16-grid", "integer", "heavy-tail", "imbalanced", "special",
                   "sigmoid-saturating"),
    sources="transformers 5.17 models/llama4: Llama4Router.forward",
)
