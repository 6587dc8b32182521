"""scripts/ablate_kernels.py: its edits still match the kernels' source once, and the trees it writes are this
checkout's parity/ with exactly those edits (the ablated kernels are timed on a GPU, never tested: their ids are
wrong by design; their SASS compiles, reports/bench/NOTES.md, "Twenty-ninth round")."""
import filecmp
from pathlib import Path

import pytest
from script_modules import script_module

ROOT = Path(__file__).resolve().parents[1]
ak = script_module("ablate_kernels")


def test_every_ablation_matches_the_kernels_source_once():
    ak.check_ablations()
    assert all(old != new for a in ak.ABLATIONS for _, old, new in a.edits)


def test_trees_are_the_source_with_the_edits_alone(tmp_path):
    base = ak.write_tree(tmp_path / "base")
    assert not filecmp.dircmp(ROOT / "parity" / "routing", base / "parity" / "routing").diff_files
    for a in ak.ABLATIONS:
        tree = ak.write_tree(tmp_path / a.name, a)
        changed = filecmp.dircmp(base / "parity" / "routing", tree / "parity" / "routing").diff_files
        assert sorted(changed) == sorted({path for path, _, _ in a.edits}), a.name
        for path, old, new in a.edits:
            text = (tree / "parity" / "routing" / path).read_text()
            assert new in text and old not in text, (a.name, path)


def test_an_ablation_whose_text_is_gone_is_refused(tmp_path):
    (tmp_path / "parity" / "routing").mkdir(parents=True)
    (tmp_path / "parity" / "routing" / "k.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="occurs 0 times"):
        ak.check_ablations([ak.Ablation("gone", "", (("k.py", "x = 2", "x = 3"),))], root=tmp_path)
