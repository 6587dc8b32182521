"""parity in your own test suite: in place of ``torch.testing.assert_close(ref, out, atol=1e-2, rtol=1e-2)``.

    from parity.testing import assert_routing_close, check_routing

    # one call, on inputs you made
    weights, ids = my_kernel(gating_output, per_expert_scale, topk)
    assert_routing_close((weights, ids), gating_output, topk, per_expert_scale)

    # parity draws the inputs (its distributions: ties, special values, ...) for the shapes you name
    @pytest.mark.parametrize("T", [1, 2048, 250000])
    @pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
    def test_my_kernel(T, dtype):
        check_routing(my_kernel, T=T, dtype=dtype, signature="sglang")

Both compute the fp64 oracle themselves (or run the family's named torch reference), compare by
expert id with ties at the K-th place told apart from genuine mismatches, and judge the weights
with a tolerance the candidate did not make: by default the derived one shipped with the package
(parity.shipped; the envelope of the declared precision class when the baseline is the oracle).
They pass silently, or raise AssertionError with what failed, where, and by how much.

Everything here is stable API; the parameters after ``*`` are keyword-only.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import torch

from parity import inputs, routing, shipped
from parity.analysis import Routing, compare, selection_keys, tie_rule
from parity.numerics import DTYPES
from parity.routing.contract import ContractError, Problem, check_output, validate_router
from parity.routing.family import Family, Model
from parity.routing.oracle import route64
from parity.routing.router import Router
from parity.signatures import normalize, wrap
from parity.tolerance import PRECISIONS, worst_point
from parity.verdict import Rule, id_problems

__all__ = ["assert_routing_close", "check_routing", "router_for", "Tolerance", "TIES", "SPECIAL_VALUES"]

TIES = ("lower id", "higher id", "any")
"""What a candidate may do where equal keys straddle the K-th place: the oracle's rule (the lower
id), the higher id, or either."""
SPECIAL_VALUES = ("report", "fail")
"""Rows with NaN or infinite logits where the candidate follows another convention than the
oracle's: described in a failure message, or a failure themselves."""
ROW_DETAILS = 3


@dataclass(frozen=True)
class Tolerance:
    """The (atol, rtol) a check used, and where it came from."""

    atol: float
    rtol: float
    source: str

    def __str__(self) -> str:
        return f"atol={self.atol:.3g}, rtol={self.rtol:.3g} ({self.source})"


def _dtype_name(dtype) -> str:
    name = str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else str(dtype)
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return name


def _model_for(fam: Family, E: int | None, model: str | None) -> Model:
    if model is not None:
        return fam.model(model)
    return next((m for m in fam.models if m.E == E), fam.models[0])


def router_for(family: str, gating_output: torch.Tensor, per_expert_scale: torch.Tensor | None = None, *,
               model: str | None = None, renormalize: bool | None = None, scaling_factor: float | None = None,
               n_group: int | None = None, topk_group: int | None = None,
               correction_bias: torch.Tensor | None = None) -> Router:
    """The Router a check uses: the family's parameters, the settings of its ``model`` (default:
    its real model with this many experts, if any), then every parameter given."""
    fam = routing.family(family)
    E = gating_output.shape[-1] if isinstance(gating_output, torch.Tensor) and gating_output.dim() == 2 else None
    chosen = _model_for(fam, E, model)
    settings = dict(chosen.settings) if (model is not None or chosen.E == E) else {}
    given = {"renormalize": renormalize, "scaling_factor": scaling_factor, "n_group": n_group,
             "topk_group": topk_group, "correction_bias": correction_bias, "per_expert_scale": per_expert_scale}
    if fam.per_expert_scale and per_expert_scale is None:
        raise TypeError(f"per_expert_scale: the {family} router multiplies each weight by a per-expert scale; "
                        "pass it (a tensor [E])")
    return replace(fam.router, **{**settings, **{k: v for k, v in given.items() if v is not None}})


