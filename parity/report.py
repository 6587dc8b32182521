"""report.md: the markdown writer. The verdict and the run first, then one part per routing family;
each section is a heading, a few lines on how to read it, and tables from parity.tables (the
notebooks show the same tables)."""
from __future__ import annotations

from pathlib import Path

from parity import tables
from parity.formatting import fmt, markdown_table
from parity.inputs import DISTRIBUTIONS


def header(summary: dict) -> list[str]:
    meta, verdict = summary["meta"], summary["verdict"]
    ok, precision = verdict["ok"], verdict.get("precision", "fp32")
    L = ["# parity report\n",
         f"**Verdict: {'PASS' if ok else 'FAIL'}** (`--precision {precision}`"
         + (", `--fail-on-special-values`" if verdict.get("fail_on_special_values") else "") + ") — "
         + ("every candidate picks the oracle's experts (ties aside) and keeps its weights within the "
            f"{precision} envelope, which trusted implementations alone made." if ok else "see the reasons below.")]
    L += [f"- {r}" for r in verdict["reasons"][:20]]
    if len(verdict["reasons"]) > 20:
        L.append(f"- … and {len(verdict['reasons']) - 20} more (summary.json)")
    L.append("")
    n_cases = sum(len(fs["cases"]) for fs in summary["families"].values())
    L.append(f"Grid `{meta.get('grid')}`: {meta.get('grid_description', '')}. "
             f"{n_cases} cases in {fmt(meta.get('seconds', 0), 4)} s on {meta.get('device')} "
             f"(torch {meta.get('torch')}, triton {meta.get('triton')}, interpreter={meta.get('interpreter')}), "
             f"git {meta.get('git_sha', '?')[:12]}, started {meta.get('started')}.\n")
    if isinstance(meta.get("workers"), list) and len(meta["workers"]) > 1:
        L.append("Run as a parallel pytest sweep: " + "; ".join(
            f"{w['worker']} on {w['host']}" + (f" GPU {w['cuda_device']} ({w['gpu']})" if "gpu" in w else "")
            + f": {w['cases']} cases" for w in sorted(meta["workers"], key=lambda w: w["worker"])) + ".\n")
    L.append("| family | computation | models (E, K) | cases | candidates | verdict |")
    L.append("|---|---|---|---|---|---|")
    for name, fs in summary["families"].items():
        info = fs["info"]
        models = ", ".join(f"{m} ({v['E']}, {v['K']})" for m, v in info["models"].items())
        cands = ", ".join(fs["candidates"]) or "none (references only)"
        L.append(f"| [{name}](#{name}) | {info['math']} | {models} | {len(fs['cases'])} | {cands} | "
                 f"{'PASS' if fs['verdict']['ok'] else '**FAIL**'} |")
    L.append("")
    return L


def family_header(fs: dict) -> list[str]:
    info = fs["info"]
    bp = fs["best_policy"]
    bt = {r["policy"]: r for r in bp["table"]}[bp["policy"]]
    return [f"# {fs['family']}\n", f"{info['math']}. References follow {info['sources']}.\n",
            f"Best policy: **{bp['policy']}** — passes every correct implementation "
            f"({bt['correct_failures']} failures) and catches {bt['mutants_caught']} of {bt['mutants']} mutants.\n"]


def candidates(summary: dict) -> list[str]:
    rows = tables.candidate_rows(summary)
    unsupported = summary.get("unsupported", {})
    if not rows and not unsupported:
        return []
    L = ["## Candidates\n",
         "Each candidate is judged against the fp64 oracle by the envelope of a precision class, "
         "derived from trusted implementations only (parity's own kernels and the torch references), "
         "never from its own errors. margin = worst weight error / allowed (< 1 passes). "
         "A trusted candidate is held to the envelope on held-out cases; any other, on every case.\n"]
    if rows:
        L += [markdown_table(rows), ""]
    if unsupported:
        L.append("Cases a candidate does not compute (it raised `Unsupported` for their router or shape); "
                 "they are not judged:\n")
        L += [f"- {name}: {len(u['cases'])} of {u['of']} cases ({'; '.join(u['reasons'][:3])})"
              for name, u in unsupported.items()]
        L.append("")
    for name, c in summary["candidates"].items():
        if not c["ok"]:
            L.append(f"{name} fails under `--precision {c['precision']}`:")
            L += [f"- {r}" for r in c["reasons"][:8]]
            L.append("")
    policy_rows = tables.candidate_policy_rows(summary)
    if policy_rows:
        L += ["What the tolerance policies people use today would say of each user candidate against "
              "the torch references (with the tolerance fused gets there); caught: some case fails.\n",
              markdown_table(policy_rows)]
        if tables.loose_policies(summary):
            L.append("\n† fails correct implementations too in this sweep (Policies, below): its catches "
                     "say little.")
        L.append("")
    return L


