"""What changed between two benchmarks (``parity diff OLD NEW`` on two ``parity bench`` outputs):
the review thread's speed table, made from the two bench.json files instead of pasted by hand.

Rows are matched by (case, implementation, T). Worse is:
- a row whose ids or weights no longer match the oracle (every bench row is checked);
- a row slower by more than both SLOWER's relative and absolute margins, where both runs timed it
  the same way (the same card, torch, Triton and method: a time measured on an H100 says nothing
  of an H200's, so across cards only the checks are compared);
- a case or T timed before and missing now.
Better is the same the other way round.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from parity.diff import Change, changes_listed, verdict_line

SLOWER = (0.05, 0.2)
"""A time is worse (better) when it grows (shrinks) by more than 5% and by more than 0.2 µs: between
two `make bench` runs on the H200, kernels that compiled to the same SASS moved by up to 4.8% (Llama 4
bf16 at T = 250000, 24.2 against 23.1 µs) and T <= 512 by 0.1-0.2 µs (reports/bench/NOTES.md). A smaller
change wants both trees timed in turns in one call (scripts/h200_run.sh's ab step)."""
SAME_RUN_FIELDS = ("device", "torch", "triton", "interpreter")


@dataclass
class Bench:
    """A bench.json, read: its run's metadata and its rows by (case, implementation, T)."""

    path: Path
    meta: dict
    rows: dict

    @classmethod
    def read(cls, where) -> Bench:
        from parity.bench import case_key

        path = Path(where)
        file = path / "bench.json" if path.is_dir() else path
        if not file.exists():
            raise ValueError(f"diff: no bench.json in {path}")
        data = json.loads(file.read_text())
        if "rows" not in data or "meta" not in data:
            raise ValueError(f"diff: {file} is not a `parity bench` output (no meta or rows)")
        return cls(path, data["meta"], {(case_key(r), r["impl"], r["T"]): r for r in data["rows"]})


def holds_bench(where) -> bool:
    """Whether ``where`` is a bench.json or a directory with one and no sweep records."""
    path = Path(where)
    if path.is_file():
        return path.name.endswith(".json")
    return (path / "bench.json").exists() and not any(path.glob("records.jsonl*"))


def same_timing(old: Bench, new: Bench) -> list[str]:
    """What differs between the two runs' setups (empty: their times compare)."""
    return [f"{k}: {old.meta.get(k)} -> {new.meta.get(k)}" for k in SAME_RUN_FIELDS
            if old.meta.get(k) != new.meta.get(k)]


def _where(key) -> str:
    (_family, model, E, K, dtype), impl, T = key
    return f"{model} (E={E}, K={K}) {dtype} T={T} {impl}"


def _us(r: dict) -> float:
    """A row's time (bench.json writes an untimed one as "nan": formatting.jsonable)."""
    try:
        return float(r.get("us"))
    except (TypeError, ValueError):
        return float("nan")


def _checks(r: dict) -> bool:
    return bool(r.get("ids_ok", True)) and bool(r.get("weights_ok", True))


def diff(old: Bench, new: Bench, impls: tuple[str, ...] | None = ("fused",)) -> dict:
    """Every change from ``old`` to ``new`` among ``impls`` (None: all): {"worse", "better", "table",
    "setup" (what differs between the runs; times are then not judged), "other_method" (rows timed another way, not
    judged), "only_old", "only_new", "common"}."""
    def wanted(key):
        return impls is None or key[1] in impls
    setup = same_timing(old, new)
    changes, table, other_method = [], [], []
    common = sorted(k for k in old.rows.keys() & new.rows.keys() if wanted(k))
    rel, absolute = SLOWER
    for key in common:
        o, n = old.rows[key], new.rows[key]
        if _checks(o) != _checks(n):
            lost = _checks(o)
            changes.append(Change(lost, _where(key), ("no longer" if lost else "now") + " the oracle's"
                                  + (f" ({n.get('note')})" if lost and n.get("note") else "")))
        comparable = not setup and o.get("method") == n.get("method")
        o_us, n_us = _us(o), _us(n)
        change = n_us / o_us - 1 if o_us > 0 else float("nan")
        table.append({"key": key, "old_us": o_us, "new_us": n_us, "change": change, "judged": comparable})
        if comparable and abs(n_us - o_us) > absolute and abs(change) > rel:
            changes.append(Change(change > 0, _where(key), f"{o_us:.2f} -> {n_us:.2f} µs ({change:+.1%})"))
        elif comparable and not math.isnan(o_us) and math.isnan(n_us):
            changes.append(Change(True, _where(key), f"{o_us:.2f} µs -> not timed"))
        elif not comparable and not setup:
            other_method.append(f"{_where(key)}: {o.get('method')} -> {n.get('method')}")
    only_old = sorted(_where(k) for k in old.rows.keys() - new.rows.keys() if wanted(k))
    only_new = sorted(_where(k) for k in new.rows.keys() - old.rows.keys() if wanted(k))
    changes += [Change(True, w, "timed in OLD only") for w in only_old]
    return {"worse": [c for c in changes if c.worse], "better": [c for c in changes if not c.worse],
            "table": table, "setup": setup, "other_method": other_method, "common": len(common), "only_old": only_old,
            "only_new": only_new}


def _run(b: Bench) -> str:
    m = b.meta
    return (f"{m.get('device', '?')}, torch {m.get('torch', '?')}, triton {m.get('triton', '?')}, "
            f"git {str(m.get('git_sha', '?'))[:12]}")


def render(result: dict, old: Bench, new: Bench, limit: int = 20) -> str:
    lines = [f"parity diff {old.path} {new.path}: benchmarks, {result['common']} timed rows in both",
             f"OLD: {_run(old)}", f"NEW: {_run(new)}"]
    if result["setup"]:
        lines.append("times not judged, the runs differ in " + "; ".join(result["setup"])
                     + " (the oracle checks still are)")
    lines += ["", "| model | E | K | dtype | T | implementation | OLD µs | NEW µs | change |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in result["table"]:
        (_family, model, E, K, dtype), impl, T = row["key"]
        mark = "" if row["judged"] else " (not judged)"
        old_us, new_us, change = (("-" if math.isnan(row[k]) else f"{row[k]:{f}}")
                                  for k, f in (("old_us", ".2f"), ("new_us", ".2f"), ("change", "+.1%")))
        lines.append(f"| {model} | {E} | {K} | {dtype} | {T} | {impl} | {old_us} | {new_us} | {change}{mark} |")
    lines += [""] + changes_listed(result, limit)
    if result["other_method"]:
        lines.append(f"timed another way, not compared ({len(result['other_method'])}):")
        lines += [f"  {w}" for w in result["other_method"][:limit]]
    if result["only_new"]:
        lines.append(f"timed in NEW only: {', '.join(result['only_new'][:10])}"
                     + (" ..." if len(result["only_new"]) > 10 else ""))
    lines.append(verdict_line(result))
    return "\n".join(lines)


def plot(result: dict, old: Bench, new: Bench, path: Path) -> None:
    """NEW's time over OLD's against T, a line per case and implementation, with SLOWER's band around 1: what a
    review looks at before the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict = {}
    for row in result["table"]:
        (_family, model, E, K, dtype), impl, T = row["key"]
        if not math.isnan(row["change"]):
            lines.setdefault((impl, f"{model} E={E} K={K} {dtype}"), []).append((T, 1 + row["change"]))
    impls = sorted({impl for impl, _ in lines}) or ["fused"]
    fig, axes = plt.subplots(1, len(impls), figsize=(9.0 * len(impls), 4.5), squeeze=False)
    for ax, impl in zip(axes.flat, impls):
        ax.axhspan(1 - SLOWER[0], 1 + SLOWER[0], color="0.85",
                   label=f"±{SLOWER[0]:.0%}: noise (so is any change under {SLOWER[1]:g} µs)")
        ax.axhline(1.0, color="k", lw=0.8)
        for (i, case), pts in sorted(lines.items()):
            if i == impl:
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=case)
        ax.set_xscale("log")
        ax.set_xlabel("T (tokens)")
        ax.set_ylabel("NEW µs / OLD µs (below 1: faster)")
        ax.set_title(f"{impl}: git {str(old.meta.get('git_sha', '?'))[:8]} -> {str(new.meta.get('git_sha', '?'))[:8]}"
                     + (" (times not judged: the runs differ)" if result["setup"] else ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
