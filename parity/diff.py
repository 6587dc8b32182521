"""What got worse between two sweeps (``parity diff OLD NEW``): two commits of a kernel, case by case.

Records are matched by (case, candidate, baseline) and implementations by (case, name). Worse is:
- more rows picking genuinely different experts, more near-tie flips, NaN/inf weights where there
  were none, NaN rows that no longer agree, more rows with another special-value convention;
- a tie rule that changed (e.g. "lower id" to "no consistent rule");
- weight errors grown past the old error hull: a new (|baseline|, |error|) point above the old
  hull's least concave majorant, so that some atol/rtol that passed before fails now;
- an implementation that raises or breaks the contract where it did not;
- in the summaries: a candidate's verdict from pass to FAIL, its margin (worst error / allowed)
  grown, a derived tolerance's held-out margin grown or its held-out check failing, a mutant no
  longer caught.
Better is the same the other way round, and is listed too. Cases in one sweep only are listed as
such.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

COUNTS = (("rows_genuine", "rows pick genuinely different experts"),
          ("rows_near_tie", "rows flip a near-tie"),
          ("nonfinite", "NaN/inf weights where the baseline's are finite"),
          ("rows_special_differ", "rows with NaN/inf logits follow another convention"))
MARGIN_SLACK = 1.01     # a margin that grows by less than 1% is noise of the derivation, not a regression
HULL_SLACK = 1e-12      # relative: equal hulls compare equal after a JSON round trip


@dataclass(frozen=True)
class Change:
    worse: bool
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Sweep:
    """A sweep directory, read: its records by key and its summary."""

    path: Path
    pairs: dict
    impls: dict
    errors: dict
    summary: dict

    @classmethod
    def read(cls, directory) -> "Sweep":
        from parity.sweep import read_records, records_file

        path = Path(directory)
        records = records_file(path)
        if records is None:
            raise ValueError(f"diff: no records.jsonl (or records.jsonl.gz) in {path}")
        pairs, impls, errors = {}, {}, {}
        for r in read_records(records):
            if r["kind"] == "pair":
                pairs[(r["case_id"], f"{r['candidate']}~{r['baseline']}")] = r
            elif r["kind"] == "implementation":
                impls[(r["case_id"], r["impl"])] = r
            elif r["kind"] == "error":
                errors[(r["case_id"], r["impl"])] = r
        summary_path = path / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        return cls(path, pairs, impls, errors, summary)


def majorant(hull: list, b: float) -> float:
    """The old hull's least concave nondecreasing majorant at |baseline| = b: every error at or
    below it passes every (atol, rtol) the old errors passed."""
    if not hull:
        return 0.0
    if b <= hull[0][0]:
        return hull[0][1]
    for (x1, y1), (x2, y2) in zip(hull, hull[1:]):
        if b <= x2:
            return y1 + (y2 - y1) * (b - x1) / (x2 - x1) if x2 > x1 else max(y1, y2)
    return hull[-1][1]


def hull_growth(old: dict, new: dict) -> str | None:
    """The new point furthest above the old hull's majorant, described; None when there is none."""
    worst, at = 1.0, None
    for i, (b, e) in enumerate(new.get("hull") or []):
        bound = majorant(old.get("hull") or [], b)
        ratio = e / bound if bound > 0 else (float("inf") if e > 0 else 1.0)
        if e > bound * (1 + HULL_SLACK) and ratio > worst:
            worst, at = ratio, (i, b, e, bound)
    if at is None:
        return None
    i, b, e, bound = at
    where = new.get("hull_where") or []
    loc = f" (row {where[i][0]}, expert {where[i][1]})" if i < len(where) else ""
    return (f"weight error grew past OLD's hull: {e:.3g} at |weight| {b:.3g}{loc}, where OLD's errors reach at most "
            f"{bound:.3g} ({worst:.3g}x)")


def _pair_changes(old: dict, new: dict, where: str) -> list[Change]:
    out = []
    for key, text in COUNTS:
        o, n = old.get(key, 0), new.get(key, 0)
        if n != o:
            rows = new.get({"rows_genuine": "genuine_rows", "rows_near_tie": "near_tie_rows",
                            "rows_special_differ": "special_rows"}.get(key, ""), [])
            out.append(Change(n > o, where, f"{text}: {o} -> {n}" + (f" (first rows {rows[:5]})" if n > o and rows else "")))
    if old.get("nan_rows_agree", True) != new.get("nan_rows_agree", True):
        worse = not new.get("nan_rows_agree", True)
        out.append(Change(worse, where, "rows with NaN weights " + ("no longer agree" if worse else "agree again")))
    grown = hull_growth(old, new)
    if grown:
        out.append(Change(True, where, grown))
    elif hull_growth(new, old):
        out.append(Change(False, where, "weight errors within OLD's hull, smaller somewhere: "
                          f"max abs {old.get('max_abs', 0):.3g} -> {new.get('max_abs', 0):.3g}"))
    return out


