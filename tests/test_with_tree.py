"""Running another tree's parity/ beside this checkout's benchmarks (scripts/with_tree.sh, used by
scripts/h200_run.sh's `ab` step and PARITY_TREE): `python3 -c` and `-m` put the working directory before
PYTHONPATH, so a tree named only on PYTHONPATH is not the one imported from the repository root; every
run also records which parity/ it imported (provenance.parity_dir)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHERE = "import parity.provenance as p; print(p.parity_dir())"


def _env(**extra) -> dict:
    """This interpreter as `python3` (the venv's, with torch), without the suite's PYTHONSAFEPATH or PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@pytest.fixture
def other_tree(tmp_path) -> Path:
    """A copy of parity/ in a tree of its own (as `git archive <ref> parity` makes one)."""
    shutil.copytree(ROOT / "parity", tmp_path / "parity", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _bash(script: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"source scripts/with_tree.sh; {script}"], cwd=ROOT, env=_env(**env),
                          capture_output=True, text=True, timeout=120)


def test_the_working_directory_comes_before_pythonpath(other_tree):
    """Why with_tree exists: from the repository root, PYTHONPATH=<tree> alone runs the checkout's parity/."""
    got = subprocess.run(["python3", "-c", WHERE], cwd=ROOT, env=_env(PYTHONPATH=f"{other_tree}:{ROOT}"),
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "parity"


def test_with_tree_imports_the_other_trees_parity(other_tree):
    got = _bash(f'with_tree {other_tree} python3 -c "{WHERE}"')
    assert got.returncode == 0, got.stderr
    assert Path(got.stdout.strip()) == (other_tree / "parity").resolve()


def test_with_tree_refuses_a_tree_that_is_not_imported(tmp_path):
    got = _bash(f'with_tree {tmp_path} python3 -c "print(1)"')
    assert got.returncode == 2 and got.stdout == ""
    assert f"not from {tmp_path}/parity" in got.stderr


def test_a_runs_metadata_names_the_parity_it_imported():
    from parity.provenance import Run

    got = subprocess.run(["python3", "-c", "from parity.provenance import Run; print(Run().meta()['parity_dir'])"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "parity"
    assert "parity_dir" in Run().meta()
