"""Gemma4: the top K logits, softmax over all E, renormalised over the K, times a per-expert scale.

Its implementations keep the upstream signature ``(gating_output, topk, per_expert_scale)``: the
fused Triton kernel and the full-sort baseline (parity's), the upstream test's references
(``softmax_all``, ``topk_softmax``) and transformers' own router (``hf_gemma4``), which chooses
by fp32 probabilities rather than logits.
"""
from __future__ import annotations

from parity.routing import fused, mutants, reference, sort_baseline
from parity.routing.family import Family, Layer, Model, Mutant
from parity.routing.router import Router

FAMILY = Family(
    name="gemma4",
    math="the top K logits; softmax over all E; renormalised over the K; times per_expert_scale",
    router=Router("softmax", renormalize=True),
    models=(Model("gemma4", 128, 8, {}, "Gemma 4 MoE: 128 experts, top 8, a learned per-expert scale",
                  Layer(2112, 704, "gelu_tanh", source="Gemma 4 26B-A4B: hidden 2112, expert FFN 704, GELU (as a "
                                                        "public model page lists them)")),),
    implementations={"fused": fused.fused, "sort_baseline": sort_baseline.sort_baseline,
                     "softmax_all": reference.softmax_all, "topk_softmax": reference.topk_softmax,
                     "hf_gemma4": reference.hf_gemma4},
    stand_in="fused",
    reference="softmax_all",
    arithmetic={"fused": "fp32", "sort_baseline": "fp32", "softmax_all": "input-dtype", "topk_softmax": "input-dtype"},
    roundings={"softmax_all": 5, "topk_softmax": 3},   # softmax, sum, division, scale cast, product; softmax, cast, product
    kernels=("fused", "sort_baseline"),
    mutants={name: Mutant(fn, mutants.DESCRIPTIONS[name]) for name, fn in mutants.MUTANTS.items()},
    distributions=("upstream", "randn", "peaked", "flat", "bf16-grid", "integer", "heavy-tail", "imbalanced", "special"),
    per_expert_scale=True,
    sources="the upstream Gemma4 routing kernel test; transformers 5.17 models/gemma4: Gemma4TextRouter.forward",
)
