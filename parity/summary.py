"""From records to the summary: derived tolerances and their validation, policy scores, the
mutation matrix, tie rules and the verdict (field names: shared/DESIGN.md)."""
from __future__ import annotations

import math
from collections import defaultdict

from parity.tolerance import (DERIVED, POLICY_NAMES, derive, policy_tolerance, validate,
                              verdict)

PAIR_FIELDS = (
    "ids_match", "rows", "rows_mismatched", "rows_tie_explained", "rows_near_tie", "rows_genuine",
    "rows_nan", "nan_rows_agree", "nonfinite", "weights_compared", "max_abs", "max_rel", "max_ulp",
    "p50_abs", "p99_abs", "p999_abs", "p50_rel", "p99_rel", "p999_rel", "p50_ulp", "p99_ulp",
    "p999_ulp", "worst", "worst_rows", "genuine_rows", "attribution",
)
PRIMARY_BASELINE = "softmax_all"
"""The mutation matrix's baseline: the model's torch code, as upstream tests compare against."""


def _by(records, *keys):
    out = defaultdict(list)
    for r in records:
        out[tuple(r["case"][k] if k in r["case"] else r[k] for k in keys)].append(r)
    return out


def summarize(records: list[dict], meta: dict) -> dict:
    pairs = [r for r in records if r["kind"] == "pair"]
    correct = [r for r in pairs if r["candidate_kind"] in ("candidate", "baseline")]
    mutant_pairs = [r for r in pairs if r["candidate_kind"] == "mutant"]

    cases: dict[str, dict] = {}
    for r in records:
        c = cases.setdefault(r["case_id"], {**{k: r["case"][k] for k in ("T", "E", "K", "dtype", "dist", "seed", "role")},
                                           "id": r["case_id"], "pairs": {}, "tie_rules": {}, "errors": {}})
        if r["kind"] == "pair" and r["candidate_kind"] != "mutant":
            c["pairs"][r["pair"]] = {k: r[k] for k in PAIR_FIELDS if k in r}
        elif r["kind"] == "implementation":
            c["tie_rules"][r["impl"]] = r["tie_rule"]
        elif r["kind"] == "error":
            c["errors"][r["impl"]] = r["error"]

    tolerances: dict[str, dict] = defaultdict(dict)
    for (dtype, pair), recs in sorted(_by(correct, "dtype", "pair").items()):
        train = [r for r in recs if r["case"]["role"] == "derive"]
        held = [r for r in recs if r["case"]["role"] == "holdout"]
        if not train:
            continue
        tol = validate(derive(pair, dtype, train, typical_weight=1.0 / train[0]["case"]["K"]), held)
        tolerances[dtype][pair] = tol.as_dict()

    policies: dict[str, dict] = {}
    for policy in POLICY_NAMES:
        table: dict[str, dict] = defaultdict(dict)
        for (dtype, pair), recs in sorted(_by(correct, "dtype", "pair").items()):
            tol = policy_tolerance(policy, dtype, pair, tolerances)
            if tol is None:
                continue
            scored = [r for r in recs if policy != DERIVED or r["case"]["role"] == "holdout"]
            results = [verdict(r, *tol) for r in scored]
            table[dtype][pair] = {
                "pass": all(p for p, _ in results), "margin": max((m for _, m in results), default=0.0),
                "cases": len(results), "failed": sum(not p for p, _ in results),
                "atol": tol[0], "rtol": tol[1],
            }
        policies[policy] = dict(table)

    # mutant -> policy -> caught|missed, per baseline and per dtype; "caught" overall when any
    # dtype's check fails
    by_dtype: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    mutant_margins: dict[str, dict] = defaultdict(dict)
    for (mutant, baseline, dtype), recs in sorted(_by(mutant_pairs, "candidate", "baseline", "dtype").items()):
        for policy in POLICY_NAMES:
            # the tolerance a candidate in fused's place would be held to
            tol = policy_tolerance(policy, dtype, f"fused~{baseline}", tolerances)
            if tol is None:
                continue
            results = [verdict(r, *tol) for r in recs]
            caught = any(not p for p, _ in results)
            by_dtype[baseline][dtype][mutant][policy] = "caught" if caught else "missed"
            if baseline == PRIMARY_BASELINE:
                worst = max((m for _, m in results), default=0.0)
                mutant_margins[mutant][policy] = max(worst, mutant_margins[mutant].get(policy, 0.0))
    mutants_by_baseline: dict = {}
    for baseline, dtypes in by_dtype.items():
        merged: dict = defaultdict(dict)
        for table in dtypes.values():
            for mutant, row in table.items():
                for policy, v in row.items():
                    if merged[mutant].get(policy) != "caught":
                        merged[mutant][policy] = v
        mutants_by_baseline[baseline] = {m: dict(v) for m, v in merged.items()}
    mutants = mutants_by_baseline.get(PRIMARY_BASELINE, {})
    mutants_by_dtype = {b: {d: {m: dict(v) for m, v in t.items()} for d, t in dtypes.items()}
                        for b, dtypes in by_dtype.items()}

    summary = {
        "meta": meta,
        "cases": list(cases.values()),
        "tolerances": dict(tolerances),
        "policies": policies,
        "mutants": mutants,
        "mutants_by_dtype": mutants_by_dtype,
        "mutants_by_baseline": mutants_by_baseline,
        "mutant_margins": dict(mutant_margins),
        "tie_rules": tie_rules(records),
    }
    summary["best_policy"] = best_policy(summary)
    summary["verdict"] = verdict_of(records, tolerances)
    return summary


