"""The parallel pytest sweep's plugin (tests/sweep): one test per case of a grid, spread by
pytest-xdist. Loaded from tests/conftest.py, so the controller sees it too.

- Each worker runs its cases, keeps their records and writes them to its own file
  (``<out>/records-<worker>.jsonl``); at the end it also sends them to the controller through
  xdist's ``workeroutput`` channel, which works for remote workers (``--tx ssh=...``) too.
- The controller merges everything into ``<out>/records.jsonl`` and renders the summary, report
  and plots, exactly as ``parity sweep`` would; a failed verdict fails the run.
- With several GPUs, worker gwN pins itself to GPU N % device_count.

It also writes the run's reliability tally: tests hand their per-example counts to
``record_reliability`` and their tables to ``record_table``; the controller merges what every worker
sent and writes reliability.json and reliability.md to PARITY_RELIABILITY_OUT (default
reports/pytest-sweep) once, with the run's provenance (parity.reliability).

Options: PARITY_GRID (default smoke), PARITY_SWEEP_OUT (default reports/pytest-sweep),
PARITY_FAMILY (comma-separated families; default every family, or gemma4 with candidates, as
``--family``), PARITY_CANDIDATES (comma-separated module:function, judged beside the family's
kernels, as ``--candidate``),
PARITY_PRECISION (fp32 | input-dtype, as ``--precision``), PARITY_FAIL_ON_SPECIAL_VALUES=1 (as
``--fail-on-special-values``) and PARITY_REQUIRE_BATCH_INVARIANCE=1 (as
``--require-batch-invariance``): the verdict is parity.verdict's, the same as the CLI's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from parity import device
from parity.provenance import Run
from parity.tolerance import DEFAULT_PRECISION
from parity.verdict import Rule

GRID = os.environ.get("PARITY_GRID", "smoke")
OUT = Path(os.environ.get("PARITY_SWEEP_OUT", "reports/pytest-sweep"))
RULE = Rule(os.environ.get("PARITY_PRECISION", DEFAULT_PRECISION),
            os.environ.get("PARITY_FAIL_ON_SPECIAL_VALUES", "") not in ("", "0"),
            os.environ.get("PARITY_REQUIRE_BATCH_INVARIANCE", "") not in ("", "0"))
CANDIDATE_SPECS = [c.strip() for c in os.environ.get("PARITY_CANDIDATES", "").split(",") if c.strip()]
FAMILY_NAMES = [f.strip() for f in os.environ.get("PARITY_FAMILY", "").split(",") if f.strip()] or None
RELIABILITY_OUT = Path(os.environ.get("PARITY_RELIABILITY_OUT", "reports/pytest-sweep"))
_records: list[dict] = []
_merged: list[dict] = []
_workers: list[dict] = []
_reliability: dict = {"records": [], "meta": {}, "tables": {}}
_run = Run()


def _worker_id(config) -> str | None:
    return getattr(config, "workerinput", {}).get("workerid")


def pytest_configure(config):
    wid = _worker_id(config)
    if wid and device.KIND == "cuda":
        torch.cuda.set_device(int(wid[2:]) % torch.cuda.device_count())


@pytest.fixture(scope="session")
def sweep_sink(request):
    return _records


def families() -> list[str]:
    """The families swept: PARITY_FAMILY; by default all, or gemma4 when candidates are given (a
    routing kernel implements one family)."""
    from parity import routing

    names = FAMILY_NAMES or ([routing.DEFAULT_FAMILY] if CANDIDATE_SPECS else list(routing.FAMILIES))
    if CANDIDATE_SPECS and len(names) > 1:
        raise pytest.UsageError("PARITY_CANDIDATES: a routing kernel implements one family; set one PARITY_FAMILY")
    return names


def candidates() -> dict[str, dict]:
    """The sweep's candidates by family: the family's kernels, then PARITY_CANDIDATES."""
    from parity import routing, sweep

    found = {name: sweep.kernels(routing.family(name)) for name in families()}
    for spec in CANDIDATE_SPECS:
        found[families()[0]][spec] = routing.load(spec, "PARITY_CANDIDATES")
    return found


def record_reliability(records: list[dict], **meta) -> None:
    """A test module's tally: records of (property, implementation, regime, examples, failures);
    ``meta`` (the hypothesis profile, say) goes into the run's reliability.json."""
    _reliability["records"].extend(records)
    _reliability["meta"].update(meta)


def record_table(name: str, markdown: str) -> None:
    """A table the tests built (the special-value semantics, say), written beside the tally."""
    _reliability["tables"][name] = markdown


def _write_reliability(config) -> None:
    if not (_reliability["records"] or _reliability["tables"]):
        return
    from parity import reliability

    path = reliability.write(RELIABILITY_OUT, _reliability["records"],
                             _run.meta(**_reliability["meta"], workers=max(1, len(_workers))), _reliability["tables"])
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr:
        n = sum(r["examples"] for r in _reliability["records"])
        f = sum(r["failures"] for r in _reliability["records"])
        tr.write_line(f"parity reliability: {n} examples, {f} found a difference: {path}")


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    wid = _worker_id(config)
    if wid is not None:                                   # a worker: write its file, send records up
        if _records:
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / f"records-{wid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records))
        config.workeroutput["parity_records"] = json.dumps(_records)
        config.workeroutput["parity_worker"] = json.dumps(_worker_info(wid))
        config.workeroutput["parity_reliability"] = json.dumps(_reliability)
        return
    _write_reliability(config)                            # controller (or a run without -n)
    records = _merged + _records
    if not records:
        return
    from parity import grids, routing
    from parity.render import render_all

    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "records.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    grid = grids.grid(GRID, families())
    meta = _run.meta(grid=grid.name, grid_description=grid.description, runner="pytest-xdist",
                     workers=_workers or [_worker_info("main")],
                     candidates={f: list(c) for f, c in candidates().items()},
                     families={f: routing.family(f).describe() for f in families()},
                     precision=RULE.precision, fail_on_special_values=RULE.fail_on_special_values,
                     require_batch_invariance=RULE.require_batch_invariance)
    summary = render_all(records, meta, OUT)
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr:
        tr.write_line(f"parity sweep ({grid.name}, {len(records)} records): {OUT / 'report.md'}; "
                      f"verdict {'PASS' if summary['verdict']['ok'] else 'FAIL'}")
        for reason in summary["verdict"]["reasons"][:10]:
            tr.write_line(f"  - {reason}")
    if not summary["verdict"]["ok"]:
        session.exitstatus = 1


def pytest_testnodedown(node, error):
    output = getattr(node, "workeroutput", {})
    if output.get("parity_records"):
        _merged.extend(json.loads(output["parity_records"]))
    if output.get("parity_worker"):
        _workers.append(json.loads(output["parity_worker"]))
    if output.get("parity_reliability"):
        sent = json.loads(output["parity_reliability"])
        record_reliability(sent["records"], **sent["meta"])
        _reliability["tables"].update(sent["tables"])


def _worker_info(wid: str) -> dict:
    """Which worker ran how many cases where: the report shows the spread over GPUs and hosts."""
    import socket

    info = {"worker": wid, "host": socket.gethostname(), "cases": len({r["case_id"] for r in _records})}
    if device.KIND == "cuda":
        idx = torch.cuda.current_device()
        info.update(cuda_device=idx, gpu=torch.cuda.get_device_name(idx))
    return info
