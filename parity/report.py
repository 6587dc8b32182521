"""The report: summary.json, report.md and PNG plots, rendered from a summary (and nothing else)."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from parity.inputs import DISTRIBUTIONS
from parity.routing.mutants import DESCRIPTIONS
from parity.summary import PRIMARY_BASELINE
from parity.tolerance import POLICY_NAMES

MAIN_PAIRS = ("fused~softmax_all", "fused~topk_softmax", "fused~oracle")


def jsonable(obj):
    """JSON has no inf/nan: write them as strings, so any JSON reader takes the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if obj != obj else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def num(x) -> float:
    """Read back a number written by ``jsonable``."""
    return float(x) if isinstance(x, str) else x


def write_summary(summary: dict, out: Path) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(jsonable(summary), indent=1))
    return path


def fmt(x, digits=3) -> str:
    x = num(x)
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


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


def _mutant_table(summary: dict, baseline: str) -> list[str]:
    by_dtype = summary.get("mutants_by_dtype", {}).get(baseline, {})
    table = summary["mutants_by_baseline"].get(baseline, {})
    dtypes = sorted(by_dtype)
    L = [f"Each cell: caught (✓) or missed (·) per logit dtype, in the order {', '.join(dtypes)}.\n",
         "| mutant | " + " | ".join(POLICY_NAMES) + " | the bug |",
         "|---|" + "---|" * (len(POLICY_NAMES) + 1)]
    for m in sorted(table):
        cells = []
        for p in POLICY_NAMES:
            marks = [by_dtype[d].get(m, {}).get(p) for d in dtypes]
            cells.append(" ".join("✓" if v == "caught" else "·" if v == "missed" else "-" for v in marks))
        L.append(f"| {m} | " + " | ".join(cells) + f" | {DESCRIPTIONS.get(m, '')} |")
    caught = {p: sum(r.get(p) == "caught" for r in table.values()) for p in POLICY_NAMES}
    L.append("| **caught in some dtype** | " + " | ".join(f"**{caught[p]}/{len(table)}**" for p in POLICY_NAMES) + " | |")
    return L


def reliability_section(out: Path) -> list[str]:
    """The property-based tests' counts (reliability-*.json, written by tests/test_properties.py
    into this directory) and the special-value semantics table, when a run left them here."""
    files = [json.loads(p.read_text()) for p in sorted(out.glob("reliability-*.json"))]
    L: list[str] = []
    if files:
        newest = max(files, key=lambda f: f.get("written", ""))
        runs = [f for f in files if f.get("run") == newest.get("run")]
        by_regime: dict = defaultdict(lambda: [0, 0])
        by_prop: dict = defaultdict(lambda: [0, 0])
        for f in runs:
            for r in f["records"]:
                for acc in (by_regime[r["regime"]], by_prop[(r["property"], r["implementation"])]):
                    acc[0] += r["examples"]
                    acc[1] += r["failures"]
        total = sum(v[0] for v in by_regime.values())
        failed = sum(v[1] for v in by_regime.values())
        L.append("## Reliability\n")
        L.append(f"Property-based tests (hypothesis, profile `{newest.get('profile')}`, on "
                 f"{newest.get('device')}, {newest.get('written')}): {total} examples over "
                 f"{len(runs)} worker(s), {failed} found a difference from the contract.\n")
        L.append("| input regime | examples | found a difference |")
        L.append("|---|---|---|")
        for regime, (n, f) in sorted(by_regime.items()):
            L.append(f"| {regime} | {n} | {f} |")
        L.append("")
        L.append("| property | implementation | examples | found a difference |")
        L.append("|---|---|---|---|")
        for (prop, impl), (n, f) in sorted(by_prop.items()):
            L.append(f"| {prop} | {impl} | {n} | {f} |")
        L.append("")
    semantics = out / "special_semantics.md"
    if semantics.exists():
        L.append("## Special values: what each implementation returns\n")
        L.append(semantics.read_text().strip() + "\n")
    return L


def _ids_summary(j: dict) -> str:
    parts = []
    if j["rows_genuine"]:
        parts.append(f"**{j['rows_genuine']} genuine**")
    if j["rows_near_tie"]:
        parts.append(f"{j['rows_near_tie']} near-tie")
    parts.append(f"{j['rows_tie_explained']} tie-explained")
    return ", ".join(parts)


