"""Ablations of the fused kernels: each takes one stage's work out (its results are then wrong) so that the
GPU can time what that stage costs. Four switches that cut ALU-pipe instructions by the SASS count were each
slower on an H100 (reports/bench/NOTES.md, "Twenty-ninth round"): what a stage costs in time is measured by
taking it out, not read from instruction counts. Variants (``exact``) take work out where the results stay the
oracle's (tests run the fp32 kernel tests on each variant's tree), to be timed beside the ablations before one
becomes the kernel's.

    python3 scripts/ablate_kernels.py [--only NAME,...] [--dir va]

writes DIR/base/parity (a copy of this checkout's parity/) and DIR/ablate-<name>/parity or DIR/variant-<name>/parity
(the copy with the edits) and prints the AB_BASE / AB_NEW for `scripts/h200_run.sh ab`, which times them in turns
(benchmarks.probe_fused for route_kernel's shapes, benchmarks.probe_grouped for the grouped kernel's). The
probes record each row's ids against the oracle: an ablation's rows do not match, by design.
"""
from __future__ import annotations

import argparse
import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Ablation:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]   # (file under parity/routing, text found once there, its replacement)
    exact: bool = False   # a variant: less work where the results stay the oracle's (tested), timed as the ablations
    checks: tuple[str, ...] = ()   # an exact variant's: the pytest arguments its tree must pass (the CPU suite's)

    @property
    def folder(self) -> str:
        return f"{'variant' if self.exact else 'ablate'}-{self.name}"


GROUPED_UNFLAGGED = ("fused_grouped.py", "    flagged = hard | (closest <= error_bound(top, best >> COL_BITS, SHIFT))",
                     "    flagged = top != top")

ABLATIONS = [
    Ablation("route-no-rounds", "route_kernel without its selection: the ids from the rows' largest key and the slot "
             "(the keys, their maximum, the gather, softmax and stores stay)",
             (("fused.py",
               ("top_id = picks_by_word(packed, best, row_ptr, out_ok, slots, K, COL_BITS, NAN_MAG, "
                "lane_off[:, :, None])"),
               "top_id = (best[:, None] + slots[None, :]) & (BLOCK_E - 1)"),
              ("fused.py",
               ("top_id, order_in_doubt = picks_of(packed, key, best, cols, slots, row_ok, K, BLOCK_E, COL_BITS, "
                "CHECK_LOSS,\n                                          lane_off[:, :, None])"),
               "top_id = (best[:, None] + slots[None, :]) & (BLOCK_E - 1)\n        order_in_doubt = 0"))),
    Ablation("route-no-second-stage", "picks_by_word without its second stage: the K words' larger keys taken as the "
             "picks (no second read of the K words, no rounds over their 2K keys)",
             (("fused.py",
               ("    top, _, _ = pick_rounds(candidates, best, slots, K, K, COL_BITS, False)\n"
                "    return COL_MASK - (top & COL_MASK)"),
               "    return col"),)),
    Ablation("route-no-loss-check", "fp32 rows picked as if no key lost bits to its id: K rounds where K + 1 ran, no "
             "check of whether a row's truncated keys tie, no exact pass (16-bit keys lose none: their rows are "
             "the control)",
             (("fused.py",
               "picks_of(packed, key, best, cols, slots, row_ok, K, BLOCK_E, COL_BITS, CHECK_LOSS,",
               "picks_of(packed, key, best, cols, slots, row_ok, K, BLOCK_E, COL_BITS, False,"),)),
    Ablation("route-eager-dropped-bits", "fp32 rows' check of whether a key lost bits to its id taken in every "
             "block, as before 2026-12-07 (the default now asks only in a block where some row's truncated picks "
             "tie: on the H200 Gemma4 fp32 T = 250000 54.11 -> 52.59 µs); the same ids and weights, SASS sm_90 path "
             "578 -> 599, ALU 321 -> 346 a warp",
             (("fused.py",
               ("        in_doubt = ambiguous & row_ok\n"
                "        if tl.max(in_doubt.to(tl.int32), axis=0) > 0:\n"
                "            in_doubt = in_doubt & (tl.max(tl.max(key & COL_MASK, axis=2), axis=1) != 0)\n"),
               "        in_doubt = ambiguous & (tl.max(tl.max(key & COL_MASK, axis=2), axis=1) != 0) & row_ok\n"),),
             exact=True, checks=("tests/test_fused.py", "-k", "fp32", "tests/test_fp32_unchecked.py")),
    Ablation("grouped-no-sigmoid", "the grouped kernel's keys x / 4 + b: one FFMA where the sigmoid and the bias took "
             "an FMUL, two MUFU and two FADD (x / 4: the sigmoid's slope at 0, so that the keys' spread and the "
             "flags stay alike)",
             (("fused_grouped.py", "    sig = _sigmoid_of(x, NATIVE)\n", "    sig = x * 0.25\n"),)),
    Ablation("grouped-no-flags", "the grouped kernel's rows never flagged (only a NaN top would be): no near row's "
             "float64 pass, no whole row's; the reference for grouped-no-list-passes",
             (GROUPED_UNFLAGGED,)),
    Ablation("grouped-no-list-passes", "grouped-no-flags, and each group's third to fifth keys one more than its "
             "second, no sixth (its list never runs out): four of the group stage's six passes over the keys taken out",
             (GROUPED_UNFLAGGED,
              ("fused_grouped.py",
               ("            a3 = _group_after(a2, packed)\n            a4 = _group_after(a3, packed)\n"
                "            a5 = _group_after(a4, packed)\n            a6 = _group_after(a5, packed)"),
               ("            a3 = a2 + 1\n            a4 = a2 + 2\n            a5 = a2 + 3\n"
                "            a6 = tl.full(a2.shape, 2147483647, tl.int32)")))),
]


