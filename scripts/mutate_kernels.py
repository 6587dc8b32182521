"""Mutation test of the fused kernels' source: does the CPU suite notice when a check in a kernel is
broken? Each mutant is one textual change to parity/routing (a bound weakened, a flag never raised,
a tie rule flipped); the script applies it, runs the tests that cover that kernel (Triton's
interpreter, as CI does), records whether any failed, and restores the file. A mutant that
survives is a check no test exercises (or a change that cannot alter a result: the table says
which, after reading it).

python3 scripts/mutate_kernels.py [--only NAME,...] [--out reports/kernel-mutants] [--workers 2] [--gpu]
--gpu: the tests run on CUDA, not in the interpreter (scripts/h200_run.sh step `mutants`): the
mutants that survive on the CPU because the interpreter computes exactly what the GPU approximates.

Nothing else may run the tests or edit parity/routing while it runs: it rewrites the kernel files.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPED_TESTS = ("tests/test_fused_grouped.py",)
ROUTE_TESTS = ("tests/test_fused.py", "tests/test_fused_families.py", "tests/test_kernel_parts.py")
WORD_TESTS = ("tests/test_word_maxima.py",)
FP32_KEY_TESTS = ("tests/test_fp32_unchecked.py",)
FIXED_REF_TESTS = ("tests/test_fixed_reference.py",)
BIAS_IN_REF_TESTS = ("tests/test_bias_in_ref.py",)
INVALID = ("CompilationError", "CompileTimeAssertionFailure", "SyntaxError", "NameError")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str          # relative to the repository root
    old: str           # occurs exactly once in the file
    new: str
    tests: tuple[str, ...]   # pytest paths or node ids
    what: str


def _m(name, path, old, new, tests, what):
    return Mutant(name, f"parity/routing/{path}", old, new, tuple(tests), what)


MUTANTS = [
    # the grouped sigmoid kernel (DeepSeek-V3, Kimi K2, GLM-4.5)
    _m("bound-without-sigmoid-term", "fused_grouped.py", "(2.0**-21 + 2.0**-22 + 2.0**-22 * mag)",
       "(2.0**-22 + 2.0**-22 * mag)", GROUPED_TESTS, "error_bound forgets the fast sigmoid's 2**-21"),
    _m("bound-halved", "fused_grouped.py", "return (2.0 * ((1 << SHIFT)", "return (1.0 * ((1 << SHIFT)",
       GROUPED_TESTS, "error_bound covers one key's error, not two"),
    _m("group-gap-never-flags", "fused_grouped.py",
       "group_doubt = _scores_near(cut, after, top, GROUP_BITS, SHIFT)", "group_doubt = cut < 0",
       GROUPED_TESTS, "groups whose scores are too close to order are not flagged"),
    _m("saturated-second-key-unflagged", "fused_grouped.py", "hard = hard | (tl.max(a2_or_nan, axis=1) >= SAT)",
       "hard = hard | (tl.max(a2_or_nan, axis=1) < 0)", GROUPED_TESTS,
       "a group's saturated second key (score unknown) is not flagged"),
    _m("fixed-ref-nan-unflagged", "fused_grouped.py", "a2_or_nan = tl.where(a1 < 0, SAT, a2)", "a2_or_nan = a2",
       FIXED_REF_TESTS, "under FIXED_REF, a NaN key (its group's smallest, negative) does not flag its row"),
    _m("saturated-pick-unflagged", "fused_grouped.py", "hard = hard | (best >= SAT)", "hard = hard | (best < 0)",
       GROUPED_TESTS, "a saturated (K+1)-th pick is not flagged"),
    _m("nan-top-unflagged", "fused_grouped.py", "hard = top != top", "hard = top < top", GROUPED_TESTS,
       "a NaN key does not send its row to the whole row's pass"),
    _m("near-picks-unflagged", "fused_grouped.py",
       "flagged = hard | (closest <= error_bound(top, best >> COL_BITS, SHIFT))", "flagged = hard | (closest < 0)",
       GROUPED_TESTS, "picks too close for the fp32 keys are not flagged"),
    _m("third-pick-never-near", "fused_grouped.py",
       "return _keys_near(kth, third, top, COL_BITS, SHIFT)", "return kth < kth", GROUPED_TESTS,
       "a (K+2)-th pick near the K-th is reordered among K + 1 picks, not routed whole"),
    _m("lists-never-run-out", "fused_grouped.py", "ran_out = chosen & (a6 <= best[:, None])",
       "ran_out = chosen & (a6 < 0)", GROUPED_TESTS, "a group's six-key list is trusted past its end"),
    _m("vector-lists-short", "fused_grouped.py", "_list_rounds(v1, v2, v3, v4, v5, v6, v7, v8, slots",
       "_list_rounds(v1, v2, v3, v4, v5, v6, v7, tl.full(v8.shape, 2147483647, tl.int32), slots", GROUPED_TESTS,
       "a one-row program's vector lists lose their last key"),
    _m("vector-sort-short", "fused_grouped.py", "    v5, v6 = _exchange(v5, v6)\n", "", GROUPED_TESTS,
       "the vectors' sorting network lacks its last exchange"),
    _m("vector-lists-unmasked", "fused_grouped.py", "v1 = tl.where(chosen_v != 0, v1, INT32_MAX)",
       "v1 = tl.where(chosen_v >= 0, v1, INT32_MAX)", GROUPED_TESTS,
       "a one-row program picks from the groups not chosen too"),
    _m("group-rank-cut-early", "fused_grouped.py", "tl.where(rank == TOPK_GROUP - 1, gpacked",
       "tl.where(rank == TOPK_GROUP - 2, gpacked", GROUPED_TESTS,
       "a one-row program's cut falls on the group before the TOPK_GROUP-th (one group too few)"),
    _m("group-rank-after-skips", "fused_grouped.py", "tl.where(rank == TOPK_GROUP, gpacked",
       "tl.where(rank == TOPK_GROUP + 1, gpacked", GROUPED_TESTS,
       "a one-row program's group doubt weighs the cut against the group after the next"),
    _m("f64-key-negatives", "fused_grouped.py",
       "return tl.where(mag > 0x7FF0000000000000, 0x7FFFFFFFFFFFFFFF, (mag ^ sign) - sign)",
       "return tl.where(mag > 0x7FF0000000000000, 0x7FFFFFFFFFFFFFFF, mag)", GROUPED_TESTS,
       "float64 keys order negative keys as positive ones"),
    _m("f64-ties-to-higher-id", "fused_grouped.py", "return _row_min3(tl.where(on_top, ids, NONE))",
       "return _row_max3(tl.where(on_top, ids, -1))", GROUPED_TESTS,
       "the float64 pass breaks ties to the higher (group) id"),
    _m("distance-unsaturated", "fused_grouped.py",
       "e = tl.minimum(e, SAT_FLOAT)", "e = e", GROUPED_TESTS,
       "far keys' distances leave [8, 16): their exponent spills into the packed key"),
    _m("distance-unsaturated-small-e", "fused_grouped.py",
       "d = tl.minimum(tl.fma(key, -float(1 << SHIFT), (top * float(1 << SHIFT))[:, None, None, None]),\n"
       "                           QMAX * 1.0)",
       "d = tl.fma(key, -float(1 << SHIFT), (top * float(1 << SHIFT))[:, None, None, None])", GROUPED_TESTS,
       "far keys' distances overflow into the id bits (E <= 128, the truncated fixed point)"),
    _m("distance-units-doubled", "fused_grouped.py", "DIST_SCALE: tl.constexpr = 2.0 ** (SHIFT - 20)",
       "DIST_SCALE: tl.constexpr = 2.0 ** (SHIFT - 19)", GROUPED_TESTS,
       "the distances count half units, so the error bound reads them twice too far apart"),
    _m("weights-not-renormalised", "fused_grouped.py", "ACCURATE_EXP, 1, RENORM)  # 1: SIGMOID",
       "ACCURATE_EXP, 1, False)  # 1: SIGMOID", GROUPED_TESTS, "the sigmoid weights are not renormalised"),
    _m("speculated-reorder-dropped", "fused_grouped.py", "chosen_near = near[:, None]",
       "chosen_near = near[:, None] & (slots < 0)[None, :]", GROUPED_TESTS,
       "one row a program: the reordered picks are computed but not stored"),
    _m("pair-test-without-bound", "fused_grouped.py", "(diff > bound).to(tl.int32), 1)",
       "(diff > 0.0).to(tl.int32), 1)", GROUPED_TESTS,
       "the pair test takes the sign of its fp32 difference as proof, ties and all"),
    _m("pair-test-bound-tiny", "fused_grouped.py", "rel = PAIR_REL + (tl.abs(xi) + tl.abs(xj)) * 2.0**-23 + \\",
       "rel = 2.0**-40 + 0.0 * (tl.abs(xi) + tl.abs(xj)) + 0.0 * \\", GROUPED_TESTS,
       "the pair test's relative bound (all three terms) at 2**-40, below what fp32 arithmetic can hold"),
    _m("pair-test-last-pair-skipped", "fused_grouped.py",
       "nxt = tl.where(slots[None, :] == K - 1, after[:, None], nxt)", "nxt = tl.where(slots[None, :] == K - 1, 0, nxt)",
       GROUPED_TESTS, "the pair test compares the K-th pick with expert 0, not the (K+1)-th"),
    _m("pair-test-taylor-dropped", "fused_grouped.py", "g = tl.where(small, -d * taylor, 1.0 - e)",
       "g = tl.where(small, -d, 1.0 - e)", GROUPED_TESTS, "1 - e**d for small d taken to first order"),
    _m("pair-test-proven-unstored", "fused_grouped.py",
       "in_order[:, None] & (slots < K)[None, :], slots,\n                          weights_ptr, ids_ptr, K)",
       "in_order[:, None] & (slots < 0)[None, :], slots,\n                          weights_ptr, ids_ptr, K)",
       GROUPED_TESTS, "rows the pair test proves are never stored"),
    _m("group-test-proven-unsettled", "fused_grouped.py", "proven, hard, top_packed, best,",
       "proven & (proven == 0), hard, top_packed, best,", GROUPED_TESTS,
       "rows whose groups the group test proves leave the whole row's pass but are never settled"),
    _m("group-test-without-bound", "fused_grouped.py", "(tl.sum(diff, axis=1) > tl.sum(bound, axis=1))",
       "(tl.sum(diff, axis=1) > 0.0)", GROUPED_TESTS, "the group test takes its scores' fp32 difference as proof"),
    _m("group-test-next-tops-unchecked", "fused_grouped.py",
       "ok = doubt & (_keys_near(n2, n3, top, COL_BITS, SHIFT) == 0)", "ok = doubt",
       GROUPED_TESTS, "the group test trusts the next group's fp32 top two"),
    _m("group-test-group-below-unchecked", "fused_grouped.py",
       "ok = ok & (_scores_near(cut, after2, top, GROUP_BITS, SHIFT) == 0)", "ok = ok",
       GROUPED_TESTS, "the group test ignores a third group near the cut from below"),
    _m("group-test-group-above-unchecked", "fused_grouped.py",
       "ok = ok & (_scores_near(before, after, top, GROUP_BITS, SHIFT) == 0)", "ok = ok",
       GROUPED_TESTS, "the group test ignores a chosen group near the next one from above"),
    # route_kernel (Gemma4, Mixtral/Qwen, GPT-OSS, Llama 4) and the shared parts
    _m("negative-nan-missed", "kernel_parts.py",
       "return (tl.max(best, axis=0) > inf_top) | (tl.min(tl.min(tl.min(packed, axis=2), axis=1), axis=0) < below_neg_inf)",
       "return tl.max(best, axis=0) > inf_top", ROUTE_TESTS, "bf16/fp16 blocks: a negative NaN goes unnoticed"),
    _m("padding-reads-zero", "kernel_parts.py", "raw = tl.where(col_ok, raw.to(tl.int32), NAN_MAG - 0x8000)",
       "raw = tl.where(col_ok, raw.to(tl.int32), 0)", ROUTE_TESTS, "bf16/fp16 padding columns read as +0.0, not -inf"),
    _m("set-in-doubt-ignored", "fused.py", "if set_in_doubt > 0:", "if set_in_doubt > 1:", ROUTE_TESTS,
       "fp32: a truncated tie across the K-th place keeps the fast picks"),
    _m("order-in-doubt-ignored", "fused.py",
       "order_in_doubt = tl.max(in_doubt.to(tl.int32), axis=0) > set_in_doubt",
       "order_in_doubt = tl.max(in_doubt.to(tl.int32), axis=0) > 1", ROUTE_TESTS,
       "fp32: truncated ties inside the K stay in id order"),
    _m("ties-never-seen", "fused.py", "tie = (best >> COL_BITS) == (prev >> COL_BITS)", "tie = best == prev",
       ROUTE_TESTS, "fp32: consecutive picks sharing a truncated key are not noticed"),
    _m("pairwise-rank-unmasked", "fused.py", "rank = tl.sum((j_first & (slots < K)[None, None, :]).to(tl.int32), axis=2)",
       "rank = tl.sum(j_first.to(tl.int32), axis=2)", ROUTE_TESTS,
       "one row a program: the all-pairs rank counts the slots past K"),
    _m("ties-to-higher-id", "kernel_parts.py", "return (key_a > key_b) | ((key_a == key_b) & (id_a < id_b))",
       "return (key_a > key_b) | ((key_a == key_b) & (id_a > id_b))", ROUTE_TESTS + GROUPED_TESTS,
       "ranked picks (reorders, fp32 ties) break ties to the higher id"),
    _m("shifted-exp-uncorrected", "kernel_parts.py", "return e + e * d_err", "return e", ROUTE_TESTS,
       "softmax: the rounding of v - max is not carried into exp"),
    _m("denominator-nan-guard-dropped", "kernel_parts.py",
       'return tl.where(first - first == 0.0, total, float("nan"))', "return total", ROUTE_TESTS,
       "softmax over all E: a row of NaN, +inf or -inf gets finite weights"),
    _m("denominator-residue-kept", "kernel_parts.py", "        total = tl.fma(total, t * (0.5 * t - 1.0), total)\n", "",
       ROUTE_TESTS, "softmax over all E: the row's shift residue r (first log2e - c) is not taken off the sum"),
    _m("denominator-far-rows-shifted", "kernel_parts.py", "moderate = tl.abs(first) < 65536.0",
       "moderate = tl.abs(first) < float(\"inf\")", ROUTE_TESTS,
       "softmax over all E: rows beyond 2**16 keep c = first log2e (residue up to ulp(c), terms past 1)"),
    _m("denominator-pair-halved", "kernel_parts.py", "q = ((e_even + e_odd) * (2.0**F)).to(tl.int64)",
       "q = ((e_even + e_even) * (2.0**F)).to(tl.int64)", ROUTE_TESTS,
       "softmax over all E: a pair's odd column counted as its even one"),
    _m("zeros-untied", "kernel_parts.py", "    return ((bits & MAG_MASK) ^ sign) - sign\n",
       "    return (bits & MAG_MASK) ^ sign\n", ROUTE_TESTS + FP32_KEY_TESTS,
       "-0.0 ranks below +0.0 instead of tying it"),
    _m("f64-scale-in-fp32", "kernel_parts.py", "return (probs.to(tl.float64) * scale).to(tl.float32)",
       "return probs * scale.to(tl.float32)",
       ROUTE_TESTS + ("tests/test_properties.py::test_float64_scale_beyond_float32_range",),
       "a float64 scale is rounded to fp32 before the product"),
    _m("sum-by-layout", "kernel_parts.py", "    for level in tl.static_range(LOG2_BLOCK_K):\n"
       "        e = tl.sum(tl.reshape(e, [BLOCK_T, BLOCK_K >> (level + 1), 2]), axis=2)\n"
       "    return tl.reshape(e, [BLOCK_T])", "    return tl.sum(e, axis=1)", ROUTE_TESTS,
       "the weights' sums follow the layout (their bits may change with the tile)"),
    _m("aligned-mask-one-past", "kernel_parts.py", "return (tl.arange(0, BLOCK_E // VEC) * VEC)[None, :, None] < E",
       "return (tl.arange(0, BLOCK_E // VEC) * VEC)[None, :, None] <= E", ROUTE_TESTS,
       "aligned rows: the vector starting at E is read as part of the row"),
    # route_kernel's selection through each word's larger key (fused.picks_by_word; on at WORD_MAXIMA_SHAPES)
    _m("word-partners-dropped", "fused.py", "tl.where(slot_ok, partner, -2147483647 - 1))",
       "tl.where(slot_ok, partner * 0 - 2147483647 - 1, -2147483647 - 1))", WORD_TESTS,
       "picks_by_word: the chosen words' smaller keys never compete"),
    _m("word-partner-wrong-half", "fused.py", "tl.where((col & 1) == 1, w << 16, w)", "tl.where((col & 1) == 1, w, w << 16)",
       WORD_TESTS, "picks_by_word: a pick's partner is read from its own half"),
    _m("word-slots-past-k-unmasked", "fused.py", "tl.where(slot_ok, top, -2147483647 - 1)", "top", WORD_TESTS,
       "picks_by_word: the slots past K compete as +0.0 keys"),
    _m("word-nan-pass-skipped", "fused.py", "                packed = tl.max(word_pair, axis=3)",
       "                packed = packed", WORD_TESTS, "picks_by_word: a block holding a NaN keeps its unchecked keys"),
    _m("word-partner-id", "fused.py", "| (COL_MASK - (col ^ 1))", "| (COL_MASK - col)", WORD_TESTS,
       "picks_by_word: a partner carries its pick's id"),
    # route_kernel's fp32 keys without the NaN select (fused.FP32_UNCHECKED; on)
    _m("fp32-nan-pass-skipped", "fused.py", "            key = fp32_keys_on_top(key)\n", "", FP32_KEY_TESTS,
       "fp32, unchecked keys: a block holding a NaN keeps them"),
    _m("fp32-small-positive-nan", "kernel_parts.py", "return tl.where((key > 0x7F800000) | (key < -0x7F800000)",
       "return tl.where((key > 0x7F800001) | (key < -0x7F800000)", FP32_KEY_TESTS,
       "fp32, unchecked keys: a NaN of the smallest payload passes for +inf"),
    _m("fp32-small-negative-nan", "kernel_parts.py", "return tl.where((key > 0x7F800000) | (key < -0x7F800000)",
       "return tl.where((key > 0x7F800000) | (key < -0x7F800001)", FP32_KEY_TESTS,
       "fp32, unchecked keys: a negative NaN of the smallest payload passes for -inf"),
    _m("fp32-repacked-ids-lost", "fused.py", "packed = (key & ~COL_MASK) | (packed & COL_MASK)",
       "packed = key", FP32_KEY_TESTS, "fp32, unchecked keys: the NaN pass packs the keys without their ids"),
    # the distances from each expert's offset below the fixed reference (fused_grouped.BIAS_IN_REF: bf16 by default)
    _m("offsets-half-scale", "fused_grouped.py", "(ref.double() - b.double()) * 2.0 ** (shift - 20)",
       "(ref.double() - b.double()) * 2.0 ** (shift - 21)", BIAS_IN_REF_TESTS,
       "bias in the reference: the bias weighs half what the sigmoid does"),
    _m("offsets-wide-unsaturated", "fused_grouped.py",
       "e = tl.minimum(_distance_floats(key, top, DIST_SCALE), SAT_FLOAT, propagate_nan=tl.PropagateNan.ALL)",
       "e = _distance_floats(key, top, DIST_SCALE)", BIAS_IN_REF_TESTS,
       "bias in the reference: a bias too wide, its far keys' distances not saturated"),
]


def check_mutants(mutants=MUTANTS, root: Path = ROOT) -> None:
    """Every mutant's text occurs exactly once in its file, and the names are unique."""
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        raise ValueError("mutant names repeat")
    for m in mutants:
        n = (root / m.path).read_text().count(m.old)
        if n != 1:
            raise ValueError(f"{m.name}: its text occurs {n} times in {m.path} (the source changed: update the mutant)")


