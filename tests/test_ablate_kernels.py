"""scripts/ablate_kernels.py: its edits still match the kernels' source once, and the trees it writes are this
checkout's parity/ with exactly those edits. The ablated kernels are timed on a GPU, never tested (their ids are
wrong by design; their SASS compiles, reports/bench/NOTES.md, "Twenty-ninth round"); an exact variant's tree must
pass the CPU tests it names."""
import filecmp
import os
import re
import subprocess
import sys
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


def test_the_route_half_of_the_ablate_step_names_trees_the_script_writes():
    """scripts/h200_run.sh's default route trees are folders ablate_kernels writes (a renamed ablation would leave
    the device timing nothing for it)."""
    text = (ROOT / "scripts" / "h200_run.sh").read_text()
    folders = {a.folder for a in ak.ABLATIONS}
    named = set(re.findall(r"va/((?:ablate|variant)-[a-z0-9-]+)", text))
    assert named and named <= folders, named - folders


@pytest.mark.parametrize("variant", [a for a in ak.ABLATIONS if a.exact], ids=lambda a: a.name)
def test_variants_pass_their_kernel_tests_on_their_own_tree(variant, tmp_path):
    """An exact variant's tree passes the checkout's tests it names (route-eager-dropped-bits: tests/test_fused.py's
    fp32 tests, truncated ties inside and across the K-th place and exact ties on a coarse grid, and
    tests/test_fp32_unchecked.py), run with that tree's parity/ imported (checked in the child)."""
    assert variant.checks, f"{variant.name}: an exact variant names the tests its tree must pass"
    tree = ak.write_tree(tmp_path / variant.folder, variant)
    args = ["-q", "-p", "no:cacheprovider", "-o", "pythonpath=", "-o", "addopts=", *variant.checks]
    check = (f"import parity, pytest, sys; assert parity.__file__.startswith({str(tree)!r}), parity.__file__; "
             f"sys.exit(pytest.main({args!r}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    env.update(PYTHONSAFEPATH="1", PYTHONPATH=f"{tree}{os.pathsep}{ROOT}")
    done = subprocess.run([sys.executable, "-c", check], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
