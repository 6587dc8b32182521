"""The ``parity`` command: sweep, report, tolerances, list (and bench).

Only the standard library is imported at the top: ``--device`` must reach ``PARITY_DEVICE`` before
``parity.device`` decides where kernels run (and before triton is imported).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad argument: printed as one line, exit code 2."""


def cmd_sweep(args) -> int:
    from parity import device, grids, routing, sweep
    from parity.provenance import Run
    from parity.render import render_all

    families = args.family or list(routing.FAMILIES)
    if args.candidate and not args.family:
        families = [routing.DEFAULT_FAMILY]
        print(f"parity sweep: --candidate without --family: judging the candidates as {routing.DEFAULT_FAMILY} "
              "routers (pass --family NAME for another family)", file=sys.stderr)
    if args.candidate and len(families) > 1:
        raise UsageError("--candidate: a routing kernel implements one family; pass one --family with it")
    fams = [routing.family(f) for f in families]
    grid = grids.grid(args.grid, families)
    dev = device.resolve(args.device)
    candidates = {f.name: sweep.kernels(f) for f in fams}
    for spec in args.candidate or []:
        candidates[families[0]][spec] = routing.load(spec)
    baselines = {}
    if args.baseline:
        for f in fams:
            known = [*sweep.references(f), "oracle"]
            for b in args.baseline:
                if b not in known:
                    raise UsageError(f"--baseline: expected one of {', '.join(known)} for {f.name}, got {b!r}")
            baselines[f.name] = list(args.baseline)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = Run()
    print(f"parity sweep: grid {grid.name} ({len(grid.cases)} cases) on {device.describe()['device']}; "
          + "; ".join(f"{f.name}: candidates {', '.join(candidates[f.name]) or 'none'}, baselines "
                      f"{', '.join(baselines.get(f.name, [*sweep.references(f), 'oracle']))}" for f in fams),
          file=sys.stderr)
    records = sweep.run(grid.cases, dev, out / "records.jsonl", candidates=candidates,
                        baselines=baselines or None, progress=not args.no_progress)
    meta = run.meta(grid=grid.name, grid_description=grid.description,
                    candidates={f: list(c) for f, c in candidates.items()}, argv=sys.argv[1:],
                    families={f.name: f.describe() for f in fams}, **rule_meta(args))
    summary = render_all(records, meta, out)
    return finish(summary, out)


def rule_meta(args) -> dict:
    """The verdict's rule (parity.verdict.Rule) as run metadata: the summary reads it from there."""
    from parity.verdict import Rule

    rule = Rule(args.precision, args.fail_on_special_values)
    return {"precision": rule.precision, "fail_on_special_values": rule.fail_on_special_values}


def finish(summary: dict, out: Path) -> int:
    v = summary["verdict"]
    print(f"report: {out / 'report.md'}  (summary.json, records.jsonl, plots beside it)")
    print(f"wall time: {summary['meta'].get('seconds')} s")
    rule = f"--precision {v.get('precision')}" + (", --fail-on-special-values" if v.get("fail_on_special_values") else "")
    told = set()
    for name, c in [(n, c) for fs in summary["families"].values() for n, c in fs["candidates"].items()]:
        print(f"  {name}: {'pass' if c['ok'] else 'FAIL'} (worst weight margin {c['margin']:.3g}"
              + (f"; {c['failed_cases']} of {c['cases']} cases fail" if not c["ok"] else "") + ")")
        for r in c["reasons"][:2]:
            print(f"      {r}")
        told.update(c["reasons"])
    if v["ok"]:
        print(f"verdict: PASS ({rule})")
        return EXIT_OK
    print(f"verdict: FAIL ({rule}; {len(v['reasons'])} reasons in report.md)")
    for r in [r for r in v["reasons"] if r not in told][:10]:
        print(f"  - {r}")
    return EXIT_FAIL


def cmd_report(args) -> int:
    import json

    from parity import sweep
    from parity.render import render_all

    out = Path(args.dir)
    records = sweep.records_file(out)
    if records is None:
        raise UsageError(f"report: no records.jsonl (or records.jsonl.gz) in {out}")
    meta = {}
    if (out / "summary.json").exists():
        meta = json.loads((out / "summary.json").read_text()).get("meta", {})
    if args.precision is not None:
        meta["precision"] = args.precision
    if args.fail_on_special_values is not None:
        meta["fail_on_special_values"] = args.fail_on_special_values
    summary = render_all(sweep.read_records(records), meta, out)
    return finish(summary, out)


def cmd_tolerances(args) -> int:
    import json

    from parity.formatting import fmt

    path = Path(args.dir) / "summary.json"
    if not path.exists():
        raise UsageError(f"tolerances: no summary.json in {args.dir} (run `parity sweep --out {args.dir}` first)")
    families = json.loads(path.read_text())["families"]
    print(f"{'family':12} {'dtype':9} {'pair':34} {'atol':>10} {'rtol':>10} {'held-out margin':>16}  pass")
    for name, fs in families.items():
        for dtype, pairs in sorted(fs["tolerances"].items()):
            for pair, t in sorted(pairs.items()):
                print(f"{name:12} {dtype:9} {pair:34} {fmt(t['atol']):>10} {fmt(t['rtol']):>10} "
                      f"{fmt(t['margin']):>16}  {'yes' if t['holdout_pass'] else 'NO'}")
    return EXIT_OK


