"""The ``parity`` command: sweep, report, tolerances, diff, fuzz, impact, list (and bench).

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


SHAPE_OPTIONS = ("T", "E", "K", "dtype", "dist", "seeds", "model")


def _families(values: list[str] | None, default: list[str]) -> list[str]:
    """--family's names (repeatable, each comma-separated), each a known family (ValueError naming
    it otherwise), or ``default`` when none is given."""
    from parity import routing

    names = [f for item in values or [] for f in _list("family", item)] or default
    for f in names:
        routing.family(f)
    return names


def _list(option: str, text: str | None, kind=str):
    """A comma-separated option's values; UsageError naming the option."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        if not all(parts):
            raise ValueError
        return [kind(p) for p in parts]
    except ValueError:
        what = "integers" if kind is int else "names"
        raise UsageError(f"--{option}: expected {what} separated by commas, got {text!r}") from None


def sweep_grid(args, families: list[str]):
    """The grid a sweep runs: a named one, a TOML file's, or the shapes given on the command line."""
    from parity import grids

    shape = {k: getattr(args, k) for k in SHAPE_OPTIONS}
    given = [f"--{k}" for k, v in shape.items() if v is not None]
    if args.grid_file and (given or args.grid):
        raise UsageError(f"--grid-file: give the grid file alone, not with {', '.join(given) or '--grid'}")
    if given and args.grid:
        raise UsageError(f"--grid: give a named grid or shapes ({', '.join(given)}), not both")
    if args.grid_file:
        return grids.from_toml(args.grid_file, families)
    if given:
        if shape["T"] is None:
            raise UsageError(f"--T: needed with {', '.join(given)} (the numbers of tokens, e.g. --T 1,2048)")
        ints = {k: _list(k, shape[k], int) for k in ("T", "seeds")}
        single = {}
        for k in ("E", "K"):
            v = _list(k, shape[k], int)
            if v is not None and len(v) != 1:
                raise UsageError(f"--{k}: expected one integer (one shape per sweep; a grid file holds several), "
                                 f"got {shape[k]!r}")
            single[k] = v[0] if v else None
        return grids.custom(families, **ints, **single, dtype=_list("dtype", shape["dtype"]),
                            dist=_list("dist", shape["dist"]), model=shape["model"])
    return grids.grid(args.grid or "default", families)


def load_candidates(specs: list[str], signatures: list[str] | None) -> dict:
    """--candidate module:function, each through its --signature (one for all, or one each)."""
    from parity import routing, signatures as sigs

    signatures = signatures or ["parity"]
    if len(signatures) not in (1, len(specs)):
        raise UsageError(f"--signature: expected one (for every candidate) or one per --candidate ({len(specs)}), "
                         f"got {len(signatures)}")
    if not specs and signatures != ["parity"]:
        raise UsageError("--signature: applies to --candidate; none given")
    out = {}
    for spec, sig in zip(specs, signatures * len(specs) if len(signatures) == 1 else signatures):
        try:
            out[spec] = sigs.wrap(routing.load(spec), sig, spec)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return out


def cmd_sweep(args) -> int:
    from parity import device, routing, sweep
    from parity.provenance import Run
    from parity.render import render_all

    families = _families(args.family, list(routing.FAMILIES))
    if args.candidate and not args.family:
        families = [routing.DEFAULT_FAMILY]
        print(f"parity sweep: --candidate without --family: judging the candidates as {routing.DEFAULT_FAMILY} "
              "routers (pass --family NAME for another family)", file=sys.stderr)
    if args.candidate and len(families) > 1:
        raise UsageError("--candidate: a routing kernel implements one family; pass one --family with it")
    fams = [routing.family(f) for f in families]
    grid = sweep_grid(args, families)
    dev = device.resolve(args.device)
    candidates = {f.name: sweep.kernels(f) for f in fams}
    candidates[families[0]].update(load_candidates(args.candidate or [], args.signature))
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

    rule = Rule(args.precision, args.fail_on_special_values, args.require_batch_invariance)
    return {"precision": rule.precision, "fail_on_special_values": rule.fail_on_special_values,
            "require_batch_invariance": rule.require_batch_invariance}


