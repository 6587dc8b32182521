"""Named input distributions for the router: logits [T, E] and a per-expert scale [E].

Each distribution stresses one thing a routing kernel can get wrong (ties, spread, tails, special
values) and states it in one line, its ``claim``, which reports quote and tests check.

Reproducibility: ``make(dist, T, E, dtype, seed, device)`` gives the same tensors on every run, in
every process, on every device. All distributions but ``upstream`` draw from a private CPU
``torch.Generator`` seeded from ``(dist, T, E, dtype, seed)`` through a stable hash (blake2b, never
Python's ``hash()``, which changes per process), generate in float32/float64 on the CPU, round
once to ``dtype`` there and only then move to ``device``: the GPU's RNG and its conversions never
touch the values, so CPU and GPU runs see bit-identical logits. ``upstream`` instead reproduces the
upstream test's own generation on the global RNG, bit for bit, so its cases can be compared with
published numbers.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import torch

from parity.numerics import LOGIT_DTYPES, stable_seed

DTYPES = LOGIT_DTYPES

# The numbers behind each distribution, here so that reports and tests read them from one place.
PEAKED_SPREAD = 8.0
FLAT_CENTER, FLAT_SPREAD = 1.0, 1e-6
INTEGER_LOW, INTEGER_HIGH = -3, 3  # inclusive
HEAVY_TAIL_DF = 2
HEAVY_TAIL_CLAMP = 1e4  # finite in every dtype (fp16's max is 65504): infinities belong to `special`
IMBALANCE_SIGMA = 1.0
SPECIAL_KINDS = ("nan", "posinf", "neginf", "all_neginf", "huge", "subnormal")
SATURATING_SPREAD = 20.0
TIED_GROUPS = 8


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value to compare by
class Inputs:
    """One routing problem's inputs. ``special_rows`` is empty except for ``special``."""

    gating_output: torch.Tensor  # [T, E], the requested dtype
    per_expert_scale: torch.Tensor  # [E], float32
    special_rows: dict[str, list[int]]  # kind -> sorted row indices


@dataclass(frozen=True)
class Distribution:
    """A distribution's name, what it draws, and the property it promises (quoted in reports)."""

    name: str
    description: str
    claim: str


Recipe = Callable[[torch.Generator, int, int, torch.dtype], "torch.Tensor | tuple[torch.Tensor, dict]"]

DISTRIBUTIONS: dict[str, Distribution] = {
    "upstream": Distribution(
        "upstream",
        "torch.manual_seed(seed); torch.randn(T, E, dtype, device); torch.rand(E, float32, device)",
        "bit-identical to the upstream test's own inputs for the same seed (on the same device)",
    ),
}
"""Every distribution by name: the one source of truth for the names ``make`` takes."""

_RECIPES: dict[str, Recipe] = {}


def _distribution(name: str, description: str, claim: str) -> Callable[[Recipe], Recipe]:
    """Register a recipe drawing from the private generator: (gen, T, E, dtype) -> CPU logits."""

    def register(recipe: Recipe) -> Recipe:
        DISTRIBUTIONS[name] = Distribution(name, description, claim)
        _RECIPES[name] = recipe
        return recipe

    return register


@_distribution("randn", "standard normal logits", "logits ~ N(0, 1), independent")
def _randn(gen, T, E, dtype):
    return torch.randn(T, E, generator=gen)


@_distribution(
    "peaked",
    f"randn * {PEAKED_SPREAD:g}",
    f"logits ~ N(0, {PEAKED_SPREAD:g}**2): large gaps, the top expert takes most of the weight",
)
def _peaked(gen, T, E, dtype):
    return torch.randn(T, E, generator=gen) * PEAKED_SPREAD


@_distribution(
    "flat",
    f"{FLAT_CENTER:g} + {FLAT_SPREAD:g} * randn, in float32",
    "all logits within ~1e-5 of each other: fp32 rows hold near-ties and exact ties, bf16/fp16 all ties",
)
def _flat(gen, T, E, dtype):
    return FLAT_CENTER + FLAT_SPREAD * torch.randn(T, E, generator=gen)


@_distribution(
    "bf16-grid",
    "randn rounded to bfloat16, then cast to the requested dtype",
    "every logit is a bfloat16 value, so fp32 logits hold exact ties (K-th place: ~6% of rows, E=128)",
)
def _bf16_grid(gen, T, E, dtype):
    return torch.randn(T, E, generator=gen).to(torch.bfloat16).float()


@_distribution(
    "integer",
    f"integers drawn uniformly from {INTEGER_LOW}..{INTEGER_HIGH}",
    "massive exact ties: the K-th and (K+1)-th largest logits are equal in most rows",
)
def _integer(gen, T, E, dtype):
    return torch.randint(INTEGER_LOW, INTEGER_HIGH + 1, (T, E), generator=gen).float()


@_distribution(
    "heavy-tail",
    f"Student-t with {HEAVY_TAIL_DF} degrees of freedom, clamped to +-{HEAVY_TAIL_CLAMP:g}",
    "occasional huge (but finite) logits: max |x| far beyond a normal sample's",
)
def _heavy_tail(gen, T, E, dtype):
    # t = Z / sqrt(W / df) with W ~ chi2(2) = -2 log U, so for df = 2: t = Z / sqrt(-log U).
    # U = 1 - rand lies in (0, 1]; the clamp_min keeps U = 1 (prob. 2**-53) from dividing by zero.
    z = torch.randn(T, E, generator=gen, dtype=torch.float64)
    w = -torch.log1p(-torch.rand(T, E, generator=gen, dtype=torch.float64))
    return (z / w.clamp_min(1e-300).sqrt()).clamp(-HEAVY_TAIL_CLAMP, HEAVY_TAIL_CLAMP)


