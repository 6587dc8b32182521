"""From records to the summary, family by family: derived tolerances and their validation, the
precision-class envelopes, every candidate's verdict (parity.verdict), policy scores, the mutation
matrix, tie rules; then the overall verdict (field names: docs/DESIGN.md).

``summary["families"][name]`` holds one family's part; what a family is (its stand-in and
reference for the upstream-style view, its mutants) comes from the run's metadata
(``meta["families"]``, parity.routing.family.Family.describe), or from the registry for records
written before families existed."""
from __future__ import annotations

import math
from collections import defaultdict

from parity import invariance
from parity.analysis import describe_rule, rule_of
from parity.tolerance import (DERIVED, POLICY_NAMES, PRECISIONS, derive, in_precision_class,
                              policy_tolerance, precision_envelope, validate, verdict)
from parity.verdict import Rule, judge

PAIR_FIELDS = (
    "ids_match", "rows", "rows_mismatched", "rows_tie_explained", "rows_near_tie", "rows_genuine",
    "rows_nan", "nan_rows_agree", "nonfinite", "weights_compared", "rows_special", "rows_special_differ",
    "special_values", "max_abs", "max_rel", "max_ulp",
    "p50_abs", "p99_abs", "p999_abs", "p50_rel", "p99_rel", "p999_rel", "p50_ulp", "p99_ulp",
    "p999_ulp", "worst", "worst_rows", "genuine_rows", "attribution",
)



def _by(records, *keys):
    out = defaultdict(list)
    for r in records:
        out[tuple(r["case"][k] if k in r["case"] else r[k] for k in keys)].append(r)
    return out


def trusted(r: dict) -> bool:
    """A pair record of one of parity's own implementations (records written before the field
    existed held no others)."""
    return r.get("candidate_trusted", True)


def _typical_weight(recs: list[dict]) -> float:
    return 1.0 / recs[0]["case"]["K"]


def derived_tolerances(pairs: list[dict], roundings: dict[str, int]) -> dict:
    """Per dtype and pair: derived from the derivation cases, validated on the held-out ones."""
    out: dict[str, dict] = defaultdict(dict)
    for (dtype, pair), recs in sorted(_by(pairs, "dtype", "pair").items()):
        train = [r for r in recs if r["case"]["role"] == "derive"]
        held = [r for r in recs if r["case"]["role"] == "holdout"]
        if train:
            out[dtype][pair] = validate(derive(pair, dtype, train, _typical_weight(train), roundings), held).as_dict()
    return dict(out)


def precision_envelopes(trusted_pairs: list[dict], roundings: dict[str, int]) -> dict:
    """{dtype: {precision: envelope}} from the trusted implementations' errors against the oracle."""
    vs_oracle = [r for r in trusted_pairs if r["baseline"] == "oracle"]
    out: dict[str, dict] = defaultdict(dict)
    for dtype, recs in sorted(_by(vs_oracle, "dtype").items()):
        dtype = dtype[0]
        for precision in PRECISIONS:
            members = [r for r in recs if in_precision_class(_arithmetic(r), precision, dtype)]
            train = [r for r in members if r["case"]["role"] == "derive"]
            if train:
                held = [r for r in members if r["case"]["role"] == "holdout"]
                out[dtype][precision] = precision_envelope(precision, dtype, train, held, _typical_weight(train), roundings)
    return dict(out)


def _arithmetic(r: dict) -> str | None:
    """A trusted pair record's arithmetic (routing.ARITHMETIC); records written before the field
    existed are looked up by name."""
    if "candidate_arithmetic" in r:
        return r["candidate_arithmetic"]
    from parity.routing import ARITHMETIC

    return ARITHMETIC.get(r["candidate"])


def batch_invariance(records: list[dict]) -> dict:
    """Per implementation: its batch invariance over the cases that checked it."""
    return {name: invariance.summarize(recs)
            for (name,), recs in sorted(_by([r for r in records if r["kind"] == "invariance"], "impl").items())}


