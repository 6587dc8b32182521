"""Microbenchmarks: every routing family's kernels, its model-code reference (eager and under
torch.compile) and any candidate over T, with the bytes floor, checked against the fp64 oracle on
every row (a fast wrong kernel cannot win).

Cases: each family at its real models' E and K (``CASES``); Gemma4 also in fp32 and at E=256.
Per case: the family's reference (the model code, eager), ``compile`` and ``compile-max-autotune``
of it, the family's kernels (parity's), Gemma4's topk_softmax, and candidates passed in (other
projects' kernels: ``parity bench --candidate module:function``).

Method (GPU): medians of many repetitions after warm-up. Every T under CUDA-graph replay:
GRAPH_CALLS calls captured in one graph, each replay timed with CUDA events, divided by the calls;
for large T the calls cycle over enough input copies to exceed the L2 cache several times (a first
version timed large T with events around single eager calls and measured the host's launch cost
instead of the kernel: 88 us for a 9 us kernel at T=16384). Implementations that cannot be captured
(host synchronisation) are timed with events around each call, and the row says so. The bytes
floor: logits read once, weights and ids written once, at the bandwidth of a device-to-device copy
measured on the same card. On the CPU the figures are Triton-interpreter figures (wall clock),
useful only to see that everything runs.
"""
from __future__ import annotations

import json
import statistics
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from parity import device, routing
from parity.analysis import Routing, classify_ids
from parity.check import weights_within
from parity.formatting import jsonable
from parity.progress import Progress
from parity.provenance import Run
from parity.routing.contract import Unsupported
from parity.routing.oracle import route64
from parity.routing.router import Router
from parity.tolerance import FUSED_ULP

GPU_TS = (1, 8, 64, 512, 2048, 16384, 65536, 250000)
CPU_TS = (1, 64, 2048)
GPU_DTYPES = ("bfloat16", "float32")
EXTRA_E = 256                       # Gemma4 at a second expert count, bf16
EXTRA_TS = (1, 2048, 65536, 250000)
GRAPH_CALLS = 20
ROTATE_BYTES = 512 << 20            # >= 8x the H200's 60 MB L2
L2_BYTES = 60 << 20
REPS = 50
ROLES = ("reference", "topk_softmax", "compile", "compile-max-autotune", "sort_baseline", "fused")
"""What --impl can name: the family's reference (by that word or its own name, e.g. softmax_all),
torch.compile of it, and the kernels; candidates are always timed."""
CASES = (("gemma4", None), ("mixtral", "qwen3-moe"), ("mixtral", "qwen2-moe"), ("gpt_oss", None),
         ("deepseek_v3", None), ("llama4", None))
"""(family, model) timed by default: each family's first model; Mixtral's family also as Qwen2-MoE,
whose softmax over all E is another kernel epilogue."""


@dataclass(frozen=True)
class Case:
    family: str
    model: str
    E: int
    K: int
    dtype: str


@dataclass
class Row:
    impl: str
    T: int
    E: int
    K: int
    dtype: str
    us: float
    method: str
    floor_us: float
    ids_ok: bool
    weights_ok: bool
    note: str = ""
    family: str = "gemma4"
    model: str = "gemma4"
    role: str = ""


def check_impls(only: tuple[str, ...]) -> None:
    """ValueError unless ``only`` names some of ROLES (or references by name) and nothing else."""
    known = set(ROLES) | {routing.family(f).reference for f, _ in CASES}
    unknown = sorted(set(only) - known)
    if unknown or not only:
        raise ValueError(f"expected some of {', '.join(ROLES)} (or a family's reference by name); got "
                         f"{', '.join(only) or 'none'}" + (f" ({', '.join(unknown)} unknown)" if unknown else ""))


