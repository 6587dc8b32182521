"""NaN / inf rows: NaN weights in that row only; every other row bit-identical to a clean run."""
import pytest
import torch

from parity.routing.fused import fused
from parity.routing.oracle import oracle
from routing_cases import DTYPES, logits, scale

inf, nan = float("inf"), float("nan")


def plant(g: torch.Tensor) -> tuple[torch.Tensor, list[int], list[int]]:
    g = g.clone()
    g[3, 17] = nan
    g[5, 40] = inf
    g[7, :] = -inf
    g[9, :120] = -inf            # 8 finite logits left: still a clean row
    g[11, :] = nan
    g[13, 2] = -inf              # a -inf that is never chosen
    g[15, :125] = -inf           # 3 finite logits: 5 chosen slots carry -inf, weight 0
    return g, [3, 5, 7, 11], [9, 13, 15]


@pytest.mark.parametrize("impl", [fused, oracle], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bad_rows_are_isolated(impl, dtype, dev):
    clean = logits(64, 128, dtype, dev, seed=11)
    s = scale(128, dev)
    g, nan_rows, finite_rows = plant(clean)
    w_clean, ids_clean = impl(clean, 8, s)
    w, ids = impl(g, 8, s)
    assert torch.isnan(w[nan_rows]).all()
    assert torch.isfinite(w[finite_rows]).all()
    others = [r for r in range(64) if r not in nan_rows + finite_rows]
    assert torch.equal(w[others], w_clean[others]) and torch.equal(ids[others], ids_clean[others])
    assert ((ids >= 0) & (ids < 128)).all()
    assert all(len(set(row)) == 8 for row in ids.tolist()), "ids in a row must be distinct"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_ids_match_oracle_on_special_rows(dtype, dev):
    g, _, _ = plant(logits(64, 128, dtype, dev, seed=12))
    s = scale(128, dev)
    w, ids = fused(g, 8, s)
    w_ref, ids_ref = oracle(g, 8, s)
    assert torch.equal(ids.cpu(), ids_ref.cpu())
    assert torch.equal(torch.isnan(w).cpu(), torch.isnan(w_ref).cpu())
    assert (w[15, 3:] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_subnormal_and_huge_logits_order_exactly(dtype, dev):
    """Subnormals and values near the dtype's max must be ordered like the oracle orders them
    (regression: the Triton interpreter's bf16->fp32 conversion misrounds bf16 subnormals)."""
    fin = torch.finfo(dtype)
    gen = torch.Generator().manual_seed(13)
    tiny = (torch.rand(32, 128, generator=gen, dtype=torch.float64) * 2 - 1) * fin.smallest_normal
    huge = (torch.rand(32, 128, generator=gen, dtype=torch.float64) * 2 - 1) * fin.max / 2
    g = torch.cat([tiny, huge]).to(dtype)
    assert (g[:32].abs() <= fin.smallest_normal).all() and (g[:32].abs() < fin.smallest_normal).sum() > 1000
    g = g.to(dev)
    s = scale(128, dev)
    w, ids = fused(g, 8, s)
    w_ref, ids_ref = oracle(g, 8, s)
    assert torch.equal(ids.cpu(), ids_ref.cpu())