def finish(summary: dict, out: Path) -> int:
    v = summary["verdict"]
    print(f"report: {out / 'report.md'}  (summary.json, records.jsonl, plots beside it)")
    print(f"wall time: {summary['meta'].get('seconds')} s")
    rule = (f"--precision {v.get('precision')}" + (", --fail-on-special-values" if v.get("fail_on_special_values") else "")
            + (", --require-batch-invariance" if v.get("require_batch_invariance") else ""))
    told = set()
    for name, c in [(n, c) for fs in summary["families"].values() for n, c in fs["candidates"].items()]:
        print(f"  {name}: {'pass' if c['ok'] else 'FAIL'} (worst weight margin {c['margin']:.3g}; "
              f"batch-invariant: {c.get('batch_invariant', 'untested')}"
              + (f"; {c['failed_cases']} of {c['cases']} cases fail" if not c["ok"] else "") + ")")
        for r in c["reasons"][:2]:
            print(f"      {r}")
        told.update(c["reasons"])
    for name, u in [(n, u) for fs in summary["families"].values() for n, u in fs.get("unsupported", {}).items()]:
        print(f"  {name}: does not compute {len(u['cases'])} of {u['of']} cases ({'; '.join(u['reasons'][:2])})")
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
    if args.require_batch_invariance is not None:
        meta["require_batch_invariance"] = args.require_batch_invariance
    summary = render_all(sweep.read_records(records), meta, out)
    return finish(summary, out)


