"""Batch invariance: does an implementation give a token the same bits whatever batch it is routed in?

The rows of one batch are routed once as a whole (the reference), then again in other batches:
- split: in consecutive batches of a few sizes (1, 7, 64 rows), starting at an offset, so that
  every row sits at other positions of smaller launches (other tiles, other programs);
- mixed: interleaved with as many rows of other logits (the batch doubles and the rows move);
- reversed: in the opposite order;
- strided: as a view into a wider buffer (other strides and alignment, another load path).
Each row's output, by expert id, is compared bit for bit with the reference: ids first, then the
weights' bits. The status: ``yes`` (every row the same bits), ``ids only`` (the same experts, some
weights differ) or ``no`` (some row chose other experts). NaN weights equal NaN weights.

Nothing here decides a verdict: parity.verdict reads the status when the rule asks for batch
invariance (``--require-batch-invariance``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from parity.routing.contract import Problem, by_id, check_output

SPLITS = (1, 7, 64)
OFFSETS = (0, 3)
MAX_CHUNKS = 8           # per split and offset: the first rows only (a split into 1-row batches of T rows is T launches)
STATUSES = ("yes", "ids only", "no")


@dataclass
class Invariance:
    """One implementation's batch invariance on one batch of rows."""

    impl: str
    rows: int
    variants: int = 0                 # batches tried besides the reference
    rows_ids_differ: int = 0          # rows (any variant) whose experts differ from the reference's
    rows_weights_differ: int = 0      # rows with the same experts whose weights differ in some bit
    max_abs: float = 0.0              # the largest weight difference among those
    worst: dict = field(default_factory=dict)   # where: variant, row, expert, reference and variant weights
    status: str = "yes"

    def as_dict(self) -> dict:
        return asdict(self)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise: equal bits, except that every NaN equals every NaN."""
    a, b = a.contiguous(), b.contiguous()
    return (a.view(torch.int32) == b.view(torch.int32)) | (torch.isnan(a) & torch.isnan(b))


def variants(g: torch.Tensor, *, splits=SPLITS, offsets=OFFSETS, max_chunks: int = MAX_CHUNKS,
             seed: int = 0) -> list[tuple[str, list[tuple[torch.Tensor, torch.Tensor]]]]:
    """Each variant: its name and a list of (logits to route, the reference rows its first rows are)."""
    T, E = g.shape
    out = []
    for s in splits:
        for o in offsets:
            if o >= T or s >= T:
                continue
            starts = list(range(o, T, s))[:max_chunks]
            out.append((f"split {s} from row {o}",
                        [(g[a:a + s], torch.arange(a, min(a + s, T), device=g.device)) for a in starts]))
    rows = torch.arange(T, device=g.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    other = (torch.randn(T, E, generator=gen, dtype=torch.float32) * 2).to(g.dtype).to(g.device)
    mixed = torch.stack([g, other], dim=1).reshape(2 * T, E)
    out.append(("mixed with as many other rows", [(mixed, torch.stack([rows, torch.full_like(rows, -1)], 1).flatten())]))
    out.append(("reversed", [(g.flip(0), rows.flip(0))]))
    wide = torch.zeros(T, E + 3, dtype=g.dtype, device=g.device)
    wide[:, 1:E + 1] = g
    out.append(("strided view", [(wide[:, 1:E + 1], rows)]))
    return out


def check(name: str, fn: Callable, g: torch.Tensor, K: int, arg, **kwargs) -> Invariance:
    """Route ``g`` through ``fn`` whole and in every variant; compare row by row, bit for bit."""
    T, E = g.shape
    res = Invariance(name, T)
    if T == 0:
        return res
    ref_w, ref_ids = by_id(*check_output(name, fn(g, K, arg), Problem(T, E, K), g.device))
    ids_bad = torch.zeros(T, dtype=torch.bool, device=g.device)
    w_bad = torch.zeros(T, dtype=torch.bool, device=g.device)
    for label, batches in variants(g, **kwargs):
        res.variants += 1
        for logits, rows in batches:
            w, ids = by_id(*check_output(f"{name} ({label})", fn(logits, K, arg),
                                         Problem(logits.shape[0], E, K), g.device))
            keep = rows >= 0
            w, ids, rows = w[keep], ids[keep], rows[keep]
            same_ids = (ids == ref_ids[rows]).all(-1)
            same_w = _same_bits(w, ref_w[rows])
            ids_bad[rows[~same_ids]] = True
            differ = same_ids & ~same_w.all(-1)
            w_bad[rows[differ]] = True
            if differ.any():
                d = torch.where(same_w, 0.0, (w - ref_w[rows]).abs().nan_to_num(float("inf")))
                m = float(d.max())
                if m > res.max_abs or not res.worst:
                    i, j = divmod(int(d.argmax()), K)
                    res.max_abs = max(res.max_abs, m)
                    res.worst = {"variant": label, "row": int(rows[i]), "expert": int(ids[i, j]),
                                 "reference": float(ref_w[rows[i], j]), "variant_weight": float(w[i, j])}
    res.rows_ids_differ = int(ids_bad.sum())
    res.rows_weights_differ = int((w_bad & ~ids_bad).sum())
    res.status = "no" if res.rows_ids_differ else "ids only" if res.rows_weights_differ else "yes"
    return res


def describe(inv: dict) -> str:
    """'yes', 'ids only (max Δ 1.5e-08 in 12 rows; split 7 from row 3, row 5, expert 9)' or 'no (...)'."""
    if inv["status"] == "yes":
        return "yes"
    w = inv.get("worst") or {}
    where = f"; {w['variant']}, row {w['row']}, expert {w['expert']}" if w else ""
    if inv["status"] == "ids only":
        return f"ids only (max Δ {inv['max_abs']:.3g} in {inv['rows_weights_differ']} rows{where})"
    return f"no ({inv['rows_ids_differ']} rows choose other experts" + (
        f"; weights: max Δ {inv['max_abs']:.3g}{where}" if inv["max_abs"] else "") + ")"


ORDER = {"yes": 0, "ids only": 1, "no": 2, "error": 3}


def summarize(records: list[dict]) -> dict:
    """One implementation's invariance records (one per checked case) as its status (the worst),
    a one-line detail, and the per-dtype details."""
    if not records:
        return {"status": "untested", "detail": "untested", "by_dtype": {}}
    worst = max(records, key=lambda r: (ORDER.get(r["status"], 3), r.get("max_abs", 0.0)))
    detail = worst.get("error") if worst["status"] == "error" else describe(worst)
    if worst["status"] not in ("yes", "error"):
        detail += f" [{worst['case_id']}]"
    return {"status": worst["status"], "detail": detail,
            "by_dtype": {r["case"]["dtype"]: describe(r) if r["status"] != "error" else r["error"] for r in records}}