def check_ablations(ablations=ABLATIONS, root: Path = ROOT) -> None:
    """Every edit's text occurs exactly once in its file, and the names are unique."""
    names = [a.name for a in ablations]
    if len(set(names)) != len(names):
        raise ValueError("ablation names repeat")
    for a in ablations:
        for path, old, _ in a.edits:
            n = (root / "parity" / "routing" / path).read_text().count(old)
            if n != 1:
                raise ValueError(f"{a.name}: its text occurs {n} times in parity/routing/{path} "
                                 "(the source changed: update the ablation)")


def write_tree(directory: Path, ablation: Ablation | None = None, root: Path = ROOT) -> Path:
    """directory/parity: root's parity/ (no caches), with the ablation's edits where one is given."""
    if ablation:
        check_ablations([ablation], root)
    target = directory / "parity"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(root / "parity", target, ignore=shutil.ignore_patterns("__pycache__"))
    for path, old, new in ablation.edits if ablation else ():
        file = target / "routing" / path
        file.write_text(file.read_text().replace(old, new))
        ast.parse(file.read_text())   # a broken edit fails here, not after a device machine started
    return directory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated ablation names (default: all)")
    ap.add_argument("--dir", default="va", help="where the trees go (default va/, which travels to the device)")
    args = ap.parse_args()
    chosen = [a for a in ABLATIONS if not args.only or a.name in args.only.split(",")]
    if args.only and len(chosen) != len(args.only.split(",")):
        raise SystemExit(f"unknown ablation in {args.only}; known: {', '.join(a.name for a in ABLATIONS)}")
    check_ablations(chosen)
    out = Path(args.dir)
    base = write_tree(out / "base")
    news = [write_tree(out / a.folder, a) for a in chosen]
    for a in chosen:
        print(f"{a.name}: {a.what}")
    print(f'AB_BASE={base} AB_NEW="{" ".join(str(n) for n in news)}"')


if __name__ == "__main__":
    main()
