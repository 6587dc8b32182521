"""Compare two routings of the same logits (docs/DESIGN.md, "Analysis").

Both routings are sorted by expert id, then:
- ids: rows whose id sets differ are split into tie-explained (every expert in the difference
  carries exactly the K-th largest logit), near-tie (within two roundings, in the logits' dtype, of
  that logit) and genuine. A row that repeats an expert id is genuine whatever its logits;
- special values: a row holding a NaN or an infinite logit is routed by convention, not by
  arithmetic (the oracle's: NaN ranks above +inf, a row whose chosen logits hold NaN or +inf gets
  NaN weights). Where a candidate differs from its baseline in such a row (other experts, NaN
  weights where the baseline has none or the reverse), the row counts in ``rows_special_differ``,
  with what each side chose per kind of value in ``special_values``, and never as a genuine
  mismatch, a NaN-row disagreement or a non-finite weight: those fields describe the other rows;
- weights: matched rows are compared element by element; tie-explained rows are compared through
  their softmax part (weight / scale, times the baseline's scale for the aligned slot), since a
  legitimate swap between equal logits changes only which scale is applied;
- errors: max and quantiles of absolute, relative and fp32-ULP error, the worst rows, and the
  *error hull*: the few (|baseline|, |error|) points that decide every atol/rtol verdict exactly
  (see ``hull``), so tolerances and policies can be evaluated from records alone. Each hull point
  keeps where it came from (``hull_where``: row, expert, candidate and baseline weight), so a
  failed verdict names the element that decides it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from parity.numerics import fp32_ulp, unit_roundoff
from parity.routing.contract import by_id
from parity.routing.oracle import order, top2_sums
from parity.routing.oracle import selection_keys as oracle_keys
from parity.routing.router import Router

QUANTILES = {"p50": 0.5, "p99": 0.99, "p999": 0.999}
WORST_ROWS = 3
SPECIAL_KINDS = ("nan", "+inf", "-inf")
"""Kinds of special row, by precedence: a row is of the first kind among its logits."""


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
        return by_id(self.weights, self.ids)


@dataclass
class IdVerdict:
    """Per-row id classification; masks are bool [T] on the CPU. ``special``: mismatched rows that
    hold a NaN or infinite logit and are not tie-explained (the other three masks leave them out)."""

    mismatched: torch.Tensor
    tie_explained: torch.Tensor
    near_tie: torch.Tensor
    genuine: torch.Tensor
    special: torch.Tensor

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


def special_rows(logits: torch.Tensor) -> torch.Tensor:
    """Rows holding a NaN or an infinite logit (bool [T], on the logits' device)."""
    return ~torch.isfinite(logits).all(-1)


def special_kind(logits: torch.Tensor) -> list[torch.Tensor]:
    """One bool [T] mask per SPECIAL_KINDS entry: each special row is of the first kind it holds."""
    x = logits.cpu()
    nan = torch.isnan(x).any(-1)
    pos = torch.isposinf(x).any(-1) & ~nan
    neg = torch.isneginf(x).any(-1) & ~nan & ~pos
    return [nan, pos, neg]


def kth_logit(logits: torch.Tensor, K: int) -> torch.Tensor:
    """The K-th largest logit of every row under the oracle's order (float64 [T], on the logits'
    device)."""
    if logits.shape[0] == 0:
        return torch.empty(0, dtype=torch.float64, device=logits.device)
    x = logits
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


def _repeats(ids_sorted: torch.Tensor) -> torch.Tensor:
    """Rows of sorted ids [T, K] that hold some expert twice."""
    return (ids_sorted[:, 1:] == ids_sorted[:, :-1]).any(-1)


def selection_keys(logits: torch.Tensor, router: Router | None = None) -> torch.Tensor:
    """What experts are chosen by (float64, on the logits' device): the logits, or sigmoid +
    correction bias (parity.routing.oracle.selection_keys)."""
    x = logits
    return x.double() if router is None or router.correction_bias is None else oracle_keys(x, router.to(x.device))


def group_masked_keys(keys: torch.Tensor, router: Router, ids: torch.Tensor | None = None,
                      window: float = 0.0) -> torch.Tensor:
    """``keys`` with the experts outside the chosen groups at -inf. Without ``ids``: the oracle's
    groups. With ``ids``: the group choice that best explains them within the exact rule: every
    group scoring above the last chosen one by more than ``window`` (mandatory), every group the ids
    use (if each scores within ``window`` of the last chosen one or above), then as many of the
    remaining groups within ``window`` as the count needs, least competitive first (smallest top
    key). Ids that need a group no such choice holds keep the oracle's groups. With ``window`` 0 this
    explains exact group ties, with a rounding-sized one near-ties: a group stage tie is judged like
    an expert stage one."""
    T, E = keys.shape
    G, per = router.n_group, E // router.n_group
    scores = top2_sums(keys, G)
    ranked = order(scores)
    oracle = torch.zeros(T, G, dtype=torch.bool, device=keys.device).scatter_(1, ranked[:, : router.topk_group], True)
    allowed = oracle
    if ids is not None and T:
        boundary = scores.gather(1, ranked[:, router.topk_group - 1 : router.topk_group])
        tied = _same(scores, boundary) | ((scores - boundary).abs() <= window)
        mandatory = oracle & ~tied
        used = torch.zeros_like(oracle).scatter_(1, ids.long() // per, True)
        base = mandatory | used
        need = router.topk_group - base.sum(-1, keepdim=True)
        fits = (used & ~(mandatory | tied)).sum(-1, keepdim=True).eq(0) & (need >= 0)
        # fill with the least competitive tied groups: rank the candidates by their top key
        top = keys.reshape(T, G, per).nan_to_num(nan=float("inf")).amax(-1)
        pool = tied & ~base
        rank = torch.argsort(torch.where(pool, top, float("inf")), dim=-1, stable=True).argsort(-1)
        fill = pool & (rank < need)
        allowed = torch.where(fits, base | fill, oracle)
    return torch.where(allowed.repeat_interleave(per, dim=1), keys, float("-inf"))


def _flat_classes(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, K: int, window,
                  scores: torch.Tensor | None = None, score_window=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tie-explained, near-tie) for rows whose sorted id sets a and b differ, on keys x (rows
    alike); ``window(kth)``: how far from the K-th key a near-tie may lie. With ``scores`` (the
    softmax probabilities, float64), an expert whose probability lies within ``score_window(p_kth)``
    of the K-th expert's is a near-tie too: an implementation that chooses by rounded probabilities
    sees them tie (both underflowed to zero, say) however far apart their logits are."""
    in_b = (a[:, :, None] == b[:, None, :]).any(-1)   # a's experts that b also chose
    in_a = (b[:, :, None] == a[:, None, :]).any(-1)
    kth = kth_logit(x, K)[:, None]
    la, lb = x.gather(1, a), x.gather(1, b)
    distinct = ~_repeats(a) & ~_repeats(b)
    tie = distinct & (in_b | _same(la, kth)).all(-1) & (in_a | _same(lb, kth)).all(-1)
    if scores is None:
        near = lambda v, ids: _same(v, kth) | ((v - kth).abs() <= window(kth))  # noqa: E731
    else:
        p_kth = scores.gather(1, order(x)[:, K - 1 : K])
        near = lambda v, ids: (_same(v, kth) | ((v - kth).abs() <= window(kth))  # noqa: E731
                               | ((scores.gather(1, ids) - p_kth).abs() <= score_window(p_kth)))
    near_tie = distinct & ~tie & (in_b | near(la, a)).all(-1) & (in_a | near(lb, b)).all(-1)
    return tie, near_tie


PROBABILITY_ROUNDINGS = 3
"""Roundings' worth of error in one softmax probability an implementation chooses by: its exp (up to
one ulp, two roundings) and the division by the sum. Two probabilities closer than twice that may
swap order. (Two roundings were too few: on the H200 the fuzzer found Mixtral's fp32 router choosing
between fp32 logits 3 ulps apart in the wrong order, reports/h200-reliability/fuzz-models.)"""


def classify_ids(
    logits: torch.Tensor, ids: torch.Tensor, base_ids: torch.Tensor,
    dtype: torch.dtype | None = None, router: Router | None = None,
) -> IdVerdict:
    """Classify each row's id-set difference between ``ids`` and ``base_ids`` ([T, K] each), on
    the logits' device (the verdict's masks are there too).
    Near-ties are judged with ``dtype``'s unit roundoff (default: the logits' own dtype): within
    two roundings of the K-th key, relative for logits, absolute for sigmoid + bias keys (a sigmoid
    below one, rounded); for softmax routers also probabilities within 2 x PROBABILITY_ROUNDINGS
    roundings of the K-th expert's, or both below the dtype's smallest normal number (where rounded probabilities tie). With a ``router``, keys are its selection keys; with groups, each side is
    judged against the exact top K of the groups it took (group ties allowed), and the row is
    tie-explained when both sides are such a top K up to ties."""
    _check_shapes(logits, ids=ids, base_ids=base_ids)
    dev = logits.device
    a, b = ids.long().to(dev), base_ids.long().to(dev)
    T, K = a.shape
    a, b = a.sort(dim=-1).values, b.sort(dim=-1).values
    mismatched = (a != b).any(-1)
    none = lambda: torch.zeros(T, dtype=torch.bool, device=dev)  # noqa: E731
    verdict = IdVerdict(mismatched, none(), none(), none(), none())
    rows = mismatched.nonzero().flatten()
    if rows.numel() == 0:
        return verdict
    x = logits[rows]
    a, b = a[rows], b[rows]
    u = unit_roundoff(dtype or logits.dtype)
    biased = router is not None and router.correction_bias is not None
    # biased keys: a sigmoid below one rounded in the dtype (u absolute), plus the fp32 sum with the
    # bias (u32 relative to the key): two such keys by twice that
    u32 = unit_roundoff(torch.float32)
    window = (lambda kth: 2 * (u + u32 * kth.abs())) if biased else (lambda kth: 2 * u * kth.abs())  # noqa: E731
    keys = selection_keys(x, router)
    scores = score_window = None
    if router is None or router.score == "softmax":
        scores = torch.softmax(x.double(), dim=-1)
        tiny = torch.finfo(dtype or logits.dtype).tiny
        score_window = lambda p: 2 * PROBABILITY_ROUNDINGS * u * p.abs() + tiny  # noqa: E731
    if router is not None and router.n_group > 1:
        status = []   # per side: (a top K of its groups up to ties, up to near-ties)
        for side in (a, b):
            exact, nearish = None, None
            # a group score is the sum of two keys: a near-tie there is within twice a key's window
            kth_scale = keys.nan_to_num(0.0, 0.0, 0.0).abs().amax()
            for group_window in (0.0, 2 * float(window(kth_scale))):
                masked = group_masked_keys(keys, router, side, group_window)
                ref = order(masked)[:, :K].sort(dim=-1).values
                off = (side != ref).any(-1)
                t_, n_ = _flat_classes(masked, side, ref, K, window)
                if exact is None:
                    exact, nearish = ~off | t_, ~off | t_ | n_
                else:
                    nearish = nearish | ~off | t_ | n_
            status.append((exact, nearish))
        distinct = ~_repeats(a) & ~_repeats(b)
        tie = distinct & status[0][0] & status[1][0]
        near_tie = distinct & ~tie & status[0][1] & status[1][1]
    else:
        tie, near_tie = _flat_classes(keys, a, b, K, window, scores, score_window)
    special = special_rows(x) & ~tie
    verdict.tie_explained[rows] = tie
    verdict.near_tie[rows] = near_tie & ~special
    verdict.genuine[rows] = ~tie & ~near_tie & ~special
    verdict.special[rows] = special
    return verdict


def rule_of(lower: int, higher: int, n: int) -> str:
    """The tie rule's name from its counts over n tied rows."""
    return ("untested" if n == 0 else "lower id" if lower == n else "higher id" if higher == n
            else "no consistent rule")


