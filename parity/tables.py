"""Every table parity shows, built once from one family's part of a summary (``fs``:
``summary["families"][name]``): rows of dicts (column -> value). The report writes them as markdown
(parity.formatting.markdown_table) and the notebooks' API returns them."""
from __future__ import annotations

import math
from collections import defaultdict

from parity.formatting import fmt, num
from parity.tolerance import POLICY_NAMES



def present_pairs(fs: dict) -> list[str]:
    """Every pair recorded for the family, in the order first seen."""
    return list(dict.fromkeys(p for c in fs["cases"] for p in c["pairs"]))


def main_pairs(fs: dict) -> list[str]:
    """The stand-in (Gemma4: fused) against each reference and the oracle."""
    s = fs["info"]["stand_in"]
    return [p for p in present_pairs(fs) if p.startswith(s + "~")]


def reference_pairs(fs: dict) -> list[str]:
    """Each of the family's references against the oracle (the stand-in's is in main_pairs)."""
    s = fs["info"]["stand_in"]
    return [f"{r}~oracle" for r in fs["info"]["references"] if r != s and f"{r}~oracle" in present_pairs(fs)]


def case_groups(summary: dict) -> dict:
    """Cases grouped by everything but the seed (tables show the worst over seeds)."""
    g = defaultdict(list)
    for c in summary["cases"]:
        g[(c["T"], c["E"], c["K"], c["dtype"], c["dist"])].append(c)
    return g


def worst_over(cases, pair, field):
    vals = [num(c["pairs"][pair][field]) for c in cases if pair in c["pairs"]]
    return max(vals) if vals else None


def ids_cell(cases, pair) -> str:
    rows = [c["pairs"][pair] for c in cases if pair in c["pairs"]]
    if not rows:
        return "-"
    gen = sum(r["rows_genuine"] for r in rows)
    tie = sum(r["rows_tie_explained"] for r in rows)
    near = sum(r["rows_near_tie"] for r in rows)
    if gen:
        return f"**{gen} genuine**"
    if tie or near:
        return f"match ({tie} tie{'s' if tie != 1 else ''}" + (f", {near} near-tie" if near else "") + ")"
    return "match"


def _closer(c_err, b_err, c: str, b: str) -> str:
    if c_err is None or b_err is None:
        return "-"
    if c_err == b_err:
        return "equal"
    if c_err < b_err:
        return f"{c} ({fmt(b_err / c_err if c_err else math.inf, 2)}x)"
    return f"{b} ({fmt(c_err / b_err if b_err else math.inf, 2)}x)"


def upstream_rows(fs: dict) -> list[dict]:
    """The upstream-style comparison (the stand-in against the model's reference, worst over seeds)
    beside the oracle's view: each implementation's largest absolute error against the fp64 truth."""
    info = fs["info"]
    candidate, reference = info["stand_in"], info["reference"]
    others = [r for r in info["references"] if r not in (candidate, reference)]
    rows = []
    order = lambda kv: (kv[0][4] != "upstream", kv[0][4], kv[0][3], kv[0][0], kv[0][1])  # noqa: E731
    for (T, E, K, dtype, dist), cases in sorted(case_groups(fs).items(), key=order):
        c_o = worst_over(cases, f"{candidate}~oracle", "max_abs")
        r_o = worst_over(cases, f"{reference}~oracle", "max_abs")
        row = {"T": T, "E": E, "K": K, "dtype": dtype, "dist": dist,
               "ids": ids_cell(cases, f"{candidate}~{reference}"),
               f"max Δweight {candidate}~{reference}": worst_over(cases, f"{candidate}~{reference}", "max_abs"),
               f"{candidate}~oracle": c_o, f"{candidate}~oracle ulp": worst_over(cases, f"{candidate}~oracle", "max_ulp"),
               f"{reference}~oracle": r_o}
        row.update({f"{o}~oracle": worst_over(cases, f"{o}~oracle", "max_abs") for o in others})
        row["closer to the truth"] = _closer(c_o, r_o, candidate, reference)
        rows.append(row)
    return rows


def tie_rule_rows(summary: dict) -> list[dict]:
    """Per implementation: the rows where equal logits straddle the K-th place and the rule it
    followed there (finite rows; ties at special values counted apart in the rule's text)."""
    return [{"implementation": impl, "tied finite rows": t["tied_rows"], "chose the lower ids": t["lower_id"],
             "chose the higher ids": t["higher_id"], "rule": t.get("detail", t["rule"])}
            for impl, t in sorted(summary["tie_rules"].items())]


