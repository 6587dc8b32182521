"""scripts/mutate_kernels.py: its mutants still match the kernels' source, and its runner tells a
killed mutant from a surviving or an invalid one and always restores the file (on a made-up
project of one function and one test: the kernels' own run takes ~20 minutes and writes
reports/kernel-mutants)."""
from pathlib import Path

import pytest
from script_modules import script_module

ROOT = Path(__file__).resolve().parents[1]
mk = script_module("mutate_kernels")


def test_every_mutant_matches_the_kernels_source_once():
    mk.check_mutants()
    for m in mk.MUTANTS:
        assert m.old != m.new and all((ROOT / t.split("::")[0]).exists() for t in m.tests), m.name


def test_a_mutant_whose_text_is_gone_is_refused(tmp_path):
    (tmp_path / "parity" / "routing").mkdir(parents=True)
    (tmp_path / "parity" / "routing" / "k.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="occurs 0 times"):
        mk.check_mutants([mk._m("gone", "k.py", "x = 2", "x = 3", (), "")], root=tmp_path)


@pytest.mark.parametrize("new,outcome", [("return 2", "killed"), ("return (1)", "survived"), ("return (", "invalid")])
def test_the_runner_classifies_and_restores(tmp_path, new, outcome):
    (tmp_path / "parity" / "routing").mkdir(parents=True)
    source = "def f():\n    return 1\n"
    kernel = tmp_path / "parity" / "routing" / "k.py"
    kernel.write_text(source)
    (tmp_path / "test_k.py").write_text("from parity.routing.k import f\n\n\ndef test_f():\n    assert f() == 1\n")
    for d in ("parity", "parity/routing"):
        (tmp_path / d / "__init__.py").write_text("")
    m = mk._m("m", "k.py", "return 1", new, ("test_k.py",), "")
    row = mk.run_mutant(m, root=tmp_path, workers=1, timeout=120)
    assert row["outcome"] == outcome, row["tail"]
    assert kernel.read_text() == source, "the file was not restored"
    if outcome == "killed":
        assert row["first_failure"] == ["test_k.py::test_f"]
