"""Microbenchmarks: every routing implementation over T, with the bytes floor, checked for
correctness on every row (a fast wrong kernel cannot win).

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from parity import device, routing
from parity.analysis import Routing, classify_ids
from parity.check import assert_weights_close
from parity.formatting import jsonable
from parity.progress import Progress
from parity.provenance import Run
from parity.routing.oracle import route64
from parity.tolerance import FUSED_ULP

GPU_TS = (1, 8, 64, 512, 2048, 16384, 65536, 250000)
CPU_TS = (1, 64, 2048)
GPU_DTYPES = ("bfloat16", "float32")
EXTRA_E = 256                       # a second expert count, timed for bf16
GRAPH_CALLS = 20
ROTATE_BYTES = 512 << 20            # >= 8x the H200's 60 MB L2
L2_BYTES = 60 << 20
REPS = 50
IMPLS = ("softmax_all", "topk_softmax", "compile", "compile-max-autotune", "sort_baseline", "fused")
EXACT_IDS = ("sort_baseline", "fused")


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


def check_impls(only: tuple[str, ...]) -> None:
    """ValueError unless ``only`` names some of IMPLS and nothing else."""
    unknown = sorted(set(only) - set(IMPLS))
    if unknown or not only:
        raise ValueError(f"expected some of {', '.join(IMPLS)}; got {', '.join(only) or 'none'}"
                         + (f" ({', '.join(unknown)} unknown)" if unknown else ""))


def implementations(interpreter: bool, only: tuple[str, ...] = IMPLS) -> dict[str, Callable]:
    """The implementations to time (those of ``only`` that run here). torch.compile'd ones are made
    afresh for every (E, dtype) (the caller asks again), compiled with dynamic shapes once and
    reused across T."""
    check_impls(only)
    fns: dict[str, Callable] = {n: routing.get(n) for n in ("softmax_all", "topk_softmax", "sort_baseline", "fused")}
    if interpreter:
        fns.pop("sort_baseline")  # tl.sort runs element by element in the interpreter
        return {n: fns[n] for n in only if n in fns}
    torch._dynamo.reset()
    if "compile" in only:
        fns["compile"] = torch.compile(routing.get("softmax_all"), dynamic=True)
    if "compile-max-autotune" in only:
        fns["compile-max-autotune"] = torch.compile(routing.get("softmax_all"), dynamic=True,
                                                    mode="max-autotune-no-cudagraphs")
    return {n: fns[n] for n in only if n in fns}


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


def _check(name: str, out, g, K, s) -> tuple[bool, bool]:
    """ids: exactly the oracle's for our kernels, tie-explained only for torch references;
    weights: within the fused bound for our kernels, finite and matching where ids match otherwise."""
    w64, ids64 = route64(g, K, s)
    got = Routing.of(out)
    if name in EXACT_IDS:
        ids_ok = torch.equal(got.ids, ids64.cpu())
        try:
            assert_weights_close(got.weights, w64.cpu(), max_ulp=FUSED_ULP)
            w_ok = True
        except AssertionError:
            w_ok = False
        return ids_ok, w_ok
    v = classify_ids(g.cpu(), got.ids, ids64.cpu(), dtype=torch.float64)
    return int((v.genuine | v.special).sum()) == 0, bool(torch.isfinite(got.weights).all())


def run(out_dir: Path, *, Ts=None, dtypes=GPU_DTYPES, E: int = 128, K: int = 8, progress: bool = True,
        only: tuple[str, ...] = IMPLS) -> dict:
    clock = Run()
    on_gpu = device.KIND == "cuda"
    Ts = Ts or (GPU_TS if on_gpu else CPU_TS)
    bw = copy_bandwidth() if on_gpu else float("nan")
    grid = [(T, E, dt) for dt in dtypes for T in Ts]
    if on_gpu:
        grid += [(T, EXTRA_E, "bfloat16") for T in (1, 2048, 65536, 250000)]
    bar = Progress(len(grid) * len(implementations(device.INTERPRETER, only)), enabled=progress)
    rows: list[Row] = []
    gen = torch.Generator().manual_seed(0)
    fns, fns_key = {}, None
    for T, E_, dt in grid:
        if (E_, dt) != fns_key:
            fns, fns_key = implementations(device.INTERPRETER, only), (E_, dt)
        dtype = getattr(torch, dt)
        size = T * E_ * dtype.itemsize
        copies = max(1, min(16, ROTATE_BYTES // max(size, 1))) if on_gpu and size * 4 > L2_BYTES else 1
        gs = [torch.randn(T, E_, generator=gen).to(dtype).to(device.default()) for _ in range(copies)]
        s = torch.rand(E_, generator=gen).to(device.default())
        floor = (size + T * K * 8) / bw * 1e6 if on_gpu else float("nan")
        for name, fn in fns.items():
            bar.show(f"{name} T={T} E={E_} {dt}")
            try:
                ids_ok, w_ok = _check(name, fn(gs[0], K, s), gs[0], K, s)
                us, method = _time_gpu(fn, gs, K, s) if on_gpu else _time_cpu(fn, gs[0], K, s)
                rows.append(Row(name, T, E_, K, dt, us, method, floor, ids_ok, w_ok))
            except Exception as exc:  # noqa: BLE001 - a row that cannot run says why
                rows.append(Row(name, T, E_, K, dt, float("nan"), "failed", floor, False, False,
                                f"{type(exc).__name__}: {str(exc)[:200]}"))
            bar.advance(f"{name} T={T} E={E_} {dt}")
        del gs
    bar.close()
    result = {"meta": clock.meta(copy_bandwidth_TBps=bw / 1e12, graph_calls=GRAPH_CALLS, reps=REPS),
              "rows": [asdict(r) for r in rows]}
    write(result, out_dir)
    return result


def write(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(jsonable(result), indent=1))
    (out_dir / "bench.md").write_text(markdown(result))
    plot(result, out_dir / "bench.png")


def _us(rows, impl, T, E, dt):
    for r in rows:
        if (r["impl"], r["T"], r["E"], r["dtype"]) == (impl, T, E, dt):
            return r["us"]
    return float("nan")


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
    keys = sorted({(r["E"], r["dtype"]) for r in rows}, key=lambda k: (k[0], k[1]))
    impls = [i for i in IMPLS if any(r["impl"] == i for r in rows)]
    for E, dt in keys:
        L.append(f"## E={E}, K={rows[0]['K']}, {dt} (µs)\n")
        L.append("| T | " + " | ".join(impls) + " | fused vs softmax_all | fused vs sort_baseline | fused % of bytes floor | floor µs | checks |")
        L.append("|---|" + "---|" * (len(impls) + 5))
        for T in sorted({r["T"] for r in rows if (r["E"], r["dtype"]) == (E, dt)}):
            sub = [r for r in rows if (r["E"], r["dtype"], r["T"]) == (E, dt, T)]
            f = _us(rows, "fused", T, E, dt)
            cells = [f"{_us(rows, i, T, E, dt):.1f}" for i in impls]
            floor = sub[0]["floor_us"] if sub else float("nan")
            floor = float(floor) if isinstance(floor, str) else floor
            bad = [f"{r['impl']}: ids {'ok' if r['ids_ok'] else 'WRONG'}, weights {'ok' if r['weights_ok'] else 'WRONG'}"
                   + (f" ({r['note']})" if r["note"] else "") for r in sub if not (r["ids_ok"] and r["weights_ok"])]
            L.append(f"| {T} | " + " | ".join(cells)
                     + f" | {_us(rows, 'softmax_all', T, E, dt) / f:.1f}x | {_us(rows, 'sort_baseline', T, E, dt) / f:.2f}x | "
                     f"{100 * floor / f:.0f}% | {floor:.2f} | {'all match the oracle' if not bad else '; '.join(bad)} |")
        L.append("")
    notes = sorted({r["method"] for r in rows})
    L.append("Timing methods used: " + "; ".join(notes) + ".\n")
    return "\n".join(L)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    keys = sorted({(r["E"], r["dtype"]) for r in rows})
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    for ax, (E, dt) in zip(axes[0], keys):
        for impl in IMPLS:
            pts = sorted((r["T"], r["us"]) for r in rows if (r["impl"], r["E"], r["dtype"]) == (impl, E, dt)
                         and isinstance(r["us"], (int, float)) and r["us"] == r["us"])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        floor = sorted({(r["T"], r["floor_us"]) for r in rows if (r["E"], r["dtype"]) == (E, dt)
                        and isinstance(r["floor_us"], (int, float)) and r["floor_us"] == r["floor_us"]})
        if floor:
            ax.plot([p[0] for p in floor], [p[1] for p in floor], "k--", label="bytes floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("T (tokens)")
        ax.set_ylabel("µs")
        ax.set_title(f"E={E}, {dt}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
