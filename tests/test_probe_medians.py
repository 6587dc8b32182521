"""benchmarks.probe_medians: one row a configuration over several probe runs, its median, and ok only
where every run matched the oracle."""
from benchmarks.probe_medians import medians


def row(us, min3, ok=True, T=250000):
    return {"T": T, "E": 128, "MIN3": min3, "us": us, "ids_ok": ok, "weights_ok": True, "weights_same": True}


def test_medians_group_by_configuration_and_keep_every_run():
    out = medians([[row(30.0, False), row(29.0, True)], [row(31.0, False), row(28.0, True)],
                   [row(32.0, False), row(40.0, True, ok=False)]])
    assert [(r["MIN3"], r["runs_us"], r["median_us"], r["ok"]) for r in out] == [
        (False, [30.0, 31.0, 32.0], 31.0, True), (True, [29.0, 28.0, 40.0], 29.0, False)]


def test_medians_tell_shapes_apart():
    out = medians([[row(30.0, False), row(10.0, False, T=65536)]])
    assert [(r["T"], r["median_us"]) for r in out] == [(250000, 30.0), (65536, 10.0)]