def candidates_section(summary: dict) -> list[str]:
    """One row per candidate: its verdict under every precision class (the chosen one decides),
    its worst margin, its ids against the oracle, tie rule and special-value convention."""
    cands = summary.get("candidates", {})
    if not cands:
        return []
    precisions = list(next(iter(cands.values()))["by_precision"])
    L = ["## Candidates\n",
         "Each candidate is judged against the fp64 oracle by the envelope of a precision class, "
         "derived from trusted implementations only (parity's own kernels and the torch references), "
         "never from its own errors. margin = worst weight error / allowed (< 1 passes). "
         "A trusted candidate is held to the envelope on held-out cases; any other, on every case.\n",
         "| candidate | " + " | ".join(f"{p}" for p in precisions)
         + " | worst margin (decides) | ids vs the oracle | tie rule | special values vs the oracle |",
         "|---|" + "---|" * (len(precisions) + 4)]
    for name, c in cands.items():
        cells = []
        for p in precisions:
            j = c["by_precision"][p]
            mark = ("pass" if j["ok"] else f"**FAIL** ({j['failed_cases']}/{j['cases']} cases)")
            cells.append(mark + (" ◀" if p == c["precision"] else ""))
        tie = summary["tie_rules"].get(name, {})
        L.append(f"| {name}{'' if c['trusted'] else ' (user)'} | " + " | ".join(cells)
                 + f" | {fmt(c['margin'])} ({c['worst_case'] or '-'}) | {_ids_summary(c)} | "
                 f"{tie.get('detail', '-')} | {special_cell(summary.get('special_semantics', {}).get(name, {}))} |")
    L.append("")
    for name, c in cands.items():
        if not c["ok"]:
            L.append(f"{name} fails under `--precision {c['precision']}`:")
            L.extend(f"- {r}" for r in c["reasons"][:8])
            L.append("")
    pol = summary.get("candidate_policies", {})
    if pol:
        L.append("What the tolerance policies people use today would say of each user candidate against "
                 "the torch references (with the tolerance fused gets there); caught: some case fails.\n")
        loose = {r["policy"] for r in summary["best_policy"]["table"] if r["correct_failures"]}
        L.append("| candidate | baseline | " + " | ".join(p + (" †" if p in loose else "") for p in POLICY_NAMES) + " |")
        L.append("|---|---|" + "---|" * len(POLICY_NAMES))
        for name, by_base in pol.items():
            for base, row in sorted(by_base.items()):
                L.append(f"| {name} | {base} | " + " | ".join(row.get(p, "-") for p in POLICY_NAMES) + " |")
        if loose:
            L.append("\n† fails correct implementations too in this sweep (Policies, below): its catches "
                     "say little.")
        L.append("")
    return L