def cmd_list(args) -> int:
    from parity import grids, inputs, routing
    from parity.tolerance import POLICIES, POLICY_NAMES, PRECISIONS

    print("families (--family):")
    for f in routing.FAMILIES.values():
        print(f"  {f.name}: {f.math}")
        print(f"    models: " + "; ".join(f"{m.name} (E={m.E}, K={m.K}"
                                         + "".join(f", {k}={v}" for k, v in m.settings.items()) + ")" for m in f.models))
        print(f"    implementations: " + ", ".join(
            f"{n} ({'kernel' if n in f.kernels else 'reference'}{', ' + f.arithmetic[n] if n in f.arithmetic else ''})"
            for n in f.implementations) + ", oracle (fp64)")
        print(f"    upstream-style view: {f.stand_in} against {f.reference}")
        print(f"    distributions: {', '.join(f.distributions)}")
        for n, m in f.mutants.items():
            print(f"    {n}: {m.description}")
    print("grids:")
    for name in grids.GRIDS:
        g = grids.grid(name)
        print(f"  {name} ({len(g.cases)} cases over every family): {g.description}")
    print("distributions:")
    for d in inputs.DISTRIBUTIONS.values():
        print(f"  {d.name}: {d.description}")
    print("policies (atol, rtol by logit dtype):")
    for p in POLICY_NAMES:
        print(f"  {p}: {POLICIES.get(p, 'derived from data per dtype and pair')}")
    print("precision classes (--precision):")
    for p, d in PRECISIONS.items():
        print(f"  {p}: {d}")
    return EXIT_OK


def cmd_bench(args) -> int:
    from parity import bench, device

    out = Path(args.out or ("reports/bench/cpu" if device.KIND == "cpu" else "reports/bench/latest"))
    only = tuple(n.strip() for n in args.impl.split(",") if n.strip()) if args.impl is not None else bench.IMPLS
    try:
        bench.check_impls(only)
    except ValueError as exc:
        raise UsageError(f"--impl: {exc}") from exc
    result = bench.run(out, progress=not args.no_progress, only=only)
    print(bench.markdown(result))
    print(f"bench: {out / 'bench.md'} (bench.json, bench.png beside it)")
    return EXIT_OK


def add_rule_arguments(p: argparse.ArgumentParser, *, default: bool) -> None:
    """--precision and --fail-on-special-values: the verdict's rule. ``default`` False (report):
    unset options keep the rule the sweep ran with."""
    from parity.tolerance import DEFAULT_PRECISION, PRECISIONS

    p.add_argument("--precision", choices=list(PRECISIONS), default=DEFAULT_PRECISION if default else None,
                   help="the arithmetic a candidate declares, whose envelope (made by trusted implementations "
                        f"only) judges it against the oracle (default {DEFAULT_PRECISION}"
                        + ("" if default else "; report: the sweep's") + "): "
                        + "; ".join(f"{k}: {v}" for k, v in PRECISIONS.items()))
    p.add_argument("--fail-on-special-values", action=argparse.BooleanOptionalAction, default=False if default else None,
                   help="fail a candidate whose convention for NaN/inf logits differs from the oracle's "
                        "(default: reported, not failed)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="parity", description="Numerical parity and tolerances for fused MoE routing kernels.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="run a grid, write records, summary, report and plots")
    s.add_argument("--grid", default="default", help="upstream | default | smoke")
    s.add_argument("--family", action="append", metavar="NAME",
                   help="a routing family to sweep (repeatable; default: every family, or gemma4 with --candidate): "
                        "gemma4 | mixtral | gpt_oss | deepseek_v3 | llama4")
    s.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    s.add_argument("--out", default="reports/latest")
    s.add_argument("--candidate", action="append", metavar="MODULE:FUNCTION",
                   help="add your own routing function (same contract as parity.routing) as a candidate")
    s.add_argument("--baseline", action="append", metavar="NAME",
                   help="a reference of the family, or oracle (default: every reference and the oracle; `parity list`)")
    s.add_argument("--no-progress", action="store_true")
    add_rule_arguments(s, default=True)
    s.set_defaults(fn=cmd_sweep)
    r = sub.add_parser("report", help="re-render report.md, summary.json and plots from DIR/records.jsonl")
    r.add_argument("dir")
    add_rule_arguments(r, default=False)
    r.set_defaults(fn=cmd_report)
    t = sub.add_parser("tolerances", help="print the derived tolerance table of DIR/summary.json")
    t.add_argument("dir")
    t.set_defaults(fn=cmd_tolerances)
    b = sub.add_parser("bench", help="time every implementation over T (on the CPU: a small interpreter run)")
    b.add_argument("--out", default=None, help="default: reports/bench/latest (GPU) or reports/bench/cpu")
    b.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    b.add_argument("--impl", default=None, metavar="A,B,...",
                   help="time only these (default: all of softmax_all, topk_softmax, compile, "
                        "compile-max-autotune, sort_baseline, fused); the torch.compile ones take minutes to build")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(fn=cmd_bench)
    ls = sub.add_parser("list", help="implementations, mutants, grids, distributions, policies")
    ls.set_defaults(fn=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "device", "auto") != "auto":
        os.environ["PARITY_DEVICE"] = args.device
    try:
        return args.fn(args)
    except UsageError as exc:
        print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # unknown grid, device not available, ...
        print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:
        print(f"parity: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
