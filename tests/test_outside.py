"""parity from outside its tree, as a kernel maintainer uses it: a throwaway package in a temporary
directory with its own kernels and its own test file (pytest in a subprocess), the CLI on a TOML
grid with a kernel of SGLang's argument order, `parity diff` on a planted regression, and the test
module `parity tolerances --emit pytest` writes."""
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Written with torch alone, in SGLang's argument order (gating_output, per_expert_scale, topk),
# returning (weights, ids) with int64 ids as torch.topk gives them.
KERNELS = '''
import torch

OFF_ROW = {off_row}


def _route(gating_output, per_expert_scale, topk, higher=False):
    x = gating_output.float()
    if higher:   # among equal logits the higher expert id wins
        ids = (x.shape[1] - 1) - torch.sort(x.flip(-1), dim=-1, descending=True, stable=True).indices[:, :topk]
    else:
        ids = torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :topk]
    v = x.gather(1, ids)
    e = torch.exp(v - v[:, :1])
    return e / e.sum(-1, keepdim=True) * per_expert_scale.float()[ids], ids


def correct(gating_output, per_expert_scale, topk):
    return _route(gating_output, per_expert_scale, topk)


def higher_id(gating_output, per_expert_scale, topk):
    return _route(gating_output, per_expert_scale, topk, higher=True)


def off_on_one_expert(gating_output, per_expert_scale, topk):
    """The top expert of row OFF_ROW gets a weight 1e-3 too large."""
    w, ids = _route(gating_output, per_expert_scale, topk)
    if OFF_ROW is not None and w.shape[0] > OFF_ROW:
        w[OFF_ROW, 0] *= 1 + 1e-3
    return w, ids
'''

USER_TESTS = '''
import pytest
import torch

from mykernels.kernels import correct, higher_id, off_on_one_expert
from parity.testing import assert_routing_close, check_routing


def inputs():
    torch.manual_seed(0)
    return torch.randn(4096, 128, dtype=torch.bfloat16), torch.rand(128)


def test_correct():
    g, s = inputs()
    assert_routing_close(correct(g, s, 8), g, 8, s)


@pytest.mark.parametrize("T", [1, 2048])
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_correct_swept(T, dtype):
    check_routing(correct, T=T, dtype=dtype, dist=["upstream", "integer"], signature="sglang")


def test_higher_id():
    g, s = inputs()
    assert_routing_close(higher_id(g, s, 8), g, 8, s)


def test_higher_id_allowed():
    g, s = inputs()
    assert_routing_close(higher_id(g, s, 8), g, 8, s, ties="higher id")


def test_off_on_one_expert():
    g, s = inputs()
    assert_routing_close(off_on_one_expert(g, s, 8), g, 8, s)
'''


def write_package(root: Path, off_row=5) -> Path:
    pkg = root / "mykernels"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kernels.py").write_text(KERNELS.format(off_row=off_row))
    return root


def run(args, cwd: Path, timeout=600) -> subprocess.CompletedProcess:
    # the throwaway package first, then this checkout's parity (installed or not)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def outcomes(stdout: str) -> dict:
    return dict(re.findall(r"::(\S+) (PASSED|FAILED)", stdout))


def test_a_users_own_test_file(tmp_path):
    root = write_package(tmp_path)
    (root / "tests").mkdir()
    (root / "tests" / "test_routing.py").write_text(USER_TESTS)
    p = run(["-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:xdist", "tests"], root)
    got = outcomes(p.stdout)
    assert got == {
        "test_correct": "PASSED", "test_higher_id": "FAILED", "test_higher_id_allowed": "PASSED",
        "test_off_on_one_expert": "FAILED",
        **{f"test_correct_swept[{d}-{t}]": "PASSED" for d in ("bfloat16", "float32") for t in (1, 2048)},
    }, p.stdout[-3000:]
    torch.manual_seed(0)
    top = int(torch.randn(4096, 128, dtype=torch.bfloat16)[5].float().argmax())
    assert f"worst at row 5, expert {top}: candidate " in p.stdout
    assert "rows whose K-th key ties do not go to the lower id" in p.stdout
    assert "Allow it with ties='higher id' or ties='any'" in p.stdout


GRID = '''
name = "mine"
description = "my kernel's shapes"

[[shapes]]
T = [1, 64, 512]
dtype = ["bfloat16", "float32"]
dist = ["upstream", "randn"]
seeds = [0, 3]
'''


def sweep(root: Path, out: str, candidate: str = "mykernels.kernels:off_on_one_expert") -> subprocess.CompletedProcess:
    return run(["-m", "parity.cli", "sweep", "--grid-file", str(root.parent / "grid.toml"), "--candidate", candidate,
                "--signature", "sglang", "--out", str(root.parent / out), "--no-progress"], root)


def test_toml_grid_sglang_candidate_and_a_planted_regression(tmp_path):
    (tmp_path / "grid.toml").write_text(GRID)
    v1 = write_package(tmp_path / "v1", off_row=None)     # the kernel as it was
    v2 = write_package(tmp_path / "v2", off_row=17)       # the next commit: row 17's top weight 1e-3 off
    first = sweep(v1, "old")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "grid mine (24 cases)" in first.stderr
    assert "mykernels.kernels:off_on_one_expert: pass" in first.stdout and "verdict: PASS" in first.stdout
    second = sweep(v2, "new")
    assert second.returncode == 1, second.stdout + second.stderr
    assert "at row 17, expert" in second.stdout

    same = run(["-m", "parity.cli", "diff", str(tmp_path / "old"), str(tmp_path / "old")], tmp_path)
    assert same.returncode == 0 and "verdict: no regression" in same.stdout
    d = run(["-m", "parity.cli", "diff", str(tmp_path / "old"), str(tmp_path / "new")], tmp_path)
    assert d.returncode == 1, d.stdout + d.stderr
    assert "gemma4 candidate mykernels.kernels:off_on_one_expert: verdict pass -> FAIL" in d.stdout
    assert re.search(r"off_on_one_expert~oracle: weight error grew past OLD's hull: .* \(row 17, expert \d+\)", d.stdout)
    assert "verdict: REGRESSED" in d.stdout
    missing = run(["-m", "parity.cli", "diff", str(tmp_path / "old"), str(tmp_path / "nowhere")], tmp_path)
    assert missing.returncode == 2 and "no records.jsonl" in missing.stderr


def test_emitted_pytest_module_runs(tmp_path):
    root = write_package(tmp_path)
    target = root / "test_emitted.py"
    p = run(["-m", "parity.cli", "tolerances", str(ROOT / "reports" / "h200"), "--emit", "pytest",
             "--candidate", "mykernels.kernels:correct", "--signature", "sglang", "--out", str(target)], root)
    assert p.returncode == 0, p.stderr
    text = target.read_text()
    assert "NVIDIA H200, git " in text and "from mykernels.kernels import correct as CANDIDATE" in text
    r = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(target)], root)
    assert r.returncode == 0, r.stdout[-3000:]
    assert re.search(r"\b81 passed\b", r.stdout)
    # the same module around the buggy kernel fails
    target.write_text(text.replace("import correct as CANDIDATE", "import off_on_one_expert as CANDIDATE"))
    r = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-k", "upstream", str(target)], root)
    assert r.returncode == 1 and "worst at row 5, expert" in r.stdout