def candidate_verdicts(pairs: list[dict], envelopes: dict, rule: Rule, kind: str = "candidate",
                       invariances: dict | None = None) -> dict:
    """Per implementation of ``kind``: its judgement under every precision class (the rule's
    decides), from its ~oracle records, with its batch invariance (``invariances``)."""
    out = {}
    for (name,), recs in sorted(_by([r for r in pairs if r["candidate_kind"] == kind and r["baseline"] == "oracle"],
                                    "candidate").items()):
        is_trusted = all(trusted(r) for r in recs) and kind != "mutant"
        inv = (invariances or {}).get(name, invariance.summarize([])) if invariances is not None else None
        by_precision = {p: judge(name, recs, envelopes, Rule(p, rule.fail_on_special_values, rule.require_batch_invariance),
                                 trusted=is_trusted, invariance=inv).as_dict()
                        for p in PRECISIONS}
        out[name] = {"trusted": is_trusted, "precision": rule.precision, **by_precision[rule.precision],
                     "by_precision": by_precision}
    return out


def special_semantics(pairs: list[dict]) -> dict:
    """Per candidate (and mutant) against the oracle: what it did in rows holding NaN or infinite
    logits, per kind, summed over cases."""
    out: dict = {}
    for r in pairs:
        if r["baseline"] != "oracle" or not r.get("special_values"):
            continue
        acc = out.setdefault(r["candidate"], {})
        for kind, v in r["special_values"].items():
            a = acc.setdefault(kind, defaultdict(int))
            for k, n in v.items():
                a[k] += n
    return {c: {k: dict(v) for k, v in kinds.items()} for c, kinds in sorted(out.items())}


def _policy_verdicts(recs: list[dict], tolerances: dict, stand_in: str, baseline: str, dtype: str) -> dict:
    """Per policy, caught (some case fails) or missed, for an implementation in the stand-in's
    place (Gemma4: fused): the tolerance a candidate there would be held to."""
    out = {}
    for policy in POLICY_NAMES:
        tol = policy_tolerance(policy, dtype, f"{stand_in}~{baseline}", tolerances)
        if tol is not None:
            results = [verdict(r, *tol) for r in recs]
            out[policy] = ("caught" if any(not p for p, _ in results) else "missed",
                           max((m for _, m in results), default=0.0))
    return out


def family_of(r: dict) -> str:
    return r["case"].get("family", "gemma4")


def family_info(meta: dict, name: str) -> dict:
    """What a family is (Family.describe): from the run's metadata, else from the registry."""
    info = meta.get("families", {}).get(name)
    if info is None:
        from parity.routing import family

        info = family(name).describe()
    return info


def summarize(records: list[dict], meta: dict) -> dict:
    """The summary of a sweep: one part per family, and the overall verdict."""
    rule = Rule(meta.get("precision", Rule.precision), bool(meta.get("fail_on_special_values", False)),
                bool(meta.get("require_batch_invariance", False)))
    by_family: dict[str, list] = defaultdict(list)
    for r in records:
        by_family[family_of(r)].append(r)
    families = {name: summarize_family(recs, rule, name, family_info(meta, name)) for name, recs in by_family.items()}
    reasons = [reason for fs in families.values() for reason in fs["verdict"]["reasons"]]
    return {"meta": meta, "families": families,
            "verdict": {"ok": not reasons, "reasons": reasons, "precision": rule.precision,
                        "fail_on_special_values": rule.fail_on_special_values,
                        "require_batch_invariance": rule.require_batch_invariance}}


