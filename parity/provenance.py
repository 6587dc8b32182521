"""Where a result came from: the git commit, the device and versions, when it started and how long
it took. Every artefact parity writes (sweep summaries, benchmarks, reliability tallies) carries
this, built here and nowhere else."""
from __future__ import annotations

import datetime as _dt
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def git_sha() -> str:
    """HEAD of the checkout; PARITY_GIT_SHA where the tree travelled without its .git (the GPU)."""
    if os.environ.get("PARITY_GIT_SHA"):
        return os.environ["PARITY_GIT_SHA"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except Exception:  # noqa: BLE001 - not a checkout, or no git
        return "unknown"


def parity_dir() -> str:
    """The directory this parity package was imported from, relative to the working directory where it
    lies below it: "parity" for the checkout's own, "va/base/parity" for another tree put first on the
    path for an A/B, which git_sha cannot tell apart (it reads the enclosing checkout's HEAD)."""
    here = Path(__file__).resolve().parent
    try:
        return str(here.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(here)


def now() -> str:
    """The current UTC time, to the second, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Run:
    """A run's clock: started when made; ``meta`` gives the metadata dict with the time so far."""

    started: str = field(default_factory=now)
    t0: float = field(default_factory=time.monotonic)

    def seconds(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def meta(self, **fields) -> dict:
        """Device and versions (parity.device.describe), git sha, the parity tree that ran, start
        time, seconds so far, and the caller's own fields."""
        from parity import device

        return {**device.describe(), "git_sha": git_sha(), "parity_dir": parity_dir(), "started": self.started,
                "seconds": self.seconds(), **fields}