def describe_rule(t: dict) -> str:
    """A tie rule with its proportions, e.g. 'higher id (565 of 565 tied finite rows)'; rows whose
    ties involve a NaN or an infinite logit are counted apart."""
    n, lo, hi = t["tied_rows"], t["lower_id"], t["higher_id"]
    rule = rule_of(lo, hi, n)
    if rule == "untested":
        text = "untested (no tied finite rows)"
    elif rule == "no consistent rule":
        text = f"no consistent rule (lower id in {lo}, higher id in {hi}, neither in {n - lo - hi} of {n} tied finite rows)"
    else:
        text = f"{rule} ({lo if rule == 'lower id' else hi} of {n} tied finite rows)"
    ns = t.get("special_tied_rows", 0)
    if ns:
        text += (f"; ties at special values apart: {ns} rows (lower id in {t['special_lower_id']}, "
                 f"higher id in {t['special_higher_id']})")
    return text


def tie_keys(logits: torch.Tensor, router: Router | None = None) -> torch.Tensor:
    """The keys ties are judged on (float64, CPU): the selection keys, with the experts outside the
    oracle's chosen groups at -inf."""
    keys = selection_keys(logits, router)
    return group_masked_keys(keys, router) if router is not None and router.n_group > 1 else keys


def tie_rule(logits: torch.Tensor, ids: torch.Tensor, kth: torch.Tensor | None = None,
             router: Router | None = None, *, where: bool = False) -> dict:
    """Which tie rule an implementation followed, from the rows where equal keys (``tie_keys``)
    straddle the K-th place. Rows holding a NaN or an infinite logit are counted apart
    (``special_*``): their order is a convention about special values, not a tie rule. Returns the
    counts, ``rule`` (one of "lower id", "higher id", "no consistent rule" or "untested", over the
    finite rows) and ``detail`` (``describe_rule``). ``kth``: the rows' K-th keys when the caller
    has them. ``where``: also the first finite tied rows that do not follow each rule
    (``not_lower_rows``, ``not_higher_rows``). Counted on the CPU."""
    logits, router = logits.cpu(), (router.to("cpu") if router is not None else None)
    special = special_rows(logits)
    x = tie_keys(logits, router)
    ids = ids.long().cpu()
    T, K = ids.shape
    out = {"tied_rows": 0, "lower_id": 0, "higher_id": 0,
           "special_tied_rows": 0, "special_lower_id": 0, "special_higher_id": 0}
    if T:
        kth = (kth_logit(x, K) if kth is None else kth.double())[:, None]
        equal = _same(x, kth)
        above = (x > kth) | (torch.isnan(x) & ~torch.isnan(kth))
        free = K - above.sum(-1)                      # slots left for the tied experts
        straddle = equal.sum(-1) > free
        for prefix, rows in (("", straddle & ~special), ("special_", straddle & special)):
            rows = rows.nonzero().flatten()
            if rows.numel() == 0:
                continue
            eq, f = equal[rows], free[rows, None]
            chosen = torch.zeros_like(eq).scatter_(1, ids[rows], True) & eq
            lower = eq & (eq.cumsum(-1) <= f)
            higher = eq & (eq.flip(-1).cumsum(-1).flip(-1) <= f)
            out[f"{prefix}tied_rows"] = rows.numel()
            out[f"{prefix}lower_id"] = int((chosen == lower).all(-1).sum())
            out[f"{prefix}higher_id"] = int((chosen == higher).all(-1).sum())
            if where and not prefix:
                out["not_lower_rows"] = rows[~(chosen == lower).all(-1)][:10].tolist()
                out["not_higher_rows"] = rows[~(chosen == higher).all(-1)][:10].tolist()
    out["rule"] = rule_of(out["lower_id"], out["higher_id"], out["tied_rows"])
    out["detail"] = describe_rule(out)
    return out