def special_cell(kinds: dict) -> str:
    """A candidate's special-value convention in one cell: per kind of row, how many rows and
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


def special_section(summary: dict) -> list[str]:
    sem = summary.get("special_semantics", {})
    if not sem:
        return []
    fails = summary["verdict"].get("fail_on_special_values")
    L = ["## Special values\n",
         "Rows holding NaN or infinite logits are routed by convention. The oracle's: NaN ranks above "
         "+inf (as torch.topk), equal values go to the lower id, and a row whose chosen logits hold NaN "
         "or +inf (or are all -inf) gets NaN weights. Each row of this table is an implementation "
         "against the oracle, summed over cases; a difference is "
         + ("**failed** (`--fail-on-special-values`)." if fails else
            "reported, not failed (`--fail-on-special-values` fails it).") + "\n",
         "| implementation | kind of row | rows | differs from the oracle | chose such a logit (candidate / oracle) "
         "| NaN weights (candidate / oracle) |", "|---|---|---|---|---|---|"]
    candidates = summary.get("candidates", {})
    for name, kinds in sem.items():
        if name not in candidates and not any(v["differ"] for v in kinds.values()):
            continue  # a mutant that follows the oracle's conventions: nothing to say
        for kind, v in kinds.items():
            L.append(f"| {name} | {kind} | {v['rows']} | {'**' + str(v['differ']) + '**' if v['differ'] else 0} | "
                     f"{v['candidate_chose']} / {v['baseline_chose']} | "
                     f"{v['candidate_nan_weights']} / {v['baseline_nan_weights']} |")
    L.append("")
    return L


def envelope_section(summary: dict) -> list[str]:
    env = summary.get("precision_envelopes", {})
    if not env:
        return []
    L = ["## Precision envelopes: what judges a candidate\n",
         "Per logit dtype and precision class: the trusted implementations whose errors against the "
         "oracle make the envelope (members), the tolerance derived from their derivation cases (the "
         "frontier point at the typical weight 1/K, times the safety factor), the class's a-priori "
         "bound, and the envelope: the larger of the two in each term. Validated on the members' "
         "held-out cases.\n",
         "| dtype | precision | members | derived (atol, rtol) | a-priori (atol, rtol) | envelope atol | envelope rtol | held out | held-out margin |",
         "|---|---|---|---|---|---|---|---|---|"]
    for dtype, by_p in sorted(env.items()):
        for p, e in by_p.items():
            L.append(f"| {dtype} | {p} | {', '.join(e['members'])} | ({fmt(e['derived']['atol'])}, "
                     f"{fmt(e['derived']['rtol'])}) | ({fmt(e['a_priori']['atol'])}, {fmt(e['a_priori']['rtol'])}) | "
                     f"{fmt(e['atol'])} | {fmt(e['rtol'])} | {e['holdout_cases']} cases | "
                     f"{fmt(e['margin'])}{'' if e['holdout_pass'] else ' **FAIL**'} |")
    L.append("")
    return L


def observed_section(summary: dict) -> list[str]:
    obs = summary.get("observed_envelopes", {})
    if not obs:
        return []
    L = ["\n### Observed error envelopes of user candidates (a description, never a pass mark)\n",
         "Derived from each candidate's own errors the same way as above: what the kernel does, "
         "bugs included. Its verdict comes from the precision envelope instead.\n",
         "| dtype | pair | atol | rtol | held-out margin |", "|---|---|---|---|---|"]
    for dtype, pairs in sorted(obs.items()):
        for pair, t in sorted(pairs.items()):
            L.append(f"| {dtype} | {pair} | {fmt(t['atol'])} | {fmt(t['rtol'])} | {fmt(t['margin'])} |")
    return L


def render(summary: dict, out: Path, plots: list[str]) -> Path:
    meta, verdict = summary["meta"], summary["verdict"]
    L = []
    L.append("# parity report\n")
    ok = verdict["ok"]
    precision = verdict.get("precision", "fp32")
    L.append(f"**Verdict: {'PASS' if ok else 'FAIL'}** (`--precision {precision}`"
             + (", `--fail-on-special-values`" if verdict.get("fail_on_special_values") else "") + ") — "
             + ("every candidate picks the oracle's experts (ties aside) and keeps its weights within the "
                f"{precision} envelope, which trusted implementations alone made." if ok else "see the reasons below."))
    for r in verdict["reasons"][:20]:
        L.append(f"- {r}")
    if len(verdict["reasons"]) > 20:
        L.append(f"- … and {len(verdict['reasons']) - 20} more (summary.json)")
    L.append("")
    L.append(f"Grid `{meta.get('grid')}`: {meta.get('grid_description', '')}. "
             f"{len(summary['cases'])} cases in {fmt(meta.get('seconds', 0), 4)} s on {meta.get('device')} "
             f"(torch {meta.get('torch')}, triton {meta.get('triton')}, interpreter={meta.get('interpreter')}), "
             f"git {meta.get('git_sha', '?')[:12]}, started {meta.get('started')}.\n")
    if isinstance(meta.get("workers"), list) and len(meta["workers"]) > 1:
        L.append("Run as a parallel pytest sweep: " + "; ".join(
            f"{w['worker']} on {w['host']}" + (f" GPU {w['cuda_device']} ({w['gpu']})" if "gpu" in w else "")
            + f": {w['cases']} cases" for w in sorted(meta["workers"], key=lambda w: w["worker"])) + ".\n")
    bp = summary["best_policy"]
    bt = {r["policy"]: r for r in bp["table"]}[bp["policy"]]
    L.append(f"Best policy: **{bp['policy']}** — passes every correct implementation "
             f"({bt['correct_failures']} failures) and catches {bt['mutants_caught']} of "
             f"{bt['mutants']} mutants.\n")
    L.extend(candidates_section(summary))

    L.append("## Fused kernel vs the model's torch code (upstream-style), with the oracle\n")
    L.append("Worst over seeds. Δweight: largest absolute weight difference on matched experts. "
             "The oracle columns say how far each side is from the fp64 truth.\n")
    L.append("| T | E | K | dtype | dist | ids | max Δweight fused~softmax_all | fused~oracle | "
             "softmax_all~oracle | topk_softmax~oracle | closer to the truth |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for (T, E, K, dtype, dist), cases in sorted(case_groups(summary).items(), key=lambda kv: (kv[0][4] != "upstream", kv[0][4], kv[0][3], kv[0][0])):
        f_o = worst_over(cases, "fused~oracle", "max_abs")
        s_o = worst_over(cases, "softmax_all~oracle", "max_abs")
        closer = "-" if f_o is None or s_o is None else (
            "equal" if f_o == s_o else f"fused ({fmt(s_o / f_o if f_o else math.inf, 2)}x)" if f_o < s_o
            else f"softmax_all ({fmt(f_o / s_o if s_o else math.inf, 2)}x)")
        L.append(f"| {T} | {E} | {K} | {dtype} | {dist} | {ids_cell(cases, 'fused~softmax_all')} | "
                 f"{fmt(worst_over(cases, 'fused~softmax_all', 'max_abs'))} | {fmt(f_o)} | {fmt(s_o)} | "
                 f"{fmt(worst_over(cases, 'topk_softmax~oracle', 'max_abs'))} | {closer} |")
    L.append("")

    L.append("## Ties\n")
    L.append("Rows where equal logits straddle the K-th place (the expert set depends on the tie rule), "
             "and the rule each implementation followed in them. An id check that ignores ties would "
             "have reported every row where an implementation's rule differs from its baseline's.\n")
    L.append("Rows holding a NaN or an infinite logit are counted apart: their order is a convention "
             "about special values (next section), not a tie rule.\n")
    L.append("| implementation | tied finite rows | chose the lower ids | chose the higher ids | rule |")
    L.append("|---|---|---|---|---|")
    for impl, t in sorted(summary["tie_rules"].items()):
        L.append(f"| {impl} | {t['tied_rows']} | {t['lower_id']} | {t['higher_id']} | {t.get('detail', t['rule'])} |")
    L.append("")
    tied = defaultdict(int)
    total = defaultdict(int)
    for c in summary["cases"]:
        o = c["tie_rules"].get("oracle")
        if o:
            tied[(c["dtype"], c["dist"])] += o["tied_rows"]
            total[(c["dtype"], c["dist"])] += c["T"]
    L.append("| dtype | dist | rows | tied at the K-th place |")
    L.append("|---|---|---|---|")
    for k in sorted(total):
        L.append(f"| {k[0]} | {k[1]} | {total[k]} | {tied[k]} ({100 * tied[k] / max(total[k], 1):.1f}%) |")
    L.append("")

    L.extend(special_section(summary))
    L.extend(envelope_section(summary))
    L.append("## Derived tolerances\n")
    L.append("From the derivation cases (seeds 0-2), the frontier of (atol, rtol) pairs that cover every "
             "observed error; the point allowing least at a typical weight (1/K), times the safety "
             "factor; validated on held-out seeds and sizes (margin = worst error / allowed error; "
             "< 1 passes). The a-priori bound adds each side's roundings against the oracle "
             "(unit roundoff u of the dtype: softmax_all 6u, topk_softmax 4u; fused 8 fp32 ulp).\n")
    L.append("| dtype | pair | atol | rtol | frontier point (atol, rtol) | safety | derived from | held out | held-out margin | a-priori atol | a-priori rtol |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for dtype, pairs in sorted(summary["tolerances"].items()):
        for pair, t in sorted(pairs.items()):
            status = "" if t["holdout_pass"] else " **FAIL**"
            L.append(f"| {dtype} | {pair} | {fmt(t['atol'])} | {fmt(t['rtol'])} | "
                     f"({fmt(t['chosen'][0])}, {fmt(t['chosen'][1])}) | {t['safety']}x | "
                     f"{t['derived_from']} cases | {t['holdout_cases']} cases | {fmt(t['margin'])}{status} | "
                     f"{fmt(t['a_priori']['atol'])} | {fmt(t['a_priori']['rtol'])} |")
    L.extend(observed_section(summary))
    L.append("\nReading the gap: the a-priori rtol assumes every rounding goes the same way at once, in "
             "the worst row; the frontier point is what the data shows (roundings partly cancel, and the "
             "worst case is rare), so it sits at or below the bound. The derived tolerance is that point "
             "times the safety factor, which can put it above the bound: a CI check then never flakes "
             "on a new seed, and a bug several times larger than the rounding still fails it. A "
             "frontier point above the bound would mean an error source the count misses.\n")

    L.append("## Policies\n")
    L.append("Each policy on every case (derived: on held-out cases), per pair: passed cases / cases "
             "and the worst margin (worst error / allowed error).\n")
    dtypes = sorted({d for p in summary["policies"].values() for d in p})
    L.append("| policy | pair | " + " | ".join(dtypes) + " |")
    L.append("|---|---|" + "---|" * len(dtypes))
    for policy in POLICY_NAMES:
        table = summary["policies"].get(policy, {})
        for pair in MAIN_PAIRS + ("softmax_all~oracle", "topk_softmax~oracle"):
            cells = []
            for d in dtypes:
                v = table.get(d, {}).get(pair)
                cells.append("-" if v is None else
                             f"{'pass' if v['pass'] else '**fail**'} {v['cases'] - v['failed']}/{v['cases']}, margin {fmt(v['margin'])}")
            L.append(f"| {policy} | {pair} | " + " | ".join(cells) + " |")
    L.append("")

    L.append("## Mutation matrix\n")
    L.append("Deliberately wrong routings in fused's place, checked against softmax_all (the model's "
             "code, as upstream tests do) with each policy's tolerance for fused~softmax_all. "
             "caught: some case fails the check.\n")
    L.extend(_mutant_table(summary, PRIMARY_BASELINE))
    L.append("")
    L.append("| policy | failures on correct implementations | mutants caught |")
    L.append("|---|---|---|")
    for r in bp["table"]:
        L.append(f"| {r['policy']} | {r['correct_failures']} | {r['mutants_caught']}/{r['mutants']} |")
    L.append("\nA mutant no tolerance can catch (a tie rule, say) is caught by the tie-rule table above "
             "or by demanding exact ids against the oracle.\n")
    by_precision = summary.get("mutants_by_precision", {})
    if any(by_precision.values()):
        L.append("The same mutants judged as a candidate is (against the oracle, by each precision class's "
                 "envelope; parity.verdict):\n")
        L.append("| mutant | " + " | ".join(f"--precision {p}" for p in by_precision) + " |")
        L.append("|---|" + "---|" * len(by_precision))
        names = sorted({m for t in by_precision.values() for m in t})
        for m in names:
            L.append(f"| {m} | " + " | ".join(by_precision[p].get(m, "-") for p in by_precision) + " |")
        L.append("| **caught** | " + " | ".join(
            f"**{sum(v == 'caught' for v in by_precision[p].values())}/{len(by_precision[p])}**" for p in by_precision) + " |")
        L.append("")
    if "oracle" in summary.get("mutants_by_dtype", {}):
        L.append("The same mutants against the fp64 oracle, with each policy's tolerance for fused~oracle: "
                 "without the reference's own rounding in the way, a tight tolerance sees much more.\n")
        L.extend(_mutant_table(summary, "oracle"))
        L.append("")

    L.append("## Distributions\n")
    for d in DISTRIBUTIONS.values():
        L.append(f"- `{d.name}`: {d.description}. Claim: {d.claim}.")
    L.append("")
    L.extend(reliability_section(out))
    if plots:
        L.append("## Plots\n")
        for p in plots:
            L.append(f"![{p}]({p})\n")
    path = out / "report.md"
    path.write_text("\n".join(L) + "\n")
    return path
