"""Compare two routings of the same logits (shared/DESIGN.md, "Analysis").

Ids are compared as sets (after sorting by expert id). A row whose sets differ is
- tie-explained: every expert in the difference carries exactly the K-th largest logit;
- near-tie: not tie-explained, but every such expert is within the baseline dtype's rounding of it;
- genuine: anything else.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from parity.numerics import unit_roundoff
from parity.routing.oracle import order


@dataclass
class IdVerdict:
    """Per-row id classification; masks are bool [T] on the CPU."""

    mismatched: torch.Tensor
    tie_explained: torch.Tensor
    near_tie: torch.Tensor
    genuine: torch.Tensor

    def counts(self) -> dict[str, int]:
        return {
            "rows_mismatched": int(self.mismatched.sum()),
            "rows_tie_explained": int(self.tie_explained.sum()),
            "rows_near_tie": int(self.near_tie.sum()),
            "rows_genuine": int(self.genuine.sum()),
        }


def kth_logit(logits: torch.Tensor, K: int) -> torch.Tensor:
    """The K-th largest logit of every row under the oracle's order (float64 [T])."""
    return logits.double().gather(1, order(logits)[:, K - 1 : K]).squeeze(1)


def classify_ids(
    logits: torch.Tensor, ids: torch.Tensor, base_ids: torch.Tensor,
    base_dtype: torch.dtype | None = None,
) -> IdVerdict:
    """Classify each row's id-set difference between ``ids`` and ``base_ids`` ([T, K] each)."""
    logits = logits.cpu()
    a, b = ids.long().cpu(), base_ids.long().cpu()
    T, K = a.shape
    in_b = (a[:, :, None] == b[:, None, :]).any(-1)   # a's experts that b also chose
    in_a = (b[:, :, None] == a[:, None, :]).any(-1)
    mismatched = ~(in_b.all(-1) & in_a.all(-1))
    empty = torch.zeros(T, dtype=torch.bool)
    if not bool(mismatched.any()):
        return IdVerdict(mismatched, empty, empty.clone(), empty.clone())
    x = logits.double()
    kth = kth_logit(logits, K)[:, None]
    la, lb = x.gather(1, a), x.gather(1, b)
    tie = mismatched & ((in_b | (la == kth)).all(-1) & (in_a | (lb == kth)).all(-1))
    u = unit_roundoff(base_dtype or logits.dtype)
    near = lambda v: (v - kth).abs() <= 2 * u * kth.abs()  # noqa: E731
    near_tie = mismatched & ~tie & ((in_b | near(la)).all(-1) & (in_a | near(lb)).all(-1))
    return IdVerdict(mismatched, tie, near_tie, mismatched & ~tie & ~near_tie)