def run_mutant(m: Mutant, root: Path = ROOT, workers: int = 2, timeout: int = 900, gpu: bool = False) -> dict:
    """Apply m, run its tests (stop at the first failure), restore the file; the outcome: killed
    (a test failed), survived (all passed), invalid (the mutant does not compile) or timeout."""
    path = root / m.path
    source = path.read_text()
    env = {**os.environ, "PYTHONPATH": str(root)}
    if gpu:
        env.pop("TRITON_INTERPRET", None)
    else:
        env["TRITON_INTERPRET"] = "1"
    parallel = ["-n", str(workers)] if workers > 1 else []
    cmd = [sys.executable, "-m", "pytest", *parallel, "-x", "-q", "-p", "no:cacheprovider", *m.tests]
    t0 = time.time()
    try:
        path.write_text(source.replace(m.old, m.new, 1))
        try:
            done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
            out = done.stdout + done.stderr
            if done.returncode == 0:
                outcome = "survived"
            elif any(s in out for s in INVALID):
                outcome = "invalid"
            else:
                outcome = "killed"
        except subprocess.TimeoutExpired:
            out, outcome = "", "timeout"
    finally:
        path.write_text(source)
    failed = [ln.split(" - ")[0].removeprefix("FAILED ") for ln in out.splitlines() if ln.startswith("FAILED ")]
    return {**asdict(m), "outcome": outcome, "seconds": round(time.time() - t0, 1), "first_failure": failed[:1],
            "tail": out.strip().splitlines()[-1:] if out else []}


