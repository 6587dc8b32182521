"""Records -> summary -> summary.json, report.md and plots: the one path every command takes."""
from __future__ import annotations

import json
from pathlib import Path

from parity import plots, report
from parity.formatting import jsonable
from parity.summary import summarize


def render_all(records: list[dict], meta: dict, out: Path) -> dict:
    summary = summarize(records, meta)
    written = jsonable(summary)
    (out / "summary.json").write_text(json.dumps(written, indent=1))
    report.render(summary, out, plots.all_plots(written, out))
    return summary