def upstream(summary: dict) -> list[str]:
    info = summary["info"]
    return [f"## {info['stand_in']} vs {info['reference']} (upstream-style), with the oracle\n",
            f"{info['stand_in']} stands where a fused kernel would, {info['reference']} is the model's torch code as "
            "an upstream test compares against it. Worst over seeds. Δweight: largest absolute weight difference "
            "on matched experts. The oracle columns say how far each side is from the fp64 truth.\n",
            markdown_table(tables.upstream_rows(summary)), ""]


def ties(summary: dict) -> list[str]:
    return ["## Ties\n",
            "Rows where equal logits straddle the K-th place (the expert set depends on the tie rule), "
            "and the rule each implementation followed in them. An id check that ignores ties would "
            "have reported every row where an implementation's rule differs from its baseline's.\n",
            "Rows holding a NaN or an infinite logit are counted apart: their order is a convention "
            "about special values (next section), not a tie rule.\n",
            markdown_table(tables.tie_rule_rows(summary)), "",
            markdown_table(tables.tie_frequency_rows(summary)), ""]


def batch_invariance(summary: dict) -> list[str]:
    rows = tables.invariance_rows(summary)
    if not rows:
        return []
    required = summary["verdict"].get("require_batch_invariance")
    return ["## Batch invariance\n",
            "The rows of one case per dtype (at most 4096) routed whole, then again in batches of 1, 7 and 64 rows "
            "from two offsets, interleaved with as many other rows, reversed, and as a strided view; each row's "
            "output compared bit for bit with the whole batch's. yes: the same bits everywhere; ids only: the "
            "same experts, some weight bits differ; no: some row chose other experts. For a candidate this is "
            + ("**failed** (`--require-batch-invariance`)." if required else
               "reported, not failed (`--require-batch-invariance` fails it).") + "\n",
            markdown_table(rows), ""]


def special_values(summary: dict) -> list[str]:
    rows = tables.special_value_rows(summary)
    if not rows:
        return []
    fails = summary["verdict"].get("fail_on_special_values")
    return ["## Special values\n",
            "Rows holding NaN or infinite logits are routed by convention. The oracle's: NaN ranks above "
            "+inf (as torch.topk), equal values go to the lower id, and a row whose chosen logits hold NaN "
            "or +inf (or are all -inf) gets NaN weights. Each row of this table is an implementation "
            "against the oracle, summed over cases; a difference is "
            + ("**failed** (`--fail-on-special-values`)." if fails else
               "reported, not failed (`--fail-on-special-values` fails it).") + "\n",
            markdown_table(rows), ""]


def envelopes(summary: dict) -> list[str]:
    rows = tables.envelope_rows(summary)
    if not rows:
        return []
    return ["## Precision envelopes: what judges a candidate\n",
            "Per logit dtype and precision class: the trusted implementations whose errors against the "
            "oracle make the envelope (members), the tolerance derived from their derivation cases (the "
            "frontier point at the typical weight 1/K, times the safety factor), the class's a-priori "
            "bound, and the envelope: the larger of the two in each term. Validated on the members' "
            "held-out cases.\n",
            markdown_table(rows), ""]


