"""The sweep runner: cases of a grid (parity.grids) in, JSONL records out.

Running a case routes its inputs through every implementation and compares candidate~baseline pairs (``parity.analysis``); each
pair becomes one record. ``parity.summary`` turns records into the summary; nothing here decides
a verdict.
"""
from __future__ import annotations

import gzip
import json
import os
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import torch

from parity import inputs, routing
from parity import invariance
from parity.analysis import Routing, attribute, compare, kth_logit, tie_keys, tie_rule
from parity.grids import INVARIANCE_MAX_T, Case
from parity.progress import Progress
from parity.routing.contract import Problem, Unsupported, check_output
from parity.routing.oracle import route64

COMPARE_THREADS = max(1, min(8, os.cpu_count() or 1))


def kernels(fam) -> dict[str, Callable]:
    """A family's kernels that run here: its candidates by default. sort_baseline on the GPU only
    (its tl.sort runs element by element in the interpreter: about a second per row)."""
    from parity import device

    return {n: fam.implementations[n] for n in fam.kernels if not (n == "sort_baseline" and device.INTERPRETER)}


def references(fam) -> list[str]:
    """A family's torch references: its baselines by default, with the oracle."""
    return [n for n in fam.implementations if n not in fam.kernels]


def _route(name: str, fn, g: torch.Tensor, K: int, arg) -> Routing:
    out = fn(g, K, arg)
    return Routing.of(check_output(name, out, Problem(g.shape[0], g.shape[1], K), g.device))


