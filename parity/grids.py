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
    invariance: bool = False   # also route its rows in other batches (parity.invariance)

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


INVARIANCE_MAX_T = 4096
"""Batch invariance runs on one case per family, model and dtype: the largest T up to this (or the
smallest, on its first INVARIANCE_MAX_T rows)."""


def with_invariance(cases: list[Case]) -> tuple[Case, ...]:
    """The cases, one per (family, model, dtype) marked to check batch invariance."""
    from dataclasses import replace

    chosen: dict = {}
    for i, c in enumerate(cases):
        key = (c.family, c.model, c.dtype)
        best = chosen.get(key)
        fits = lambda x: x.T <= INVARIANCE_MAX_T  # noqa: E731
        if best is None or (fits(c) and (not fits(cases[best]) or c.T > cases[best].T)) or (
                not fits(c) and not fits(cases[best]) and c.T < cases[best].T):
            chosen[key] = i
    marked = set(chosen.values())
    return tuple(replace(c, invariance=True) if i in marked and c.T > 1 else c for i, c in enumerate(cases))


def grid(name: str, families: Iterable[str] | None = None) -> Grid:
    """The grid called ``name`` over ``families`` (default: all, in parity.routing.FAMILIES order)."""
    from parity.routing import FAMILIES, family

    if name not in GRIDS:
        raise ValueError(f"grid: unknown grid {name!r}; known: {', '.join(GRIDS)}")
    chosen = [family(f) for f in families] if families is not None else list(FAMILIES.values())
    description, build = GRIDS[name]
    return Grid(name, description, with_invariance([c for fam in chosen for c in build(fam)]))


# Grids of the user's own shapes: from the command line (``custom``) or a TOML file (``from_toml``).

CUSTOM_SEEDS = (0, 3)
CUSTOM_MUTANTS_MAX_T = 65536
SHAPE_FIELDS = ("family", "model", "T", "E", "K", "dtype", "dist", "seeds", "mutants")
TOML_FIELDS = ("name", "description", "shapes")


class GridError(ValueError):
    """A bad grid value: the message names the field."""


def _ints(field: str, value, *, low: int) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values):
        raise GridError(f"{field}: expected integers >= {low} (one or a list), got {value!r}")
    return list(dict.fromkeys(values))


def _names(field: str, value, known) -> list[str]:
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if not isinstance(v, str) or v not in known]
    if not values or bad:
        raise GridError(f"{field}: expected names from {', '.join(known)}, got {bad[0] if bad else value!r}")
    return list(dict.fromkeys(values))


def shape_cases(where: str, family: str, *, T, E=None, K=None, dtype=None, dist=None, seeds=None,
                model=None, mutants=None) -> list[Case]:
    """The cases of one shape: every combination of T, dtype, dist and seed for ``family`` at E
    experts and top K (default: ``model``'s, or the family's real model with E experts, or its
    first). Seeds 0-2 derive, the others are held out. ``where`` prefixes every error message."""
    from parity.inputs import DISTRIBUTIONS
    from parity.routing import FAMILIES
    from parity.routing.contract import validate_router

    def err(msg: str) -> GridError:
        return GridError(f"{where}{msg}")

    try:
        if family not in FAMILIES:
            raise GridError(f"family: expected one of {', '.join(FAMILIES)}, got {family!r}")
        fam = FAMILIES[family]
        if model is not None and model not in [m.name for m in fam.models]:
            raise GridError(f"model: expected one of {family}'s models ({', '.join(m.name for m in fam.models)}), "
                            f"got {model!r}")
        Ts = _ints("T", T, low=0)
        (E,) = _ints("E", E, low=1) if E is not None else (None,)
        (K,) = _ints("K", K, low=1) if K is not None else (None,)
        m = fam.model(model) if model is not None else next((x for x in fam.models if x.E == E), fam.models[0])
        E = E or m.E
        K = K or (m.K if E == m.E else None)
        if K is None:
            raise GridError(f"K: {family} has no real model with E={E}; give K")
        if K > E:
            raise GridError(f"K: expected K <= E={E}, got {K}")
        dtypes = _names("dtype", dtype, DTYPES) if dtype is not None else list(DTYPES)
        dists = _names("dist", dist, list(DISTRIBUTIONS)) if dist is not None else ["upstream"]
        seed_list = _ints("seeds", seeds, low=0) if seeds is not None else list(CUSTOM_SEEDS)
        if mutants is not None and not isinstance(mutants, bool):
            raise GridError(f"mutants: expected true or false, got {mutants!r}")
        import torch

        probe = torch.zeros(1, E)
        router = fam.make_router(fam.model_at(m.name, E, K), dists[0], 0, torch.ones(E))
        try:
            validate_router(probe, K, router)
        except (TypeError, ValueError) as exc:
            raise GridError(f"E: {family}'s model {m.name} does not fit E={E}, K={K}: {exc}") from None
    except GridError as exc:
        raise err(str(exc)) from None
    return [Case(t, E, K, dt, d, s, _role(s), (t <= CUSTOM_MUTANTS_MAX_T) if mutants is None else mutants,
                 family, m.name)
            for d in dists for dt in dtypes for t in Ts for s in seed_list]


def custom(families: Iterable[str], **shape) -> Grid:
    """A grid from the command line's shape options, for each family."""
    cases = [c for f in families for c in shape_cases("--", f, **shape)]
    desc = ", ".join(f"{k}={v}" for k, v in shape.items() if v is not None)
    return Grid("custom", f"shapes from the command line: {desc}", with_invariance(cases))


def from_toml(path, default_families: Iterable[str]) -> Grid:
    """A grid from a TOML file: optional ``name`` and ``description``, and ``[[shapes]]`` tables
    with T (required), E, K, dtype, dist, seeds, model, mutants and family (default: the command
    line's families). Every error names the file and the field."""
    from pathlib import Path

    try:
        import tomllib
    except ImportError:   # Python 3.10: the same parser under its older name, if installed
        try:
            import tomli as tomllib
        except ImportError:
            raise GridError("--grid-file: needs Python >= 3.11 (tomllib) or the tomli package on 3.10") from None

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GridError(f"--grid-file: no such file {str(path)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{path}: not valid TOML: {exc}") from None
    unknown = [k for k in data if k not in TOML_FIELDS]
    if unknown:
        raise GridError(f"{path}: {unknown[0]}: unknown field; expected {', '.join(TOML_FIELDS)}")
    shapes = data.get("shapes")
    if not isinstance(shapes, list) or not shapes or not all(isinstance(s, dict) for s in shapes):
        raise GridError(f"{path}: shapes: expected one or more [[shapes]] tables")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise GridError(f"{path}: {key}: expected a string, got {data[key]!r}")
    cases = []
    for i, shape in enumerate(shapes):
        where = f"{path}: shapes[{i}]."
        unknown = [k for k in shape if k not in SHAPE_FIELDS]
        if unknown:
            raise GridError(f"{where}{unknown[0]}: unknown field; expected {', '.join(SHAPE_FIELDS)}")
        if "T" not in shape:
            raise GridError(f"{where}T: missing (the numbers of tokens, e.g. T = [1, 2048])")
        fams = [shape["family"]] if "family" in shape else list(default_families)
        args = {k: v for k, v in shape.items() if k != "family"}
        for f in fams:
            cases += shape_cases(where, f, **args)
    ids = [c.id for c in cases]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup:
        raise GridError(f"{path}: the case {dup} comes twice; shapes must not overlap")
    return Grid(data.get("name", path.stem), data.get("description", f"shapes from {path.name}"),
                with_invariance(cases))