def _tolerance(tolerance, family: str, dtype: str, baseline: str, precision: str) -> Tolerance:
    if isinstance(tolerance, str):
        if tolerance != "derived":
            raise ValueError(f"tolerance: expected 'derived' or (atol, rtol), got {tolerance!r}")
        if baseline == "oracle":
            env = shipped.envelope(family, dtype, precision)
            source = (f"derived: the {precision} envelope of {family} for {dtype} logits, made by "
                      f"{', '.join(env['members'])} over {env['derived_from']} cases, held-out margin "
                      f"{env['margin']:.2f}; {shipped.provenance()}")
            return Tolerance(env["atol"], env["rtol"], source)
        name, t = shipped.pair(family, dtype, baseline)
        source = (f"derived: {name} for {family} {dtype} logits over {t['derived_from']} cases, held-out margin "
                  f"{t['margin']:.2f}; {shipped.provenance()}")
        return Tolerance(t["atol"], t["rtol"], source)
    if (isinstance(tolerance, (tuple, list)) and len(tolerance) == 2
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                    for v in tolerance)):
        return Tolerance(float(tolerance[0]), float(tolerance[1]), "given")
    raise ValueError(f"tolerance: expected 'derived' or (atol, rtol) with finite values >= 0, got {tolerance!r}")


def _baseline(fam: Family, baseline: str, g: torch.Tensor, K: int, router: Router, oracle: Routing) -> Routing:
    if baseline == "oracle":
        return oracle
    out = fam.implementations[baseline](g, K, fam.argument(router))
    return Routing.of(check_output(baseline, out, Problem(g.shape[0], g.shape[1], K), g.device))


def _row_detail(row: int, cand: Routing, base: Routing, keys: torch.Tensor, baseline: str) -> str:
    c, b = sorted(cand.ids[row].tolist()), sorted(base.ids[row].tolist())
    only_c, only_b = sorted(set(c) - set(b)), sorted(set(b) - set(c))
    key = lambda e: f"{e} (key {float(keys[row, e]):.6g})"  # noqa: E731
    return (f"    row {row}: candidate {c}, {baseline} {b}: chose {', '.join(map(key, only_c)) or 'a repeated id'} "
            f"over {', '.join(map(key, only_b)) or '-'}")