def run_case(
    case: Case, device: torch.device, candidates: dict[str, Callable] | None = None,
    baselines: Iterable[str] | None = None, mutants: dict[str, Callable] | None = None,
) -> list[dict]:
    """Route one case through every implementation of its family; one record per pair, per
    implementation's tie rule, and per failure (an implementation that raises or breaks the
    contract is recorded, the rest of the case goes on). Defaults: the family's kernels as
    candidates, its references and the oracle as baselines, its mutants on cases that run them."""
    fam = routing.family(case.family)
    model = fam.model_at(case.model, case.E, case.K)
    candidates = kernels(fam) if candidates is None else candidates
    baselines = [*references(fam), "oracle"] if baselines is None else list(baselines)
    mutants = ({n: m.fn for n, m in fam.mutants.items()} if mutants is None else mutants) if case.mutants else {}
    dtype = getattr(torch, case.dtype)
    inp = inputs.make(case.dist, case.T, case.E, dtype, case.seed, device)
    router = fam.make_router(model, case.dist, case.seed, inp.per_expert_scale, device)
    g, arg, K = inp.gating_output, fam.argument(router), case.K
    head = {"case_id": case.id, "case": asdict(case), "router": router.describe()}
    records: list[dict] = []
    outs: dict[str, Routing] = {"oracle": Routing.of(route64(g, K, arg))}
    kinds = {name: "baseline" for name in baselines if name != "oracle"}
    kinds.update({name: "candidate" for name in candidates})
    kinds.update({name: "mutant" for name in mutants})
    fns = {**{n: fam.implementations[n] for n in baselines if n != "oracle"}, **candidates, **mutants}
    # trusted: parity's own implementations, under their own names (a candidate judges nothing);
    # the ones with an arithmetic make the precision envelopes
    trusted = {n for n, fn in fns.items() if kinds[n] != "mutant" and fam.implementations.get(n) is fn} | {"oracle"}
    arithmetic = {n: fam.arithmetic.get(n, "fp64" if n == "oracle" else None) for n in trusted}
    for name, fn in fns.items():
        try:
            outs[name] = _route(name, fn, g, K, arg)
        except Unsupported as exc:   # a router the candidate says it does not compute: not judged
            records.append({**head, "kind": "unsupported", "impl": name, "impl_kind": kinds[name], "reason": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a broken implementation is a finding, not a crash
            records.append({**head, "kind": "error", "impl": name, "impl_kind": kinds[name],
                            "error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc(limit=3)})
    if case.invariance:
        rows = g[:INVARIANCE_MAX_T]
        for name, fn in fns.items():
            if kinds[name] == "mutant" or name not in outs:
                continue
            try:
                inv = invariance.check(name, fn, rows, K, arg).as_dict()
            except Exception as exc:  # noqa: BLE001 - recorded as what it is
                inv = {"impl": name, "rows": rows.shape[0], "status": "error", "error": f"{type(exc).__name__}: {exc}"}
            records.append({**head, "kind": "invariance", "impl": name, "impl_kind": kinds[name], **inv})
    g_cpu, r_cpu = g.cpu(), router.to("cpu")
    kth = kth_logit(tie_keys(g_cpu, r_cpu), K) if case.T else None
    refs = [b for b in baselines if b != "oracle"]
    jobs = [(c, "oracle") for c in [*refs, *candidates, *mutants]]
    jobs += [(c, b) for c in candidates for b in refs]
    if fam.stand_in in refs and fam.reference in refs and fam.stand_in != fam.reference:
        jobs.append((fam.stand_in, fam.reference))       # the upstream-style pair without a kernel
    jobs += [(m, fam.reference) for m in mutants]
    jobs = list(dict.fromkeys((c, b) for c, b in jobs if c in outs and b in outs))

    def pair(cb):
        c, b = cb
        return compare(g_cpu, outs[c], outs[b], r_cpu.per_expert_scale, pair=f"{c}~{b}", router=r_cpu)

    # torch releases the GIL in its kernels: comparisons of one case run side by side on the cores
    with ThreadPoolExecutor(max_workers=COMPARE_THREADS) as pool:
        rules = pool.map(lambda name: tie_rule(g_cpu, outs[name].ids, kth, r_cpu), list(outs))
        results = dict(zip(jobs, pool.map(pair, jobs)))
        for name, rule in zip(list(outs), rules):
            records.append({**head, "kind": "implementation", "impl": name,
                            "impl_kind": kinds.get(name, "oracle"), "trusted": name in trusted,
                            "arithmetic": arithmetic.get(name), "tie_rule": rule})
    for (c, b), res in results.items():
        rec = {**head, "kind": "pair", "candidate": c, "baseline": b,
               "candidate_kind": kinds.get(c, "oracle"), "candidate_trusted": c in trusted,
               "candidate_arithmetic": arithmetic.get(c), **res.as_dict()}
        if b != "oracle" and (c, "oracle") in results and (b, "oracle") in results:
            rec["attribution"] = attribute(results[(c, "oracle")], results[(b, "oracle")])
        records.append(rec)
    return records


def run(
    cases: Iterable[Case], device: torch.device, records_path: Path, *,
    candidates: dict[str, dict[str, Callable]] | None = None, baselines: dict[str, list[str]] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Run cases in order, appending each case's records to ``records_path`` as it finishes.
    ``candidates`` and ``baselines`` by family name (a family not there takes run_case's defaults)."""
    cases = list(cases)
    records: list[dict] = []
    bar = Progress(len(cases), enabled=progress)
    records_path.parent.mkdir(parents=True, exist_ok=True)
    with open(records_path, "w") as f:
        for case in cases:
            bar.show(case.id)
            try:
                recs = run_case(case, device, (candidates or {}).get(case.family), (baselines or {}).get(case.family))
            except Exception as exc:  # noqa: BLE001 - keep what the other cases found
                recs = [{"case_id": case.id, "case": asdict(case), "kind": "error", "impl": "(case)",
                         "impl_kind": "case", "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc(limit=5)}]
            for r in recs:
                f.write(json.dumps(r) + "\n")
            f.flush()
            records.extend(recs)
            bar.advance(case.id)
    bar.close()
    return records


def records_file(directory: Path) -> Path | None:
    """A sweep directory's records: records.jsonl, or records.jsonl.gz as committed reports keep them."""
    for name in ("records.jsonl", "records.jsonl.gz"):
        if (directory / name).exists():
            return directory / name
    return None


def read_records(path: Path) -> list[dict]:
    """Records from a .jsonl file (gzip-compressed when its name ends in .gz)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]
