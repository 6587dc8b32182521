"""scripts/adopt_winners.py: the 2% rule over `h200_run.sh min3`'s medians (rows as probe_fused's configs_for makes
them), MIN3 refused where another shape loses under it, and the switches it adopts written into fused.py's source."""
import importlib.util
from pathlib import Path

import torch

from benchmarks.probe_fused import configs_for
from benchmarks.probe_medians import medians
from parity.routing import fused

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("adopt_winners", ROOT / "scripts" / "adopt_winners.py")
adopt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adopt)

SHAPES = [(128, torch.bfloat16, "bf16", 8, "k"), (128, torch.bfloat16, "bf16", 4, "k"),
          (60, torch.bfloat16, "bf16", 4, "all"), (128, torch.float32, "fp32", 8, "k")]


def probe_rows(time_of):
    """The min3 step's configurations at both T, each timed by time_of(cfg, dtype name, K) (None: not the oracle's)."""
    rows = []
    for E, dtype, name, K, score in SHAPES:
        for T in (250000, 65536):
            for cfg in configs_for(T, E, dtype, ["min3", "fp32fma"], score):
                us = time_of(cfg, name, K)
                rows.append({"T": T, "E": E, "K": K, "score": score, "dtype": name, **cfg,
                             "us": 30.0 if us is None else us * T / 250000, "ids_ok": us is not None,
                             "weights_ok": True})
    return medians([rows])


def test_nothing_wins_where_nothing_is_two_percent_faster():
    rows = probe_rows(lambda cfg, name, K: 30.0 * (0.99 if cfg.get("MIN3") else 1.0))
    assert adopt.decide(rows) == {"MIN3": False, "WORD_CAP": None, "FP32_FMA": False, "FP32_CAP": None,
                                  "FP32_ROWS8": False}


def test_each_winner_is_adopted():
    def t(cfg, name, K):
        f = 0.97 if cfg.get("MIN3") else 1.0
        f *= 0.98 if cfg.get("maxnreg") == 80 else 1.0
        f *= 0.9 if name == "fp32" and cfg["BLOCK_T"] == 8 and cfg.get("FMA_KEYS") == 1 else 1.0
        return 30.0 * f
    assert adopt.decide(probe_rows(t)) == {"MIN3": True, "WORD_CAP": 80, "FP32_FMA": True, "FP32_CAP": None,
                                           "FP32_ROWS8": True}


def test_min3_refused_where_another_shape_loses_under_it():
    def t(cfg, name, K):
        f = (0.95 if K == 8 else 1.02) if cfg.get("MIN3") else 1.0
        return 30.0 * f * (0.97 if name == "fp32" and cfg.get("maxnreg") == 64 else 1.0)
    got = adopt.decide(probe_rows(t))
    assert got["MIN3"] is False and got["WORD_CAP"] is None
    assert (got["FP32_CAP"], got["FP32_FMA"], got["FP32_ROWS8"]) == (64, False, False)


def test_a_winner_not_the_oracles_is_not_adopted_nor_one_slower_at_65536():
    def wrong(cfg, name, K):
        return None if cfg.get("MIN3") else 30.0
    assert adopt.decide(probe_rows(wrong))["MIN3"] is False
    rows = probe_rows(lambda cfg, name, K: 30.0 * (0.95 if cfg.get("maxnreg") == 80 else 1.0))
    for r in rows:
        if r["T"] == 65536 and r.get("maxnreg") == 80:
            r["median_us"] *= 1.2
    assert adopt.decide(rows)["WORD_CAP"] is None


def test_apply_writes_each_switch_once(tmp_path, monkeypatch):
    src = Path(fused.__file__).read_text()
    copy = tmp_path / "fused.py"
    copy.write_text(src)
    monkeypatch.setattr(adopt, "FUSED", copy)
    names = adopt.apply({"MIN3": True, "WORD_CAP": 80, "FP32_FMA": True, "FP32_CAP": 64, "FP32_ROWS8": True})
    assert names == ["MIN3", "WORD_CAP=80", "FP32_FMA", "FP32_CAP=64", "FP32_ROWS8"]
    out = copy.read_text()
    for line in ("MIN3: bool = True", "WORD_MAXIMA_MAX_REGISTERS = 80", "FP32_FMA_KEYS: bool = True",
                 "FP32_MAX_REGISTERS: int | None = 64", "torch.float32: 1024}"):
        assert line in out.splitlines() or out.count(line) == 1, line
    assert len(out.splitlines()) == len(src.splitlines())
