"""Two kernel trees timed against each other: the probe rows of interleaved runs of a base tree and
the working tree (`bash scripts/h200_run.sh ab`: base, new, base, new ... in one device call, so
both meet the same machine), reduced to one line per configuration: the medians of each side, the
change, and whether every run's ids (and, where the probe checks them, weights) were the oracle's.

A row's configuration is every field but its measurements (us and the checks); the probes'
(benchmarks/probe_grouped, probe_fused) rows carry their checks as rows_not_the_oracles or ids_ok,
and weights_ok (weights within tolerance.FUSED_ULP of the oracle's; rows before 2026-12-06 lack it).
--where FIELD=VALUE keeps the rows whose field has that value (e.g. table=True: the launch the
launch table chooses), repeatable.

--ignore FIELD leaves a field out of the configuration (repeatable): a switch the new tree adds, which the
base tree's rows show off (e.g. pair_test).

python3 -m benchmarks.ab_summary --base B1.json B2.json --new N1.json N2.json [--where table=True] [--ignore F] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

MEASURED = {"us", "rows_not_the_oracles", "rows_flagged", "rows_whole_float64", "rows_pair_test", "ids_ok", "weights_ok",
            "weights_same"}


def config(row: dict, ignore: frozenset = frozenset()) -> tuple:
    """A row's configuration: its fields but the measured ones (and those in ``ignore``), in a fixed order."""
    return tuple(sorted((k, v) for k, v in row.items() if k not in MEASURED and k not in ignore))


def wrong(row: dict) -> bool:
    """Whether a probe row says its ids or weights were not the oracle's."""
    return bool(row.get("rows_not_the_oracles", 0)) or row.get("ids_ok", True) is False or row.get("weights_ok", True) is False


def _matches(row: dict, where: list[tuple[str, str]]) -> bool:
    return all(str(row.get(k)) == v for k, v in where)


def compare(base: list[list[dict]], new: list[list[dict]], where: list[tuple[str, str]] = (),
            ignore: frozenset = frozenset()) -> list[dict]:
    """One line per configuration found on either side: the runs' times (µs), their medians, the
    change in percent (new against base) and the rows whose ids were not the oracle's. ``ignore``:
    fields left out of the configuration (a switch that one tree has and the other lacks)."""
    times: dict[tuple, dict[str, list[float]]] = {}
    bad: dict[tuple, int] = {}
    for side, runs in (("base", base), ("new", new)):
        for rows in runs:
            for row in rows:
                if not _matches(row, where):
                    continue
                key = config(row, ignore)
                times.setdefault(key, {"base": [], "new": []})[side].append(float(row["us"]))
                bad[key] = bad.get(key, 0) + wrong(row)
    out = []
    for key, t in times.items():
        b = statistics.median(t["base"]) if t["base"] else None
        n = statistics.median(t["new"]) if t["new"] else None
        out.append({"config": dict(key), "base_us": t["base"], "new_us": t["new"], "base": b, "new": n,
                    "change_pct": round(100 * (n - b) / b, 1) if b and n is not None else None,
                    "runs_not_the_oracles": bad[key]})
    return out


def table(lines: list[dict]) -> str:
    """The comparison as a markdown table: the fields every configuration shares on a line of their
    own above it, each row labelled by the fields that tell it apart."""
    keys = sorted({k for d in lines for k in d["config"]})
    shared = {k: lines[0]["config"].get(k) for k in keys
              if len({json.dumps(d["config"].get(k)) for d in lines}) == 1}
    out = ["all: " + " ".join(f"{k}={v}" for k, v in shared.items()), "",
           "| configuration | base µs (runs) | new µs (runs) | change | ids |", "|---|---|---|---|---|"]
    for d in lines:
        def side(s):
            runs = " / ".join(f"{u:.3f}" for u in d[f"{s}_us"])
            return f"{d[s]:.3f} ({runs})" if d[s] is not None else "-"
        label = " ".join(f"{k}={d['config'].get(k)}" for k in keys if k not in shared) or "(one configuration)"
        change = f"{d['change_pct']:+.1f}%" if d["change_pct"] is not None else "-"
        ids = "the oracle's" if not d["runs_not_the_oracles"] else f"**{d['runs_not_the_oracles']} runs wrong**"
        out.append(f"| {label} | {side('base')} | {side('new')} | {change} | {ids} |")
    return "\n".join(out)


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def same_tree(base: list[dict], new: list[dict]) -> str | None:
    """Why the two sides' runs (probe JSONs, loaded) cannot be told apart, or None: a parity/ directory
    that ran on both (meta.parity_dir, parity.provenance; runs written before it had one are not
    checked). Until scripts/with_tree.sh, the base runs imported the working tree's parity/ and timed it twice."""
    def dirs(runs):
        return {d for run in runs if (d := run.get("meta", {}).get("parity_dir"))}
    both = dirs(base) & dirs(new)
    return f"both sides ran the parity/ in {', '.join(sorted(both))}: nothing compared" if both else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", nargs="+", required=True, help="the base tree's probe JSONs")
    ap.add_argument("--new", nargs="+", required=True, help="the working tree's probe JSONs")
    ap.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--ignore", action="append", default=[], metavar="FIELD",
                    help="a field left out of the configuration, e.g. one the base tree's probe rows lack")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    where = []
    for w in a.where:
        if "=" not in w:
            raise SystemExit(f"--where {w!r}: expected FIELD=VALUE, e.g. table=True")
        where.append(tuple(w.split("=", 1)))
    base, new = [_load(p) for p in a.base], [_load(p) for p in a.new]
    if why := same_tree(base, new):
        raise SystemExit(why)
    lines = compare([run["rows"] for run in base], [run["rows"] for run in new], where, frozenset(a.ignore))
    if not lines:
        raise SystemExit("no probe row on either side" + (f" with {' '.join(a.where)}" if where else ""))
    print(table(lines))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"base": a.base, "new": a.new, "where": a.where, "lines": lines}, f, indent=1)
    return 1 if any(d["runs_not_the_oracles"] for d in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
