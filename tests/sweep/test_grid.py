"""One test per case of the grid (PARITY_GRID, default smoke): the case's own checks fail here;
the cross-case ones (derived tolerances on held-out cases) fail the run at the end (conftest)."""
import pytest

from parity import device, sweep
from parity.pytest_plugin import GRID

CASES = sweep.grid(GRID).cases


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, sweep_sink):
    records = sweep.run_case(case, device.default())
    sweep_sink.extend(records)
    errors = [r for r in records if r["kind"] == "error" and r["impl_kind"] != "mutant"]
    assert not errors, "; ".join(f"{r['impl']}: {r['error']}" for r in errors)
    for r in records:
        if r["kind"] == "pair" and r["candidate_kind"] == "candidate":
            assert r["rows_genuine"] == 0, f"{r['pair']}: genuine id mismatches in rows {r['genuine_rows']}"
            assert r["nan_rows_agree"], f"{r['pair']}: NaN rows differ from the baseline's"
            assert r["nonfinite"] == 0, f"{r['pair']}: {r['nonfinite']} NaN/inf weights where the baseline is finite"
