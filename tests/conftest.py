import os
import zlib

import pytest
import torch

import parity  # noqa: F401  (decides TRITON_INTERPRET before anything imports triton)
from parity import device

pytest_plugins = ["parity.pytest_plugin"]  # the parallel sweep in tests/sweep

DEVICE = device.default()


def launch_as_the_gpu_does() -> None:
    """Make the interpreter refuse a launch keyword its kernel does not take, as the GPU's launcher
    does (KeyError: "... was specified but unrecognised"); the interpreter drops such a keyword, so a
    launch that only the GPU refuses passed the CPU suite (2d06bb6: the v3 network kernel was given
    route_kernel's SCORE; reports/bench/NOTES.md, "Fifteenth round"). The launch options are the
    CUDA backend's (num_warps, maxnreg, ...)."""
    import dataclasses

    from triton.backends.nvidia.compiler import CUDAOptions
    from triton.runtime.interpreter import InterpretedFunction

    options = frozenset(f.name for f in dataclasses.fields(CUDAOptions))
    run = InterpretedFunction.run
    if getattr(run, "refuses_unknown_keywords", False):
        return

    def checked_run(self, *args, grid, warmup, **kwargs):
        unknown = sorted(set(kwargs) - set(self.arg_names) - options)
        if unknown:
            raise KeyError(f"Keyword argument {', '.join(unknown)} was specified but unrecognised by "
                           f"{self.fn.__name__} (the GPU's launcher refuses it; the interpreter would drop it)")
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    checked_run.refuses_unknown_keywords = True
    InterpretedFunction.run = checked_run


if device.INTERPRETER:
    launch_as_the_gpu_does()


@pytest.fixture
def dev() -> torch.device:
    return DEVICE


def pytest_report_header(config):
    info = device.describe()
    return f"parity: kernels on {info['device']} (torch {info['torch']}, triton {info['triton']}, interpreter={info['interpreter']})"


def shard_key(nodeid: str) -> str:
    """What a shard is chosen by: the test, except that the sweep (tests/sweep) stays whole, as its
    report needs every case of the grid."""
    return "tests/sweep" if nodeid.startswith("tests/sweep/") else nodeid


def parse_shard(text: str) -> tuple[int, int]:
    """PARITY_SHARD="i/n" (1 <= i <= n): run the i-th of n disjoint parts of the suite."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise pytest.UsageError(f"PARITY_SHARD must read i/n, like 1/2; got {text!r}") from None
    if not 1 <= i <= n:
        raise pytest.UsageError(f"PARITY_SHARD={text!r}: need 1 <= i <= n")
    return i, n


def in_shard(nodeid: str, i: int, n: int) -> bool:
    return zlib.crc32(shard_key(nodeid).encode()) % n == i - 1


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; this run uses the Triton interpreter")
    for item in items:
        if "gpu" in item.keywords and device.KIND != "cuda":
            item.add_marker(skip_gpu)
    if os.environ.get("PARITY_SHARD"):  # the GPU suite in two device calls (scripts/h200_run.sh)
        i, n = parse_shard(os.environ["PARITY_SHARD"])
        kept, dropped = [], []
        for item in items:
            (kept if in_shard(item.nodeid, i, n) else dropped).append(item)
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
