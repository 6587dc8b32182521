"""Compare two routings of the same logits (shared/DESIGN.md, "Analysis").

Both routings are sorted by expert id, then:
- ids: rows whose id sets differ are split into tie-explained (every expert in the difference
  carries exactly the K-th largest logit), near-tie (within two roundings of the baseline dtype of
  that logit) and genuine;
- weights: matched rows are compared element by element; tie-explained rows are compared through
  their softmax part (weight / scale, times the baseline's scale for the aligned slot), since a
  legitimate swap between equal logits changes only which scale is applied;
- errors: max and quantiles of absolute, relative and fp32-ULP error, the worst rows, and the
  *error hull*: the few (|baseline|, |error|) points that decide every atol/rtol verdict exactly
  (see ``hull``), so tolerances and policies can be evaluated from records alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from parity.numerics import fp32_ulp, unit_roundoff
from parity.routing.oracle import order

QUANTILES = {"p50": 0.5, "p99": 0.99, "p999": 0.999}
WORST_ROWS = 3


@dataclass
class Routing:
    """One implementation's output, on the CPU: weights [T, K] (float32, or float64 for the
    oracle) and ids [T, K] (int64)."""

    weights: torch.Tensor
    ids: torch.Tensor

    @classmethod
    def of(cls, out: tuple[torch.Tensor, torch.Tensor]) -> "Routing":
        w, ids = out
        return cls(w.detach().cpu(), ids.detach().cpu().long())

    def by_id(self) -> tuple[torch.Tensor, torch.Tensor]:
        order_ = torch.argsort(self.ids, dim=-1, stable=True)
        return self.weights.gather(1, order_), self.ids.gather(1, order_)


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


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Equal logits, with NaN equal to NaN (NaNs tie among themselves, like the oracle's order)."""
    return (a == b) | (torch.isnan(a) & torch.isnan(b))


def kth_logit(logits: torch.Tensor, K: int) -> torch.Tensor:
    """The K-th largest logit of every row under the oracle's order (float64 [T])."""
    if logits.shape[0] == 0:
        return torch.empty(0, dtype=torch.float64)
    x = logits.cpu()
    if not bool(torch.isnan(x).any()):
        # topk finds the K-th value without a full sort; any tie choice gives the same value
        return torch.topk(x.double(), K, dim=-1).values[:, K - 1]
    return x.double().gather(1, order(x)[:, K - 1 : K]).squeeze(1)


def _check_shapes(logits: torch.Tensor, **ids: torch.Tensor) -> None:
    """Both routings must be of these logits: [T, K] ids within [0, E), one K for all."""
    if logits.dim() != 2:
        raise ValueError(f"logits: expected a 2-D tensor [T, E], got shape {tuple(logits.shape)}")
    T, E = logits.shape
    K = None
    for name, t in ids.items():
        if t.dim() != 2 or t.shape[0] != T or (K is not None and t.shape[1] != K):
            want = f"({T}, {K})" if K is not None else f"({T}, K)"
            raise ValueError(f"{name}: expected shape {want} to match the logits, got {tuple(t.shape)}")
        K = t.shape[1]
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= E):
            raise ValueError(f"{name}: expected expert ids in [0, {E}), got values in "
                             f"[{int(t.min())}, {int(t.max())}]")


def classify_ids(
    logits: torch.Tensor, ids: torch.Tensor, base_ids: torch.Tensor,
    base_dtype: torch.dtype | None = None,
) -> IdVerdict:
    """Classify each row's id-set difference between ``ids`` and ``base_ids`` ([T, K] each)."""
    _check_shapes(logits, ids=ids, base_ids=base_ids)
    a, b = ids.long().cpu(), base_ids.long().cpu()
    T, K = a.shape
    a, b = a.sort(dim=-1).values, b.sort(dim=-1).values
    mismatched = (a != b).any(-1)
    verdict = IdVerdict(mismatched, torch.zeros(T, dtype=torch.bool), torch.zeros(T, dtype=torch.bool),
                        torch.zeros(T, dtype=torch.bool))
    rows = mismatched.nonzero().flatten()
    if rows.numel() == 0:
        return verdict
    x = logits.cpu()[rows].double()
    a, b = a[rows], b[rows]
    in_b = (a[:, :, None] == b[:, None, :]).any(-1)   # a's experts that b also chose
    in_a = (b[:, :, None] == a[:, None, :]).any(-1)
    kth = kth_logit(x, K)[:, None]
    la, lb = x.gather(1, a), x.gather(1, b)
    tie = (in_b | _same(la, kth)).all(-1) & (in_a | _same(lb, kth)).all(-1)
    u = unit_roundoff(base_dtype or logits.dtype)
    near = lambda v: _same(v, kth) | ((v - kth).abs() <= 2 * u * kth.abs())  # noqa: E731
    near_tie = ~tie & (in_b | near(la)).all(-1) & (in_a | near(lb)).all(-1)
    verdict.tie_explained[rows] = tie
    verdict.near_tie[rows] = near_tie
    verdict.genuine[rows] = ~tie & ~near_tie
    return verdict


