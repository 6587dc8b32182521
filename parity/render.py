"""Records -> summary -> summary.json, report.md and plots: the one path every command takes."""
from __future__ import annotations

from pathlib import Path

from parity import plots, report
from parity.summary import summarize


def render_all(records: list[dict], meta: dict, out: Path) -> dict:
    summary = summarize(records, meta)
    report.write_summary(summary, out)
    names = plots.all_plots(report.jsonable(summary), out)
    report.render(summary, out, names)
    return summary
