"""benchmarks/ncu_lines.py: Nsight Compute's per-instruction samples summed per source line, checked
on made-up CSVs in the layout ncu writes (tests/test_ncu_summary.py's), and once end to end on a
kernel compiled here for sm_90 (no GPU: the addresses and opcodes are the compile's own)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import ncu_lines

ROOT = Path(__file__).resolve().parents[1]


def _csv(rows, kernel="grouped_kernel"):
    head = ('"Address","Source","Warp Stall Sampling (All Samples)","stall_long_sb","stall_wait",'
            '"stall_long_sb (Not Issued)"\n')
    body = "".join(f'"{a:#x}","  {src}","{s}","{lsb}","{w}","7"\n' for a, src, s, lsb, w in rows)
    return f'"Kernel Name","{kernel}",\n' + head + body


def test_samples_are_summed_per_source_line(tmp_path):
    lines = {0x0: ("k.py:10", "LDG.E.128"), 0x10: ("k.py:11", "REDUX.MIN.S32"), 0x20: ("k.py:10", "IADD3"),
             0x30: ("k.py:12", "EXIT")}
    path = tmp_path / "src.csv"
    path.write_text(_csv([(0x0, "LDG.E.128 R4, desc[UR4][R2.64]", 5, 5, 0), (0x10, "@P0 REDUX.MIN.S32 UR4, R3", 30, 0, 25),
                          (0x20, "IADD3 R1, R1, 0x1, RZ", 5, 0, 5), (0x30, "EXIT", 0, 0, 0)])
                     + _csv([(0x0, "LDG.E.128 R4, desc[UR4][R2.64]", 99, 99, 0)]))
    first = ncu_lines.by_line(ncu_lines.samples(str(path)), lines)
    assert [(d["line"], d["samples"], d["instructions"]) for d in first] == [("k.py:11", 30, 1), ("k.py:10", 10, 2),
                                                                            ("k.py:12", 0, 1)]
    assert first[0]["pct"] == 75.0 and first[0]["stalls"] == {"wait": 25}
    assert first[1]["stalls"] == {"long_sb": 5, "wait": 5}, "the (Not Issued) column is a subset, not added again"
    (second,) = [d for d in ncu_lines.by_line(ncu_lines.samples(str(path), launch=1), lines) if d["samples"]]
    assert (second["line"], second["samples"]) == ("k.py:10", 99)
    with pytest.raises(SystemExit, match="2 profiled launches"):
        ncu_lines.samples(str(path), launch=2)


def test_loaded_addresses_count_from_the_kernels_first_instruction(tmp_path):
    """Nsight Compute 2025.3 prints where the code was loaded (0x7fae977bc900, ...), the cubin counts
    from 0: the H200's first ncurow profile was refused as another kernel until samples() rebased."""
    base = 0x7FAE977BC900
    lines = {0x0: ("k.py:10", "LDG.E.128"), 0x10: ("k.py:11", "EXIT"), 0x20: ("k.py:12", "DFMA"),
             0x30: ("k.py:12", "EXIT")}
    path = tmp_path / "src.csv"
    path.write_text(_csv([(base, "LDG.E.128 R4, desc[UR4][R2.64]", 6, 6, 0), (base + 0x10, "@P0 EXIT", 0, 0, 0),
                          (base + 0x20, "DFMA R2, R4, R6, R2", 3, 0, 3), (base + 0x30, "EXIT", 1, 0, 1)]))
    rows = ncu_lines.samples(str(path))
    assert [r["address"] for r in rows] == [0x0, 0x10, 0x20, 0x30]
    assert [d["line"] for d in ncu_lines.by_line(rows, lines)] == ["k.py:10", "k.py:12", "k.py:11"]
    assert ncu_lines.past_first_exit(rows, lines) == {"address": 0x10, "samples": 4, "pct": 40.0}


def test_a_different_kernel_is_refused(tmp_path):
    path = tmp_path / "src.csv"
    path.write_text(_csv([(0x0, "LDG.E.128 R4, desc[UR4][R2.64]", 5, 5, 0), (0x10, "SHFL.BFLY PT, R3, R2, 0x1, 0x1f", 3, 0, 3)]))
    lines = {0x0: ("k.py:10", "LDG.E.128"), 0x10: ("k.py:11", "REDUX.MIN.S32")}
    with pytest.raises(SystemExit, match="not the same kernel"):
        ncu_lines.by_line(ncu_lines.samples(str(path)), lines)


SCRIPT = """
import json, sys
from benchmarks import ncu_lines, sass_grouped
kernel, _ = sass_grouped.compile_route("llama4-maverick", sass_grouped.DTYPES["bf16"], 1)
lines = ncu_lines.line_map(kernel)
rows = "".join(f'"{a:#x}","  {op} R0","{100 if i == 3 else 1}","0","0","0"\\n' for i, (a, (w, op)) in enumerate(sorted(lines.items())))
open(sys.argv[1], "w").write('"Kernel Name","route_kernel",\\n"Address","Source","Warp Stall Sampling (All Samples)",'
                             '"stall_long_sb","stall_wait","stall_long_sb (Not Issued)"\\n' + rows)
json.dump({"n": len(lines), "hot": sorted(lines.items())[3][1][0]}, open(sys.argv[2], "w"))
sys.argv = ["ncu_lines", sys.argv[1], "--route", "--model", "llama4-maverick", "--T", "1", "--out", sys.argv[3]]
ncu_lines.main()
"""


def test_a_compiled_kernel_maps_every_address(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TRITON_INTERPRET", None)
    paths = [str(tmp_path / n) for n in ("src.csv", "made.json", "lines.json")]
    done = subprocess.run([sys.executable, "-c", SCRIPT, *paths], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    made, got = json.loads(Path(paths[1]).read_text()), json.loads(Path(paths[2]).read_text())
    assert made["n"] > 50 and sum(d["instructions"] for d in got["lines"]) == made["n"]
    assert got["lines"][0]["line"] == made["hot"] and got["lines"][0]["samples"] >= 100
    assert any(d["line"].startswith("fused.py:") for d in got["lines"]), "no instruction traced to the kernel's source"
