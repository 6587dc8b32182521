"""impact.md, impact.json and one plot per family from parity.impact's results."""
from __future__ import annotations

import json
from pathlib import Path

from parity.formatting import fmt, jsonable, markdown_table
from parity.impact import CATEGORIES, ImpactResult

COLOURS = {"identical": "#999999", "weights only": "#1f77b4", "tie swap": "#d62728", "near-tie swap": "#ff7f0e",
           "genuine": "#9467bd", "special": "#2ca02c"}


def plot(result: ImpactResult, out: Path) -> str:
    """Left: each sampled row's effect / noise against its largest |Δweight|, by category, for
    every pair, with the noise line; right: median and 99th percentile of effect / noise per pair
    and category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    floor = 1e-9
    seen = set()
    for p in result.pairs:
        for k, pts in p.samples.items():
            if not pts:
                continue
            xs = [max(v[0], floor) for v in pts]
            ys = [max(v[1], floor) for v in pts]
            a.scatter(xs, ys, s=5, alpha=0.35, color=COLOURS[k], label=None if k in seen else k)
            seen.add(k)
        if p.bins:
            a.plot([(lo * hi) ** 0.5 for lo, hi, _, _ in p.bins], [max(m, floor) for *_, m in p.bins], lw=1, color="k",
                   alpha=0.5)
    a.axhline(1.0, color="k", ls="--", lw=1)
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("largest |Δweight| in the row")
    a.set_ylabel("routing effect / layer's own noise")
    a.set_title(f"{result.family} ({result.model}), {result.dtype}, T={result.T:,}: rows (lines: weights-only medians)")
    a.legend(fontsize=7, loc="lower right")
    names = [p.candidate for p in result.pairs]
    width = 0.8 / max(1, len(CATEGORIES))
    for j, k in enumerate(CATEGORIES):
        have = [(i + (j - len(CATEGORIES) / 2) * width, p.effect[k]) for i, p in enumerate(result.pairs) if k in p.effect]
        if have:
            xs = [x for x, _ in have]
            b.bar(xs, [max(e["q50"], floor) for _, e in have], width, color=COLOURS[k], label=k)
            b.scatter(xs, [max(e["q99"], floor) for _, e in have], marker="_", color="k", s=40)
    b.axhline(1.0, color="k", ls="--", lw=1)
    b.set_yscale("log")
    b.set_xticks(range(len(names)))
    b.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    b.set_ylabel("effect / noise: median (bar), 99th percentile (tick)")
    b.legend(fontsize=7)
    fig.tight_layout()
    name = f"impact-{result.family}.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def markdown(results: list[ImpactResult], meta: dict, plots: dict[str, str]) -> str:
    lines = ["# Does the routing divergence matter? Its effect on the MoE layer\n",
             f"{meta.get('device')} (torch {meta.get('torch')}, triton {meta.get('triton')}), git {meta.get('git_sha')}, "
             f"{meta.get('started')}.\n",
             "Per row: the **effect** is the RMS difference between the layer's float64 outputs with the candidate's "
             "and the baseline's routing (the divergence alone), in units of the row's **noise**: the same layer run "
             "as the model runs it (matmuls, weighting and accumulation in the model dtype) with the oracle's routing, "
             "against float64. **As run**: the layer in the model dtype with the candidate's routing against the "
             "float64 truth, in the same units (1.0: as close as the oracle's routing gets in that dtype). An effect "
             "above 1 means the routing moves the output by more than the layer's own rounding does.\n"]
    for r in results:
        lay = r.layer
        lines.append(f"## {r.family} ({r.model}, E={r.E}, K={r.K}), {r.dtype} logits, {r.dist}, T={r.T:,}\n")
        lines.append(f"Layer: {r.layer_kind} experts, hidden {lay['hidden']}, expert FFN {lay['intermediate']}, "
                     f"{lay['activation']}, weight on the expert's {lay['weighted']}. The layer's own noise, relative to "
                     f"the row's RMS: median {fmt(r.noise['relative'].get('q50'))}, max "
                     f"{fmt(r.noise['relative'].get('max'))}. {r.seconds} s.\n")
        rows = []
        for p in r.pairs:
            for k in CATEGORIES:
                if k not in p.rows:
                    continue
                e, a = p.effect[k], p.as_run[k]
                rows.append({"pair": f"{p.candidate} vs {p.baseline}", "rows": k, "count": f"{p.rows[k]:,}",
                             "effect/noise median": e.get("q50"), "q99": e.get("q99"), "max": e.get("max"),
                             "effect > noise": f"{p.dominates[k]:.1%}", "as run median": a.get("q50"),
                             "as run max": a.get("max")})
        lines.append(markdown_table(rows))
        summary = []
        for p in r.pairs:
            cross = "-" if p.crossover_dweight is None else f"{fmt(p.crossover_dweight)}"
            summary.append({"pair": f"{p.candidate} vs {p.baseline}", "rows whose expert set changes":
                            f"{p.expert_set_changed:.3%}", "largest Δweight (same experts)": p.max_dweight,
                            "Δweight at which weights-only rows reach the noise": cross})
        lines.append("")
        lines.append(markdown_table(summary))
        if r.crossover_dweight is not None:
            lines.append(f"\nWith the same experts the effect is linear in the weights' change; over every pair's "
                         f"weights-only rows (median ratio) it reaches the layer's own noise at a largest |Δweight| of "
                         f"about **{fmt(r.crossover_dweight)}**: a routing whose weights are off by less than that is "
                         f"lost in the layer's rounding, one that swaps an expert is not.")
        if r.family in plots:
            lines.append(f"\n![{r.family}]({plots[r.family]})\n")
    return "\n".join(lines) + "\n"


def decode_markdown(decoded: list, info: dict) -> str:
    """The tiny model's section: token agreement, first token change, first logit change."""
    def steps(v):
        seen = [s for s in v if s is not None]
        return f"{len(seen)} of {len(v)} prompts" + (f", earliest step {min(seen)}" if seen else "")
    rows = [{"router": d.implementation, "token agreement": f"{d.token_agreement:.1%}",
             "tokens change": steps(d.first_token_change), "logits change (any bit)": steps(d.first_logit_change),
             "largest Δlogit before the first token change": d.max_logit_diff} for d in decoded]
    return (f"## A tiny whole model: greedy decoding with the router replaced\n\n"
            f"Qwen3-MoE from transformers, random weights, {info.get('layers')} layers, hidden {info.get('hidden')}, "
            f"E={info.get('E')}, K={info.get('K')}, bf16; {info.get('prompts')} random prompts, {info.get('steps')} "
            f"greedy steps, every router's logits routed by the implementation named, compared with the same model "
            f"routed by the oracle (its float64 weights rounded to bf16, as the model's router rounds its own).\n\n"
            + markdown_table(rows) + "\n")


def write(results: list[ImpactResult], out: Path, meta: dict, *, with_plots: bool = True, decoded: list | None = None,
          decode_info: dict | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "results": [r.as_dict() for r in results]}
    if decoded:
        data["tiny_model"] = {"info": decode_info, "results": [d.as_dict() for d in decoded]}
    (out / "impact.json").write_text(json.dumps(jsonable(data), indent=1))
    plots = {r.family: plot(r, out) for r in results} if with_plots else {}
    text = markdown(results, meta, plots)
    if decoded:
        text += "\n" + decode_markdown(decoded, decode_info or {})
    (out / "impact.md").write_text(text)
    return out / "impact.md"
