"""The counters that say what bounds a kernel, per profiled launch, from the CSVs of
scripts/h200_run.sh's `ncu` step (benchmarks/profile_ncu.py under Nsight Compute): time,
registers, occupancy, issue, the pipes' utilisation (ALU, FMA, LSU, XU), DRAM throughput, the warp
stall mix (Nsight's per-instruction samples, summed) and the instructions a warp. Writes JSON for
reports/bench/probes/ and prints a table.

python3 -m benchmarks.ncu_summary LOGS_DIR [--raw RAW.csv] [--out FILE.json] [--git SHA]
(LOGS_DIR holds ncu.log, ncu-details.csv, ncu-source.csv and, unless --raw names it, ncu-raw.csv)
"""
from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import os
import re

DETAILS = {"Duration": "duration_us", "Registers Per Thread": "registers", "Achieved Occupancy": "occupancy_pct",
           "Theoretical Occupancy": "theoretical_occupancy_pct", "Issue Slots Busy": "issue_busy_pct",
           "Eligible Warps Per Scheduler": "eligible_warps_per_scheduler", "Executed Instructions": "instructions",
           "DRAM Throughput": "dram_pct", "Grid Size": "grid", "Block Size": "block"}
PIPES = {f"sm__pipe_{p}_cycles_active.avg.pct_of_peak_sustained_active": f"pipe_{p}_pct" for p in ("alu", "fma", "lsu", "xu")}


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def labels(log_path: str) -> list[str]:
    """The profiled launches in order, as benchmarks/profile_ncu.py printed them."""
    out = []
    for line in open(log_path):
        m = re.match(r"(\S+ \S+ T=\d+ E=\d+ K=\d+): profiled one launch", line)
        if m:
            out.append(m.group(1))
    return out


def details(path: str) -> list[dict]:
    by_id: dict[str, dict] = collections.defaultdict(dict)
    for r in csv.DictReader(open(path)):
        name = DETAILS.get(r["Metric Name"])
        if name and name not in by_id[r["ID"]]:
            by_id[r["ID"]][name] = _number(r["Metric Value"])
        for field in ("Grid Size", "Block Size"):
            by_id[r["ID"]].setdefault(DETAILS[field], r[field])
    return [by_id[k] for k in sorted(by_id, key=int)]


def pipes(path: str) -> list[dict]:
    rows = list(csv.reader(open(path)))
    header, data = rows[0], rows[2:]  # the second row holds units
    return [{name: round(_number(d[header.index(metric)]), 1) for metric, name in PIPES.items() if metric in header}
            for d in data]


def stalls(path: str) -> list[dict]:
    """Per kernel, each stall reason's share of the warp samples (all samples, issued or not), in %."""
    out = []
    for block in open(path).read().split('"Kernel Name",')[1:]:
        total, reasons = 0, collections.Counter()
        for r in csv.DictReader(io.StringIO(block.split("\n", 1)[1])):
            total += int(r["Warp Stall Sampling (All Samples)"] or 0)
            for k, v in r.items():
                if k and k.startswith("stall_") and "Not Issued" not in k and v not in ("", "-"):
                    reasons[k[len("stall_"):]] += int(v)
        out.append({k: round(100 * v / max(total, 1), 1) for k, v in reasons.most_common() if v})
    return out


def summarise(logs: str, raw: str | None = None) -> list[dict]:
    names = labels(os.path.join(logs, "ncu.log"))
    rows = details(os.path.join(logs, "ncu-details.csv"))
    raw = raw or os.path.join(logs, "ncu-raw.csv")
    pipe_rows = pipes(raw) if os.path.exists(raw) else [{} for _ in rows]
    stall_rows = stalls(os.path.join(logs, "ncu-source.csv"))
    out = []
    for i, row in enumerate(rows):
        grid = int(re.sub(r"\D.*", "", row.pop("grid").strip("( ")))
        threads = int(re.sub(r"\D.*", "", row.pop("block").strip("( ")))
        warps = grid * max(1, threads // 32)
        out.append({"launch": names[i] if i < len(names) else f"kernel {i}", **row,
                    "instructions_per_warp": round(row["instructions"] / warps, 1),
                    **pipe_rows[i], "stalls_pct": stall_rows[i] if i < len(stall_rows) else {}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("logs")
    ap.add_argument("--raw", default=None, help="ncu --page raw --csv export, if not LOGS/ncu-raw.csv")
    ap.add_argument("--out", default=None)
    ap.add_argument("--git", default=None, help="the commit profiled (PARITY_GIT_SHA of the run), kept in the JSON")
    a = ap.parse_args()
    rows = summarise(a.logs, a.raw)
    cols = ["duration_us", "registers", "occupancy_pct", "issue_busy_pct", "pipe_alu_pct", "pipe_fma_pct", "dram_pct",
            "instructions_per_warp"]
    print("| launch | " + " | ".join(cols) + " | top stalls (% of samples) |")
    print("|---" * (len(cols) + 2) + "|")
    for r in rows:
        top = ", ".join(f"{k} {v}" for k, v in list(r["stalls_pct"].items())[:4])
        print(f"| {r['launch']} | " + " | ".join(str(r.get(c, "")) for c in cols) + f" | {top} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"source": "Nsight Compute, --set full, --clock-control none (scripts/h200_run.sh ncu)",
                       "git_sha": a.git, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
