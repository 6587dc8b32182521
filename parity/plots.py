"""PNG plots of each family's part of a summary: error quantiles per dtype, the atol/rtol frontier
with the policies, and policy margins. Matplotlib's Agg backend: no display needed."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from parity.formatting import num  # noqa: E402
from parity.tables import main_pairs, reference_pairs  # noqa: E402
from parity.tolerance import POLICY_NAMES, policy_tolerance  # noqa: E402

QUANTS = ("p50_rel", "p99_rel", "p999_rel", "max_rel")


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def error_quantiles(summary: dict, out: Path) -> str:
    dtypes = sorted({c["dtype"] for c in summary["cases"]})
    fig, axes = plt.subplots(1, len(dtypes), figsize=(5 * len(dtypes), 4), sharey=True, squeeze=False)
    for ax, dtype in zip(axes[0], dtypes):
        for i, pair in enumerate(main_pairs(summary) + reference_pairs(summary)):
            vals = [[num(c["pairs"][pair][q]) for q in QUANTS] for c in summary["cases"]
                    if c["dtype"] == dtype and pair in c["pairs"] and c["pairs"][pair]["weights_compared"]]
            if not vals:
                continue
            worst = [max(v[j] for v in vals) for j in range(len(QUANTS))]
            ax.plot(range(len(QUANTS)), [max(w, 1e-12) for w in worst], marker="o", label=pair)
        ax.set_yscale("log")
        ax.set_xticks(range(len(QUANTS)), [q.replace("_rel", "") for q in QUANTS])
        ax.set_title(f"{dtype}: relative weight error (worst case)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative error")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, out, f"{summary['family']}-errors.png")


def upstream_pair(summary: dict) -> str:
    return f"{summary['info']['stand_in']}~{summary['info']['reference']}"


def frontier(summary: dict, out: Path, pair: str | None = None) -> str:
    pair = pair or upstream_pair(summary)
    dtypes = sorted(summary["tolerances"])
    fig, axes = plt.subplots(1, len(dtypes), figsize=(5 * len(dtypes), 4), squeeze=False)
    for ax, dtype in zip(axes[0], dtypes):
        t = summary["tolerances"][dtype].get(pair)
        if not t:
            continue
        pts = [(num(r), num(a)) for r, a in t["frontier"] if num(r) > 0 and num(a) > 0]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="k", label="frontier (observed)")
        for policy in POLICY_NAMES:
            atol, rtol = policy_tolerance(policy, dtype, pair, summary["tolerances"])
            ax.scatter([max(rtol, 1e-9)], [max(atol, 1e-12)], label=policy, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-12)  # below that the frontier only says "rtol alone covers it"
        ax.set_xlabel("rtol")
        ax.set_ylabel("least atol")
        ax.set_title(f"{dtype}: {pair}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    return _save(fig, out, f"{summary['family']}-frontier.png")


def margins(summary: dict, out: Path, pair: str | None = None) -> str:
    pair = pair or upstream_pair(summary)
    dtypes = sorted({d for p in summary["policies"].values() for d in p})
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(POLICY_NAMES)
    for i, policy in enumerate(POLICY_NAMES):
        vals = []
        for d in dtypes:
            v = summary["policies"].get(policy, {}).get(d, {}).get(pair)
            m = num(v["margin"]) if v else float("nan")
            vals.append(m if math.isfinite(m) else 1e3)
        ax.bar([j + i * width for j in range(len(dtypes))], vals, width, label=policy)
    ax.axhline(1.0, color="k", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(dtypes))], dtypes)
    ax.set_ylabel("worst error / allowed (< 1 passes)")
    ax.set_title(f"policy margins, {pair}")
    ax.legend(fontsize=7)
    return _save(fig, out, f"{summary['family']}-margins.png")


def all_plots(summary: dict, out: Path) -> dict[str, list[str]]:
    """Every family's plots, by family: the PNG file names written into ``out``."""
    return {name: [error_quantiles(fs, out), frontier(fs, out), margins(fs, out)]
            for name, fs in summary["families"].items()}
