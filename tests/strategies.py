"""Hypothesis strategies for routing inputs: the input space, described once.

A drawn example is a ``Spec``: a handful of small values (sizes, dtype, layout, value regime, scale
regime, a seed) that hypothesis chooses and shrinks. The tensors are built from the spec by a
private ``torch.Generator`` on the CPU, rounded once to the dtype there, then moved to the device
and laid out (``Spec.build``): drawing every element through hypothesis would make each example
slow, and a spec reproduces its tensors bit for bit anywhere (``Spec(...).build(device)``), so a
failing example prints as one line that can be pasted into a test.

Value regimes (``REGIMES``), each aimed at something a routing kernel can get wrong:
- ``normal``: randn times a spread of 1, 3 or 10;
- ``tiny_spread``: one constant per row plus a few of the dtype's ulps of noise (near ties in fp32,
  exact ties below; the fused kernel's exact fallback for fp32);
- ``huge``: most logits at |x| in [max/4, max/2] of the dtype, the rest normal;
- ``subnormal``: subnormals of the dtype and signed zeros (-0.0 ties with +0.0);
- ``ties``: integers on a coarse grid: exact ties at the K-th place in most rows;
- ``underflow``: a few logits near 0 and the rest 80..150 below, so chosen exp(x - max) are fp32
  subnormals or zero;
- ``special``: normal or tied rows where random rows get NaN, +inf, -inf (not chosen), all -inf,
  fewer than K finite logits, more NaNs than K, or a mix (``SPECIAL_KINDS``), in random columns.

Scale regimes (``SCALE_REGIMES``): uniform in [-0.5, 1.5), all zeros, all negative, huge (a quarter
of the largest value both the scale's dtype and float32 hold: the torch references cast the scale
to the logit dtype; test_properties.py covers a float64 scale beyond float32's range), subnormals of the
scale's dtype; in float64, float32, bfloat16 or float16, contiguous, every other element of a wider
tensor, or one value broadcast (stride 0).

Row layouts (``LAYOUTS``): contiguous, a transposed view (strides (1, T)), every other column of a
wider tensor whose gaps hold NaN (a kernel reading the wrong column sees it), and one row broadcast
to all T (stride 0).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from parity import device, numerics
from parity.routing.contract import SCALE_DTYPES as SCALE_DTYPE_LIST

DEVICE = device.default()

DTYPES = dict(zip(numerics.DTYPES, numerics.LOGIT_DTYPES))
SCALE_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
                "float16": torch.float16}  # the contract's SCALE_DTYPES, in the order the draws were made
assert set(SCALE_DTYPES.values()) == set(SCALE_DTYPE_LIST)
REGIMES = ("normal", "tiny_spread", "huge", "subnormal", "ties", "underflow", "special")
SCALE_REGIMES = ("uniform", "zeros", "negative", "huge", "subnormal")
LAYOUTS = ("contiguous", "transposed", "strided", "broadcast")
SCALE_LAYOUTS = ("contiguous", "strided", "broadcast")
SPECIAL_KINDS = ("nan", "posinf", "neginf", "all_neginf", "few_finite", "nan_heavy", "mixed")
"""Row kinds of the ``special`` regime. ``neginf``: -inf in columns that are never chosen (at least
K finite logits stay); ``few_finite``: fewer than K finite logits, the rest -inf (some chosen slots
carry -inf); ``nan_heavy``: at least K NaNs (up to the whole row); ``mixed``: NaN, +inf and -inf."""

# E is drawn from a bucket first, so that small and medium rows (fast in the interpreter) dominate
# while every size up to 1024 and the Gemma4 router's E=128 stay reachable. Repeats weight a bucket.
E_BUCKETS = ((1, 8), (9, 64), (9, 64), (65, 256), (65, 256), (128, 128), (257, 1024))

# --- hypothesis settings profiles ----------------------------------------------------------------
# PARITY_HYPOTHESIS_PROFILE picks one: "ci" (the default: derandomized, so every run tries the same
# examples, and no example database) or "long" (random, EXAMPLE_FACTOR["long"] times the examples,
# with the database under .hypothesis/ so failures are replayed first).
PROFILE = os.environ.get("PARITY_HYPOTHESIS_PROFILE", "ci").strip() or "ci"
EXAMPLE_FACTOR = {"ci": 1, "long": int(os.environ.get("PARITY_HYPOTHESIS_LONG_FACTOR", "20"))}
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=_SLOW_OK)
settings.register_profile("long", deadline=None, print_blob=True, suppress_health_check=_SLOW_OK)
if PROFILE not in EXAMPLE_FACTOR:
    raise ValueError(f"PARITY_HYPOTHESIS_PROFILE: expected one of {', '.join(EXAMPLE_FACTOR)}, got {PROFILE!r}")


def examples(n: int) -> settings:
    """Settings for a property worth ``n`` examples in CI, scaled for the chosen profile."""
    return settings(settings.get_profile(PROFILE), max_examples=n * EXAMPLE_FACTOR[PROFILE])


# --- specs and the tensors they stand for ------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """One drawn routing problem; ``build`` makes its tensors, the same bits every time."""

    T: int
    E: int
    K: int
    dtype: str
    layout: str
    regime: str
    scale_regime: str
    scale_dtype: str
    scale_layout: str
    seed: int

    def build(self, dev: torch.device | str = DEVICE) -> RoutingInput:
        gen = torch.Generator().manual_seed(self.seed)
        dtype = DTYPES[self.dtype]
        x, clean, special_rows = _logits(self.regime, self.T, self.E, self.K, dtype, gen)
        s = _scale(self.scale_regime, self.E, SCALE_DTYPES[self.scale_dtype], gen)
        if self.layout == "broadcast":  # one row for all: it is special in every row or in none
            special_rows = {k: tuple(range(self.T)) for k, rows in special_rows.items() if 0 in rows}
        g = _lay_out(x.to(dtype), self.layout, dev)
        g_clean = _lay_out(clean.to(dtype), self.layout, dev) if special_rows else None
        return RoutingInput(g, self.K, _lay_out_scale(s, self.scale_layout, dev), self.regime, self,
                            special_rows, g_clean)


@dataclass(frozen=True, eq=False)
class RoutingInput:
    """A routing call's arguments and where they came from. ``special_rows``: kind -> rows holding
    it (``special`` regime only); ``clean_gating_output``: the same logits with those rows left as
    drawn before the special values went in (None when there are none)."""

    gating_output: torch.Tensor
    topk: int
    per_expert_scale: torch.Tensor
    regime: str
    spec: Spec
    special_rows: dict = field(default_factory=dict)
    clean_gating_output: torch.Tensor | None = None

    @property
    def args(self) -> tuple[torch.Tensor, int, torch.Tensor]:
        return self.gating_output, self.topk, self.per_expert_scale

    @property
    def bad_rows(self) -> list[int]:
        return sorted({r for rows in self.special_rows.values() for r in rows})

    def __repr__(self) -> str:  # what hypothesis prints for a failing example: enough to rebuild it
        return f"{self.spec!r}.build()"


def _logits(regime: str, T: int, E: int, K: int, dtype: torch.dtype, gen: torch.Generator):
    """(logits, clean logits, special rows) in float64 on the CPU, before rounding to ``dtype``."""
    info = torch.finfo(dtype)
    f64 = torch.float64
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=f64)  # noqa: E731
    rand = lambda *shape: torch.rand(*shape, generator=gen, dtype=f64)  # noqa: E731
    randint = lambda lo, hi, shape=(): torch.randint(lo, hi + 1, shape, generator=gen)  # noqa: E731
    if regime == "normal":
        x = randn(T, E) * (1.0, 3.0, 10.0)[int(randint(0, 2))]
    elif regime == "tiny_spread":
        center = randn(T, 1) * 8
        width = center.abs().clamp_min(info.tiny) * info.eps * int(randint(0, 8))
        x = center + width * randn(T, E)
    elif regime == "huge":
        # both ends are dtype values, so rounding keeps |x| in [max/4, max/2]: nothing overflows
        magnitude = (1 - rand(T, E) / 2) * (info.max / 2)
        sign = randint(0, 1, (T, E)) * 2 - 1
        x = torch.where(rand(T, E) < 0.75, sign * magnitude, randn(T, E))
    elif regime == "subnormal":
        # within the largest subnormal, tiny * (1 - eps): values round to subnormals or to +-0
        x = (2 * rand(T, E) - 1) * info.tiny * (1 - info.eps)
        zero = rand(T, E) < 0.1
        x = torch.where(zero, torch.where(rand(T, E) < 0.5, -0.0, 0.0).to(f64), x)
    elif regime == "ties":
        x = randint(-4, 4, (T, E)).to(f64) * (0.25, 0.5, 1.0)[int(randint(0, 2))]
    elif regime == "underflow":
        # exp(x - max) of the far logits: fp32 subnormal below -87.3, zero below -103.9
        x = -80 - 70 * rand(T, E)
        near = rand(T, E) < min(1.0, max(K - 1, 1) / (2 * E))
        x = torch.where(near, randn(T, E), x)
    elif regime == "special":
        base = randn(T, E) if int(randint(0, 1)) else randint(-4, 4, (T, E)).to(f64)
        x, rows = _plant(base, K, gen)
        return x, base, rows
    else:
        raise ValueError(f"regime: unknown {regime!r}; known: {', '.join(REGIMES)}")
    return x, x, {}


def _plant(base: torch.Tensor, K: int, gen: torch.Generator):
    """Special values in random rows (at least one, when there are rows) and random columns."""
    T, E = base.shape
    x = base.clone()
    nan, inf = float("nan"), float("inf")
    randint = lambda lo, hi: int(torch.randint(lo, hi + 1, (), generator=gen))  # noqa: E731
    cols = lambda n: torch.randperm(E, generator=gen)[:n]  # noqa: E731
    rows: dict[str, list[int]] = {}
    n_rows = randint(1, T - 1) if T > 1 else T  # with two rows or more, one stays clean
    for r in torch.randperm(T, generator=gen)[:n_rows].tolist():
        kind = SPECIAL_KINDS[randint(0, len(SPECIAL_KINDS) - 1)]
        if kind == "nan":
            x[r, cols(randint(1, min(3, E)))] = nan
        elif kind == "posinf":
            x[r, cols(randint(1, min(3, E)))] = inf
        elif kind == "neginf":
            if E == K:  # no column can hold a -inf that is not chosen: leave the row clean
                continue
            x[r, cols(randint(1, E - K))] = -inf
        elif kind == "all_neginf":
            x[r] = -inf
        elif kind == "few_finite":
            keep = torch.zeros(E, dtype=torch.bool)
            keep[cols(randint(1, K - 1) if K > 1 else 0)] = True
            x[r] = torch.where(keep, x[r], -inf)
        elif kind == "nan_heavy":
            x[r, cols(randint(K, E))] = nan
        elif kind == "mixed":
            picked = cols(min(E, 3 * randint(1, 3)))
            n = picked.numel()
            x[r, picked[: (n + 2) // 3]] = nan
            x[r, picked[(n + 2) // 3 : 2 * (n + 2) // 3]] = inf
            x[r, picked[2 * (n + 2) // 3 :]] = -inf
        rows.setdefault(kind, []).append(r)
    return x, {k: tuple(sorted(v)) for k, v in rows.items()}


def _scale(regime: str, E: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    rand = torch.rand(E, generator=gen, dtype=torch.float64)
    if regime == "uniform":
        s = rand * 2 - 0.5
    elif regime == "zeros":
        s = torch.zeros(E, dtype=torch.float64)
    elif regime == "negative":
        s = -(rand + 0.01)
    elif regime == "huge":
        top = min(torch.finfo(dtype).max, torch.finfo(torch.float32).max) / 4
        sign = torch.randint(2, (E,), generator=gen) * 2 - 1
        s = sign * (1 - rand / 2) * top
    elif regime == "subnormal":
        info = torch.finfo(dtype)
        s = (2 * rand - 1) * info.tiny * (1 - info.eps)
    else:
        raise ValueError(f"scale regime: unknown {regime!r}; known: {', '.join(SCALE_REGIMES)}")
    return s.to(dtype)


def _lay_out(x: torch.Tensor, layout: str, dev) -> torch.Tensor:
    """``x`` [T, E] on ``dev`` with the given row layout; built on the device so that no copy there
    makes it contiguous again."""
    x = x.to(dev)
    T, E = x.shape
    if layout == "contiguous":
        return x
    if layout == "transposed":
        return x.t().contiguous().t()
    if layout == "strided":
        wide = torch.full((T, 2 * E), float("nan"), dtype=x.dtype, device=dev)
        wide[:, ::2] = x
        return wide[:, ::2]
    if layout == "broadcast":
        return x[:1].expand(T, E)
    raise ValueError(f"layout: unknown {layout!r}; known: {', '.join(LAYOUTS)}")


def _lay_out_scale(s: torch.Tensor, layout: str, dev) -> torch.Tensor:
    s = s.to(dev)
    if layout == "contiguous":
        return s
    if layout == "strided":
        wide = torch.full((2 * s.shape[0],), float("nan"), dtype=s.dtype, device=dev)
        wide[::2] = s
        return wide[::2]
    if layout == "broadcast":
        return s[:1].expand(s.shape[0])
    raise ValueError(f"scale layout: unknown {layout!r}; known: {', '.join(SCALE_LAYOUTS)}")


# --- strategies ------------------------------------------------------------------------------------

@st.composite
def specs(
    draw, *, max_T: int = 64, max_E: int = 1024, max_K: int = 64, regimes=REGIMES,
    dtypes=tuple(DTYPES), layouts=LAYOUTS, scale_regimes=SCALE_REGIMES,
    scale_dtypes=tuple(SCALE_DTYPES), scale_layouts=SCALE_LAYOUTS, min_T: int = 0,
) -> Spec:
    """A routing problem: T in [min_T, max_T] (0 and 1 drawn often), E in [1, max_E] weighted
    toward small and medium rows, K in [1, min(E, max_K)] (small K and K = min(E, max_K) drawn
    often), and one choice of every other dimension."""
    edge = [t for t in (0, 1) if min_T <= t <= max_T]
    bulk = [st.integers(max(2, min_T), max_T)] if max_T >= max(2, min_T) else []
    T = draw(st.one_of(*([st.sampled_from(edge)] if edge else []), *bulk, *bulk))  # edges: 1 in 3
    lo, hi = draw(st.sampled_from([b for b in E_BUCKETS if b[0] <= max_E]))
    E = draw(st.integers(lo, min(hi, max_E)))
    k_max = min(E, max_K)
    K = draw(st.one_of(st.integers(1, min(k_max, 8)), st.just(k_max), st.integers(1, k_max)))
    return Spec(
        T=T, E=E, K=K, dtype=draw(st.sampled_from(dtypes)), layout=draw(st.sampled_from(layouts)),
        regime=draw(st.sampled_from(regimes)), scale_regime=draw(st.sampled_from(scale_regimes)),
        scale_dtype=draw(st.sampled_from(scale_dtypes)), scale_layout=draw(st.sampled_from(scale_layouts)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def routing_inputs(dev: torch.device | str = DEVICE, **limits) -> st.SearchStrategy[RoutingInput]:
    """Routing inputs on ``dev`` (tests/conftest.py's DEVICE by default); ``limits`` as ``specs``."""
    return specs(**limits).map(lambda spec: spec.build(dev))