def hull_points(base_abs: torch.Tensor, err: torch.Tensor) -> tuple[list[list[float]], list[int]]:
    """The points of {(|b_i|, e_i)} that decide every tolerance verdict, and their indices i.

    A check ``e <= atol + rtol * |b|`` (torch.testing's form) fails iff some point lies above the
    line; the worst ratio e / (atol + rtol * |b|) over all points, for any atol, rtol >= 0, is
    reached at a vertex of the upper convex hull between the smallest |b| and the largest e. Those
    vertices (usually a handful) are kept; the verdict from them is exact.
    """
    if err.numel() == 0:
        return [], []
    b, order_ = torch.sort(base_abs.double().flatten())     # |b| ascending
    e = err.double().flatten()[order_]
    prev_max = torch.cat([torch.tensor([-1.0], dtype=torch.float64), torch.cummax(e, 0).values[:-1]])
    keep = (e > prev_max).nonzero().flatten()   # the staircase; equal-|b| points are settled below
    pts = list(zip(b[keep].tolist(), e[keep].tolist(), order_[keep].tolist()))
    chain: list[tuple[float, float, int]] = []
    for p in pts:                                          # upper hull of an increasing staircase
        while len(chain) >= 2:
            (x1, y1, _), (x2, y2, _) = chain[-2], chain[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                chain.pop()
            else:
                break
        chain.append(p)
    return [[x, y] for x, y, _ in chain], [i for _, _, i in chain]


def hull(base_abs: torch.Tensor, err: torch.Tensor) -> list[list[float]]:
    """The hull points alone (see ``hull_points``)."""
    return hull_points(base_abs, err)[0]


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
    nan_rows_agree: bool          # outside special rows, the candidate has NaN weights on exactly those rows
    nonfinite: int                # outside special rows: compared weights where the candidate is NaN/inf and the baseline is not
    weights_compared: int
    rows_special: int = 0         # rows holding a NaN or an infinite logit
    rows_special_differ: int = 0  # of those, rows where the candidate follows another convention
    special_values: dict = field(default_factory=dict)  # per kind: rows, ids_differ, chose, nan_weights (candidate, baseline)
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
    near_tie_rows: list = field(default_factory=list)
    special_rows: list = field(default_factory=list)   # first rows where the candidate's convention differs
    hull: list = field(default_factory=list)
    hull_where: list = field(default_factory=list)     # per hull point: [row, expert, candidate, baseline]
    outside: int | None = None    # with a tolerance: compared weights outside it (None: no tolerance asked)
    outside_rows: list = field(default_factory=list)   # their first rows

    def as_dict(self) -> dict:
        return asdict(self)


def _special_values(logits: torch.Tensor, special_differ: torch.Tensor, cid: torch.Tensor,
                    bid: torch.Tensor, cand_nan: torch.Tensor, base_nan: torch.Tensor) -> dict:
    """Per kind of special row: how many there are, in how many the candidate differs, in how many
    each side chose an expert whose logit is of that kind, and gave NaN weights."""
    x = logits.cpu().double()
    out = {}
    for kind, rows in zip(SPECIAL_KINDS, special_kind(x)):
        n = int(rows.sum())
        if not n:
            continue
        is_kind = {"nan": torch.isnan, "+inf": torch.isposinf, "-inf": torch.isneginf}[kind]
        chose = lambda ids: int(is_kind(x[rows].gather(1, ids[rows])).any(-1).sum())  # noqa: E731
        out[kind] = {"rows": n, "differ": int((special_differ & rows).sum()),
                     "candidate_chose": chose(cid), "baseline_chose": chose(bid),
                     "candidate_nan_weights": int((cand_nan & rows).sum()),
                     "baseline_nan_weights": int((base_nan & rows).sum())}
    return out


def compare(
    logits: torch.Tensor, candidate: Routing, baseline: Routing, per_expert_scale: torch.Tensor | None = None,
    *, pair: str = "candidate~baseline", dtype: torch.dtype | None = None, router: Router | None = None,
    tolerance: tuple[float, float] | None = None,
) -> PairResult:
    """Compare ``candidate`` with ``baseline`` on the same logits (see the module docstring).
    ``dtype``: whose rounding makes a near-tie (default: the logits' dtype); ``router``: a family's
    parameters, whose selection keys and groups decide ties (default: the logits, no groups);
    ``per_expert_scale``: the factor a tie-explained swap changes (None: no such factor);
    ``tolerance``: (atol, rtol) to count the weights outside (``outside``, ``outside_rows``)."""
    for name, r in (("candidate", candidate), ("baseline", baseline)):
        if r.weights.shape != r.ids.shape:
            raise ValueError(f"{name}: expected weights and ids of one shape, got "
                             f"{tuple(r.weights.shape)} and {tuple(r.ids.shape)}")
    if per_expert_scale is not None and per_expert_scale.shape != (logits.shape[-1],):
        raise ValueError(f"per_expert_scale: expected shape ({logits.shape[-1]},), got "
                         f"{tuple(per_expert_scale.shape)}")
    logits = logits.cpu()
    scale = (torch.ones(logits.shape[-1], dtype=torch.float64) if per_expert_scale is None
             else per_expert_scale.detach().cpu().double())
    T = logits.shape[0]
    verdict = classify_ids(logits, candidate.ids, baseline.ids, dtype, router)
    cw, cid = candidate.by_id()
    bw, bid = baseline.by_id()
    cw, bw = cw.double(), bw.double()

    tie_rows = verdict.tie_explained.nonzero().flatten()
    if tie_rows.numel():
        # align tie-explained rows by key (their multisets of chosen keys are equal) and carry
        # the candidate's softmax part over to the baseline's expert at the same place
        x = selection_keys(logits, router)
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

    special = special_rows(logits)
    base_nan = torch.isnan(bw).any(-1)
    cand_nan = torch.isnan(cw).any(-1)
    use = ~verdict.mismatched | verdict.tie_explained
    compared = use & ~base_nan
    c, b = cw[compared], bw[compared]
    err = (c - b).abs()
    finite = torch.isfinite(err)
    row_nonfinite = torch.zeros(T, dtype=torch.bool)
    row_nonfinite[compared] = ~finite.all(-1)
    special_differ = special & (verdict.special | (base_nan != cand_nan) | row_nonfinite)
    result = PairResult(
        pair=pair, rows=T, ids_match=not bool(verdict.mismatched.any()), **verdict.counts(),
        rows_nan=int(base_nan.sum()), nan_rows_agree=bool(torch.equal(base_nan & ~special, cand_nan & ~special)),
        nonfinite=int((~finite & ~special[compared, None]).sum()), weights_compared=int(finite.sum()),
        rows_special=int(special.sum()), rows_special_differ=int(special_differ.sum()),
        special_values=_special_values(logits, special_differ, cid, bid, cand_nan, base_nan),
        genuine_rows=verdict.genuine.nonzero().flatten()[:10].tolist(),
        near_tie_rows=verdict.near_tie.nonzero().flatten()[:10].tolist(),
        special_rows=special_differ.nonzero().flatten()[:10].tolist(),
    )
    if tolerance is not None:
        result.outside = 0
    if not bool(finite.any()):
        return result
    e, bb, cc = err[finite], b[finite], c[finite]
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
    if tolerance is not None:
        bad = e > tolerance[0] + tolerance[1] * bb.abs()
        result.outside = int(bad.sum())
        result.outside_rows = torch.unique(row_of[bad])[:10].tolist()
    result.hull, at = hull_points(bb.abs(), e)
    result.hull_where = [[int(row_of[j]), int(bid[row_of[j], slot_of[j]]), float(cc[j]), float(bb[j])] for j in at]
    return result


def attribute(candidate_vs_oracle: PairResult, baseline_vs_oracle: PairResult) -> dict:
    """Who is closer to the truth: by the largest absolute weight error against the oracle."""
    c, b = candidate_vs_oracle.max_abs, baseline_vs_oracle.max_abs
    closer = "equal" if c == b else "candidate" if c < b else "baseline"
    ratio = (max(c, b) / min(c, b)) if min(c, b) > 0 else (float("inf") if c != b else 1.0)
    return {"closer": closer, "candidate_max_abs": c, "baseline_max_abs": b, "ratio": ratio}
