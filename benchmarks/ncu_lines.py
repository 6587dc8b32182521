"""Where a profiled kernel's warps spend their time, per source line: Nsight Compute's per-instruction
warp-state samples (the SASS source page that scripts/h200_run.sh's `ncu` step exports as CSV) mapped
to the kernel's source lines through a compile of the same configuration here (triton 3.6.0 on the
path, as benchmarks/sass_grouped compiles it; nvdisasm's line info). The compile must be the device's
instruction for instruction: every address's opcode is compared, and a mismatch stops the script.

At one row a program (small T) a kernel's time is one warp's latency, and its samples say where
that warp waits: the line, and why (long_scoreboard: a load's first use; wait: a fixed latency;
short_scoreboard: shared memory, MUFU or a shuffle; barrier ...).

python3 -m benchmarks.ncu_lines SOURCE.csv [--launch 0] [--model deepseek-v3] [--dtype bf16] [--block-t 1]
    [--top 40] [--route --T 1] [--out FILE.json]
(the grouped kernel as the plan launches it for one row a program unless --block-t; --route: route_kernel
at the launch table's tile for --T rows)
"""
from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import os
import sys


def samples(path: str, launch: int = 0) -> list[dict]:
    """Per instruction of one profiled launch (the launch-th) in an ncu source-page CSV: address
    (from the kernel's first instruction, as the cubin counts them), SASS text, all samples and the
    stall reasons' samples (the "(Not Issued)" columns are a subset of these and are left out)."""
    blocks = open(path).read().split('"Kernel Name",')[1:]
    if not launch < len(blocks):
        raise SystemExit(f"{path}: {len(blocks)} profiled launches, no launch {launch}")
    out = []
    for r in csv.DictReader(io.StringIO(blocks[launch].split("\n", 1)[1])):
        if not (r.get("Address") or "").startswith("0x"):
            continue
        stalls = {k[len("stall_"):]: int(v) for k, v in r.items()
                  if k and k.startswith("stall_") and "Not Issued" not in k and v not in ("", "-", None) and int(v)}
        out.append({"address": int(r["Address"], 16), "source": (r.get("Source") or "").strip(),
                    "samples": int(r.get("Warp Stall Sampling (All Samples)") or 0), "stalls": stalls})
    base = min((r["address"] for r in out), default=0)   # Nsight 2025.3 prints the loaded code's addresses
    for r in out:
        r["address"] -= base
    return out


def line_map(kernel) -> dict[int, tuple[str, str]]:
    """address -> (file:line, opcode) of a compiled kernel, from nvdisasm's line info."""
    from benchmarks import sass_grouped   # only here: importing it points Triton at a stand-in sm_90 driver
    with sass_grouped.cubin_file(kernel) as path:
        return {address: (where, op) for address, where, op in sass_grouped.line_info(path)}


def by_line(rows: list[dict], lines: dict[int, tuple[str, str]]) -> list[dict]:
    """Samples summed per source line, largest first, each with its share and its top stalls."""
    total = sum(r["samples"] for r in rows) or 1
    acc = collections.defaultdict(lambda: [0, collections.Counter(), 0])
    for r in rows:
        where, opcode = lines.get(r["address"], ("?", "?"))
        ran = next((t for t in r["source"].split() if not t.startswith("@")), "")
        if ran.split(".")[0] != opcode.split(".")[0]:   # the mnemonic: Nsight may print modifiers its own way
            raise SystemExit(f"address {r['address']:#x}: the device ran {r['source']!r}, this compile has "
                             f"{opcode}: not the same kernel (Triton version, options or source differ)")
        a = acc[where]
        a[0] += r["samples"]
        a[1].update(r["stalls"])
        a[2] += 1
    out = [{"line": where, "pct": round(100 * s / total, 1), "samples": s, "instructions": n,
            "stalls": dict(c.most_common(3))} for where, (s, c, n) in acc.items()]
    return sorted(out, key=lambda d: -d["samples"])


def past_first_exit(rows: list[dict], lines: dict[int, tuple[str, str]]) -> dict:
    """The samples at or after the kernel's first EXIT: where the common path ends, what a row
    taking a rarer branch (DeepSeek-V3's near-row reorder) adds to its program."""
    first = min((a for a, (_, op) in lines.items() if op == "EXIT"), default=0)
    after = sum(r["samples"] for r in rows if r["address"] >= first)
    return {"address": first, "samples": after,
            "pct": round(100 * after / max(1, sum(r["samples"] for r in rows)), 1)}


def main() -> None:
    from benchmarks import sass_grouped
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--launch", type=int, default=0, help="which profiled launch in the CSV (0: the first)")
    ap.add_argument("--model", default="deepseek-v3")
    ap.add_argument("--dtype", default="bf16", choices=sass_grouped.DTYPES)
    ap.add_argument("--block-t", type=int, default=1)
    ap.add_argument("--route", action="store_true", help="route_kernel (parity.routing.fused) at T=--T's tile")
    ap.add_argument("--T", type=int, default=1)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.route:
        kernel, _ = sass_grouped.compile_route(a.model, sass_grouped.DTYPES[a.dtype], a.T)
    else:
        kernel, _ = sass_grouped.compile_one(a.model, sass_grouped.DTYPES[a.dtype], a.block_t, False, True)
    rows = samples(a.csv, a.launch)
    where = line_map(kernel)
    lines = by_line(rows, where)
    total = sum(r["samples"] for r in rows)
    split = past_first_exit(rows, where)
    print(f"{total} samples over {len(rows)} instructions; {split['samples']} ({split['pct']}%) past the first EXIT "
          f"at {split['address']:#x} (a row's rare path when the common one ends there)")
    for d in lines[:a.top]:
        print(f"{d['pct']:5.1f}% {d['samples']:6d} {d['instructions']:4d} instr  {d['line']:28s} {d['stalls']}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"csv": os.path.basename(a.csv), "model": a.model, "dtype": a.dtype, "samples": total,
                       "past_first_exit": split, "lines": lines}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
