"""The derived tolerances that ship with the package (parity/data/tolerances.json), so that
``parity.testing`` judges a kernel without a sweep.

The file is made from a sweep's summary.json by ``parity tolerances DIR --emit package`` and holds,
per family: the precision envelopes (per logit dtype and precision class: what a candidate is
judged by against the oracle), the derived tolerances of each pair (per logit dtype: what a kernel
needs against one of the family's references), and where they came from (git sha, device, torch,
triton, grid, date).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

PATH = Path(__file__).with_name("data") / "tolerances.json"
SOURCE_KEYS = ("git_sha", "device", "torch", "triton", "grid", "started")
ENVELOPE_KEYS = ("atol", "rtol", "members", "derived_from", "holdout_cases", "holdout_pass", "margin")
PAIR_KEYS = ("atol", "rtol", "derived_from", "holdout_pass", "margin")


def from_summary(summary: dict) -> dict:
    """The shipped table from a sweep's summary: numbers as the summary has them, nothing else."""
    meta = summary.get("meta", {})
    source = {k: meta.get(k) for k in SOURCE_KEYS}
    out = {"source": source, "families": {}}
    for name, fs in summary["families"].items():
        out["families"][name] = {
            "envelopes": {dtype: {p: {k: e.get(k) for k in ENVELOPE_KEYS} for p, e in by_p.items()}
                          for dtype, by_p in fs.get("precision_envelopes", {}).items()},
            "pairs": {dtype: {pair: {k: t.get(k) for k in PAIR_KEYS} for pair, t in pairs.items()}
                      for dtype, pairs in fs.get("tolerances", {}).items()},
        }
    return out


def write(summary: dict, path: Path = PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(from_summary(summary), indent=1, sort_keys=True) + "\n")
    return path


@lru_cache(maxsize=None)
def load(path: Path = PATH) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"shipped tolerances: {path} is missing (make it with "
                                "`parity tolerances DIR --emit package`)")
    return json.loads(path.read_text())


def provenance(table: dict | None = None) -> str:
    """Where the shipped numbers come from, in one phrase."""
    s = (table or load())["source"]
    return (f"{s.get('device')}, git {s.get('git_sha')}, torch {s.get('torch')}, triton {s.get('triton')}, "
            f"grid {s.get('grid')}, {str(s.get('started') or '')[:10]}")


def _family(family: str, table: dict) -> dict:
    fams = table["families"]
    if family not in fams:
        raise ValueError(f"tolerance='derived': no shipped tolerances for family {family!r}; "
                         f"shipped: {', '.join(fams)} (pass tolerance=(atol, rtol))")
    return fams[family]


def envelope(family: str, dtype: str, precision: str, table: dict | None = None) -> dict:
    """The precision envelope of ``family`` for ``dtype`` logits: what judges a candidate against
    the oracle."""
    envs = _family(family, table or load())["envelopes"]
    try:
        return envs[dtype][precision]
    except KeyError:
        raise ValueError(f"tolerance='derived': no shipped {precision} envelope for {family} {dtype} logits; "
                         f"shipped: {', '.join(f'{d}/{p}' for d, ps in envs.items() for p in ps)}") from None


def pair(family: str, dtype: str, baseline: str, table: dict | None = None) -> tuple[str, dict]:
    """The derived tolerance a kernel needs against the reference ``baseline``: the pair of the
    family's fp32 implementation (its kernel, or its fp32 reference) with that reference."""
    pairs = _family(family, table or load())["pairs"].get(dtype, {})
    from parity.routing import family as get_family

    fam = get_family(family)
    ordered = [fam.stand_in, *fam.kernels, *(n for n, a in fam.arithmetic.items() if a == "fp32")]
    for candidate in dict.fromkeys(ordered):
        key = f"{candidate}~{baseline}"
        if key in pairs:
            return key, pairs[key]
    known = sorted({p.split("~")[1] for p in pairs if not p.endswith("~oracle")})
    raise ValueError(f"tolerance='derived': no shipped tolerance against {baseline!r} for {family} {dtype} logits; "
                     f"references with one: {', '.join(known) or 'none'}, or baseline='oracle' "
                     "(or pass tolerance=(atol, rtol))")
