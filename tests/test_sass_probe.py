"""benchmarks/sass_grouped.py compiles the grouped kernel for sm_90 without a GPU and counts its
SASS (the figures reports/bench/NOTES.md quotes). It replaces Triton's driver for its whole process,
so it runs in a subprocess here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton

ROOT = Path(__file__).resolve().parents[1]
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


@pytest.mark.skipif(not PTXAS.exists(), reason="this Triton ships no ptxas")
def test_the_sass_probe_counts_the_table_tile(tmp_path):
    out = tmp_path / "sass.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run([sys.executable, "-m", "benchmarks.sass_grouped", "--quick", "--lines", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["block_t"] == 4 and row["lists"] and row["inline"]
    assert 0 < row["before_flags"] < row["instructions"] and row["registers"] <= row["max_registers"]
    lines = row["by_line"]
    assert sum(lines.values()) <= row["instructions"]
    assert any(k.startswith("fused_grouped.py:") for k in lines), "no instruction traced to the kernel's source"


@pytest.mark.skipif(not PTXAS.exists(), reason="this Triton ships no ptxas")
def test_the_sass_probe_counts_route_kernel(tmp_path):
    out = tmp_path / "sass.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run([sys.executable, "-m", "benchmarks.sass_grouped", "--route", "--model", "qwen2-moe",
                           "--lines", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["kernel"] == "route_kernel" and row["vec"] == 4  # 120-byte rows: 8-byte vectors
    assert row["instructions"] > 0 and "before_flags" not in row
    assert any(k.startswith("fused.py:") for k in row["by_line"]), "no instruction traced to the kernel's source"
