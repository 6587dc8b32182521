"""Tolerances: named policies, derivation from data, validation on held-out cases.

Every check has torch.testing's form ``|candidate - baseline| <= atol + rtol * |baseline|`` on
weights compared by expert id, plus: no genuine id mismatch (tie-explained and near-tie rows are
forgiven), NaN rows where the baseline has them, and no NaN/inf elsewhere. Records carry an error
hull (``parity.analysis.hull``), so each verdict below is exact without the raw weights.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from parity.numerics import DTYPES, fp32_ulp, smallest_step, unit_roundoff

# The policies people use today, as (atol, rtol) per logit dtype. torch-default: the defaults
# torch.testing.assert_close applies to tensors of that dtype.
POLICIES: dict[str, dict[str, tuple[float, float]]] = {
    "torch-default": {"float32": (1e-5, 1.3e-6), "bfloat16": (1e-5, 1.6e-2), "float16": (1e-5, 1e-3)},
    "upstream-1e-2": {d: (1e-2, 1e-2) for d in DTYPES},
    "per-dtype-5e-3": {"float32": (1e-5, 1e-5), "bfloat16": (5e-3, 5e-3), "float16": (1e-3, 1e-3)},
}
DERIVED = "derived"
POLICY_NAMES = (*POLICIES, DERIVED)

SAFETY = 2.0
"""The derived (atol, rtol) is the chosen frontier point times this factor."""

RTOL_GRID = np.concatenate([[0.0], np.logspace(-9, -1, 161)])
"""The rtol values at which the frontier is traced."""

# The error budget of each implementation against the fp64 oracle; tests/test_reference.py and
# tests/test_fused.py test exactly these bounds. A torch reference in the input dtype rounds to it a
# number of times (its family's ``roundings``: Gemma4's softmax_all 5 times, for softmax, renormalising
# sum, division, scale cast and product; topk_softmax 3), each adding <= u relative, and one more u
# covers the fp32 internals. torch's softmax also has its own fp32 error (max-subtraction and exp:
# ~|x - max| * 2**-24, up to ~5 ulp measured), which only shows when the dtype is fp32 itself:
# SOFTMAX_FP32_ULP. The fused kernel, and any fp32 implementation: FUSED_ULP fp32 ulps (exp ~1, sum
# of K ~log2(K)/2, division and scale product 0.5 each; measured <= 6.4).
SOFTMAX_FP32_ULP = 8.0
FUSED_ULP = 8.0
FP32_ULP_REL = 2.0**-23  # one fp32 ulp, relative, at worst


def worst_point(hull: list, atol: float, rtol: float) -> tuple[float, int | None]:
    """(margin, index): the worst error / allowed error over the hull points (> 1 means the check
    fails) and the point that reaches it (None when no point has an error)."""
    worst, at = 0.0, None
    for i, (b, e) in enumerate(hull):
        allowed = atol + rtol * b
        if e > 0:
            m = math.inf if allowed <= 0 else e / allowed
            if at is None or m > worst:
                worst, at = m, i
    return worst, at


def margin(hull: list, atol: float, rtol: float) -> float:
    """The worst error / allowed error over the hull points (> 1 means the check fails)."""
    return worst_point(hull, atol, rtol)[0]


def verdict(record: dict, atol: float, rtol: float) -> tuple[bool, float]:
    """(pass, margin) of one pair record under (atol, rtol)."""
    m = margin(record["hull"], atol, rtol)
    clean = record["rows_genuine"] == 0 and record["nan_rows_agree"] and record["nonfinite"] == 0
    return clean and m <= 1.0, (m if clean else math.inf)


def frontier(hulls: list[list]) -> list[tuple[float, float]]:
    """For each rtol on RTOL_GRID, the least atol that covers every observed error."""
    pts = np.array([p for h in hulls for p in h], dtype=np.float64).reshape(-1, 2)
    if pts.size == 0:
        return [(float(r), 0.0) for r in RTOL_GRID]
    b, e = pts[:, 0], pts[:, 1]
    need = (e[None, :] - RTOL_GRID[:, None] * b[None, :]).max(axis=1)
    return [(float(r), float(max(a, 0.0))) for r, a in zip(RTOL_GRID, need)]


def a_priori(pair: str, dtype: str, roundings: dict[str, int]) -> dict:
    """The bound from unit roundoff: each side's error against the oracle, added. ``roundings``:
    how often each of the family's input-dtype references rounds to the dtype (Family.roundings);
    any other side but the oracle computes in fp32. A single (atol, rtol) for the report; the
    per-element form, with the terms that depend on the data, is ``reference_allowance``."""
    u, tiny = unit_roundoff(getattr(torch, dtype)), smallest_step(getattr(torch, dtype))
    rtol, atol = 0.0, 0.0
    for side in pair.split("~"):
        if side in roundings:
            rtol += (roundings[side] + 1) * u + SOFTMAX_FP32_ULP * FP32_ULP_REL
            atol += tiny
        elif side != "oracle":  # fused and other fp32 kernels: the fused kernel's ulp bound
            rtol += FUSED_ULP * FP32_ULP_REL
    return {"atol": atol, "rtol": rtol}


def reference_allowance(impl: str, g: torch.Tensor, s: torch.Tensor, w64: torch.Tensor,
                        ids64: torch.Tensor, roundings: dict[str, int]) -> torch.Tensor:
    """|w - w_oracle| a torch reference (``softmax_all``, ``topk_softmax``) may show, per element of
    the oracle's routing (w64, ids64 for logits g and scale s):

    - its dtype's rounding: ``a_priori("<impl>~oracle", dtype)``, (roundings + 1) * u relative plus
      the dtype's smallest step;
    - torch's softmax works in fp32 inside: fl(x - max) is off by |x - max| * 2**-24, which exp
      turns into the same relative error in that term, and renormalising over the chosen adds the
      largest such error among them (the K-th logit's): (|d_i| + |d_K|) * 2**-24 relative, d = x -
      max over the chosen, plus SOFTMAX_FP32_ULP ulps of the oracle's weight for exp and the sums
      (on top of the relative SOFTMAX_FP32_ULP already in a_priori's rtol; this one also holds for
      weights that are fp32 subnormals);
    - the absolute floor scales with |per_expert_scale| (at least 1): the probability is rounded
      before the scale multiplies it.
    A chosen -inf (weight 0 on both sides) and NaN rows take no gap term."""
    g, s, w64, ids64 = g.cpu(), s.cpu(), w64.cpu(), ids64.cpu()
    x = g.double().gather(1, ids64)
    top = x.nan_to_num(nan=float("inf")).amax(-1, keepdim=True)
    d = (x - top).abs()
    d = torch.where(torch.isfinite(d), d, 0.0)
    d_k = d.amax(-1, keepdim=True)
    bound = a_priori(f"{impl}~oracle", str(g.dtype).removeprefix("torch."), roundings)
    scale = s.double()[ids64].abs()
    return ((bound["rtol"] + (d + d_k) * 2.0**-24) * w64.abs() + bound["atol"] * scale.clamp_min(1.0)
            + SOFTMAX_FP32_ULP * fp32_ulp(w64))


@dataclass
class Tolerance:
    """A derived tolerance for one (pair, dtype), with its evidence."""

    pair: str
    dtype: str
    atol: float
    rtol: float
    safety: float
    derived_from: int                       # cases
    chosen: tuple[float, float]             # the frontier point before the safety factor
    a_priori: dict
    frontier: list = field(default_factory=list)
    holdout_cases: int = 0
    holdout_pass: bool = True
    margin: float = 0.0                     # worst held-out error / allowed error (< 1: passes)
    holdout_worst_case: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def derive(pair: str, dtype: str, records: list[dict], typical_weight: float, roundings: dict[str, int]) -> Tolerance:
    """Pick (atol, rtol) from the frontier over ``records`` (derivation cases of one pair and
    dtype): the point that allows least at ``typical_weight`` (1/K: the weight of an even split),
    times SAFETY. That balances atol against rtol where most weights live. The atol is at least the
    a-priori one: the dtype's spacing next to zero, which an implementation that rounds to the dtype
    may miss by whether or not the derivation cases held a weight that small."""
    front = frontier([r["hull"] for r in records])
    r_best, a_best = min(front, key=lambda ra: ra[1] + ra[0] * typical_weight)
    bound = a_priori(pair, dtype, roundings)
    return Tolerance(
        pair=pair, dtype=dtype, atol=max(SAFETY * a_best, bound["atol"]), rtol=SAFETY * r_best, safety=SAFETY,
        derived_from=len(records), chosen=(a_best, r_best), a_priori=bound, frontier=front,
    )


def validate(tol: Tolerance, records: list[dict]) -> Tolerance:
    """Score a derived tolerance on held-out records; fills holdout_* and margin."""
    tol.holdout_cases = len(records)
    worst, worst_case, ok = 0.0, "", True
    for r in records:
        passed, m = verdict(r, tol.atol, tol.rtol)
        ok &= passed
        if m >= worst:
            worst, worst_case = m, r["case_id"]
    tol.holdout_pass, tol.margin, tol.holdout_worst_case = ok, worst, worst_case
    return tol


# Precision classes: what a candidate's arithmetic is declared to be, and so which trusted
# implementations' errors against the oracle make the envelope it is judged by (parity.verdict).
PRECISIONS: dict[str, str] = {
    "fp32": "fp32 arithmetic: the envelope of parity's own fp32 kernels against the oracle (and, on "
            "fp32 logits, of the torch references, which compute in fp32 there), at least the "
            f"a-priori bound of {FUSED_ULP:g} fp32 ulps; near-tie flips at the K-th place fail",
    "input-dtype": "arithmetic in the logits' dtype: the envelope of the torch references (and every "
                   "more precise trusted implementation) against the oracle, at least their a-priori "
                   "bound; near-tie flips within two roundings of that dtype are forgiven",
}
DEFAULT_PRECISION = "fp32"



def in_precision_class(arithmetic: str | None, precision: str, dtype: str) -> bool:
    """Whether a trusted implementation of ``arithmetic`` (routing.ARITHMETIC) shows what a
    ``precision`` kernel may do on ``dtype`` logits. input-dtype arithmetic on fp32 logits is fp32
    arithmetic; the oracle judges and is never a member."""
    if arithmetic not in ("fp32", "input-dtype"):
        return False
    return precision == "input-dtype" or arithmetic == "fp32" or dtype == "float32"


def precision_envelope(precision: str, dtype: str, train: list[dict], held: list[dict],
                       typical_weight: float, roundings: dict[str, int]) -> dict:
    """The (atol, rtol) that judges a ``precision`` candidate against the oracle on ``dtype``
    logits: derived like any tolerance from the members' derivation records (the frontier of all
    their hulls together, its point at the typical weight, times SAFETY), then raised to the
    class's a-priori bound where that allows more, and validated on the members' held-out records.
    No candidate's own errors enter it."""
    tol = derive(precision, dtype, train, typical_weight, {})
    # the class's a-priori bound: fp32 arithmetic's ulp bound, or the most roundings any of the
    # family's input-dtype references makes
    most = max(roundings.values(), default=0)
    bound = a_priori("fp32~oracle" if precision == "fp32" else "reference~oracle", dtype,
                     {} if precision == "fp32" else {"reference": most})
    atol, rtol = max(tol.atol, bound["atol"]), max(tol.rtol, bound["rtol"])
    tol.atol, tol.rtol = atol, rtol
    validate(tol, held)
    members = sorted({r["candidate"] for r in train})
    return {"precision": precision, "dtype": dtype, "atol": atol, "rtol": rtol, "members": members,
            "derived": {"atol": tol.safety * tol.chosen[0], "rtol": tol.safety * tol.chosen[1]},
            "chosen": tol.chosen, "safety": tol.safety, "a_priori": bound, "derived_from": tol.derived_from,
            "holdout_cases": tol.holdout_cases, "holdout_pass": tol.holdout_pass, "margin": tol.margin,
            "holdout_worst_case": tol.holdout_worst_case}


def policy_tolerance(policy: str, dtype: str, pair: str, derived: dict) -> tuple[float, float] | None:
    """(atol, rtol) of a named policy for one dtype and pair; None where nothing was derived."""
    if policy == DERIVED:
        tol = derived.get(dtype, {}).get(pair)
        return None if tol is None else (tol["atol"], tol["rtol"])
    return POLICIES[policy][dtype]
