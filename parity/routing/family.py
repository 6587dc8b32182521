"""Routing families: what differs between the routers engines fuse is data (a Router's parameters,
real shapes) and the rounding order of each model's own code (its references).

A ``Family`` names its computation (a Router without tensors), the real models it covers, its
implementations (torch references as the model code and the engines' tests write them, and
parity's kernels), which of them are trusted to make the precision envelopes (``arithmetic``), its
mutants, the input distributions that matter for it, and how a case's tensors (per-expert scale,
correction bias) are drawn. Everything downstream (sweep, analysis, tolerances, verdict, report)
reads the family from the records.

Calling convention: every implementation of a family takes ``(gating_output, topk, argument)``,
where the argument is ``Family.argument(router)``: Gemma4's per_expert_scale tensor (the upstream
signature), the Router itself for every other family.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from parity.numerics import stable_seed
from parity.routing.contract import RoutingFn
from parity.routing.router import Router


@dataclass(frozen=True)
class Layer:
    """The routed experts of a model's MoE layer, as parity.impact builds a synthetic one: each
    expert a gated MLP (hidden -> 2 x intermediate -> hidden) with this activation, its routing
    weight applied to the expert's output (or, as Llama 4 does, to its input)."""

    hidden: int
    intermediate: int
    activation: str = "silu"                      # silu | gelu_tanh
    weighted: str = "output"                      # output | input
    source: str = ""


@dataclass(frozen=True)
class Model:
    """A real configuration: its experts, top K and router settings, and where they come from."""

    name: str
    E: int
    K: int
    settings: dict = field(default_factory=dict)   # Router fields: renormalize, scaling_factor, n_group, topk_group
    source: str = ""
    layer: Layer | None = None                     # its MoE layer's sizes (parity.impact)


@dataclass(frozen=True)
class Mutant:
    """A deliberately wrong routing of a family, with the bug in one sentence."""

    fn: RoutingFn
    description: str


Tensors = Callable[[Model, str, torch.Generator], dict]
"""(model, distribution, generator) -> the Router's tensors for one case, drawn on the CPU."""


@dataclass(frozen=True)
class Family:
    name: str
    math: str                                   # the computation in one line
    router: Router                              # its parameters without tensors (the models' settings apply on top)
    models: tuple[Model, ...]                   # the first is the default
    implementations: dict[str, RoutingFn]       # parity's own: references and kernels (the oracle is added by the registry)
    stand_in: str                               # in a kernel's place in the upstream-style view: a kernel, or the fp32 reference
    reference: str                              # what an upstream-style test compares it against: the model code, rounding
    arithmetic: dict[str, str]                  # the trusted members of the precision envelopes: name -> fp32 | input-dtype
    roundings: dict[str, int] = field(default_factory=dict)  # input-dtype references: roundings to the dtype (a-priori bounds)
    kernels: tuple[str, ...] = ()               # parity's kernels: the sweep's candidates
    mutants: dict[str, Mutant] = field(default_factory=dict)
    distributions: tuple[str, ...] = ()         # the input distributions that matter for it
    tensors: Tensors | None = None              # draws the correction bias; None: no tensors of its own
    per_expert_scale: bool = False              # takes the inputs' per_expert_scale (Gemma4), and its
                                                # implementations take it as the third argument
    sources: str = ""                           # the model code its references follow

    def model(self, name: str | None = None) -> Model:
        if name is None:
            return self.models[0]
        for m in self.models:
            if m.name == name:
                return m
        raise ValueError(f"model: {self.name} has no model {name!r}; known: {', '.join(m.name for m in self.models)}")

    def model_at(self, name: str | None, E: int, K: int) -> Model:
        """The model called ``name`` with E experts and top K (a grid may sweep a real model's
        settings at other shapes)."""
        m = self.model(name)
        return m if (m.E, m.K) == (E, K) else replace(m, E=E, K=K)

    def make_router(self, model: Model, dist: str, seed: int, per_expert_scale: torch.Tensor | None = None,
                    device: torch.device | str = "cpu") -> Router:
        """The Router of one case: the family's parameters, the model's settings, the inputs'
        per-expert scale where the family has one, and its own tensors drawn from a generator
        seeded by (family, model, dist, seed)."""
        tensors = {}
        if self.tensors is not None:
            gen = torch.Generator().manual_seed(stable_seed(self.name, model.name, dist, seed))
            tensors = self.tensors(model, dist, gen)
        if self.per_expert_scale:
            tensors["per_expert_scale"] = per_expert_scale
        return replace(self.router, **model.settings, **tensors).to(device)

    def describe(self) -> dict:
        """The family for run metadata: what the summary and report read besides the records."""
        return {"math": self.math, "stand_in": self.stand_in, "reference": self.reference,
                "arithmetic": dict(self.arithmetic), "roundings": dict(self.roundings), "kernels": list(self.kernels),
                "references": [n for n in self.implementations if n not in self.kernels],
                "mutants": {n: m.description for n, m in self.mutants.items()},
                "models": {m.name: {"E": m.E, "K": m.K, **m.settings, "source": m.source} for m in self.models},
                "sources": self.sources}

    def argument(self, router: Router):
        """The third argument of this family's implementations: the per-expert scale tensor (the
        upstream Gemma4 signature), or the Router itself."""
        return router.per_expert_scale if self.per_expert_scale else router