def tie_rule(logits: torch.Tensor, ids: torch.Tensor, kth: torch.Tensor | None = None) -> dict:
    """Which tie rule an implementation followed, from the rows where equal logits straddle the
    K-th place: ``{"tied_rows", "lower_id", "higher_id", "rule"}`` with rule one of "lower id",
    "higher id", "no consistent rule" or "untested" (no such rows). ``kth``: the rows' K-th
    logits when the caller has them already."""
    x = logits.cpu().double()
    ids = ids.long().cpu()
    T, K = ids.shape
    out = {"tied_rows": 0, "lower_id": 0, "higher_id": 0, "rule": "untested"}
    if T == 0:
        return out
    kth = (kth_logit(x, K) if kth is None else kth.double())[:, None]
    equal = _same(x, kth)
    above = (x > kth) | (torch.isnan(x) & ~torch.isnan(kth))
    free = K - above.sum(-1)                      # slots left for the tied experts
    straddle = (equal.sum(-1) > free).nonzero().flatten()
    if straddle.numel() == 0:
        return out
    eq, free = equal[straddle], free[straddle, None]
    chosen = torch.zeros_like(eq).scatter_(1, ids[straddle], True) & eq
    lower = eq & (eq.cumsum(-1) <= free)
    higher = eq & (eq.flip(-1).cumsum(-1).flip(-1) <= free)
    n_low = int((chosen == lower).all(-1).sum())
    n_high = int((chosen == higher).all(-1).sum())
    n = straddle.numel()
    rule = "lower id" if n_low == n else "higher id" if n_high == n else "no consistent rule"
    return {"tied_rows": n, "lower_id": n_low, "higher_id": n_high, "rule": rule}


