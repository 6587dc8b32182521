"""scripts/h200_run.sh's card guard: ONLY_GPU=<tag> ends a device call before any step when the card is another
one, so that a question only an H200 answers costs an H100 call its start alone (the device tool gives whichever
card comes). Run here with a stand-in nvidia-smi; no step may start."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, card: str, step: str = "ablate", **env) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"   # a new file of this test's own folder, never a link to a real program
    smi.write_text('#!/bin/sh\necho "name, driver_version, memory.total [MiB]"\n'
                   f'echo "{card}, 580.159.04, 81559 MiB"\n')
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OUT": str(tmp_path / "out"),
           "LOGS_DIR": str(tmp_path / "logs"), **env}
    return subprocess.run(["bash", "scripts/h200_run.sh", step], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_only_gpu_ends_the_call_on_another_card(tmp_path):
    done = _run(tmp_path, "NVIDIA H100 80GB HBM3", ONLY_GPU="h200")
    assert done.returncode == 3, done.stdout + done.stderr
    assert (tmp_path / "out" / "steps.txt").read_text() == "ONLY_GPU=h200, but this card is h100: nothing run\n"
    assert "torch" not in (tmp_path / "out" / "gpu.txt").read_text()   # not even the versions' python3 ran
    assert not (tmp_path / "logs" / "ablate.log").exists()


def test_other_steps_run_instead_on_another_card(tmp_path):
    done = _run(tmp_path, "NVIDIA H100 80GB HBM3", ONLY_GPU="h200", OTHER_STEPS="nosuchstep")
    steps = (tmp_path / "out" / "steps.txt").read_text().splitlines()
    assert steps[0] == "ONLY_GPU=h200, but this card is h100: OTHER_STEPS instead (nosuchstep)", done.stdout + done.stderr
    assert any(s.startswith("nosuchstep: exit") for s in steps[1:]), steps   # the other step ran, not ablate
    assert not (tmp_path / "logs" / "ablate.log").exists()


def test_only_gpu_runs_its_steps_on_its_card(tmp_path):
    done = _run(tmp_path, "NVIDIA H200", "h200step", ONLY_GPU="h200", OTHER_STEPS="nosuchstep")
    steps = (tmp_path / "out" / "steps.txt").read_text()
    assert "OTHER_STEPS" not in steps and "nosuchstep" not in steps and "h200step: exit" in steps, done.stdout + done.stderr
