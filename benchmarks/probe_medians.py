"""Probe rows of several runs (probe_fused / probe_grouped JSON) side by side: each configuration's
median time over the runs, and whether every run of it matched the oracle.

    python3 -m benchmarks.probe_medians run-1.json run-2.json [--out summary.json]
"""
import argparse
import json
import statistics
from pathlib import Path

TIMING = ("us", "ids_ok", "weights_ok", "weights_same")


def configuration(row: dict) -> str:
    """A row's configuration (shape, T and compile-time settings), its timing fields left out."""
    return json.dumps({k: v for k, v in row.items() if k not in TIMING}, sort_keys=True)


def medians(runs: list[list[dict]]) -> list[dict]:
    """One row a configuration, in first-seen order: its times over the runs, their median, and
    ok = every run's ids and weights the oracle's."""
    seen: dict[str, dict] = {}
    for rows in runs:
        for row in rows:
            entry = seen.setdefault(configuration(row), {**{k: v for k, v in row.items() if k not in TIMING},
                                                         "runs_us": [], "ok": True})
            entry["runs_us"].append(row["us"])
            entry["ok"] = entry["ok"] and bool(row.get("ids_ok", True)) and bool(row.get("weights_ok", True))
    return [{**e, "median_us": statistics.median(e["runs_us"])} for e in seen.values()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="probe JSON files ({meta, rows})")
    ap.add_argument("--out")
    a = ap.parse_args()
    files = [json.loads(Path(p).read_text()) for p in a.runs]
    rows = medians([f["rows"] for f in files])
    for r in rows:   # a configuration's settings, those it leaves to the plan (None) left out
        shown = {k: v for k, v in r.items() if k not in ("runs_us", "ok", "median_us") and v is not None}
        print(" ".join(f"{k}={v}" for k, v in shown.items()), f"median={r['median_us']:.2f}", r["runs_us"],
              "ok" if r["ok"] else "NOT THE ORACLE'S")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"runs": a.runs, "meta": files[0].get("meta"), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