def hull(base_abs: torch.Tensor, err: torch.Tensor) -> list[list[float]]:
    """The points of {(|b_i|, e_i)} that decide every tolerance verdict.

    A check ``e <= atol + rtol * |b|`` (torch.testing's form) fails iff some point lies above the
    line; the worst ratio e / (atol + rtol * |b|) over all points, for any atol, rtol >= 0, is
    reached at a vertex of the upper convex hull between the smallest |b| and the largest e. Those
    vertices (usually a handful) are kept; the verdict from them is exact.
    """
    if err.numel() == 0:
        return []
    b, order_ = torch.sort(base_abs.double().flatten())     # |b| ascending
    e = err.double().flatten()[order_]
    prev_max = torch.cat([torch.tensor([-1.0], dtype=torch.float64), torch.cummax(e, 0).values[:-1]])
    keep = e > prev_max           # the staircase; equal-|b| points are settled by the hull below
    pts = list(zip(b[keep].tolist(), e[keep].tolist()))
    chain: list[tuple[float, float]] = []
    for p in pts:                                          # upper hull of an increasing staircase
        while len(chain) >= 2:
            (x1, y1), (x2, y2) = chain[-2], chain[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                chain.pop()
            else:
                break
        chain.append(p)
    return [[x, y] for x, y in chain]


@dataclass
class PairResult:
    """candidate~baseline on one case. Error statistics cover matched and tie-explained rows
    whose baseline weights are finite."""

    pair: str
    rows: int
    ids_match: bool
    rows_mismatched: int
    rows_tie_explained: int
    rows_near_tie: int
    rows_genuine: int
    rows_nan: int                 # baseline rows with NaN weights (left out of the statistics)
    nan_rows_agree: bool          # the candidate has NaN weights on exactly those rows
    nonfinite: int                # compared weights where the candidate is NaN/inf and the baseline is not
    weights_compared: int
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_ulp: float = 0.0
    p50_abs: float = 0.0
    p99_abs: float = 0.0
    p999_abs: float = 0.0
    p50_rel: float = 0.0
    p99_rel: float = 0.0
    p999_rel: float = 0.0
    p50_ulp: float = 0.0
    p99_ulp: float = 0.0
    p999_ulp: float = 0.0
    worst: dict = field(default_factory=dict)    # the worst element: row, slot, expert, values, errors
    worst_rows: list = field(default_factory=list)
    genuine_rows: list = field(default_factory=list)
    hull: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def compare(
    logits: torch.Tensor, candidate: Routing, baseline: Routing, per_expert_scale: torch.Tensor,
    *, pair: str = "candidate~baseline", base_dtype: torch.dtype | None = None,
) -> PairResult:
    """Compare ``candidate`` with ``baseline`` on the same logits (see the module docstring)."""
    for name, r in (("candidate", candidate), ("baseline", baseline)):
        if r.weights.shape != r.ids.shape:
            raise ValueError(f"{name}: expected weights and ids of one shape, got "
                             f"{tuple(r.weights.shape)} and {tuple(r.ids.shape)}")
    if per_expert_scale.shape != (logits.shape[-1],):
        raise ValueError(f"per_expert_scale: expected shape ({logits.shape[-1]},), got "
                         f"{tuple(per_expert_scale.shape)}")
    logits = logits.cpu()
    scale = per_expert_scale.detach().cpu().double()
    T = logits.shape[0]
    verdict = classify_ids(logits, candidate.ids, baseline.ids, base_dtype)
    cw, cid = candidate.by_id()
    bw, bid = baseline.by_id()
    cw, bw = cw.double(), bw.double()

    tie_rows = verdict.tie_explained.nonzero().flatten()
    if tie_rows.numel():
        # align tie-explained rows by logit (their multisets of chosen logits are equal) and carry
        # the candidate's softmax part over to the baseline's expert at the same place
        x = logits.double()
        def by_logit(w, ids):
            lg = x[tie_rows].gather(1, ids[tie_rows])
            o = torch.argsort(-lg.nan_to_num(float("inf")), dim=-1, stable=True)
            return w[tie_rows].gather(1, o), ids[tie_rows].gather(1, o)
        cw_t, cid_t = by_logit(cw, cid)
        bw_t, bid_t = by_logit(bw, bid)
        c_scale, b_scale = scale[cid_t], scale[bid_t]
        moved = torch.where(c_scale != 0, cw_t / c_scale * b_scale, cw_t)
        cw, bw = cw.clone(), bw.clone()
        cw[tie_rows], bw[tie_rows] = moved, bw_t

    base_nan = torch.isnan(bw).any(-1)
    cand_nan = torch.isnan(cw).any(-1)
    use = ~verdict.mismatched | verdict.tie_explained
    compared = use & ~base_nan
    c, b = cw[compared], bw[compared]
    err = (c - b).abs()
    finite = torch.isfinite(err)
    result = PairResult(
        pair=pair, rows=T, ids_match=not bool(verdict.mismatched.any()), **verdict.counts(),
        rows_nan=int(base_nan.sum()), nan_rows_agree=bool(torch.equal(base_nan, cand_nan)),
        nonfinite=int((~finite).sum()), weights_compared=int(finite.sum()),
        genuine_rows=verdict.genuine.nonzero().flatten()[:10].tolist(),
    )
    if not bool(finite.any()):
        return result
    e, bb = err[finite], b[finite]
    rel = e / bb.abs().clamp_min(torch.finfo(torch.float32).tiny)
    ulp = e / fp32_ulp(bb)
    for name, v in (("abs", e), ("rel", rel), ("ulp", ulp)):
        qs = np.quantile(v.numpy(), list(QUANTILES.values()))
        for (qname, _), q in zip(QUANTILES.items(), qs):
            setattr(result, f"{qname}_{name}", float(q))
        setattr(result, f"max_{name}", float(v.max()))
    # the worst element and the worst rows, in the original row numbering
    rows_compared = compared.nonzero().flatten()
    row_of = rows_compared[:, None].expand_as(c)[finite]
    slot_of = torch.arange(c.shape[1]).expand_as(c)[finite]
    i = int(torch.argmax(e))
    r, s = int(row_of[i]), int(slot_of[i])
    result.worst = {
        "row": r, "slot_by_id": s, "expert": int(bid[r, s]), "candidate": float(cw[r, s]),
        "baseline": float(bw[r, s]), "abs": float(e[i]), "rel": float(rel[i]), "ulp": float(ulp[i]),
    }
    row_err = torch.where(finite, err, 0.0).amax(-1)
    result.worst_rows = rows_compared[torch.topk(row_err, min(WORST_ROWS, row_err.numel())).indices].tolist()
    result.hull = hull(bb.abs(), e)
    return result


def attribute(candidate_vs_oracle: PairResult, baseline_vs_oracle: PairResult) -> dict:
    """Who is closer to the truth: by the largest absolute weight error against the oracle."""
    c, b = candidate_vs_oracle.max_abs, baseline_vs_oracle.max_abs
    closer = "equal" if c == b else "candidate" if c < b else "baseline"
    ratio = (max(c, b) / min(c, b)) if min(c, b) > 0 else (float("inf") if c != b else 1.0)
    return {"closer": closer, "candidate_max_abs": c, "baseline_max_abs": b, "ratio": ratio}
