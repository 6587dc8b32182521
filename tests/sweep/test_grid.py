"""One test per case of the grid (PARITY_GRID, default smoke): the case's own checks fail here,
by parity.verdict's rule (ids, NaN/inf weights against the oracle); the cross-case ones (the
precision envelopes, derived tolerances on held-out cases) fail the run at the end (the plugin)."""
import pytest

from parity import device, grids, sweep
from parity.pytest_plugin import GRID, RULE, candidates, families
from parity.verdict import id_problems

CASES = grids.grid(GRID, families()).cases
CANDIDATES = candidates()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, sweep_sink):
    records = sweep.run_case(case, device.default(), CANDIDATES[case.family])
    sweep_sink.extend(records)
    errors = [r for r in records if r["kind"] == "error" and r["impl_kind"] != "mutant"]
    problems = [f"{r['impl']}: {r['error']}" for r in errors]
    problems += [f"{r['candidate']}: {p}" for r in records
                 if r["kind"] == "pair" and r["candidate_kind"] == "candidate" and r["baseline"] == "oracle"
                 for p in id_problems(r, RULE)]
    for r in records:   # parity's own kernels: against the torch references too, as always
        if r["kind"] == "pair" and r["candidate_kind"] == "candidate" and r["candidate_trusted"]:
            if r["rows_genuine"]:
                problems.append(f"{r['pair']}: genuine id mismatches in rows {r['genuine_rows']}")
            if not r["nan_rows_agree"]:
                problems.append(f"{r['pair']}: NaN rows differ from the baseline's")
            if r["nonfinite"]:
                problems.append(f"{r['pair']}: {r['nonfinite']} NaN/inf weights where the baseline is finite")
    assert not problems, "; ".join(problems)