def assert_routing_close(
    candidate_out, gating_output: torch.Tensor, topk: int, per_expert_scale: torch.Tensor | None = None, *,
    family: str = routing.DEFAULT_FAMILY, model: str | None = None, renormalize: bool | None = None,
    scaling_factor: float | None = None, n_group: int | None = None, topk_group: int | None = None,
    correction_bias: torch.Tensor | None = None, router: Router | None = None,
    tolerance: str | tuple[float, float] = "derived", baseline: str = "oracle", precision: str = "fp32",
    ties: str = "lower id", special_values: str = "report", name: str = "candidate",
) -> None:
    """Assert that ``candidate_out`` = (weights [T, K], ids [T, K]) routes ``gating_output`` [T, E]
    as ``family``'s router does.

    - ids, compared by expert id whatever the slot order: a row choosing other experts fails
      unless the difference is a tie at the K-th place (then ``ties`` decides: the candidate's tie
      rule is checked on its own) or, with ``precision='input-dtype'``, a near-tie within two
      roundings of the logits' dtype;
    - weights, on the rows whose experts agree (and tie-explained ones): every element within
      ``tolerance`` = 'derived' (shipped with parity: the precision class's envelope against the
      oracle, or the derived tolerance of the family's fp32 implementation against a reference
      ``baseline``) or (atol, rtol), as ``|c - b| <= atol + rtol * |b|``;
    - NaN or infinite weights where the baseline's are finite fail; rows with NaN or infinite
      logits follow a convention (``special_values``: 'report' or 'fail').

    Router parameters: ``router`` (a parity Router), or the family's with its ``model``'s settings
    (default: its real model with E experts) and the ones given here. Outputs are read leniently
    where the conversion is exact: (ids, weights), int64 ids, bf16 weights. Raises AssertionError
    on a failure, TypeError/ValueError on bad arguments.
    """
    fam = routing.family(family)
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if ties not in TIES:
        raise ValueError(f"ties: expected one of {', '.join(repr(t) for t in TIES)}, got {ties!r}")
    if special_values not in SPECIAL_VALUES:
        raise ValueError(f"special_values: expected one of {', '.join(SPECIAL_VALUES)}, got {special_values!r}")
    params = {"model": model, "renormalize": renormalize, "scaling_factor": scaling_factor, "n_group": n_group,
              "topk_group": topk_group, "correction_bias": correction_bias}
    if router is not None and any(v is not None for v in params.values()):
        raise TypeError(f"router: given with {', '.join(k for k, v in params.items() if v is not None)}; "
                        "pass one or the other")
    if router is None:
        router = router_for(family, gating_output, per_expert_scale, model=model, renormalize=renormalize,
                            scaling_factor=scaling_factor, n_group=n_group, topk_group=topk_group,
                            correction_bias=correction_bias)
    if baseline != "oracle" and (baseline not in fam.implementations or baseline in fam.kernels):
        refs = [n for n in fam.implementations if n not in fam.kernels]
        raise ValueError(f"baseline: expected 'oracle' or one of {fam.name}'s references ({', '.join(refs)}), "
                         f"got {baseline!r}")
    problem = validate_router(gating_output, topk, router)
    dtype = _dtype_name(gating_output.dtype)
    tol = _tolerance(tolerance, family, dtype, baseline, precision)
    try:
        cand = Routing.of(check_output(name, normalize(candidate_out, problem.E, name), problem, gating_output.device))
    except ContractError as exc:
        raise AssertionError(f"{exc}\n(expected (weights [T, K], ids [T, K]) on {gating_output.device}, "
                             f"T={problem.T}, K={problem.K})") from None
    K = problem.K
    oracle = Routing.of(route64(gating_output, K, router))
    base = _baseline(fam, baseline, gating_output, K, router, oracle)
    g_cpu, r_cpu = gating_output.cpu(), router.to("cpu")
    res = compare(g_cpu, cand, base, r_cpu.per_expert_scale, pair=f"{name}~{baseline}", router=r_cpu,
                  tolerance=(tol.atol, tol.rtol))
    r = res.as_dict()
    keys = selection_keys(g_cpu, r_cpu)

    lines = []
    problems = id_problems(r, Rule(precision, special_values == "fail"))
    if problems:
        lines.append(f"Mismatched ids against the {baseline}: " + "; ".join(problems))
        for row in [*res.genuine_rows, *(res.near_tie_rows if precision == "fp32" else [])][:ROW_DETAILS]:
            lines.append(_row_detail(row, cand, base, keys, baseline))
    if ties != "any":
        t = tie_rule(g_cpu, cand.ids, router=r_cpu, where=True)
        follow = t["lower_id"] if ties == "lower id" else t["higher_id"]
        if t["tied_rows"] > follow:
            rows = t["not_lower_rows"] if ties == "lower id" else t["not_higher_rows"]
            allow = [f"ties={t['rule']!r}"] if t["rule"] in TIES and t["rule"] != ties else []
            lines.append(f"Tie rule: {t['tied_rows'] - follow} of {t['tied_rows']} rows whose K-th key ties do not go "
                         f"to the {ties.split()[0]} id (first rows {rows}); the candidate: {t['detail']}. "
                         f"Allow it with {' or '.join([*allow, 'ties=' + repr('any')])}.")
    if res.outside:
        m, i = worst_point(res.hull, tol.atol, tol.rtol)
        lines.append(f"Mismatched weights: {res.outside} of {res.weights_compared} outside the tolerance "
                     f"(first rows {res.outside_rows}); worst margin {m:.3g}x the allowed")
        if i is not None and i < len(res.hull_where):
            row, expert, c, b = res.hull_where[i]
            o_ids = oracle.ids[row].tolist()
            o = float(oracle.weights[row, o_ids.index(expert)]) if expert in o_ids else float("nan")
            err = abs(c - b)
            lines.append(f"    worst at row {row}, expert {expert}: candidate {c!r}, "
                         + (f"{baseline} {b!r}, " if baseline != "oracle" else "") + f"oracle {o!r}; "
                         f"abs err {err:.3g}, rel err {err / abs(b) if b else math.inf:.3g}, "
                         f"allowed {tol.atol + tol.rtol * abs(b):.3g}")
    if not lines:
        return
    if special_values == "report" and res.rows_special_differ:
        lines.append(f"Also (reported, not failed): {res.rows_special_differ} rows with NaN/inf logits follow "
                     f"another convention than the {baseline}'s (first rows {res.special_rows})")
    head = (f"Routing not close ({family}: T={problem.T}, E={problem.E}, K={K}, {dtype} logits; baseline "
            f"{baseline}; precision {precision}; ties {ties!r})")
    raise AssertionError("\n".join([head, *lines, f"Tolerance: {tol}"]))


