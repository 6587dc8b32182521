"""Assertions for routings, with messages in the manner of numpy.testing: the worst element, its
index, both values, the absolute, relative and ULP error, and the allowance.
"""
from __future__ import annotations

import torch

from parity.numerics import fp32_ulp
from parity.routing.contract import by_id


def assert_same_ids(ids: torch.Tensor, truth_ids: torch.Tensor, *, ordered: bool = True, name: str = "ids") -> None:
    """ids equal truth_ids in every row (slot order included when ``ordered``)."""
    a, b = ids.long().cpu(), truth_ids.long().cpu()
    if not ordered:
        a, b = a.sort(dim=-1).values, b.sort(dim=-1).values
    bad = (a != b).any(dim=-1).nonzero().flatten()
    if bad.numel():
        r = int(bad[0])
        raise AssertionError(
            f"{name}: {bad.numel()} of {a.shape[0]} rows differ{' (slot order counts)' if ordered else ''}; "
            f"first at row {r}: got {a[r].tolist()}, expected {b[r].tolist()}"
        )


def assert_weights_close(
    weights: torch.Tensor, truth: torch.Tensor, *, max_ulp: float | None = None,
    rtol: float = 0.0, atol: float = 0.0, name: str = "weights",
) -> None:
    """|weights - truth| <= allowance element-wise, where allowance = max_ulp fp32 ULPs of truth
    (when given) + atol + rtol * |truth|. NaN must meet NaN, and only NaN."""
    w, t = weights.double().cpu(), truth.double().cpu()
    if w.shape != t.shape:
        raise AssertionError(f"{name}: shape {tuple(w.shape)} != expected {tuple(t.shape)}")
    nan_w, nan_t = torch.isnan(w), torch.isnan(t)
    if not torch.equal(nan_w, nan_t):
        idx = (nan_w != nan_t).nonzero()[0].tolist()
        raise AssertionError(
            f"{name}: NaN pattern differs, first at index {tuple(idx)}: got {w[tuple(idx)].item()!r}, "
            f"expected {t[tuple(idx)].item()!r}"
        )
    allowed = atol + rtol * t.abs()
    if max_ulp is not None:
        allowed = allowed + max_ulp * fp32_ulp(t)
    err = (w - t).abs().nan_to_num(0.0)
    excess = (err - allowed).nan_to_num(0.0)
    if (excess > 0).any():
        flat = int(torch.argmax(err / allowed.clamp_min(torch.finfo(torch.float64).tiny)))
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), w.shape))
        n_bad = int((excess > 0).sum())
        got, want = w[idx].item(), t[idx].item()
        ulp = err[idx].item() / fp32_ulp(t[idx]).item()
        raise AssertionError(
            f"{name}: {n_bad} of {w.numel()} elements outside the allowance; worst at index {idx}: "
            f"got {got!r}, expected {want!r}, abs err {err[idx].item():.3e}, rel err "
            f"{err[idx].item() / max(abs(want), 1e-300):.3e}, {ulp:.2f} fp32 ulp; allowed "
            f"{allowed[idx].item():.3e} (max_ulp={max_ulp}, rtol={rtol}, atol={atol})"
        )


def weights_within(weights: torch.Tensor, truth: torch.Tensor, *, max_ulp: float) -> bool:
    """Whether assert_weights_close(weights, truth, max_ulp=max_ulp) passes: for records that note a
    check rather than stop on it (the bench's rows, the probes')."""
    try:
        assert_weights_close(weights, truth, max_ulp=max_ulp)
    except AssertionError:
        return False
    return True


def assert_routing_close(
    out: tuple[torch.Tensor, torch.Tensor], truth: tuple[torch.Tensor, torch.Tensor], *,
    ordered: bool = True, max_ulp: float | None = None, rtol: float = 0.0, atol: float = 0.0,
) -> None:
    """Same ids as ``truth`` in every row, and weights within the allowance (compared by expert id)."""
    weights, ids = out
    t_weights, t_ids = truth
    assert_same_ids(ids, t_ids, ordered=ordered)
    if not ordered:
        weights, ids = by_id(weights, ids)
        t_weights, t_ids = by_id(t_weights, t_ids)
    assert_weights_close(weights, t_weights, max_ulp=max_ulp, rtol=rtol, atol=atol)