def tie_frequency_rows(summary: dict) -> list[dict]:
    """Per dtype and distribution: how often the K-th place is tied (the oracle's count)."""
    tied, total = defaultdict(int), defaultdict(int)
    for c in summary["cases"]:
        o = c["tie_rules"].get("oracle")
        if o:
            tied[(c["dtype"], c["dist"])] += o["tied_rows"]
            total[(c["dtype"], c["dist"])] += c["T"]
    return [{"dtype": d, "dist": s, "rows": total[(d, s)],
             "tied at the K-th place": f"{tied[(d, s)]} ({100 * tied[(d, s)] / max(total[(d, s)], 1):.1f}%)"}
            for d, s in sorted(total)]


def _ids_summary(j: dict) -> str:
    parts = [f"**{j['rows_genuine']} genuine**"] if j["rows_genuine"] else []
    if j["rows_near_tie"]:
        parts.append(f"{j['rows_near_tie']} near-tie")
    parts.append(f"{j['rows_tie_explained']} tie-explained")
    return ", ".join(parts)


def special_cell(kinds: dict) -> str:
    """An implementation's special-value convention in one cell: per kind of row, how many rows and
    where it differs from the oracle's."""
    if not kinds:
        return "-"
    parts = []
    for kind, v in kinds.items():
        if v["differ"]:
            parts.append(f"**{kind} rows: differs in {v['differ']} of {v['rows']}** (chose a {kind} logit in "
                         f"{v['candidate_chose']}, oracle in {v['baseline_chose']}; NaN weights in "
                         f"{v['candidate_nan_weights']}, oracle in {v['baseline_nan_weights']})")
        else:
            parts.append(f"{kind} rows: as the oracle ({v['rows']})")
    return "; ".join(parts)


def invariance_rows(summary: dict) -> list[dict]:
    """Per implementation: its batch invariance per logit dtype."""
    rows = []
    for name, inv in summary.get("batch_invariance", {}).items():
        rows.append({"implementation": name, "batch-invariant": inv["status"],
                     **{d: v for d, v in sorted(inv["by_dtype"].items())}})
    return rows


def candidate_rows(summary: dict) -> list[dict]:
    """One row per candidate: its verdict under every precision class (◀ marks the one that
    decides), the worst weight margin, ids against the oracle, tie rule and special values."""
    rows = []
    for name, c in summary.get("candidates", {}).items():
        row = {"candidate": name + ("" if c["trusted"] else " (user)")}
        for p, j in c["by_precision"].items():
            row[p] = ("pass" if j["ok"] else f"**FAIL** ({j['failed_cases']}/{j['cases']} cases)") + (
                " ◀" if p == c["precision"] else "")
        row.update({"worst margin (decides)": f"{fmt(c['margin'])} ({c['worst_case'] or '-'})",
                    "ids vs the oracle": _ids_summary(c),
                    "tie rule": summary["tie_rules"].get(name, {}).get("detail", "-"),
                    "batch-invariant": c.get("batch_invariant", "untested"),
                    "special values vs the oracle": special_cell(summary.get("special_semantics", {}).get(name, {}))})
        rows.append(row)
    return rows


def loose_policies(summary: dict) -> set[str]:
    """Policies that fail a correct implementation in this sweep."""
    return {r["policy"] for r in summary["best_policy"]["table"] if r["correct_failures"]}


def candidate_policy_rows(summary: dict) -> list[dict]:
    """What each named policy says of a user candidate against each torch reference, with the
    tolerance fused gets there (caught: some case fails; † marks a policy that fails correct
    implementations too)."""
    loose = loose_policies(summary)
    return [{"candidate": name, "baseline": base,
             **{p + (" †" if p in loose else ""): row.get(p, "-") for p in POLICY_NAMES}}
            for name, by_base in summary.get("candidate_policies", {}).items()
            for base, row in sorted(by_base.items())]


def special_value_rows(summary: dict) -> list[dict]:
    """Per candidate (and each mutant that differs), per kind of special row, against the oracle."""
    candidates = summary.get("candidates", {})
    rows = []
    for name, kinds in summary.get("special_semantics", {}).items():
        if name not in candidates and not any(v["differ"] for v in kinds.values()):
            continue  # a mutant that follows the oracle's conventions: nothing to say
        for kind, v in kinds.items():
            rows.append({"implementation": name, "kind of row": kind, "rows": v["rows"],
                         "differs from the oracle": f"**{v['differ']}**" if v["differ"] else "0",
                         "chose such a logit (candidate / oracle)": f"{v['candidate_chose']} / {v['baseline_chose']}",
                         "NaN weights (candidate / oracle)": f"{v['candidate_nan_weights']} / {v['baseline_nan_weights']}"})
    return rows