def _seq(v) -> list:
    return list(v) if isinstance(v, (list, tuple, range)) else [v]


def check_routing(
    fn: Callable, *, family: str = routing.DEFAULT_FAMILY, T: int | Sequence[int] = (1, 2, 2048),
    E: int | None = None, K: int | None = None, dtype: str | torch.dtype | Iterable = tuple(DTYPES),
    dist: str | Sequence[str] = "upstream", seed: int | Sequence[int] = 0, model: str | None = None,
    signature="parity", device: str | torch.device | None = None, **options,
) -> None:
    """Run ``fn`` (a routing kernel, called through ``signature``: parity.signatures) on parity's
    input distributions for every combination of ``T``, ``dtype``, ``dist`` and ``seed`` (scalars
    or sequences), with E and K from ``model`` (default: the family's first real model, or the one
    with E experts), and assert each with ``assert_routing_close`` (``options``: its keyword
    arguments). A failure names the case."""
    fam = routing.family(family)
    m = _model_for(fam, E, model)
    if E is not None and E != m.E and K is None:
        raise ValueError(f"K: {family} has no real model with E={E}; pass K as well")
    matched = model is not None or E is None or E == m.E
    m = replace(m, E=E or m.E, K=K or m.K, settings=m.settings if matched else {})
    from parity import device as _device

    dev = (_device.default() if device is None
           else _device.resolve(device) if isinstance(device, str) else torch.device(device))
    routed = wrap(fn, signature, getattr(fn, "__name__", "candidate"))
    params = {k: options.pop(k) for k in ("renormalize", "scaling_factor", "n_group", "topk_group")
              if k in options}
    for k in ("per_expert_scale", "correction_bias", "router"):
        if k in options:
            raise TypeError(f"check_routing: {k} is drawn by parity for each case (the family's own); "
                            "call assert_routing_close on your inputs to choose it")
    for t in _seq(T):
        for dt in _seq(dtype):
            dt = _dtype_name(dt)
            for d in _seq(dist):
                for s in _seq(seed):
                    case = f"{family} T={t} E={m.E} K={m.K} {dt} {d} seed {s}"
                    inp = inputs.make(d, t, m.E, getattr(torch, dt), s, dev)
                    router = replace(fam.make_router(m, d, s, inp.per_expert_scale, dev), **params)
                    try:
                        out = routed(inp.gating_output, m.K, fam.argument(router))
                    except Exception as exc:
                        if hasattr(exc, "add_note"):
                            exc.add_note(f"check_routing: raised by {getattr(fn, '__name__', fn)!r} on {case}")
                        raise
                    try:
                        assert_routing_close(out, inp.gating_output, m.K, family=family, router=router,
                                             name=getattr(fn, "__name__", "candidate"), **options)
                    except AssertionError as exc:
                        raise AssertionError(f"check_routing: {case}:\n{exc}") from None
