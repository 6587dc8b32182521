"""The candidate verdict: one rule, used wherever parity says pass or fail (the CLI sweep, the
pytest sweep, the notebooks).

A candidate is judged against the fp64 oracle, with a tolerance it did not make: the envelope of its
declared precision class (``parity.tolerance.PRECISIONS``), derived from trusted implementations
only. Its own errors are described (its "observed error envelope") but never decide its verdict: a
bug that is consistent across seeds would otherwise become part of its own tolerance.

It fails when, against the oracle:
- a row picks genuinely different experts (ties at the K-th place are forgiven, whatever the rule);
- under ``fp32``, a row flips a near-tie at the K-th place (fp32 arithmetic chooses exactly);
- a weight is NaN or infinite where the oracle's is finite, or NaN rows differ, outside rows that
  hold special values;
- a weight breaks the class envelope (on held-out cases only for a trusted implementation, whose
  derivation cases helped make it);
- it breaks the output contract, or raises;
- and, only when asked (``fail_on_special_values``), where it follows another convention than the
  oracle's for NaN and infinite logits. By default that is reported, not failed;
- and, only when asked (``require_batch_invariance``), where a row's bits depend on the batch it
  is routed in (parity.invariance). By default that is reported, not failed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from parity.tolerance import DEFAULT_PRECISION, PRECISIONS, worst_point


@dataclass(frozen=True)
class Rule:
    """What a verdict demands: the precision class and whether special-value conventions count."""

    precision: str = DEFAULT_PRECISION
    fail_on_special_values: bool = False
    require_batch_invariance: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")


def _rows(r: dict, key: str) -> str:
    return f"first rows {r[key][:5]}" if r.get(key) else "rows not recorded"


def id_problems(r: dict, rule: Rule) -> list[str]:
    """What a candidate~oracle record shows against the oracle apart from weight tolerances: id
    choices, NaN and infinite weights, and (when the rule says so) special-value conventions."""
    out = []
    if r["rows_genuine"]:
        out.append(f"{r['rows_genuine']} rows pick genuinely different experts ({_rows(r, 'genuine_rows')})")
    if rule.precision == "fp32" and r["rows_near_tie"]:
        out.append(f"{r['rows_near_tie']} rows flip a near-tie at the K-th place ({_rows(r, 'near_tie_rows')}); "
                   "fp32 arithmetic chooses exactly (--precision input-dtype forgives this)")
    if r["nonfinite"]:
        out.append(f"{r['nonfinite']} NaN/inf weights where the oracle's are finite")
    if not r["nan_rows_agree"]:
        out.append("rows with NaN weights differ from the oracle's")
    if rule.fail_on_special_values and r.get("rows_special_differ"):
        out.append(f"{r['rows_special_differ']} rows with NaN/inf logits follow another convention than the "
                   f"oracle's ({_rows(r, 'special_rows')})")
    return out


def envelope_problem(r: dict, env: dict) -> tuple[float, str | None]:
    """(margin, reason or None): the record's weights against an envelope's (atol, rtol), naming
    the element that decides it."""
    m, i = worst_point(r["hull"], env["atol"], env["rtol"])
    if m <= 1.0:
        return m, None
    where = r.get("hull_where") or []
    b, e = r["hull"][i]
    allowed = env["atol"] + env["rtol"] * b
    at = ""
    if i < len(where):
        row, expert, cand, base = where[i]
        at = f" at row {row}, expert {expert}: got {cand!r}, oracle {base!r},"
    return m, (f"weights outside the {env['precision']} envelope (atol={env['atol']:.3g}, rtol={env['rtol']:.3g}): "
               f"margin {m:.3g}{at} abs err {e:.3g}, rel err {e / b if b else float('inf'):.3g}, allowed {allowed:.3g}")


@dataclass
class Judgement:
    """One candidate's verdict under one rule, over its candidate~oracle records."""

    candidate: str
    precision: str
    trusted: bool
    ok: bool = True
    reasons: list = field(default_factory=list)
    cases: int = 0
    failed_cases: int = 0
    margin: float = 0.0              # worst weight error / allowed, over the cases judged by the envelope
    worst_case: str = ""
    rows_genuine: int = 0
    rows_near_tie: int = 0
    rows_tie_explained: int = 0
    rows_special_differ: int = 0
    nonfinite: int = 0
    batch_invariant: str = "untested"   # parity.invariance: yes | ids only (...) | no (...) | untested

    def as_dict(self) -> dict:
        return asdict(self)


def judge(candidate: str, records: list[dict], envelopes: dict, rule: Rule, *, trusted: bool = False,
          max_reasons: int = 20, invariance: dict | None = None) -> Judgement:
    """Judge ``candidate`` by its candidate~oracle ``records`` (one per case) and the class
    envelopes ({dtype: {precision: envelope}}). A trusted candidate's derivation cases are not
    held against its envelope (they made it); everything else is. ``invariance``: the candidate's
    batch invariance (parity.invariance.summarize), failed when the rule requires it."""
    j = Judgement(candidate, rule.precision, trusted)
    for r in sorted(records, key=lambda r: r["case_id"]):
        j.cases += 1
        for k in ("rows_genuine", "rows_near_tie", "rows_tie_explained", "rows_special_differ", "nonfinite"):
            setattr(j, k, getattr(j, k) + r.get(k, 0))
        problems = id_problems(r, rule)
        env = envelopes.get(r["case"]["dtype"], {}).get(rule.precision)
        if env is None:
            problems.append(f"no {rule.precision} envelope for {r['case']['dtype']} (no trusted implementation "
                            "of that class ran on derivation cases)")
        elif not (trusted and r["case"]["role"] == "derive"):
            m, reason = envelope_problem(r, env)
            if m >= j.margin:
                j.margin, j.worst_case = m, r["case_id"]
            if reason:
                problems.append(reason)
        if problems:
            j.failed_cases += 1
            j.reasons += [f"{r['case_id']}: {candidate}: {p}" for p in problems]
    if invariance is not None:
        j.batch_invariant = invariance["detail"]
        if rule.require_batch_invariance and invariance["status"] != "yes":
            j.reasons.append(f"{candidate}: not batch-invariant: {invariance['detail']}"
                             if invariance["status"] != "untested" else
                             f"{candidate}: batch invariance required, but no case of the grid checked it")
    j.ok = not j.reasons
    if len(j.reasons) > max_reasons:
        j.reasons = j.reasons[:max_reasons] + [f"... and {len(j.reasons) - max_reasons} more"]
    return j
