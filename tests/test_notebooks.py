"""Every notebook in notebooks/ runs top to bottom on this machine (the CPU through the Triton
interpreter where there is no GPU), with RECORDS_DIR=None: it runs the smoke grid itself. The stored
notebooks carry no outputs, so their diffs stay readable."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="notebook tests need the dev extra (nbclient)")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
BUDGET_S = 120
"""Wall time allowed for one notebook, kernel start included."""


def parameters_cell(nb) -> "nbformat.NotebookNode":
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected exactly one cell tagged 'parameters', found {len(cells)}"
    return cells[0]


@pytest.fixture
def this_interpreter_kernel(tmp_path, monkeypatch) -> str:
    """A 'python3' kernelspec that starts this interpreter, found before any other (JUPYTER_PATH
    comes first), so the notebooks run on the environment under test, not a user-level kernel."""
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def test_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"explore_divergence.ipynb", "tolerance_walkthrough.ipynb", "impact.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing"
    parameters_cell(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, this_interpreter_kernel: str):
    nb = nbformat.read(path, as_version=4)
    cell = parameters_cell(nb)
    # the stored defaults, then the test's: a fresh smoke sweep into a directory of this test's own
    cell.source += f"\nRECORDS_DIR = None\nOUT_DIR = {str(tmp_path / 'sweep')!r}\n"
    client = nbclient.NotebookClient(nb, kernel_name=this_interpreter_kernel, timeout=BUDGET_S,
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.monotonic()
    client.execute()   # raises CellExecutionError, naming the cell and the traceback, on any error
    seconds = time.monotonic() - t0
    print(f"{path.name}: {seconds:.1f} s on {sys.executable}")
    if path.stem == "impact":   # computes the layer itself, no sweep
        assert (tmp_path / "sweep" / "impact-gemma4.png").exists(), "the notebook did not plot the impact"
    else:
        assert (tmp_path / "sweep" / "summary.json").exists(), "the notebook did not run the smoke grid"
    assert seconds < BUDGET_S, f"{path.name} took {seconds:.0f} s; the budget is {BUDGET_S} s"