def tie_rules(records: list[dict]) -> dict:
    """Per implementation: the tie rule over all cases with ties straddling the K-th place."""
    acc: dict[str, dict] = defaultdict(lambda: {"tied_rows": 0, "lower_id": 0, "higher_id": 0})
    for r in records:
        if r["kind"] == "implementation":
            a = acc[r["impl"]]
            for k in ("tied_rows", "lower_id", "higher_id"):
                a[k] += r["tie_rule"][k]
    for a in acc.values():
        n = a["tied_rows"]
        a["rule"] = ("untested" if n == 0 else "lower id" if a["lower_id"] == n
                     else "higher id" if a["higher_id"] == n else "no consistent rule")
    return dict(acc)


def best_policy(summary: dict) -> dict:
    """The policy that passes every correct implementation on every scored case and catches the
    most mutants (against the primary baseline)."""
    rows = []
    for policy in POLICY_NAMES:
        passes = [v["pass"] for d in summary["policies"].get(policy, {}).values() for v in d.values()]
        fails = sum(not p for p in passes)
        caught = sum(v.get(policy) == "caught" for v in summary["mutants"].values())
        rows.append({"policy": policy, "correct_failures": fails, "mutants_caught": caught,
                     "mutants": len(summary["mutants"])})
    ok = [r for r in rows if r["correct_failures"] == 0] or rows
    best = max(ok, key=lambda r: (r["mutants_caught"], r["policy"] == DERIVED))
    return {"policy": best["policy"], "table": rows}


def verdict_of(records: list[dict], tolerances: dict) -> dict:
    """Fail when a candidate (a correct implementation under test) picks a genuinely different
    expert anywhere, breaks its derived tolerance on a held-out case, or breaks the contract."""
    reasons = []
    for r in records:
        if r["kind"] == "error" and r["impl_kind"] in ("candidate", "case"):
            reasons.append(f"{r['case_id']}: {r['impl']} failed: {r['error']}")
        if r["kind"] != "pair" or r["candidate_kind"] != "candidate":
            continue
        if r["rows_genuine"]:
            reasons.append(f"{r['case_id']}: {r['pair']}: {r['rows_genuine']} rows pick genuinely "
                           f"different experts (first rows {r['genuine_rows'][:5]})")
        if not r["nan_rows_agree"]:
            reasons.append(f"{r['case_id']}: {r['pair']}: NaN rows differ from the baseline's")
        tol = tolerances.get(r["case"]["dtype"], {}).get(r["pair"])
        if tol and r["case"]["role"] == "holdout":
            passed, m = verdict(r, tol["atol"], tol["rtol"])
            if not passed:
                w = r.get("worst") or {}
                reasons.append(
                    f"{r['case_id']}: {r['pair']} breaks its derived tolerance (atol={tol['atol']:.3g}, "
                    f"rtol={tol['rtol']:.3g}): margin {m:.3g}; worst at row {w.get('row')}, expert "
                    f"{w.get('expert')}: got {w.get('candidate')!r}, expected {w.get('baseline')!r}, "
                    f"abs err {w.get('abs', math.nan):.3g}")
    return {"ok": not reasons, "reasons": reasons}