def markdown(rows: list[dict], meta: dict) -> str:
    killed = sum(r["outcome"] == "killed" for r in rows)
    out = ["# Kernel source mutants", "",
           f"git {meta['git']}, triton {meta['triton']}, torch {meta['torch']}, {meta['when']}; tests in "
           f"{meta.get('where', 'the interpreter')} (scripts/mutate_kernels.py). {killed} of {len(rows)} mutants killed. Why each survivor "
           "survives (GPU-only terms, checks that cover each other): reports/bench/NOTES.md, \"Ninth round\".", "",
           "| mutant | file | what it breaks | outcome | first failing test | s |", "|---|---|---|---|---|---|"]
    for r in rows:
        first = r["first_failure"][0] if r["first_failure"] else ""
        out.append(f"| {r['name']} | {Path(r['path']).name} | {r['what']} | **{r['outcome']}** | {first} | {r['seconds']} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated mutant names (default: all)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "kernel-mutants"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--gpu", action="store_true", help="run the tests on CUDA, not in the interpreter")
    a = ap.parse_args()
    check_mutants()
    chosen = [m for m in MUTANTS if not a.only or m.name in a.only.split(",")]
    if not chosen:
        raise SystemExit(f"no mutant named {a.only!r}; names: {', '.join(m.name for m in MUTANTS)}")
    import torch
    import triton
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    git += " with uncommitted changes" if dirty else ""
    meta = {"git": git, "triton": triton.__version__, "torch": torch.__version__,
            "where": "CUDA (" + torch.cuda.get_device_name() + ")" if a.gpu else "Triton's interpreter",
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    rows = []
    for i, m in enumerate(chosen, 1):
        rows.append(run_mutant(m, workers=a.workers, gpu=a.gpu))
        print(f"[{i}/{len(chosen)}] {m.name}: {rows[-1]['outcome']} ({rows[-1]['seconds']} s)", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutants.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (out / "mutants.md").write_text(markdown(rows, meta))
    print((out / "mutants.md").read_text())


if __name__ == "__main__":
    main()
