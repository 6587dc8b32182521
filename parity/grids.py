"""Grids: named sets of cases a sweep runs, for every routing family (or the ones asked for).

A case is (family, model, T, E, K, dtype, distribution, seed) plus its role: ``derive`` cases feed
the tolerance derivation, ``holdout`` cases validate it (other seeds, larger T). ``mutants``:
whether the family's deliberately wrong routings run on it too. E and K are the model's: every
family is swept at the shapes of the real models it covers (parity.routing.family.Model).

Gemma4's grids are what they were before families: the upstream test's grid, every distribution at
T=4096 and T=65536 held out. The other families' default grid puts their first model through the
upstream inputs (T up to 2048, 65536 held out) and every distribution that matters for the family
at T=1024, and their other models through the upstream inputs at T=2048.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from parity.numerics import DTYPES

DERIVE_SEEDS = (0, 1, 2)
HOLDOUT_SEEDS = (3, 4)
UPSTREAM_T = (1, 2, 2048, 250000)
FAMILY_BIG_T = 65536
FAMILY_DIST_T = 1024
FAMILY_DIST_SEEDS = (0, 3)


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
    family: str = "gemma4"
    model: str = "gemma4"

    @property
    def id(self) -> str:
        return f"{self.model}-T{self.T}-E{self.E}-K{self.K}-{self.dtype}-{self.dist}-s{self.seed}"


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    cases: tuple[Case, ...]


def _role(seed: int) -> str:
    return "derive" if seed in DERIVE_SEEDS else "holdout"


def _cases(fam, model, Ts: Iterable[int], dists: Iterable[str], seeds: Iterable[int], *,
           mutants: Callable[[int], bool] = lambda T: True, role: Callable[[int], str] = _role) -> list[Case]:
    return [Case(T, model.E, model.K, dtype, dist, seed, role(seed), mutants(T), fam.name, model.name)
            for dist in dists for dtype in DTYPES for T in Ts for seed in seeds]


def _upstream(fam, model, big_T: int = UPSTREAM_T[-1]) -> list[Case]:
    cases = []
    for dtype in DTYPES:
        for T in UPSTREAM_T[:-1]:
            for seed in (*DERIVE_SEEDS, *HOLDOUT_SEEDS):
                cases.append(Case(T, model.E, model.K, dtype, "upstream", seed, _role(seed), T >= 2048, fam.name, model.name))
        cases.append(Case(big_T, model.E, model.K, dtype, "upstream", 0, "holdout", False, fam.name, model.name))
    return cases


def _others(fam) -> list[str]:
    return [d for d in fam.distributions if d != "upstream"]


def _default(fam) -> list[Case]:
    m = fam.models[0]
    if fam.name == "gemma4":
        return (_upstream(fam, m) + _cases(fam, m, (4096,), _others(fam), (*DERIVE_SEEDS, *HOLDOUT_SEEDS))
                + _cases(fam, m, (65536,), ("randn",), (4,), mutants=lambda T: False))
    return (_upstream(fam, m, FAMILY_BIG_T) + _cases(fam, m, (FAMILY_DIST_T,), _others(fam), FAMILY_DIST_SEEDS)
            + [c for other in fam.models[1:] for c in _cases(fam, other, (2048,), ("upstream",), FAMILY_DIST_SEEDS)])


def _smoke(fam) -> list[Case]:
    m = fam.models[0]
    T_randn = 4096 if fam.name == "gemma4" else 512
    extra = [d for d in fam.distributions if d in ("sigmoid-saturating", "group-ties")]
    cases = []
    for dtype in DTYPES:
        cases += [Case(64, m.E, m.K, dtype, "upstream", s, "derive", False, fam.name, m.name) for s in (0, 1)]
        cases += [Case(1, m.E, m.K, dtype, "upstream", 3, "holdout", False, fam.name, m.name)]
        cases += [Case(T_randn, m.E, m.K, dtype, "randn", s, _role(s), True, fam.name, m.name) for s in (0, 3)]
        cases += [Case(64, m.E, m.K, dtype, d, 3, "holdout", True, fam.name, m.name) for d in ("special", *extra)]
    return cases


GRIDS: dict[str, tuple[str, Callable]] = {
    "upstream": ("the upstream test's grid: T in {1, 2, 2048} and 250000 (Gemma4; 65536 for the other families), "
                 "each family's first model, three dtypes, upstream inputs; seeds 0-2 derive, seeds 3-4 and the "
                 "largest T are held out", lambda fam: _upstream(fam, fam.models[0], UPSTREAM_T[-1] if fam.name == "gemma4" else FAMILY_BIG_T)),
    "default": ("upstream, plus every distribution that matters for the family (Gemma4: at T=4096, seeds 0-2 "
                "derive and 3-4 held out, and T=65536 randn held out; the others: at T=1024, seed 0 derives and "
                "3 held out), and every other real model of the family at T=2048", _default),
    "smoke": ("a small grid for CI and a first look: upstream T=1 and 64, randn (Gemma4 at T=4096, where bf16 "
              "ties at the K-th place), special values and the family's own distributions; every stage runs", _smoke),
}


def grid(name: str, families: Iterable[str] | None = None) -> Grid:
    """The grid called ``name`` over ``families`` (default: all, in parity.routing.FAMILIES order)."""
    from parity.routing import FAMILIES, family

    if name not in GRIDS:
        raise ValueError(f"grid: unknown grid {name!r}; known: {', '.join(GRIDS)}")
    chosen = [family(f) for f in families] if families is not None else list(FAMILIES.values())
    description, build = GRIDS[name]
    return Grid(name, description, tuple(c for fam in chosen for c in build(fam)))