def cases(families=None, *, on_gpu: bool, dtypes=None) -> list[Case]:
    """The default cases of ``families`` (default: every family in CASES)."""
    out = []
    for name, model in CASES:
        if families is not None and name not in families:
            continue
        m = routing.family(name).model(model)
        for dt in dtypes or (GPU_DTYPES if name == "gemma4" or not on_gpu else ("bfloat16",)):
            out.append(Case(name, m.name, m.E, m.K, dt))
    return out


def implementations(case: Case, interpreter: bool, only: tuple[str, ...] = ROLES,
                    candidates: dict[str, Callable] | None = None) -> dict[str, tuple[str, Callable]]:
    """name -> (role, fn(gating_output, topk, argument)) for one case: those of ``only`` that run
    here, then the candidates. torch.compile'd ones are built afresh per case (dynamic shapes,
    reused across T; run warms them at the case's largest T first: warm_compiled)."""
    check_impls(only)
    fam = routing.family(case.family)
    ref = fam.reference
    fns: dict[str, tuple[str, Callable]] = {}
    wanted = lambda role, name=None: role in only or (name is not None and name in only)  # noqa: E731
    if wanted("reference", ref):
        fns[ref] = ("reference", fam.implementations[ref])
    if case.family == "gemma4" and wanted("topk_softmax"):
        fns["topk_softmax"] = ("topk_softmax", fam.implementations["topk_softmax"])
    if not interpreter:
        if wanted("compile"):
            fns["compile"] = ("compile", torch.compile(fam.implementations[ref], dynamic=True))
        if wanted("compile-max-autotune"):
            fns["compile-max-autotune"] = ("compile-max-autotune", torch.compile(
                fam.implementations[ref], dynamic=True, mode="max-autotune-no-cudagraphs"))
    for k in fam.kernels:
        if wanted(k) and not (interpreter and k == "sort_baseline"):  # tl.sort runs element by element there
            fns[k] = (k, fam.implementations[k])
    for name, fn in (candidates or {}).items():
        fns[name] = ("candidate", fn)
    return fns


def copy_bandwidth() -> float:
    """Bytes per second of a large device-to-device copy (read + write), median of 20."""
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    times = _event_times(lambda: dst.copy_(src), 20)
    return 2 * n / (statistics.median(times) * 1e-6)


def _event_times(fn: Callable, reps: int, before: Callable = lambda: None) -> list[float]:
    for _ in range(5):
        before()
        fn()
    out = []
    for _ in range(reps):
        before()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) * 1e3)
    return out


def _graph_us(fn: Callable, gs: list, K: int, s: torch.Tensor) -> float:
    """Median per-call time of GRAPH_CALLS calls captured in one CUDA graph, cycling over the
    input copies (so large T reads from HBM, not L2), each replay timed with CUDA events."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for g in gs[:3]:
            fn(g, K, s)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(GRAPH_CALLS):
            fn(gs[i % len(gs)], K, s)
    times = _event_times(graph.replay, REPS)
    return statistics.median(times) / GRAPH_CALLS


def _time_gpu(fn: Callable, gs: list, K: int, s: torch.Tensor) -> tuple[float, str]:
    """CUDA-graph replay at every T: it removes the host's launch cost, which would otherwise be
    what gets timed for any kernel shorter than it. Implementations that cannot be captured (a
    host sync) are timed with events around each call instead, rotating the inputs."""
    rotated = ", inputs rotated beyond L2" if len(gs) > 1 else ""
    try:
        return _graph_us(fn, gs, K, s), "graph replay" + rotated
    except Exception as exc:  # noqa: BLE001 - capture refused: time it as it runs
        torch.cuda.synchronize()
        note = f"events per call (graph capture failed: {type(exc).__name__}){rotated}"
    i = [0]

    def call():
        fn(gs[i[0] % len(gs)], K, s)
        i[0] += 1
    return statistics.median(_event_times(call, REPS)), note


def _time_cpu(fn: Callable, g, K, s) -> tuple[float, str]:
    fn(g, K, s)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn(g, K, s)
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times), "wall clock (Triton interpreter)"


def _check(exact: bool, out, g, K, arg) -> tuple[bool, bool]:
    """ids: exactly the oracle's for parity's kernels; for the others, any difference explained by
    a tie or near tie at the logits' precision (a reference rounding in bf16 chooses between keys
    closer than that either way; the sweep, not the bench, judges how); weights: within the fused
    bound for parity's kernels, finite otherwise."""
    w64, ids64 = route64(g, K, arg)
    got = Routing.of(out)
    if exact:
        return torch.equal(got.ids, ids64.cpu()), weights_within(got.weights, w64, max_ulp=FUSED_ULP)
    router = arg if isinstance(arg, Router) else None
    v = classify_ids(g.cpu(), got.ids, ids64.cpu(), router=None if router is None else router.to("cpu"))
    return int((v.genuine | v.special).sum()) == 0, bool(torch.isfinite(got.weights).all())