def envelope_rows(summary: dict) -> list[dict]:
    """The precision envelopes: members, derived point, a-priori bound, envelope, held-out check."""
    return [{"dtype": d, "precision": p, "members": ", ".join(e["members"]),
             "derived (atol, rtol)": f"({fmt(e['derived']['atol'])}, {fmt(e['derived']['rtol'])})",
             "a-priori (atol, rtol)": f"({fmt(e['a_priori']['atol'])}, {fmt(e['a_priori']['rtol'])})",
             "envelope atol": num(e["atol"]), "envelope rtol": num(e["rtol"]),
             "held out": f"{e['holdout_cases']} cases",
             "held-out margin": fmt(e["margin"]) + ("" if e["holdout_pass"] else " **FAIL**")}
            for d, by_p in sorted(summary.get("precision_envelopes", {}).items()) for p, e in by_p.items()]


def tolerance_rows(summary: dict, pairs: tuple[str, ...] | None = None) -> list[dict]:
    """Derived tolerances of the trusted pairs, with their evidence and the a-priori bound."""
    return [{"dtype": d, "pair": p, "atol": num(t["atol"]), "rtol": num(t["rtol"]),
             "frontier point (atol, rtol)": f"({fmt(t['chosen'][0])}, {fmt(t['chosen'][1])})",
             "safety": f"{t['safety']}x", "derived from": f"{t['derived_from']} cases",
             "held out": f"{t['holdout_cases']} cases",
             "held-out margin": fmt(t["margin"]) + ("" if t["holdout_pass"] else " **FAIL**"),
             "a-priori atol": num(t["a_priori"]["atol"]), "a-priori rtol": num(t["a_priori"]["rtol"])}
            for d, ps in sorted(summary["tolerances"].items()) for p, t in sorted(ps.items())
            if pairs is None or p in pairs]


def observed_rows(summary: dict) -> list[dict]:
    """User candidates' self-derived envelopes: a description of the kernel, never a pass mark."""
    return [{"dtype": d, "pair": p, "atol": num(t["atol"]), "rtol": num(t["rtol"]), "held-out margin": num(t["margin"])}
            for d, ps in sorted(summary.get("observed_envelopes", {}).items()) for p, t in sorted(ps.items())]


def policy_rows(summary: dict, pairs: list[str] | None = None) -> list[dict]:
    """Each policy on every case of each pair (derived: held-out cases): passed / cases, margin.
    Default pairs: the stand-in's and the references' against the oracle."""
    pairs = pairs if pairs is not None else main_pairs(summary) + reference_pairs(summary)
    dtypes = sorted({d for p in summary["policies"].values() for d in p})
    rows = []
    for policy in POLICY_NAMES:
        table = summary["policies"].get(policy, {})
        for pair in pairs:
            row = {"policy": policy, "pair": pair}
            for d in dtypes:
                v = table.get(d, {}).get(pair)
                row[d] = "-" if v is None else (f"{'pass' if v['pass'] else '**fail**'} "
                                                f"{v['cases'] - v['failed']}/{v['cases']}, margin {fmt(v['margin'])}")
            rows.append(row)
    return rows


def mutant_rows(summary: dict, baseline: str) -> list[dict]:
    """Mutants against a baseline: per policy, caught (✓) or missed (·) in each logit dtype (sorted
    order), then the bug; a last row counts the mutants caught in some dtype."""
    by_dtype = summary.get("mutants_by_dtype", {}).get(baseline, {})
    table = summary["mutants_by_baseline"].get(baseline, {})
    dtypes = sorted(by_dtype)
    mark = {"caught": "✓", "missed": "·"}
    described = summary.get("info", {}).get("mutants", {})
    rows = [{"mutant": m, **{p: " ".join(mark.get(by_dtype[d].get(m, {}).get(p), "-") for d in dtypes)
                             for p in POLICY_NAMES}, "the bug": described.get(m, "")}
            for m in sorted(table)]
    caught = {p: sum(r.get(p) == "caught" for r in table.values()) for p in POLICY_NAMES}
    rows.append({"mutant": "**caught in some dtype**", **{p: f"**{caught[p]}/{len(table)}**" for p in POLICY_NAMES},
                 "the bug": ""})
    return rows


def mutant_precision_rows(summary: dict) -> list[dict]:
    """Mutants judged as a candidate is (parity.verdict), under each precision class."""
    by_p = summary.get("mutants_by_precision", {})
    names = sorted({m for t in by_p.values() for m in t})
    rows = [{"mutant": m, **{f"--precision {p}": by_p[p].get(m, "-") for p in by_p}} for m in names]
    if rows:
        rows.append({"mutant": "**caught**", **{f"--precision {p}": f"**{sum(v == 'caught' for v in by_p[p].values())}"
                                                                      f"/{len(by_p[p])}**" for p in by_p}})
    return rows


def best_policy_rows(summary: dict) -> list[dict]:
    """Per policy: failures on correct implementations, mutants caught."""
    return [{"policy": r["policy"], "failures on correct implementations": r["correct_failures"],
             "mutants caught": f"{r['mutants_caught']}/{r['mutants']}"} for r in summary["best_policy"]["table"]]
