"""Grids: named sets of cases a sweep runs.

A case is (T, E, K, dtype, distribution, seed) plus its role: ``derive`` cases feed the tolerance
derivation, ``holdout`` cases validate it (other seeds, larger T). ``mutants``: whether the
deliberately wrong routings run on it too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from parity import inputs
from parity.numerics import DTYPES

DERIVE_SEEDS = (0, 1, 2)
HOLDOUT_SEEDS = (3, 4)
UPSTREAM_T = (1, 2, 2048, 250000)


@dataclass(frozen=True)
class Case:
    T: int
    E: int
    K: int
    dtype: str
    dist: str
    seed: int
    role: str            # "derive" | "holdout"
    mutants: bool = False

    @property
    def id(self) -> str:
        return f"T{self.T}-E{self.E}-K{self.K}-{self.dtype}-{self.dist}-s{self.seed}"


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    cases: tuple[Case, ...]


def _upstream(seeds_small=(*DERIVE_SEEDS, *HOLDOUT_SEEDS), big_T=UPSTREAM_T[-1]) -> list[Case]:
    cases = []
    for dtype in DTYPES:
        for T in UPSTREAM_T[:-1]:
            for seed in seeds_small:
                role = "derive" if seed in DERIVE_SEEDS else "holdout"
                cases.append(Case(T, 128, 8, dtype, "upstream", seed, role, mutants=T >= 2048))
        cases.append(Case(big_T, 128, 8, dtype, "upstream", 0, "holdout"))  # held out: larger T
    return cases


def _distributions(T: int, seeds: Iterable[int]) -> list[Case]:
    return [
        Case(T, 128, 8, dtype, dist, seed, "derive" if seed in DERIVE_SEEDS else "holdout", mutants=True)
        for dist in inputs.DISTRIBUTIONS if dist != "upstream"
        for dtype in DTYPES for seed in seeds
    ]


def _smoke() -> list[Case]:
    cases = []
    for dtype in DTYPES:
        cases += [Case(64, 128, 8, dtype, "upstream", s, "derive") for s in (0, 1)]
        cases += [Case(1, 128, 8, dtype, "upstream", 3, "holdout")]
        cases += [Case(4096, 128, 8, dtype, "randn", 0, "derive", mutants=True)]
        cases += [Case(4096, 128, 8, dtype, "randn", 3, "holdout", mutants=True)]
        cases += [Case(64, 128, 8, dtype, "special", 3, "holdout", mutants=True)]
    return cases


GRIDS: dict[str, Callable[[], Grid]] = {
    "upstream": lambda: Grid(
        "upstream", "the upstream test's grid: T in {1, 2, 2048, 250000}, E=128, K=8, three dtypes, "
        "upstream inputs; seeds 0-2 derive, seeds 3-4 and T=250000 are held out",
        tuple(_upstream())),
    "default": lambda: Grid(
        "default", "upstream, plus every other distribution at T=4096 (seeds 0-2 derive, seeds 3-4 "
        "held out) and T=65536 randn held out",
        tuple(_upstream() + _distributions(4096, (*DERIVE_SEEDS, *HOLDOUT_SEEDS))
              + [Case(65536, 128, 8, d, "randn", 4, "holdout") for d in DTYPES])),
    "smoke": lambda: Grid(
        "smoke", "a small grid for CI and a first look: upstream T=1 and 64, randn T=4096 (bf16 ties "
        "at the K-th place), special values; every stage of the pipeline runs",
        tuple(_smoke())),
}


def grid(name: str) -> Grid:
    if name not in GRIDS:
        raise ValueError(f"grid: unknown grid {name!r}; known: {', '.join(GRIDS)}")
    return GRIDS[name]()