def summarize_family(records: list[dict], rule: Rule, name: str, info: dict) -> dict:
    """One family's part of the summary (its records only)."""
    stand_in, reference = info["stand_in"], info["reference"]
    pairs = [r for r in records if r["kind"] == "pair"]
    # judges: the oracle and the implementations with an arithmetic (the envelopes' members). Pairs
    # of judges are the correct ones (derived tolerances, policies); a reference that is only shown
    # (no arithmetic, like transformers' Gemma4 router) is described like a user's candidate.
    judges = {"oracle", *info["arithmetic"]}
    correct = [r for r in pairs if r["candidate_kind"] in ("candidate", "baseline") and trusted(r)
               and r["candidate"] in judges and r["baseline"] in judges]
    untrusted = [r for r in pairs if r["candidate_kind"] == "candidate" and not trusted(r)]
    shown = [r for r in pairs if r["candidate_kind"] in ("candidate", "baseline") and trusted(r)
             and not (r["candidate"] in judges and r["baseline"] in judges)]
    mutant_pairs = [r for r in pairs if r["candidate_kind"] == "mutant"]

    cases: dict[str, dict] = {}
    for r in records:
        c = cases.setdefault(r["case_id"], {**{k: r["case"][k] for k in ("T", "E", "K", "dtype", "dist", "seed", "role")},
                                           "id": r["case_id"], "pairs": {}, "tie_rules": {}, "errors": {},
                                           "unsupported": {}})
        if r["kind"] == "pair" and r["candidate_kind"] != "mutant":
            c["pairs"][r["pair"]] = {k: r[k] for k in PAIR_FIELDS if k in r}
        elif r["kind"] == "implementation":
            c["tie_rules"][r["impl"]] = r["tie_rule"]
        elif r["kind"] == "error":
            c["errors"][r["impl"]] = r["error"]
        elif r["kind"] == "unsupported":
            c["unsupported"][r["impl"]] = r["reason"]

    roundings = info.get("roundings", {})
    tolerances = derived_tolerances(correct, roundings)
    envelopes = precision_envelopes(correct, roundings)

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
        for policy, (v, worst) in _policy_verdicts(recs, tolerances, stand_in, baseline, dtype).items():
            by_dtype[baseline][dtype][mutant][policy] = v
            if baseline == reference:
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
    mutants = mutants_by_baseline.get(reference, {})
    mutants_by_dtype = {b: {d: {m: dict(v) for m, v in t.items()} for d, t in dtypes.items()}
                        for b, dtypes in by_dtype.items()}

    invariances = batch_invariance(records)
    candidates = candidate_verdicts(pairs, envelopes, rule, invariances=invariances)
    unsupported = not_computed(cases)
    mutant_verdicts = candidate_verdicts(mutant_pairs, envelopes, rule, kind="mutant")
    summary = {
        "family": name,
        "info": info,
        "cases": list(cases.values()),
        "tolerances": tolerances,
        "precision_envelopes": envelopes,
        "observed_envelopes": derived_tolerances(untrusted + shown, roundings),
        "candidates": candidates,
        "unsupported": unsupported,
        "candidate_policies": _candidate_policies(untrusted, tolerances, stand_in),
        "policies": policies,
        "mutants": mutants,
        "mutants_by_dtype": mutants_by_dtype,
        "mutants_by_baseline": mutants_by_baseline,
        "mutants_by_precision": {p: {m: "missed" if v["by_precision"][p]["ok"] else "caught"
                                     for m, v in mutant_verdicts.items()} for p in PRECISIONS},
        "mutant_margins": dict(mutant_margins),
        "tie_rules": tie_rules(records),
        "batch_invariance": invariances,
        "special_semantics": special_semantics([r for r in pairs if r["candidate_kind"] in ("candidate", "mutant")]),
    }
    summary["best_policy"] = best_policy(summary)
    summary["verdict"] = verdict_of(records, tolerances, candidates, rule, info["arithmetic"], unsupported)
    return summary


