"""The parallel pytest sweep's plugin (tests/sweep): one test per case of a grid, spread by
pytest-xdist. Loaded from tests/conftest.py, so the controller sees it too.

- Each worker runs its cases, keeps their records and writes them to its own file
  (``<out>/records-<worker>.jsonl``); at the end it also sends them to the controller through
  xdist's ``workeroutput`` channel, which works for remote workers (``--tx ssh=...``) too.
- The controller merges everything into ``<out>/records.jsonl`` and renders the summary, report
  and plots, exactly as ``parity sweep`` would; a failed verdict fails the run.
- With several GPUs, worker gwN pins itself to GPU N % device_count.

Options: PARITY_GRID (default smoke), PARITY_SWEEP_OUT (default reports/pytest-sweep),
PARITY_CANDIDATES (comma-separated module:function, judged beside fused, as ``--candidate``),
PARITY_PRECISION (fp32 | input-dtype, as ``--precision``) and PARITY_FAIL_ON_SPECIAL_VALUES=1 (as
``--fail-on-special-values``): the verdict is parity.verdict's, the same as the CLI's.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path

import pytest
import torch

from parity import device
from parity.tolerance import DEFAULT_PRECISION
from parity.verdict import Rule

GRID = os.environ.get("PARITY_GRID", "smoke")
OUT = Path(os.environ.get("PARITY_SWEEP_OUT", "reports/pytest-sweep"))
RULE = Rule(os.environ.get("PARITY_PRECISION", DEFAULT_PRECISION),
            os.environ.get("PARITY_FAIL_ON_SPECIAL_VALUES", "") not in ("", "0"))
CANDIDATE_SPECS = [c.strip() for c in os.environ.get("PARITY_CANDIDATES", "").split(",") if c.strip()]
_records: list[dict] = []
_merged: list[dict] = []
_workers: list[dict] = []
_t0 = time.monotonic()
_started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _worker_id(config) -> str | None:
    return getattr(config, "workerinput", {}).get("workerid")


def pytest_configure(config):
    wid = _worker_id(config)
    if wid and device.KIND == "cuda":
        torch.cuda.set_device(int(wid[2:]) % torch.cuda.device_count())


@pytest.fixture(scope="session")
def sweep_sink(request):
    return _records


def candidates() -> dict:
    """The sweep's candidates: parity's own, then PARITY_CANDIDATES."""
    from parity import routing, sweep

    found = {n: routing.get(n) for n in sweep.default_candidates()}
    for spec in CANDIDATE_SPECS:
        found[spec] = routing.load(spec, "PARITY_CANDIDATES")
    return found


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    wid = _worker_id(config)
    if wid is not None:                                   # a worker: write its file, send records up
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"records-{wid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records))
        config.workeroutput["parity_records"] = json.dumps(_records)
        config.workeroutput["parity_worker"] = json.dumps(_worker_info(wid))
        return
    records = _merged + _records                          # controller (or a run without -n)
    if not records:
        return
    from parity import sweep
    from parity.cli import git_sha
    from parity.render import render_all

    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "records.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    grid = sweep.grid(GRID)
    meta = {**device.describe(), "git_sha": git_sha(), "started": _started,
            "seconds": round(time.monotonic() - _t0, 1), "grid": grid.name,
            "grid_description": grid.description, "runner": "pytest-xdist",
            "workers": _workers or [_worker_info("main")], "candidates": list(candidates()),
            "precision": RULE.precision, "fail_on_special_values": RULE.fail_on_special_values}
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


def _worker_info(wid: str) -> dict:
    """Which worker ran how many cases where: the report shows the spread over GPUs and hosts."""
    import socket

    info = {"worker": wid, "host": socket.gethostname(), "cases": len({r["case_id"] for r in _records})}
    if device.KIND == "cuda":
        idx = torch.cuda.current_device()
        info.update(cuda_device=idx, gpu=torch.cuda.get_device_name(idx))
    return info