def _inputs(case: Case, T: int, on_gpu: bool):
    """(logit copies, the implementations' third argument) for one case and T, drawn from a seed of
    the case and T alone: a partial bench (--family, --T) times the same inputs as the whole one
    (until 06e4d58 one generator ran through the grid, so a case's inputs depended on the cases
    before it)."""
    seed = zlib.crc32(f"{case.family}/{case.model}/{case.E}/{case.K}/{case.dtype}/{T}".encode())
    gen = torch.Generator().manual_seed(seed)
    fam = routing.family(case.family)
    dtype = getattr(torch, case.dtype)
    size = T * case.E * dtype.itemsize
    copies = max(1, min(16, ROTATE_BYTES // max(size, 1))) if on_gpu and size * 4 > L2_BYTES else 1
    gs = [torch.randn(T, case.E, generator=gen).to(dtype).to(device.default()) for _ in range(copies)]
    scale = torch.rand(case.E, generator=gen) if fam.per_expert_scale else None
    router = fam.make_router(fam.model_at(case.model, case.E, case.K), "randn", 0, scale, device.default())
    return gs, fam.argument(router)


def model_inputs(family: str, model, dtype: torch.dtype, T: int, on_gpu: bool):
    """`make bench`'s inputs for one of a family's models (its E and K) in dtype at T, as _inputs
    draws them: for probes that time or profile what the bench times."""
    return _inputs(Case(family, model.name, model.E, model.K, str(dtype).removeprefix("torch.")), T, on_gpu)


COMPILED = ("compile", "compile-max-autotune")


def warm_compiled(fns: dict[str, tuple[str, Callable]], g: torch.Tensor, K: int, arg) -> list[str]:
    """Call each torch.compile'd implementation of ``fns`` once on ``g`` (the case's largest batch)
    before any T is timed; the names called. Compiled with dynamic=True, one graph serves every T
    above 1, compiled (and max-autotune's configurations chosen) at the size of the first such batch
    it meets: timed from T = 1 upward, that was 8 rows. On the H200 at ef8d848 max-autotune's Gemma4
    bf16 took 20.9 ms at T = 250000 where the default compile took 2.1, likely for that reason
    (reports/bench/NOTES.md, "Nineteenth round"). Warmed at the largest T, both compiles are tuned
    where the targets compare them."""
    warmed = []
    for name, (role, fn) in fns.items():
        if role in COMPILED:
            try:
                fn(g, K, arg)
            except Exception:  # noqa: BLE001 - its timed calls fail again and their rows say why
                continue
            warmed.append(name)
    return warmed


def run(out_dir: Path, *, Ts=None, dtypes=None, families=None, progress: bool = True,
        only: tuple[str, ...] = ROLES, candidates: dict[str, Callable] | None = None) -> dict:
    """Time every case of ``families`` (default: all) over ``Ts``; write bench.json, bench.md and
    bench.png to out_dir. ``candidates``: name -> fn(gating_output, topk, argument), timed in
    every case; a case whose router a candidate does not compute (it raises
    parity.routing.contract.Unsupported) is noted, not failed."""
    clock = Run()
    on_gpu = device.KIND == "cuda"
    bw = copy_bandwidth() if on_gpu else float("nan")
    grid = [(c, T) for c in cases(families, on_gpu=on_gpu, dtypes=dtypes) for T in (Ts or (GPU_TS if on_gpu else CPU_TS))]
    if on_gpu and (families is None or "gemma4" in families) and dtypes is None and Ts is None:
        grid += [(Case("gemma4", "gemma4", EXTRA_E, 8, "bfloat16"), T) for T in EXTRA_TS]
    bar = Progress(sum(len(implementations(c, device.INTERPRETER, only, candidates)) for c, _ in grid), enabled=progress)
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    fns, fns_key = {}, None

    def result() -> dict:
        return {"meta": clock.meta(copy_bandwidth_TBps=bw / 1e12, graph_calls=GRAPH_CALLS, reps=REPS),
                "rows": [asdict(r) for r in rows], "skipped": skipped}

    for case, T in grid:
        if case != fns_key:
            if rows:   # what is measured so far survives a time limit
                write(result(), out_dir, plots=False)
            if on_gpu:
                torch._dynamo.reset()   # each case compiles its own reference
            fns, fns_key = implementations(case, device.INTERPRETER, only, candidates), case
            if on_gpu and any(role in COMPILED for role, _ in fns.values()):
                largest = max(t for c, t in grid if c == case)
                bar.show(f"{case.family}/{case.model} torch.compile warmed at T={largest} {case.dtype}")
                g_max, arg_max = _inputs(case, largest, on_gpu=False)   # one copy, on the device
                warm_compiled(fns, g_max[0], case.K, arg_max)
                del g_max
        gs, arg = _inputs(case, T, on_gpu)
        floor = (T * case.E * gs[0].dtype.itemsize + T * case.K * 8) / bw * 1e6 if on_gpu else float("nan")
        kernels = routing.family(case.family).kernels
        for name, (role, fn) in fns.items():
            label = f"{case.family}/{case.model} {name} T={T} {case.dtype}"
            bar.show(label)
            try:
                ids_ok, w_ok = _check(role in kernels, fn(gs[0], case.K, arg), gs[0], case.K, arg)
                us, method = _time_gpu(fn, gs, case.K, arg) if on_gpu else _time_cpu(fn, gs[0], case.K, arg)
                rows.append(Row(name, T, case.E, case.K, case.dtype, us, method, floor, ids_ok, w_ok,
                                family=case.family, model=case.model, role=role))
            except Unsupported as exc:
                skipped[f"{name} on {case.family}/{case.model}"] = str(exc)[:200]
            except Exception as exc:  # noqa: BLE001 - a row that cannot run says why
                rows.append(Row(name, T, case.E, case.K, case.dtype, float("nan"), "failed", floor, False, False,
                                f"{type(exc).__name__}: {str(exc)[:200]}", family=case.family, model=case.model,
                                role=role))
            bar.advance(label)
        del gs
    bar.close()
    final = result()
    write(final, out_dir)
    return final


def write(result: dict, out_dir: Path, plots: bool = True) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(jsonable(result), indent=1))
    (out_dir / "bench.md").write_text(markdown(result))
    if plots:
        plot(result, out_dir / "bench.png")


TARGETS = {"floor": 0.5, "eager": 20.0, "compile": 5.0, "small_us": 2.5, "small_T": 512}
"""The kernels' targets at the largest T (fraction of the bytes floor, times faster than the eager
reference and than its best torch.compile), and the most microseconds at T <= small_T."""


def case_key(r: dict) -> tuple:
    """A row's case: (family, model, E, K, dtype) (rows from before families: Gemma4)."""
    return (r.get("family", "gemma4"), r.get("model", "gemma4"), r["E"], r["K"], r["dtype"])


def _us(rows, impl, T, key=None):
    for r in rows:
        if r["impl"] == impl and r["T"] == T and (key is None or case_key(r) == key):
            return r["us"]
    return float("nan")


def _role(rows, key, role) -> str | None:
    for r in rows:
        if case_key(r) == key and r.get("role") == role:
            return r["impl"]
    return None


def _ratio(a: float, b: float, fmt: str = ".1f") -> str:
    """a / b as a speed-up cell, '-' where either was not timed (a partial `parity bench --impl`)."""
    return f"{a / b:{fmt}}x" if a == a and b == b and b > 0 else "-"


def summary_rows(result: dict) -> list[dict]:
    """Per case at its largest T: fused's time, % of the bytes floor, speed-ups over the eager
    reference and both compiles, the slowest fused time at T <= small_T, and whether each target holds."""
    rows = result["rows"]
    out = []
    for key in sorted({case_key(r) for r in rows}):
        Ts = sorted({r["T"] for r in rows if case_key(r) == key})
        T = Ts[-1]
        f = _us(rows, "fused", T, key)
        ref = _role(rows, key, "reference")
        floor = next(r["floor_us"] for r in rows if case_key(r) == key and r["T"] == T)
        small = [_us(rows, "fused", t, key) for t in Ts if t <= TARGETS["small_T"]]
        item = {"family": key[0], "model": key[1], "E": key[2], "K": key[3], "dtype": key[4], "T": T, "fused_us": f,
                "floor_us": floor, "floor_frac": floor / f if f == f and f > 0 else float("nan"),
                "reference": ref, "vs_reference": _us(rows, ref, T, key) / f if ref else float("nan"),
                "vs_compile": _us(rows, "compile", T, key) / f,
                "vs_max_autotune": _us(rows, "compile-max-autotune", T, key) / f,
                "small_max_us": max(small) if small else float("nan")}
        item["meets"] = {"floor": item["floor_frac"] >= TARGETS["floor"],
                         "eager": item["vs_reference"] >= TARGETS["eager"] if ref else None,
                         "compile": min(item["vs_compile"], item["vs_max_autotune"]) >= TARGETS["compile"]
                         if item["vs_compile"] == item["vs_compile"] else None,
                         "small": item["small_max_us"] <= TARGETS["small_us"] if small else None}
        out.append(item)
    return out


def _mark(ok) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def markdown(result: dict) -> str:
    m, rows = result["meta"], result["rows"]
    interp = m.get("interpreter")
    L = ["# Routing benchmark\n",
         f"{m['device']}, torch {m['torch']}, triton {m['triton']}, git {m.get('git_sha', '?')[:12]}. "
         + ("**Interpreter figures: the Triton kernels ran on the CPU through the interpreter; these "
            "times say nothing about GPU speed.**\n" if interp else
            f"Copy bandwidth measured on this card: {m['copy_bandwidth_TBps']:.2f} TB/s (read + write). "
            f"Every T: CUDA-graph replay of {m['graph_calls']} calls (inputs rotated beyond L2 where "
            f"they would fit in it), timed with CUDA events; medians of {m['reps']} replays.\n")]
    if not interp:
        t = TARGETS
        L += [f"## parity's fused kernel per case at the largest T\n",
              f"Targets: >= {t['floor']:.0%} of the bytes floor, >= {t['eager']:g}x the eager reference, >= "
              f"{t['compile']:g}x torch.compile of it (default and max-autotune), <= {t['small_us']:g} µs at T <= "
              f"{t['small_T']}.\n",
              "| family | model | E | K | dtype | T | fused µs | % of floor | vs reference (eager) | vs compile | "
              "vs max-autotune | fused µs at T <= 512 (max) | floor | eager | compile | small T |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in summary_rows(result):
            vs_ref = _ratio(s["vs_reference"], 1.0) + (f" ({s['reference']})" if s["reference"] else "")
            L.append(f"| {s['family']} | {s['model']} | {s['E']} | {s['K']} | {s['dtype']} | {s['T']} | {s['fused_us']:.1f} | "
                     f"{100 * s['floor_frac']:.1f}% | {vs_ref} | "
                     f"{_ratio(s['vs_compile'], 1.0)} | {_ratio(s['vs_max_autotune'], 1.0)} | {s['small_max_us']:.2f} | " + " | ".join(_mark(s['meets'][k]) for k in ("floor", "eager", "compile", "small")) + " |")
        L.append("")
    for key in sorted({case_key(r) for r in rows}):
        fam, model, E, K, dt = key
        sub_rows = [r for r in rows if case_key(r) == key]
        impls = list(dict.fromkeys(r["impl"] for r in sub_rows))
        ref = _role(rows, key, "reference")
        L.append(f"## {fam} / {model}: E={E}, K={K}, {dt} (µs)\n")
        L.append("| T | " + " | ".join(impls) + f" | fused vs {ref or 'reference'} | fused vs compile | fused vs max-autotune | "
                 "fused vs sort_baseline | fused % of bytes floor | floor µs | checks |")
        L.append("|---|" + "---|" * (len(impls) + 7))
        for T in sorted({r["T"] for r in sub_rows}):
            sub = [r for r in sub_rows if r["T"] == T]
            f = _us(rows, "fused", T, key)
            cells = [f"{us:.1f}" if us == us else "-" for us in (_us(rows, i, T, key) for i in impls)]
            floor = sub[0]["floor_us"] if sub else float("nan")
            floor = float(floor) if isinstance(floor, str) else floor
            bad = [f"{r['impl']}: ids {'ok' if r['ids_ok'] else 'WRONG'}, weights {'ok' if r['weights_ok'] else 'WRONG'}"
                   + (f" ({r['note']})" if r["note"] else "") for r in sub if not (r["ids_ok"] and r["weights_ok"])]
            L.append(f"| {T} | " + " | ".join(cells)
                     + f" | {_ratio(_us(rows, ref, T, key), f)} | {_ratio(_us(rows, 'compile', T, key), f)} | "
                       f"{_ratio(_us(rows, 'compile-max-autotune', T, key), f)} | "
                       f"{_ratio(_us(rows, 'sort_baseline', T, key), f, '.2f')} | "
                     f"{100 * floor / f:.0f}% | {floor:.2f} | {'all match the oracle' if not bad else '; '.join(bad)} |")
        L.append("")
    if result.get("skipped"):
        L.append("Not timed (the implementation does not compute that router):\n")
        L += [f"- {k}: {v}" for k, v in result["skipped"].items()]
        L.append("")
    notes = sorted({r["method"] for r in rows})
    L.append("Timing methods used: " + "; ".join(notes) + ".\n")
    return "\n".join(L)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    keys = sorted({case_key(r) for r in rows})
    cols = min(4, len(keys))
    nrow = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrow, cols, figsize=(5.0 * cols, 4.0 * nrow), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        sub = [r for r in rows if case_key(r) == key]
        for impl in dict.fromkeys(r["impl"] for r in sub):
            pts = sorted((r["T"], r["us"]) for r in sub if r["impl"] == impl
                         and isinstance(r["us"], (int, float)) and r["us"] == r["us"])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        floor = sorted({(r["T"], r["floor_us"]) for r in sub
                        if isinstance(r["floor_us"], (int, float)) and r["floor_us"] == r["floor_us"]})
        if floor:
            ax.plot([p[0] for p in floor], [p[1] for p in floor], "k--", label="bytes floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("T (tokens)")
        ax.set_ylabel("µs")
        ax.set_title(f"{key[0]}/{key[1]} E={key[2]} K={key[3]} {key[4]}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
