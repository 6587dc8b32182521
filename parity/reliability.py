"""The reliability tally of a test run: how many distinct inputs each property was tried on, per
implementation and input regime, and how many broke it. Tests hand their tallies to the pytest
plugin (``parity.pytest_plugin.record_reliability``); at the end of the run the plugin writes them
here, once, merged over workers, with the run's provenance: ``reliability.json`` and
``reliability.md`` (with any table the tests handed over, such as the special-value semantics)."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from parity.formatting import markdown_table

KEY = ("property", "implementation", "regime")


def merge(records: list[dict]) -> list[dict]:
    """Sum examples and failures per (property, implementation, regime)."""
    acc: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        a = acc[tuple(r[k] for k in KEY)]
        a[0] += r["examples"]
        a[1] += r["failures"]
    return [{**dict(zip(KEY, k)), "examples": n, "failures": f} for k, (n, f) in sorted(acc.items())]


def render(data: dict, tables: dict[str, str]) -> str:
    """reliability.md: the totals, by regime, by property and implementation, then the tests' tables."""
    meta, records = data["meta"], data["records"]
    total = sum(r["examples"] for r in records)
    failed = sum(r["failures"] for r in records)
    L = ["# Reliability\n",
         f"Property-based tests (hypothesis, profile `{meta.get('profile')}`) on {meta.get('device')} (torch "
         f"{meta.get('torch')}, triton {meta.get('triton')}), git {str(meta.get('git_sha'))[:12]}, started "
         f"{meta.get('started')}, {meta.get('seconds')} s: **{total} examples, {failed} found a difference "
         "from the contract.** An example is a distinct input; hypothesis's replays and shrinking steps count "
         "once each.\n"]
    by_regime: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        by_regime[r["regime"]][0] += r["examples"]
        by_regime[r["regime"]][1] += r["failures"]
    L += [markdown_table([{"input regime": k, "examples": n, "found a difference": f}
                          for k, (n, f) in sorted(by_regime.items())]), ""]
    by_prop = merge([{**r, "regime": "-"} for r in records])
    L += [markdown_table([{"property": r["property"], "implementation": r["implementation"],
                           "examples": r["examples"], "found a difference": r["failures"]} for r in by_prop]), ""]
    for name, text in sorted(tables.items()):
        L += [f"## {name.removesuffix('.md').replace('_', ' ').capitalize()}\n", text.strip(), ""]
    return "\n".join(L) + "\n"


def write(out: Path, records: list[dict], meta: dict, tables: dict[str, str]) -> Path:
    """Write reliability.json (the merged tally and its provenance), each of the tests' tables
    as its own file, and reliability.md; returns reliability.md's path."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "records": merge(records)}
    (out / "reliability.json").write_text(json.dumps(data, indent=1) + "\n")
    for name, text in tables.items():
        (out / name).write_text(text.strip() + "\n")
    path = out / "reliability.md"
    path.write_text(render(data, tables))
    return path
