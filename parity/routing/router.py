"""A router as data: the one computation every routing family performs, with its parameters.

For the logits x of one token (E experts):

- selection key: the logit, or ``sigmoid(x) + correction_bias`` when a correction bias is given
  (DeepSeek-V3's load-balancing bias, used for selection only);
- groups: with ``n_group`` > 1 the experts form equal groups in id order; a group's score is the
  sum of its two largest keys; only the ``topk_group`` best groups take part;
- selection: the ``topk`` largest keys among them; equal keys go to the lower expert id (the lower
  group id at the group stage), NaN ranks above +inf;
- score: p = softmax over all E logits (``score="softmax"``) or sigmoid of each logit;
- weight of a chosen expert i: ``scaling_factor * per_expert_scale[i] * p_i / (sum of the chosen
  p_j if renormalize else 1)``.

Families differ only in these parameters (parity.routing.families); how a model's own code rounds
on the way is code (its references). The fp64 oracle (parity.routing.oracle) computes exactly this.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace

import torch

SCORES = ("softmax", "sigmoid")


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value to compare by
class Router:
    score: str = "softmax"
    renormalize: bool = True
    scaling_factor: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    per_expert_scale: torch.Tensor | None = None
    correction_bias: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score: expected one of {', '.join(SCORES)}, got {self.score!r}")
        if not isinstance(self.renormalize, bool):
            raise TypeError(f"renormalize: expected a bool, got {type(self.renormalize).__name__}")
        if isinstance(self.scaling_factor, bool) or not isinstance(self.scaling_factor, numbers.Real):
            raise TypeError(f"scaling_factor: expected a number, got {type(self.scaling_factor).__name__}")
        if not (math.isfinite(self.scaling_factor) and self.scaling_factor > 0):
            raise ValueError(f"scaling_factor: expected a finite number > 0, got {self.scaling_factor!r}")
        for name in ("n_group", "topk_group"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name}: expected an int, got {type(v).__name__} ({v!r})")
        if self.n_group < 1:
            raise ValueError(f"n_group: expected n_group >= 1, got {self.n_group}")
        if not 1 <= self.topk_group <= self.n_group:
            raise ValueError(f"topk_group: expected 1 <= topk_group <= n_group={self.n_group}, got {self.topk_group}")

    def to(self, device) -> "Router":
        """The same router with its tensors on ``device``."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})

    def describe(self) -> dict:
        """The parameters for records and reports (tensors by dtype and shape)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = f"{str(v.dtype).removeprefix('torch.')}[{v.shape[0]}]" if isinstance(v, torch.Tensor) else v
        return out


def as_router(arg) -> Router:
    """A routing call's third argument as a Router: a Router as it is, a tensor as Gemma4's
    per_expert_scale (the upstream signature ``(gating_output, topk, per_expert_scale)``)."""
    if isinstance(arg, Router):
        return arg
    if isinstance(arg, torch.Tensor):
        return Router(per_expert_scale=arg)
    raise TypeError(f"per_expert_scale: expected a torch.Tensor (or a parity Router), got {type(arg).__name__}")