def _summary_changes(old: dict, new: dict) -> list[Change]:
    out = []
    for fam, nf in new.get("families", {}).items():
        of = old.get("families", {}).get(fam)
        if of is None:
            continue
        for name, nc in nf.get("candidates", {}).items():
            oc = of.get("candidates", {}).get(name)
            if oc is None:
                continue
            where = f"{fam} candidate {name}"
            if oc["ok"] != nc["ok"]:
                out.append(Change(not nc["ok"], where, f"verdict {'pass' if oc['ok'] else 'FAIL'} -> "
                                                      f"{'pass' if nc['ok'] else 'FAIL'}"
                                                      + (f": {nc['reasons'][0]}" if not nc["ok"] and nc["reasons"] else "")))
            if nc["margin"] > oc["margin"] * MARGIN_SLACK:
                out.append(Change(True, where, f"margin (worst error / allowed) grew {oc['margin']:.3g} -> "
                                               f"{nc['margin']:.3g} (worst case {nc.get('worst_case')})"))
            elif oc["margin"] > nc["margin"] * MARGIN_SLACK:
                out.append(Change(False, where, f"margin (worst error / allowed) {oc['margin']:.3g} -> {nc['margin']:.3g}"))
        for dtype, pairs in nf.get("tolerances", {}).items():
            for pair, nt in pairs.items():
                ot = of.get("tolerances", {}).get(dtype, {}).get(pair)
                if ot is None:
                    continue
                where = f"{fam} {dtype} tolerance {pair}"
                if ot["holdout_pass"] and not nt["holdout_pass"]:
                    out.append(Change(True, where, "the held-out check fails now"))
                if nt["margin"] > ot["margin"] * MARGIN_SLACK:
                    out.append(Change(True, where, f"held-out margin shrank: worst held-out error at {ot['margin']:.3g} "
                                                   f"-> {nt['margin']:.3g} of the tolerance"))
        for mutant, by_policy in nf.get("mutants", {}).items():
            for policy, state in by_policy.items():
                before = of.get("mutants", {}).get(mutant, {}).get(policy)
                if before is not None and before != state:
                    out.append(Change(state != "caught", f"{fam} {mutant}", f"under {policy}: {before} -> {state}"))
    return out


def diff(old: Sweep, new: Sweep) -> dict:
    """Every change from ``old`` to ``new``: {"worse": [...], "better": [...], "only_old": n,
    "only_new": n, "common": n}."""
    changes = _summary_changes(old.summary, new.summary)
    # against the oracle first: what the verdict reads
    for key in sorted(old.pairs.keys() & new.pairs.keys(), key=lambda k: (not k[1].endswith("~oracle"), k)):
        changes += _pair_changes(old.pairs[key], new.pairs[key], f"{key[0]} {key[1]}")
    for key in sorted(old.impls.keys() & new.impls.keys()):
        o, n = old.impls[key]["tie_rule"], new.impls[key]["tie_rule"]
        if o["rule"] != n["rule"] and "untested" not in (o["rule"], n["rule"]):
            worse = o["rule"] in ("lower id", "higher id") or n["rule"] == "no consistent rule"
            changes.append(Change(worse, f"{key[0]} {key[1]}", f"tie rule changed: {o['detail']} -> {n['detail']}"))
    for key in sorted(new.errors.keys() - old.errors.keys()):
        changes.append(Change(True, f"{key[0]} {key[1]}", f"fails now: {new.errors[key]['error']}"))
    for key in sorted(old.errors.keys() - new.errors.keys()):
        changes.append(Change(False, f"{key[0]} {key[1]}", f"no longer fails (was: {old.errors[key]['error']})"))
    cases_old = {k[0] for k in old.pairs}
    cases_new = {k[0] for k in new.pairs}
    return {"worse": [c for c in changes if c.worse], "better": [c for c in changes if not c.worse],
            "common": len(old.pairs.keys() & new.pairs.keys()),
            "only_old": sorted(cases_old - cases_new), "only_new": sorted(cases_new - cases_old)}


def render(result: dict, old: Path, new: Path, limit: int = 20) -> str:
    lines = [f"parity diff {old} {new}: {result['common']} candidate~baseline records in both"
             + (f"; cases only in OLD: {len(result['only_old'])}" if result["only_old"] else "")
             + (f"; cases only in NEW: {len(result['only_new'])}" if result["only_new"] else "")]
    lines += changes_listed(result, limit)
    for label, ids in (("only in OLD", result["only_old"]), ("only in NEW", result["only_new"])):
        if ids:
            lines.append(f"{label}: {', '.join(ids[:10])}" + (" ..." if len(ids) > 10 else ""))
    lines.append(verdict_line(result))
    return "\n".join(lines)


def changes_listed(result: dict, limit: int) -> list[str]:
    """The lines listing result's worse changes, then its better ones, at most ``limit`` of each."""
    lines = []
    for title, items in (("WORSE", result["worse"]), ("better", result["better"])):
        lines.append(f"{title} ({len(items)}):")
        lines += [f"  {c}" for c in items[:limit]]
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more")
    return lines


def verdict_line(result: dict) -> str:
    return (f"verdict: REGRESSED ({len(result['worse'])} changes for the worse)" if result["worse"]
            else "verdict: no regression")
