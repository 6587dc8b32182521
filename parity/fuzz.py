"""Fuzzing at scale: many input regimes packed into few large launches, every row checked against
the oracle, every difference kept as a case to replay; or (``sizes``, `parity fuzz --every-tile`)
launches of every size the kernels' launch tables tell apart, so that every tile runs.

Row i of a chunk is drawn from regime ``REGIMES[i % len(REGIMES)]`` (ties, near-ties at the K-th
place one unit in the last place apart, NaN and ±inf placements, all -inf rows, huge, subnormal,
saturating, nearly flat rows, plain randn), on the device, from a generator seeded by (seed,
chunk). The implementation (default: the family's kernel, or its fp32 stand-in where it has none)
and the fp64 oracle route the chunk; rows are compared on the device:

- ids by expert id; where they differ, parity.analysis.classify_ids on the same device says
  whether the row is tie-explained (group ties included), a near-tie or genuine;
- weights of rows with the oracle's experts within the family's shipped fp32 envelope
  (parity.shipped: the verdict's tolerance for an fp32 kernel), NaN where the oracle has NaN;
- rows holding NaN or ±inf logits follow a convention: differences there are counted apart
  (``special``), as the verdict reports them.

A difference is genuine ids, weights outside the envelope, NaN/inf weights where the oracle's are
finite, and for parity's own kernels (exact in their choice by contract) a near-tie flip or a tie
broken another way than the oracle's; for the model's torch code, which may round probabilities
into ties before it chooses (softmax first, in fp32) and breaks ties as torch.topk does, those are
counted and reported, not differences. The first differences are kept
with the row's logits (``examples``) and written as JSON cases that ``replay`` routes again.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from parity import routing, shipped
from parity.numerics import stable_seed
from parity.analysis import classify_ids, special_rows
from parity.routing.contract import Problem, by_id, check_output
from parity.routing.oracle import route64

REGIMES = ("randn", "ties", "near-ties", "nan", "inf", "all-neginf", "huge", "subnormal", "saturating", "flat")
DEFAULT_CHUNK = {"cuda": 1 << 20, "cpu": 1 << 14}
MAX_EXAMPLES = 20
KINDS = ("genuine", "near_tie", "tie_rule", "weights", "nonfinite")
EXACT_ONLY = ("near_tie", "tie_rule")
"""Differences only for an implementation that chooses exactly by contract (parity's kernels:
the oracle's experts, ties to the lower id); reported for the others."""


def table_sizes(largest: int) -> list[int]:
    """Launch sizes that meet every launch the kernels' tables choose, up to ``largest`` rows: each
    power of two and one row past it (a partial last program). The tables (parity.routing.fused.tile,
    fused_grouped.plan) depend on T only through next_power_of_2(T) and the power of two below
    T / FILL_PROGRAMS, both constant over [2**k, 2**(k+1)), so the powers of two meet every tile; on
    the GPU the tables stop growing by 2**19 rows (Mixtral 8x7B's 8 experts in bf16), so 2**20 meets
    every tile of every model and dtype (tests/test_fuzz.py checks both). A bug that
    lives in one tile's layout (a reduction over the wrong lanes, seen once on CUDA: reports/bench/
    NOTES.md, "Eighteenth round") shows in no single large launch."""
    out = []
    n = 1
    while n <= largest:
        out += [n, n + 1] if n + 1 <= largest and n > 1 else [n]
        n *= 2
    return out


def launches(rows: int, sizes: list[int]) -> int:
    """Launches of a run of at least ``rows`` rows whose launches take ``sizes`` rows in turn: whole
    turns, at least one."""
    return len(sizes) * max(1, -(-rows // sum(sizes)))


def _one_ulp_below(v: torch.Tensor) -> torch.Tensor:
    """The next representable value below ``v`` in its own dtype (v finite, nonzero)."""
    ints = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}[v.dtype]
    bits = v.contiguous().view(ints)
    return torch.where(v > 0, bits - 1, bits + 1).view(v.dtype)


def regime_rows(regime: str, n: int, E: int, K: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """``n`` rows of ``regime``'s logits on the generator's device."""
    dev = gen.device
    randn = lambda scale=1.0: (torch.randn(n, E, generator=gen, device=dev) * scale).to(dtype)  # noqa: E731
    rows = torch.arange(n, device=dev)
    pick = lambda: torch.randint(0, E, (n,), generator=gen, device=dev)  # noqa: E731
    if regime == "randn":
        return randn(2.0)
    if regime == "ties":
        return torch.randint(-3, 4, (n, E), generator=gen, device=dev).to(dtype)
    if regime == "near-ties":
        x = randn(2.0)
        if E > K:
            order = torch.sort(x.float(), dim=-1, descending=True, stable=True).indices
            kth = x.gather(1, order[:, K - 1 : K])
            below = torch.where(kth == 0, -torch.finfo(dtype).tiny * torch.ones_like(kth), _one_ulp_below(kth))
            x.scatter_(1, order[:, K : K + 1], below)
        return x
    if regime == "nan":
        x = randn(2.0)
        x[rows, pick()] = float("nan")
        return x
    if regime == "inf":
        x = randn(2.0)
        pos = pick()
        x[rows, pos] = float("inf")
        if E > 1:                                 # -inf elsewhere in the row
            other = torch.randint(1, E, (n,), generator=gen, device=dev)
            x[rows, (pos + other) % E] = float("-inf")
        return x
    if regime == "all-neginf":
        x = torch.full((n, E), float("-inf"), dtype=dtype, device=dev)
        half = rows % 2 == 1                      # half the rows keep K-1 finite logits
        keep = torch.rand(n, E, generator=gen, device=dev).argsort(-1)[:, : max(K - 1, 1)]
        vals = torch.randn(n, keep.shape[1], generator=gen, device=dev).to(dtype)
        x[half] = x[half].scatter(1, keep[half], vals[half])
        return x
    if regime == "huge":
        return (torch.randn(n, E, generator=gen, device=dev).clamp(-4, 4) * (torch.finfo(dtype).max / 8)).to(dtype)
    if regime == "subnormal":
        tiny = torch.finfo(dtype).tiny
        return (torch.randn(n, E, generator=gen, device=dev) * tiny / 4).to(dtype)
    if regime == "saturating":
        return randn(30.0)
    if regime == "flat":
        return (1.0 + torch.randn(n, E, generator=gen, device=dev) * 1e-6).to(dtype)
    raise ValueError(f"regime: unknown {regime!r}; known: {', '.join(REGIMES)}")


def chunk_logits(n: int, E: int, K: int, dtype: torch.dtype, seed: int, chunk: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk's logits [n, E] and each row's regime index [n]: row i is of regime i % len(REGIMES)."""
    gen = torch.Generator(device=device).manual_seed(stable_seed("fuzz", seed, chunk, E, K, dtype))
    regime = torch.arange(n, device=device) % len(REGIMES)
    x = torch.empty(n, E, dtype=dtype, device=device)
    for i, name in enumerate(REGIMES):
        rows = (regime == i).nonzero().flatten()
        if rows.numel():
            x[rows] = regime_rows(name, rows.numel(), E, K, dtype, gen)
    return x, regime


@dataclass
class FuzzResult:
    family: str
    model: str
    impl: str
    dtype: str
    E: int
    K: int
    seed: int
    rows: int = 0
    chunks: int = 0
    seconds: float = 0.0
    differences: int = 0
    by_kind: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    exact: bool = True               # near-tie flips are differences (parity's kernels choose exactly)
    tie_explained: int = 0
    special: int = 0                 # rows with NaN/inf logits where the convention differs (reported)
    tolerance: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)
    launch_sizes: list = field(default_factory=list)   # rows per launch, in turn (one size: the chunk)

    def as_dict(self) -> dict:
        return asdict(self)

    def counted(self) -> int:
        """Differences so far (the kinds that count for this implementation)."""
        return sum(v for k, v in self.by_kind.items() if self.exact or k not in EXACT_ONLY)

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        kinds = ", ".join(f"{k} {v}" for k, v in self.by_kind.items() if v and (self.exact or k not in EXACT_ONLY))
        near = "" if self.exact or not self.by_kind["near_tie"] else f", {self.by_kind['near_tie']:,} near-tie flips (reported)"
        sizes = (f" in {self.chunks} launches of {len(self.launch_sizes)} sizes ({self.launch_sizes[0]:,} to "
                 f"{max(self.launch_sizes):,} rows)" if len(self.launch_sizes) > 1 else "")
        return (f"fuzz {self.family} ({self.model}, E={self.E}, K={self.K}) {self.impl} {self.dtype}: {self.rows:,} rows{sizes}, "
                f"{self.differences} differences" + (f" ({kinds})" if kinds else "")
                + f"; {self.tie_explained:,} tie-explained{near}, {self.special:,} special-value rows with another "
                f"convention; {self.seconds:.1f} s ({rate:,.0f} rows/s)")


def _implementation(fam, impl) -> tuple[str, object]:
    if impl is None:
        name = fam.kernels[0] if fam.kernels else fam.stand_in
        return name, fam.implementations[name]
    if isinstance(impl, str):
        return impl, routing.get(impl, fam.name)
    return getattr(impl, "__name__", "candidate"), impl


def check_chunk(fam, router, name: str, fn, g: torch.Tensor, K: int, tol: tuple[float, float]) -> dict:
    """Route one chunk through ``fn`` and the oracle; per row: 0 ok, or a kind. Returns masks
    (on g's device) and counts."""
    T, E = g.shape
    arg = fam.argument(router)
    w, ids = by_id(*check_output(name, fn(g, K, arg), Problem(T, E, K), g.device))
    ow, oid = by_id(*route64(g, K, arg))
    special = special_rows(g)
    same_ids = (ids == oid).all(-1)
    # weights of the rows with the oracle's experts
    atol, rtol = tol
    wd, od = w.double(), ow
    both_nan = torch.isnan(wd) & torch.isnan(od)
    close = ((wd - od).abs() <= atol + rtol * od.abs()) | both_nan
    finite_o = torch.isfinite(od).all(-1)
    nonfinite = same_ids & ~special & finite_o & ~torch.isfinite(wd).all(-1)
    weights = same_ids & ~special & ~nonfinite & ~close.all(-1)
    special_differ = special & (~same_ids | ~close.all(-1))
    # id mismatches outside special rows: the analyzer, on the device, those rows only
    rest = (~same_ids & ~special).nonzero().flatten()
    genuine = torch.zeros(T, dtype=torch.bool, device=g.device)
    near = torch.zeros(T, dtype=torch.bool, device=g.device)
    tie = torch.zeros(T, dtype=torch.bool, device=g.device)
    if rest.numel():
        v = classify_ids(g[rest], ids[rest], oid[rest], router=router)
        tie[rest] = v.tie_explained
        near[rest] = v.near_tie
        genuine[rest] = v.genuine
    return {"genuine": genuine, "near_tie": near, "tie_rule": tie, "weights": weights, "nonfinite": nonfinite,
            "tie_explained": int(tie.sum()), "special": int(special_differ.sum()),
            "outputs": (w, ids, ow, oid)}


def fuzz(family: str, rows: int, *, dtype: str = "bfloat16", seed: int = 0, impl=None, model: str | None = None,
         chunk: int | None = None, device: torch.device | str | None = None, progress=None,
         max_examples: int = MAX_EXAMPLES, exact: bool | None = None, sizes: list[int] | None = None) -> FuzzResult:
    """Fuzz ``impl`` of ``family`` with ``rows`` rows of ``dtype`` logits (rounded up to whole
    chunks). ``exact``: whether near-tie flips and other tie rules are differences (default: for
    parity's kernels only; pass True for a kernel of yours that claims the oracle's choice).
    ``sizes``: launch sizes taken in turn instead of one ``chunk`` (e.g. table_sizes(...): every
    tile of the kernels' launch tables), until ``rows`` rows and every size have run."""
    from parity import device as _device

    fam = routing.family(family)
    m = fam.model(model)
    dev = torch.device(device) if device is not None else _device.default()
    chunk = chunk or DEFAULT_CHUNK[dev.type]
    name, fn = _implementation(fam, impl)
    dt = getattr(torch, dtype)
    env = shipped.envelope(family, dtype, "fp32")
    exact = name in fam.kernels if exact is None else exact
    kinds = [k for k in KINDS if exact or k not in EXACT_ONLY]
    res = FuzzResult(family, m.name, name, dtype, m.E, m.K, seed, exact=exact, tolerance={"atol": env["atol"], "rtol": env["rtol"],
                                                                              "source": "shipped fp32 envelope"})
    routers = [fam.make_router(m, d, seed, torch.ones(m.E), dev)
               for d in (["randn", "group-ties"] if "group-ties" in fam.distributions else ["randn"])]
    t0 = time.monotonic()
    sizes = list(sizes or [chunk])
    n_chunks = launches(rows, sizes)
    res.launch_sizes = sizes
    for c in range(n_chunks):
        chunk = sizes[c % len(sizes)]
        router = routers[c % len(routers)]
        if fam.per_expert_scale:   # Gemma4's scale: drawn per chunk, so that it varies too
            gen = torch.Generator(device="cpu").manual_seed(stable_seed("scale", seed, c))
            router = replace(router, per_expert_scale=torch.rand(m.E, generator=gen).to(dev))
        g, regime = chunk_logits(chunk, m.E, m.K, dt, seed, c, dev)
        out = check_chunk(fam, router, name, fn, g, m.K, (env["atol"], env["rtol"]))
        bad = torch.zeros(chunk, dtype=torch.bool, device=dev)
        for k in KINDS:
            res.by_kind[k] += int(out[k].sum())
        for k in kinds:
            bad |= out[k]
        res.tie_explained += out["tie_explained"]
        res.special += out["special"]
        res.rows += chunk
        res.chunks += 1
        for r in bad.nonzero().flatten()[: max(0, max_examples - len(res.examples))].tolist():
            w, ids, ow, oid = out["outputs"]
            kind = next(k for k in kinds if bool(out[k][r]))
            res.examples.append({
                "family": family, "model": m.name, "impl": name, "dtype": dtype, "seed": seed, "chunk": c, "row": r,
                "launch_rows": chunk,
                "regime": REGIMES[int(regime[r])], "kind": kind, "K": m.K,
                "logits": g[r].float().tolist(), "router": {k: (v.tolist() if isinstance(v, torch.Tensor) else v)
                                                            for k, v in router.__dict__.items()},
                "candidate": {"ids": ids[r].tolist(), "weights": w[r].tolist()},
                "oracle": {"ids": oid[r].tolist(), "weights": ow[r].tolist()},
            })
        if progress is not None:
            progress(res)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    res.differences = res.counted()
    res.seconds = round(time.monotonic() - t0, 2)
    return res


def case_router(case: dict, device="cpu"):
    """The Router a kept case was routed with."""
    from parity.routing.router import Router

    r = case["router"]
    tensors = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in r.items() if isinstance(v, list)}
    return Router(**{**{k: v for k, v in r.items() if not isinstance(v, list)}, **tensors})


def replay(case: dict, impl=None, device=None, exact: bool | None = None) -> list[str]:
    """Route a kept case's row again through ``impl`` (default: the case's implementation) and the
    oracle; the kinds of difference found (empty: it routes correctly now). The row is repeated to
    the launch's size it was found in (``launch_rows``; cases kept before it: one row), so that the
    kernel's table picks the same tile."""
    from parity import device as _device

    fam = routing.family(case["family"])
    dev = torch.device(device) if device is not None else _device.default()
    name, fn = _implementation(fam, impl if impl is not None else case["impl"])
    g = torch.tensor([case["logits"]], dtype=torch.float32).to(getattr(torch, case["dtype"])).to(dev)
    g = g.repeat(case.get("launch_rows", 1), 1)
    router = case_router(case, dev)
    env = shipped.envelope(case["family"], case["dtype"], "fp32")
    out = check_chunk(fam, router, name, fn, g, case["K"], (env["atol"], env["rtol"]))
    exact = name in fam.kernels if exact is None else exact
    return [k for k in KINDS if bool(out[k].any()) and (exact or k not in EXACT_ONLY)]


def write(results: list[FuzzResult], out: Path, meta: dict) -> Path:
    """fuzz.json (every result, with its examples), fuzz.md (one line each) and cases/ (one JSON per
    kept difference, for ``replay``)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps({"meta": meta, "results": [r.as_dict() for r in results]}, indent=1))
    lines = ["# parity fuzz\n", f"{meta.get('device')} (torch {meta.get('torch')}, triton {meta.get('triton')}), git "
             f"{meta.get('git_sha')}, {meta.get('started')}; regimes per row, in turn: {', '.join(REGIMES)}.\n",
             "Differences: genuine ids, weights outside the shipped fp32 envelope, non-finite weights where the "
             "oracle's are finite, and for an exact kernel (parity's) near-tie flips and ties broken another way. "
             "Reported, not counted: those two for the model's torch code, and rows with NaN/±inf logits where "
             "the implementation follows another convention than the oracle's.\n",
             *([f"Every tile: each run's launches took {len(results[0].launch_sizes)} sizes in turn, "
                f"{', '.join(f'{n:,}' for n in results[0].launch_sizes)} rows (every tile the kernels' launch tables "
                "choose up to the largest).\n"] if results and len(results[0].launch_sizes) > 1 else []),
             "| family | model | implementation | dtype | rows | differences | reported: near-tie flips | "
             "reported: other tie rule | special-value rows | seconds | rows/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        counted = {k: v for k, v in r.by_kind.items() if v and (r.exact or k not in EXACT_ONLY)}
        reported = lambda k: "counted" if r.exact else f"{r.by_kind[k]:,}"  # noqa: E731
        lines.append(f"| {r.family} | {r.model} | {r.impl}{'' if r.exact else ' (torch; not exact by contract)'} | {r.dtype} | {r.rows:,} | "
                     f"{r.differences}" + (" (" + ", ".join(f"{k} {v}" for k, v in counted.items()) + ")" if counted else "")
                     + f" | {reported('near_tie')} | {reported('tie_rule')} | {r.special:,} | {r.seconds} | "
                     f"{r.rows / r.seconds if r.seconds else 0:,.0f} |")
    (out / "fuzz.md").write_text("\n".join(lines) + "\n")
    cases = out / "cases"
    for r in results:
        for e in r.examples:
            cases.mkdir(exist_ok=True)
            (cases / f"{e['family']}-{e['impl']}-{e['dtype']}-s{e['seed']}-c{e['chunk']}-r{e['row']}.json").write_text(
                json.dumps(e))
    return out / "fuzz.md"
