"""benchmarks.probe_medians: one row a configuration over several probe runs, its median, and ok only
where every run matched the oracle."""
from benchmarks.probe_medians import medians


def row(us, maxnreg, ok=True, T=250000):
    return {"T": T, "E": 128, "maxnreg": maxnreg, "us": us, "ids_ok": ok, "weights_ok": True, "weights_same": True}


def test_medians_group_by_configuration_and_keep_every_run():
    out = medians([[row(30.0, None), row(29.0, 80)], [row(31.0, None), row(28.0, 80)],
                   [row(32.0, None), row(40.0, 80, ok=False)]])
    assert [(r["maxnreg"], r["runs_us"], r["median_us"], r["ok"]) for r in out] == [
        (None, [30.0, 31.0, 32.0], 31.0, True), (80, [29.0, 28.0, 40.0], 29.0, False)]


def test_medians_tell_shapes_apart():
    out = medians([[row(30.0, None), row(10.0, None, T=65536)]])
    assert [(r["T"], r["median_us"]) for r in out] == [(250000, 30.0), (65536, 10.0)]
