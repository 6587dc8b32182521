"""A ready-to-paste pytest module from a sweep's derived tolerances (``parity tolerances DIR --emit
pytest``): it runs a kernel through ``parity.testing.check_routing`` with the precision envelope of
the sweep, per logit dtype, and says in a comment where the numbers came from."""
from __future__ import annotations

from parity.formatting import fmt

TS = (1, 2, 2048)


def pytest_module(summary: dict, family: str, precision: str, candidate: str | None = None,
                  signature: str = "parity") -> str:
    """The module's text. ``candidate``: 'module:function' (default: the family's own fp32
    implementation, so the module runs as it is; replace it by your kernel)."""
    from parity.routing import family as get_family

    fam = get_family(family)
    fs = summary.get("families", {}).get(family)
    if fs is None:
        raise ValueError(f"--family: no {family} in this sweep; it has {', '.join(summary.get('families', {}))}")
    envs = {d: e[precision] for d, e in sorted(fs.get("precision_envelopes", {}).items()) if precision in e}
    if not envs:
        raise ValueError(f"--precision: no {precision} envelope for {family} in this sweep")
    meta = summary.get("meta", {})
    source = (f"{meta.get('device')}, git {meta.get('git_sha')}, torch {meta.get('torch')}, triton {meta.get('triton')}, "
              f"grid {meta.get('grid')}, {str(meta.get('started') or '')[:10]}")
    if candidate:
        module, _, attr = candidate.partition(":")
        imp = (f"import {module}\n\nCANDIDATE = {module}.{attr}" if "." in attr
               else f"from {module} import {attr} as CANDIDATE")
        note = "# the kernel under test"
    else:
        own = fam.kernels[0] if fam.kernels else fam.stand_in
        imp = f'from parity.routing import get\n\nCANDIDATE = get("{own}", "{family}")'
        note = (f"# parity's own {own}, so that this module runs as it is: put your kernel here, e.g.\n"
                "# from my_engine.ops import my_routing as CANDIDATE")
    rows = "\n".join(f'    "{d}": ({e["atol"]!r}, {e["rtol"]!r}),  # {precision} envelope of {", ".join(e["members"])}: '
                     f'{e["derived_from"]} cases, held-out margin {fmt(e["margin"])}' for d, e in envs.items())
    dists = list(fam.distributions)
    return f'''"""Routing tests for the {family} router with parity's derived tolerances.

Written by `parity tolerances --emit pytest` from a sweep on {source}.
Each case draws parity's inputs (distribution, T, dtype), routes them through CANDIDATE and
asserts with parity.testing.check_routing: expert ids against the fp64 oracle by id (ties at the
K-th place told apart; TIES says which way they must go), weights within the {precision} envelope below.
"""
import pytest

from parity.testing import check_routing

{note}
{imp}

FAMILY = "{family}"
SIGNATURE = "{signature}"   # parity.signatures: parity, sglang, keywords, outputs-last, or module:function
PRECISION = "{precision}"
TIES = "lower id"            # "higher id" or "any" if your kernel breaks ties another way

# (atol, rtol) against the fp64 oracle, by logit dtype
TOLERANCES = {{
{rows}
}}


@pytest.mark.parametrize("dist", {dists!r})
@pytest.mark.parametrize("dtype", sorted(TOLERANCES))
@pytest.mark.parametrize("T", {list(TS)!r})
def test_routing(T, dtype, dist):
    check_routing(CANDIDATE, family=FAMILY, T=T, dtype=dtype, dist=dist, signature=SIGNATURE,
                  tolerance=TOLERANCES[dtype], precision=PRECISION, ties=TIES)
'''