def tolerances(summary: dict) -> list[str]:
    L = ["## Derived tolerances\n",
         "From the derivation cases (seeds 0-2), the frontier of (atol, rtol) pairs that cover every "
         "observed error; the point allowing least at a typical weight (1/K), times the safety "
         "factor; validated on held-out seeds and sizes (margin = worst error / allowed error; "
         "< 1 passes). The a-priori bound adds each side's roundings against the oracle "
         "(unit roundoff u of the dtype: softmax_all 6u, topk_softmax 4u; fused 8 fp32 ulp).\n",
         markdown_table(tables.tolerance_rows(summary))]
    observed = tables.observed_rows(summary)
    if observed:
        L += ["\n### Observed error envelopes (a description, never a pass mark)\n",
              "Derived the same way as above, from the errors of user candidates and of references that are "
              "shown but do not judge (they have no declared arithmetic): what the code does, bugs included. "
              "A candidate's verdict comes from the precision envelope instead.\n",
              markdown_table(observed)]
    L.append("\nReading the gap: the a-priori rtol assumes every rounding goes the same way at once, in "
             "the worst row; the frontier point is what the data shows (roundings partly cancel, and the "
             "worst case is rare), so it sits at or below the bound. The derived tolerance is that point "
             "times the safety factor, which can put it above the bound: a CI check then never flakes "
             "on a new seed, and a bug several times larger than the rounding still fails it. A "
             "frontier point above the bound would mean an error source the count misses.\n")
    return L


def policies(summary: dict) -> list[str]:
    return ["## Policies\n",
            "Each policy on every case (derived: on held-out cases), per pair: passed cases / cases "
            "and the worst margin (worst error / allowed error).\n",
            markdown_table(tables.policy_rows(summary)), ""]


def mutation_matrix(summary: dict) -> list[str]:
    s, ref = summary["info"]["stand_in"], summary["info"]["reference"]
    if not summary.get("mutants_by_dtype"):
        return []
    dtypes = sorted(summary.get("mutants_by_dtype", {}).get(ref, {}))
    legend = f"Each cell: caught (✓) or missed (·) per logit dtype, in the order {', '.join(dtypes)}.\n"
    L = ["## Mutation matrix\n",
         f"Deliberately wrong routings in {s}'s place, checked against {ref} (the model's "
         f"code, as upstream tests do) with each policy's tolerance for {s}~{ref}. "
         "caught: some case fails the check.\n", legend,
         markdown_table(tables.mutant_rows(summary, ref)), "",
         markdown_table(tables.best_policy_rows(summary)),
         "\nA mutant no tolerance can catch (a tie rule, say) is caught by the tie-rule table above "
         "or by demanding exact ids against the oracle.\n"]
    precision_rows = tables.mutant_precision_rows(summary)
    if precision_rows:
        L += ["The same mutants judged as a candidate is (against the oracle, by each precision class's "
              "envelope; parity.verdict):\n", markdown_table(precision_rows), ""]
    if "oracle" in summary.get("mutants_by_dtype", {}):
        L += [f"The same mutants against the fp64 oracle, with each policy's tolerance for {s}~oracle: "
              "without the reference's own rounding in the way, a tight tolerance sees much more.\n",
              legend, markdown_table(tables.mutant_rows(summary, "oracle")), ""]
    return L


def distributions(summary: dict) -> list[str]:
    return (["## Distributions\n"]
            + [f"- `{d.name}`: {d.description}. Claim: {d.claim}." for d in DISTRIBUTIONS.values()] + [""])


FAMILY_SECTIONS = (family_header, candidates, upstream, ties, special_values, batch_invariance, envelopes, tolerances, policies,
                   mutation_matrix)


def render(summary: dict, out: Path, plots: dict[str, list[str]]) -> Path:
    """report.md: the header, then every family's sections and plots (``plots``: file names by family)."""
    L = header(summary)
    for name, fs in summary["families"].items():
        L += [line for section in FAMILY_SECTIONS for line in section(fs)]
        if plots.get(name):
            L.append("## Plots\n")
            L += [f"![{p}]({p})\n" for p in plots[name]]
    L += distributions(summary)
    path = out / "report.md"
    path.write_text("\n".join(L) + "\n")
    return path
