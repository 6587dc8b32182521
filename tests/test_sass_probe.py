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

from benchmarks.sass_common import common_path, fingerprint

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
    on_path = row["path_by_line"]
    assert sum(on_path.values()) <= row["path"] and all(n <= lines.get(k, 0) for k, n in on_path.items())
    assert any(k.startswith("fused_grouped.py:") for k in on_path), "no path instruction traced to the kernel's source"


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
    assert 0 < row["path_alu"] + row["path_fma"] < row["path"] < row["instructions"]
    assert any(k.startswith("fused.py:") for k in row["by_line"]), "no instruction traced to the kernel's source"


def _tma_ring_sass(tmp_path, *args):
    out = tmp_path / "ring.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run([sys.executable, "-m", "benchmarks.probe_tma_ring", "--sass", "--quick", "--out", str(out),
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return done, out


@pytest.mark.skipif(not PTXAS.exists(), reason="this Triton ships no ptxas")
def test_the_tma_ring_compiles_for_sm90_without_bank_conflicts_or_spills(tmp_path):
    """benchmarks/variants/v8_tma_ring.py runs on a GPU only (Gluon has no interpreter); here it
    compiles for sm_90 with the installed Triton. The kernel asserts at compile time that its read
    from the ring is free of bank conflicts (gl.bank_conflicts), and under a cap of 96 registers it
    must not spill (fp32 under 64, with the device's Triton): at more, fewer warps an SM than
    route_kernel's would hide its latency."""
    done, out = _tma_ring_sass(tmp_path, "--shapes", "128:bf16:8,256:fp16:4,128:fp32:8")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["E"], r["K"], r["dtype"]) for r in rows] == [(128, 8, "bf16"), (256, 4, "fp16"), (128, 8, "fp32")]
    for r in rows:
        assert r["registers"] <= r["max_registers"], r
        # fp32's cap of 64 holds without a spill under the device's Triton (3.6) only: 3.9 spills there
        assert r["spills"] == 0 or (r["dtype"] == "fp32" and not report["triton"].startswith("3.6")), r
        assert 0 < r["common_path"] < r["loop"] < r["instructions"], r


@pytest.mark.skipif(not PTXAS.exists(), reason="this Triton ships no ptxas")
def test_the_tma_ring_refuses_a_ring_whose_read_conflicts(tmp_path):
    """Without the swizzle, sixteen rows' words 128 bytes apart fall in the same banks (v7's
    layout, reports/bench/NOTES.md "Pipelined loads"): the kernel's static assertion stops the compile."""
    done, _ = _tma_ring_sass(tmp_path, "--shapes", "128:bf16:8", "--swizzle", "0")
    assert done.returncode != 0
    assert "must not conflict in the banks" in done.stderr


def test_the_common_path_skips_rare_branches_and_divergence_fallbacks():
    """sass_grouped.common_path on laid-out SASS written by hand (cuobjdump's form): a forward
    conditional branch is taken past its rare block, a BRA.DIV falls through, an unconditional
    branch is followed, the walk stops at the first EXIT; pipes by opcode class."""
    sass = [
        "        /*0000*/                   LDG.E.128 R4, desc[UR4][R2.64] ;",
        "        /*0010*/                   LOP3.LUT R6, R4, 0x7fff0000, RZ, 0xc0, !PT ;",
        "        /*0020*/              @!P0 BRA 0x50 ;",
        "        /*0030*/                   SEL R6, R6, 0x7fff0000, P1 ;",       # the rare block
        "        /*0040*/                   VIMNMX3 R6, R6, R7, R8, !PT ;",
        "        /*0050*/                   BRA.DIV UR7, 0xa0 ;",
        "        /*0060*/                   SHFL.BFLY PT, R9, R6, 0x10, 0x1f ;",
        "        /*0070*/                   IMAD.IADD R10, R9, 0x1, -R6 ;",
        "        /*0080*/                   BRA 0xb0 ;",
        "        /*0090*/                   FFMA R1, R1, R1, R1 ;",                # jumped over
        "        /*00a0*/                   WARPSYNC 0xffffffff ;",
        "        /*00b0*/                   VIMNMX3.U32 R11, R10, R9, R6, PT ;",
        "        /*00c0*/                   EXIT ;",
        "        /*00d0*/                   FADD R1, R1, R1 ;",
    ]
    assert common_path(sass) == {"path": 9, "path_alu": 2, "path_fma": 1}


def test_the_fingerprint_reads_the_code_not_its_addresses_or_encodings():
    """Two listings of the same code at other addresses, with other encodings and line info, have one fingerprint;
    an operand changed (here a register) or an instruction more changes it."""
    def listing(base, reg="R2", extra=False, enc="0x000fe20000000f00"):
        lines = [f"        /*{base:04x}*/                   IMAD.MOV.U32 R1, RZ, RZ, c[0x0][0x28] ;  /* {enc} */",
                 f"        /*{base + 16:04x}*/                   VIADDMNMX.U32 {reg}, R3, -R4, R5, PT ;",
                 "        //## File \"fused_grouped.py\", line 487"]
        if extra:
            lines.append(f"        /*{base + 32:04x}*/                   NOP ;")
        lines.append(f"        /*{base + 48:04x}*/                   EXIT ;")
        return lines

    same = fingerprint(listing(0x0))
    assert len(same) == 12 and same == fingerprint(listing(0x100, enc="0x000fca0000000f00"))
    assert fingerprint(listing(0x0, reg="R6")) != same
    assert fingerprint(listing(0x0, extra=True)) != same