def cmd_tolerances(args) -> int:
    import json

    from parity.formatting import fmt

    path = Path(args.dir) / "summary.json"
    if not path.exists():
        raise UsageError(f"tolerances: no summary.json in {args.dir} (run `parity sweep --out {args.dir}` first)")
    summary = json.loads(path.read_text())
    if args.emit == "package":
        from parity import shipped

        target = shipped.write(summary, Path(args.out) if args.out else shipped.PATH)
        print(f"tolerances: {target} (from {path}: {shipped.provenance(shipped.from_summary(summary))})")
        return EXIT_OK
    if args.emit == "pytest":
        from parity.emit import pytest_module

        text = pytest_module(summary, args.family, args.precision, args.candidate, args.signature)
        if args.out:
            Path(args.out).write_text(text)
            print(f"tolerances: {args.out} (run it with pytest)", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return EXIT_OK
    print(f"{'family':12} {'dtype':9} {'pair':34} {'atol':>10} {'rtol':>10} {'held-out margin':>16}  pass")
    for name, fs in summary["families"].items():
        for dtype, pairs in sorted(fs["tolerances"].items()):
            for pair, t in sorted(pairs.items()):
                print(f"{name:12} {dtype:9} {pair:34} {fmt(t['atol']):>10} {fmt(t['rtol']):>10} "
                      f"{fmt(t['margin']):>16}  {'yes' if t['holdout_pass'] else 'NO'}")
    return EXIT_OK


def cmd_fuzz(args) -> int:
    from parity import device, fuzz, routing
    from parity.numerics import DTYPES
    from parity.progress import Progress
    from parity.provenance import Run

    families = _families(args.family, list(routing.FAMILIES))
    dtypes = _list("dtype", args.dtype) or ["bfloat16"]
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise UsageError(f"--dtype: expected names from {', '.join(DTYPES)}, got {bad[0]!r}")
    if args.rows < 1:
        raise UsageError(f"--rows: expected at least 1, got {args.rows}")
    if args.chunk is not None and args.chunk < 1:
        raise UsageError(f"--chunk: expected at least 1, got {args.chunk}")
    dev = device.resolve(args.device)
    run = Run()
    results = []
    wanted = _list("model", args.model)
    runs = []
    for f in families:
        fam = routing.family(f)
        if args.impl and args.impl not in routing.names(f):
            raise UsageError(f"--impl: expected one of {', '.join(routing.names(f))} for {f}, got {args.impl!r}")
        if wanted == ["all"]:
            models = [m.name for m in fam.models]
        elif wanted:
            models = [m.name for m in fam.models if m.name in wanted]
        else:
            models = [fam.model(None).name]
        runs += [(d, f, m) for m in models for d in dtypes]
    known = {m.name for f in families for m in routing.family(f).models}
    unknown = [m for m in wanted or [] if m != "all" and m not in known]
    if unknown:
        raise UsageError(f"--model: expected 'all' or models of {', '.join(families)} ({', '.join(sorted(known))}), "
                         f"got {unknown[0]!r}")
    chunk = args.chunk or fuzz.DEFAULT_CHUNK[dev.type]
    sizes = fuzz.table_sizes(chunk) if args.every_tile else [chunk]
    runs.sort(key=lambda r: dtypes.index(r[0]))      # every family in the first dtype first
    for d, f, m in runs:
        bar = Progress(fuzz.launches(args.rows, sizes), enabled=not args.no_progress)
        label = f"{f} {m} {d}"
        bar.show(label)
        r = fuzz.fuzz(f, args.rows, dtype=d, seed=args.seed, impl=args.impl, model=m, chunk=chunk, device=dev,
                      exact=args.exact, sizes=sizes, progress=lambda res: bar.advance(f"{label}: {res.rows:,} rows, "
                                                                                      f"{res.counted()} differences"))
        bar.close()
        print(r.line(), flush=True)
        results.append(r)
        if args.out:     # after every run: a run cut short by a time limit keeps what it measured
            fuzz.write(results, Path(args.out), run.meta(argv=sys.argv[1:], rows_per_run=args.rows, seed=args.seed))
    if args.out:
        print(f"fuzz: {Path(args.out) / 'fuzz.md'} (fuzz.json, cases/ beside it)")
    total = sum(r.rows for r in results)
    diffs = sum(r.differences for r in results)
    print(f"fuzz: {total:,} rows over {len(results)} runs, {diffs} differences against the oracle")
    return EXIT_FAIL if diffs else EXIT_OK


def cmd_impact(args) -> int:
    from parity import device, impact, impact_report, routing
    from parity.numerics import DTYPES
    from parity.progress import Progress
    from parity.provenance import Run

    families = _families(args.family, [routing.DEFAULT_FAMILY])
    if args.dtype not in DTYPES:
        raise UsageError(f"--dtype: expected one of {', '.join(DTYPES)}, got {args.dtype!r}")
    for name in ("T", "hidden", "intermediate", "chunk"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name}: expected at least 1, got {v}")
    pairs_of = {}
    for f in families:
        if args.pairs:
            pairs = []
            for item in _list("pairs", args.pairs):
                cand, _, base = item.partition(":")
                base = base or "oracle"
                for n in (cand, base):
                    if n != "oracle" and n not in routing.names(f):
                        raise UsageError(f"--pairs: {n!r} is not an implementation of {f} "
                                         f"(known: oracle, {', '.join(routing.names(f))})")
                pairs.append((cand, base))
        else:
            pairs = impact.default_pairs(f)
        pairs_of[f] = pairs
    if args.model:
        routing.family(families[0]).model(args.model)
    dev = device.resolve(args.device)
    run = Run()
    results = []
    for f in families:
        m = routing.family(f).model(args.model if len(families) == 1 else None)
        bar = Progress(1, enabled=not args.no_progress)
        label = f"impact {f} ({m.name}) T={args.T:,}"
        bar.show(label)

        def step(done, total, bar=bar, label=label):
            bar.total = total
            bar.advance(f"{label}: chunk {done}/{total}")
        r = impact.measure(f, pairs_of[f], model=m.name, T=args.T, dtype=args.dtype, dist=args.dist, seed=args.seed,
                           layer=args.layer, hidden=args.hidden, intermediate=args.intermediate, device=dev,
                           chunk=args.chunk, progress=step)
        bar.close()
        results.append(r)
        for p in r.pairs:
            worst = max(p.effect, key=lambda k: p.effect[k].get("q50", 0.0)) if p.effect else None
            head = (f"{worst} rows {p.effect[worst]['q50']:.3g}x the noise (median)" if worst else "no rows")
            print(f"impact {f} {p.candidate} vs {p.baseline}: expert set changes in {p.expert_set_changed:.3%} of rows; "
                  f"largest effect: {head}")
        if r.crossover_dweight is not None:
            print(f"impact {f}: weights-only divergence reaches the layer's own {args.dtype} noise at |Δw| ≈ "
                  f"{r.crossover_dweight:.3g} ({r.seconds} s)")
    decoded, info = None, None
    if args.tiny_model:
        from parity import impact_model

        info = {"layers": 2, "hidden": 64, "E": 16, "K": 4, "prompts": 8, "steps": args.tiny_model}
        try:
            decoded = impact_model.decode(impact_model.default_implementations(), steps=args.tiny_model, seed=args.seed,
                                          device=dev, prompts=info["prompts"], E=info["E"], K=info["K"],
                                          layers=info["layers"], hidden=info["hidden"])
        except RuntimeError as e:
            raise UsageError(f"--tiny-model: {e}") from None
        for d in decoded:
            changed = [s for s in d.first_token_change if s is not None]
            print(f"impact tiny model ({d.implementation}): token agreement {d.token_agreement:.1%}, tokens change in "
                  f"{len(changed)} of {d.prompts} prompts" + (f" (first at step {min(changed)})" if changed else ""))
    path = impact_report.write(results, Path(args.out), run.meta(argv=sys.argv[1:]), with_plots=not args.no_plots,
                               decoded=decoded, decode_info=info)
    print(f"impact: {path}")
    return EXIT_OK


def cmd_diff(args) -> int:
    from parity import bench_diff, diff

    benches = [bench_diff.holds_bench(p) for p in (args.old, args.new)]
    if any(benches) and not all(benches):
        bench_dir, other = (args.old, args.new) if benches[0] else (args.new, args.old)
        raise UsageError(f"diff: {bench_dir} holds a benchmark (bench.json) and {other} none: give two `parity bench` "
                         "outputs, or two sweeps")
    if all(benches):
        impls = None if args.impl == "all" else tuple(_list("impl", args.impl))
        try:
            old, new = bench_diff.Bench.read(args.old), bench_diff.Bench.read(args.new)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        result = bench_diff.diff(old, new, impls)
        print(bench_diff.render(result, old, new))
        if args.plot:
            bench_diff.plot(result, old, new, Path(args.plot))
            print(f"plot: {args.plot}")
    else:
        old, new = diff.Sweep.read(args.old), diff.Sweep.read(args.new)
        result = diff.diff(old, new)
        print(diff.render(result, old.path, new.path))
    return EXIT_FAIL if result["worse"] else EXIT_OK


def cmd_list(args) -> int:
    from parity import grids, inputs, routing
    from parity.tolerance import POLICIES, POLICY_NAMES, PRECISIONS

    print("families (--family):")
    for f in routing.FAMILIES.values():
        print(f"  {f.name}: {f.math}")
        print("    models: " + "; ".join(f"{m.name} (E={m.E}, K={m.K}"
                                         + "".join(f", {k}={v}" for k, v in m.settings.items()) + ")" for m in f.models))
        print("    implementations: " + ", ".join(
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
    from parity.signatures import SIGNATURES

    print("signatures (--signature; parity.testing's signature=):")
    for name, (d, _) in SIGNATURES.items():
        print(f"  {name}: {d}")
    print("  module:function: an adapter of yours (takes the kernel, returns fn(gating_output, topk, argument))")
    return EXIT_OK


def cmd_bench(args) -> int:
    from parity import bench, device, routing

    out = Path(args.out or ("reports/bench/cpu" if device.KIND == "cpu" else "reports/bench/latest"))
    only = tuple(n.strip() for n in args.impl.split(",") if n.strip()) if args.impl is not None else bench.ROLES
    try:
        bench.check_impls(only)
    except ValueError as exc:
        raise UsageError(f"--impl: {exc}") from exc
    families = _families(args.family, [f for f, _ in bench.CASES])
    candidates = load_candidates(args.candidate or [], args.signature)
    result = bench.run(out, progress=not args.no_progress, only=only, families=families, candidates=candidates)
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
    p.add_argument("--require-batch-invariance", action=argparse.BooleanOptionalAction,
                   default=False if default else None,
                   help="fail a candidate whose output for a row depends on the batch it is routed in "
                        "(default: reported, not failed)")


def parser() -> argparse.ArgumentParser:
    from parity import signatures

    p = argparse.ArgumentParser(prog="parity", description="Numerical parity and tolerances for fused MoE routing kernels.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="run a grid, write records, summary, report and plots")
    s.add_argument("--grid", default=None, help="upstream | default | smoke (default: default)")
    s.add_argument("--grid-file", metavar="FILE.toml",
                   help="your own grid: [[shapes]] tables with T, E, K, dtype, dist, seeds, model, family, mutants "
                        "(README, 'Your shapes')")
    s.add_argument("--T", metavar="T1,T2,...", help="your shapes: numbers of tokens (with --E, --K, --dtype, --dist, "
                                                     "--seeds, --model: a grid of every combination)")
    s.add_argument("--E", metavar="N", help="experts (default: the family's model's)")
    s.add_argument("--K", metavar="N", help="top K (default: the family's model's)")
    s.add_argument("--dtype", metavar="D1,D2", help="logit dtypes: bfloat16, float16, float32 (default: all three)")
    s.add_argument("--dist", metavar="D1,D2", help="input distributions (`parity list`; default: upstream)")
    s.add_argument("--seeds", metavar="S1,S2", help="seeds: 0-2 derive tolerances, others are held out (default: 0,3)")
    s.add_argument("--model", metavar="NAME", help="the family's model whose settings apply (default: the one "
                                                     "with E experts, or the first)")
    s.add_argument("--family", action="append", metavar="NAME",
                   help="a routing family to sweep (repeatable; default: every family, or gemma4 with --candidate): "
                        "gemma4 | mixtral | gpt_oss | deepseek_v3 | llama4")
    s.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    s.add_argument("--out", default="reports/latest")
    s.add_argument("--candidate", action="append", metavar="MODULE:FUNCTION",
                   help="add your own routing function as a candidate (its arguments: --signature)")
    s.add_argument("--signature", action="append", metavar="NAME",
                   help="how to call the candidates (one for all, or one per --candidate): " + signatures.describe() + " (default: parity)")
    s.add_argument("--baseline", action="append", metavar="NAME",
                   help="a reference of the family, or oracle (default: every reference and the oracle; `parity list`)")
    s.add_argument("--no-progress", action="store_true")
    add_rule_arguments(s, default=True)
    s.set_defaults(fn=cmd_sweep)
    r = sub.add_parser("report", help="re-render report.md, summary.json and plots from DIR/records.jsonl")
    r.add_argument("dir")
    add_rule_arguments(r, default=False)
    r.set_defaults(fn=cmd_report)
    t = sub.add_parser("tolerances", help="the derived tolerances of DIR/summary.json: a table, the package's "
                                          "data, or a pytest module")
    t.add_argument("dir")
    t.add_argument("--emit", choices=["table", "package", "pytest"], default="table",
                   help="table (default); package: the tolerances parity.testing ships (parity/data/tolerances.json "
                        "or --out); pytest: a test module for your kernel through parity.testing (stdout or --out)")
    t.add_argument("--out", metavar="FILE")
    t.add_argument("--family", default="gemma4", help="--emit pytest: the family (default gemma4)")
    t.add_argument("--precision", default="fp32", choices=["fp32", "input-dtype"],
                   help="--emit pytest: the precision class whose envelope judges (default fp32)")
    t.add_argument("--candidate", metavar="MODULE:FUNCTION", help="--emit pytest: your kernel (default: parity's own)")
    t.add_argument("--signature", default="parity", help="--emit pytest: its signature (as for sweep)")
    t.set_defaults(fn=cmd_tolerances)
    z = sub.add_parser("fuzz", help="many input regimes in large launches, every row against the oracle "
                                    "(exit 1 on a difference; kept cases under --out)")
    z.add_argument("--rows", type=int, default=1 << 17, help="rows per run, one run per family, model and dtype "
                                                            "(default 131072, rounded up to whole chunks)")
    z.add_argument("--model", default=None, metavar="M1,M2|all", help="models of the families (default: each "
                                                                       "family's first; 'all': every one)")
    z.add_argument("--family", action="append", metavar="F1,F2", help="families (repeatable; default: every family)")
    z.add_argument("--dtype", default=None, metavar="D1,D2", help="logit dtypes (default: bfloat16)")
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--impl", default=None, help="an implementation of the family (default: its kernel, or its fp32 "
                                                "stand-in where it has none)")
    z.add_argument("--exact", action=argparse.BooleanOptionalAction, default=None,
                   help="count near-tie flips and other tie rules as differences (default: for parity's kernels only)")
    z.add_argument("--chunk", type=int, default=None, help="rows per launch (default: 2**20 on a GPU, 2**14 on the CPU)")
    z.add_argument("--every-tile", action="store_true",
                   help="launches of every size the kernels' launch tables distinguish (each power of two and one "
                        "past it, up to --chunk; on a GPU the default --chunk meets every tile), repeated until --rows")
    z.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    z.add_argument("--out", default=None, metavar="DIR", help="write fuzz.md, fuzz.json and the kept cases here")
    z.add_argument("--no-progress", action="store_true")
    z.set_defaults(fn=cmd_fuzz)
    i = sub.add_parser("impact", help="how much of a routing divergence reaches the MoE layer's output, in units of "
                                      "the layer's own rounding noise")
    i.add_argument("--family", action="append", metavar="F1,F2", help="families (default: gemma4)")
    i.add_argument("--model", default=None, help="a model of the (one) family (default: its first)")
    i.add_argument("--T", type=int, default=4096, help="rows (default 4096)")
    i.add_argument("--dtype", default="bfloat16", help="logits and layer dtype (default bfloat16)")
    i.add_argument("--dist", default="randn", help="input distribution of the logits (default randn)")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--layer", default="synthetic", choices=["synthetic", "hf"],
                   help="random experts of the model's sizes, or the transformers experts module (models extra)")
    i.add_argument("--hidden", type=int, default=None, help="override the model's hidden size")
    i.add_argument("--intermediate", type=int, default=None, help="override the model's expert FFN size")
    i.add_argument("--pairs", default=None, metavar="CAND[:BASE],...",
                   help="routing pairs (default: every implementation vs the oracle, and Gemma4's missed mutants)")
    i.add_argument("--chunk", type=int, default=None, help="rows per layer evaluation (default: as many as 48 GB (GPU) or 1 GB (CPU) of outputs hold)")
    i.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    i.add_argument("--out", default="reports/impact", metavar="DIR", help="impact.md, impact.json, plots")
    i.add_argument("--tiny-model", type=int, default=0, metavar="STEPS",
                   help="also decode STEPS greedy tokens with a tiny Qwen3-MoE whose router is each implementation "
                        "(models extra; default 0: off)")
    i.add_argument("--no-plots", action="store_true")
    i.add_argument("--no-progress", action="store_true")
    i.set_defaults(fn=cmd_impact)
    d = sub.add_parser("diff", help="what got worse from the sweep (or `parity bench` output) in OLD to the one in NEW, "
                                    "case by case (exit 1 if anything)")
    d.add_argument("old", help="a sweep's directory (records.jsonl), or a benchmark's (bench.json) or its bench.json")
    d.add_argument("new", help="the same kind as OLD")
    d.add_argument("--impl", default="fused", metavar="A,B,...|all",
                   help="benchmarks only: the implementations whose times are compared (default: fused)")
    d.add_argument("--plot", default=None, metavar="FILE.png",
                   help="benchmarks only: NEW's time over OLD's against T, a line per case, written to FILE.png")
    d.set_defaults(fn=cmd_diff)
    b = sub.add_parser("bench", help="time every implementation over T (on the CPU: a small interpreter run)")
    b.add_argument("--out", default=None, help="default: reports/bench/latest (GPU) or reports/bench/cpu")
    b.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    b.add_argument("--impl", default=None, metavar="A,B,...",
                   help="time only these (default: all of reference, topk_softmax, compile, compile-max-autotune, "
                        "sort_baseline, fused; a family's reference also by its name, e.g. softmax_all); the "
                        "torch.compile ones take minutes to build")
    b.add_argument("--family", action="append", metavar="F1,F2",
                   help="the routing families to time (default: all, each at its real models' E and K)")
    b.add_argument("--candidate", action="append", metavar="MODULE:FUNCTION",
                   help="also time your kernel (or another project's) in every case it computes, checked against the oracle")
    b.add_argument("--signature", action="append", help="how to call the candidates (as for sweep)")
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
