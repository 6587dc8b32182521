"""A one-line progress bar on stderr: cases done, the current case, elapsed and time left."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, *, enabled: bool = True, width: int = 24) -> None:
        self.total, self.done, self.width = total, 0, width
        self.enabled = enabled and total > 0
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()

    def show(self, label: str, *, force: bool = False) -> None:
        """Redraw the bar (on a terminal); in a log, only finished cases are written."""
        if not self.enabled or not (self.tty or force):
            return
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        eta = "?" if left != left else f"{left:4.0f}s"
        line = f"[{bar}] {self.done}/{self.total}  {elapsed:4.0f}s elapsed, {eta} left  {label}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def advance(self, label: str = "") -> None:
        self.done += 1
        self.show(label, force=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
