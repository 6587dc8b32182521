"""benchmarks/ncu_summary.py reads the ncu step's CSVs as Nsight Compute writes them: checked on a
small made-up set in the same layout (two launches), so a change of the reader that drops a
launch, mixes their order or miscounts the stall samples fails here, not on the GPU machine."""
import json
import sys

import pytest

from benchmarks import ncu_summary, profile_ncu

HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
          '"Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"\n')


def _detail(kid, grid, name, unit, value):
    return f'"{kid}","1","python3","h","route_kernel","1","7","(32, 1, 1)","({grid}, 1, 1)","0","9.0","S","{name}","{unit}","{value}"\n'


def _source(samples):
    head = '"Address","Source","Warp Stall Sampling (All Samples)","Instructions Executed","stall_long_sb","stall_math","stall_long_sb (Not Issued)"\n'
    rows = "".join(f'"0x{i}","  OP R{i}","{s}","10","{lsb}","{m}","99"\n' for i, (s, lsb, m) in enumerate(samples))
    return '"Kernel Name","route_kernel",\n' + head + rows


def test_summary_of_two_launches(tmp_path):
    (tmp_path / "ncu.log").write_text("==PROF== x\ngemma4 bf16 T=250000 E=128 K=8: profiled one launch; ids ...\n"
                                      "qwen2-moe bf16 T=250000 E=60 K=4: profiled one launch; ids ...\n")
    details = HEADER
    for kid, grid, dur, regs, instr in (("0", 100, "35.46", "92", "145,400"), ("1", 50, "20.35", "80", "41,700")):
        details += _detail(kid, grid, "Duration", "us", dur) + _detail(kid, grid, "Registers Per Thread", "register/thread", regs)
        details += _detail(kid, grid, "Executed Instructions", "inst", instr)
    (tmp_path / "ncu-details.csv").write_text(details)
    (tmp_path / "ncu-source.csv").write_text(_source([(10, 6, 4), (30, 9, 1)]) + _source([(5, 0, 5)]))
    alu, fma = "sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active", "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active"
    (tmp_path / "ncu-raw.csv").write_text(f'"ID","{alu}","{fma}"\n"","%","%"\n"0","73.56","26.4"\n"1","68.8","26.1"\n')
    out = tmp_path / "s.json"
    argv, sys.argv = sys.argv, ["ncu_summary", str(tmp_path), "--out", str(out), "--git", "abc"]
    try:
        ncu_summary.main()
    finally:
        sys.argv = argv
    got = json.loads(out.read_text())
    assert got["git_sha"] == "abc"
    first, second = got["rows"]
    assert first["launch"] == "gemma4 bf16 T=250000 E=128 K=8" and second["launch"].startswith("qwen2-moe")
    assert (first["duration_us"], first["registers"], first["instructions_per_warp"]) == (35.46, 92.0, 1454.0)
    assert (second["duration_us"], second["instructions_per_warp"]) == (20.35, 834.0)
    assert (first["pipe_alu_pct"], second["pipe_fma_pct"]) == (73.6, 26.1)
    # 40 samples: long_sb 15, math 5; the "(Not Issued)" columns are a subset, not added again
    assert first["stalls_pct"] == {"long_sb": 37.5, "math": 12.5}
    assert second["stalls_pct"] == {"math": 100.0}


def _profile(argv):
    saved, sys.argv = sys.argv, ["profile_ncu", *argv]
    try:
        profile_ncu.main()
    finally:
        sys.argv = saved


def test_profile_driver_checks_every_family_against_the_oracle(monkeypatch, capsys):
    """The driver that ncu runs launches every family's kernel once (here in the interpreter, on
    the device under ncu) and refuses a launch whose ids are not the oracle's."""
    _profile(["--T", "16"])
    out = capsys.readouterr().out
    assert out.count("ids as the oracle's: True") == 6 and "deepseek-v3" in out and "qwen2-moe" in out
    real = profile_ncu.route64
    monkeypatch.setattr(profile_ncu, "route64", lambda g, K, arg: (None, real(g, K, arg)[1].flip(1)))
    with pytest.raises(SystemExit, match="ids differ"):
        _profile(["--T", "16", "--models", "gemma4", "--dtypes", "bf16"])