@_distribution(
    "imbalanced",
    f"randn + bias[e], one fixed bias per expert drawn from N(0, {IMBALANCE_SIGMA:g}**2)",
    "some experts win far more often: the most-chosen expert is chosen many times more than the median",
)
def _imbalanced(gen, T, E, dtype):
    bias = torch.randn(E, generator=gen) * IMBALANCE_SIGMA
    return torch.randn(T, E, generator=gen) + bias


@_distribution(
    "special",
    "randn rows; (T+1)//2 rows at seeded places get a special kind, cycling through "
    + ", ".join(SPECIAL_KINDS),
    "rows listed in special_rows hold their kind (NaN, +inf, -inf, all -inf, |x| in [max/4, max/2], "
    "subnormals of the dtype); every other row is finite; every kind appears once T >= 11",
)
def _special(gen, T, E, dtype):
    x = torch.randn(T, E, generator=gen).double()  # float64 holds every dtype's subnormals exactly
    info = torch.finfo(dtype)
    picked = torch.randperm(T, generator=gen)[: (T + 1) // 2]
    cols = torch.randint(E, (picked.numel(),), generator=gen)
    special_rows = {}
    for k, kind in enumerate(SPECIAL_KINDS):
        rows, col = picked[k :: len(SPECIAL_KINDS)], cols[k :: len(SPECIAL_KINDS)]
        if kind == "nan":
            x[rows, col] = float("nan")
        elif kind == "posinf":
            x[rows, col] = float("inf")
        elif kind == "neginf":
            x[rows, col] = float("-inf")
        elif kind == "all_neginf":
            x[rows] = float("-inf")
        elif kind == "huge":
            # Both bounds are dtype values, so rounding keeps |x| in [max/4, max/2]: no overflow.
            sign = torch.randint(2, (rows.numel(), E), generator=gen) * 2 - 1
            magnitude = 1 - torch.rand(rows.numel(), E, generator=gen, dtype=torch.float64) / 2
            x[rows] = sign * magnitude * (info.max / 2)
        elif kind == "subnormal":
            # The largest subnormal is tiny * (1 - eps): values within it round to subnormals (or 0).
            u = 2 * torch.rand(rows.numel(), E, generator=gen, dtype=torch.float64) - 1
            x[rows] = u * info.tiny * (1 - info.eps)
        special_rows[kind] = sorted(rows.tolist())
    return x, special_rows


@_distribution(
    "sigmoid-saturating",
    f"randn * {SATURATING_SPREAD:g}",
    "many logits beyond +-17, where an fp32 sigmoid rounds to 0 or 1 and ties what fp64 keeps apart: "
    "a sigmoid router's choice then rests on the correction bias",
)
def _sigmoid_saturating(gen, T, E, dtype):
    return torch.randn(T, E, generator=gen) * SATURATING_SPREAD


@_distribution(
    "group-ties",
    f"randn rows in which every block of E/{TIED_GROUPS} consecutive experts repeats the first block",
    f"DeepSeek-V3's {TIED_GROUPS} groups hold the same logits (with one correction bias for all, every group "
    f"scores the same); without groups, each logit appears {TIED_GROUPS} times",
)
def _group_ties(gen, T, E, dtype):
    blocks = TIED_GROUPS if E % TIED_GROUPS == 0 else 1
    return torch.randn(T, E // blocks, generator=gen).repeat(1, blocks)


assert set(DISTRIBUTIONS) == set(_RECIPES) | {"upstream"}


def generator_seed(dist: str, T: int, E: int, dtype: torch.dtype, seed: int) -> int:
    """The private generator's seed for one case: a stable 63-bit hash of all its arguments.

    Hashing T, E and dtype too means that two cases never share a stream by accident (T=8 is not
    the first rows of T=16). Stable across processes and Python versions, unlike ``hash()``.
    """
    return stable_seed(dist, T, E, dtype, seed)


def make(dist: str, T: int, E: int, dtype: torch.dtype, seed: int, device: torch.device | str) -> Inputs:
    """Draw ``dist``'s inputs: logits [T, E] of ``dtype`` and a float32 scale [E], on ``device``.

    Raises ValueError for an unknown ``dist``, T < 0 or E < 1; TypeError for a dtype other than
    float32/bfloat16/float16 or a non-integer T, E or seed.
    """
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist: unknown distribution {dist!r}; known: {', '.join(DISTRIBUTIONS)}")
    if dtype not in DTYPES:
        raise TypeError(
            f"dtype: expected torch.float32, torch.bfloat16 or torch.float16, got {dtype!r}"
        )
    for label, value in (("T", T), ("E", E), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{label}: expected an int, got {type(value).__name__} ({value!r})")
    if T < 0:
        raise ValueError(f"T: expected T >= 0 tokens, got T={T}")
    if E < 1:
        raise ValueError(f"E: expected at least one expert (E >= 1), got E={E}")
    T, E, seed = int(T), int(E), int(seed)

    if dist == "upstream":
        # The upstream recipe, verbatim: global RNG, values drawn on the device itself.
        torch.manual_seed(seed)
        gating_output = torch.randn(T, E, dtype=dtype, device=device)
        per_expert_scale = torch.rand(E, dtype=torch.float32, device=device)
        return Inputs(gating_output, per_expert_scale, {})

    gen = torch.Generator(device="cpu").manual_seed(generator_seed(dist, T, E, dtype, seed))
    drawn = _RECIPES[dist](gen, T, E, dtype)
    logits, special_rows = drawn if isinstance(drawn, tuple) else (drawn, {})
    per_expert_scale = torch.rand(E, generator=gen, dtype=torch.float32)
    return Inputs(logits.to(dtype).to(device), per_expert_scale.to(device), special_rows)