def _candidate_policies(untrusted: list[dict], tolerances: dict, stand_in: str) -> dict:
    """How each named policy would judge a user's candidate against the torch references, as
    upstream tests do (the tolerance the stand-in gets in that place): caught or missed, per baseline."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for (name, baseline, dtype), recs in sorted(_by([r for r in untrusted if r["baseline"] != "oracle"],
                                                    "candidate", "baseline", "dtype").items()):
        for policy, (v, _) in _policy_verdicts(recs, tolerances, stand_in, baseline, dtype).items():
            if out[name][baseline].get(policy) != "caught":
                out[name][baseline][policy] = v
    return {n: dict(b) for n, b in out.items()}


def tie_rules(records: list[dict]) -> dict:
    """Per implementation: the tie rule over all cases with ties straddling the K-th place, finite
    rows and rows holding special values apart."""
    keys = ("tied_rows", "lower_id", "higher_id", "special_tied_rows", "special_lower_id", "special_higher_id")
    acc: dict[str, dict] = defaultdict(lambda: dict.fromkeys(keys, 0))
    for r in records:
        if r["kind"] == "implementation":
            a = acc[r["impl"]]
            for k in keys:
                a[k] += r["tie_rule"].get(k, 0)
    for a in acc.values():
        a["rule"] = rule_of(a["lower_id"], a["higher_id"], a["tied_rows"])
        a["detail"] = describe_rule(a)
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


def not_computed(cases: dict[str, dict]) -> dict:
    """Per candidate that raised Unsupported somewhere: the cases it did not compute, of how many,
    and its distinct reasons (from the cases' ``unsupported``, gathered with the records)."""
    out: dict = {}
    for case_id, c in cases.items():
        for impl, reason in c["unsupported"].items():
            u = out.setdefault(impl, {"cases": [], "of": len(cases), "reasons": []})
            u["cases"].append(case_id)
            if reason not in u["reasons"]:
                u["reasons"].append(reason)
    return out


def verdict_of(records: list[dict], tolerances: dict, candidates: dict, rule: Rule,
               arithmetic: dict | None = None, unsupported: dict | None = None) -> dict:
    """Fail when a candidate breaks the contract or raises, fails its judgement against the oracle
    (parity.verdict: ids, NaN/inf, its precision class's envelope), or, for parity's own kernels,
    breaks a derived tolerance against a trusted torch reference (one with an ``arithmetic``: a
    reference that is only shown, like transformers' Gemma4 router, judges nothing) on a held-out
    case. A case a candidate does not compute (``unsupported``) is not judged; a candidate that
    computes none of them fails (a verdict on nothing would pass vacuously)."""
    judges = set(arithmetic) if arithmetic is not None else None
    reasons = []
    for name, u in (unsupported or {}).items():
        if name not in candidates:
            reasons.append(f"{name} computes none of the {u['of']} cases: {'; '.join(u['reasons'][:3])}")
    for r in records:
        if r["kind"] == "error" and r["impl_kind"] in ("candidate", "case"):
            reasons.append(f"{r['case_id']}: {r['impl']} failed: {r['error']}")
    for c in candidates.values():
        reasons += c["reasons"]
    for r in records:
        if (r["kind"] != "pair" or r["candidate_kind"] != "candidate" or not trusted(r)
                or r["baseline"] == "oracle" or r["case"]["role"] != "holdout"
                or (judges is not None and r["baseline"] not in judges)):
            continue
        tol = tolerances.get(r["case"]["dtype"], {}).get(r["pair"])
        if tol:
            passed, m = verdict(r, tol["atol"], tol["rtol"])
            if not passed:
                w = r.get("worst") or {}
                reasons.append(
                    f"{r['case_id']}: {r['pair']} breaks its derived tolerance (atol={tol['atol']:.3g}, "
                    f"rtol={tol['rtol']:.3g}): margin {m:.3g}; worst at row {w.get('row')}, expert "
                    f"{w.get('expert')}: got {w.get('candidate')!r}, expected {w.get('baseline')!r}, "
                    f"abs err {w.get('abs', math.nan):.3g}")
    return {"ok": not reasons, "reasons": reasons, "precision": rule.precision,
            "fail_on_special_values": rule.fail_on_special_values}
