"""The one place that decides where kernels run.

On a machine with a CUDA device, kernels compile for it. Without one, ``TRITON_INTERPRET=1`` is set
*before triton is imported*, so the same kernel source runs on the CPU through Triton's interpreter.
``PARITY_DEVICE=cpu`` forces the interpreter even where a GPU exists (to test the CPU path there);
``PARITY_DEVICE=cuda`` insists on a GPU.
"""
from __future__ import annotations

import os
import sys
import warnings

import torch

_CHOICES = ("auto", "cuda", "cpu")


def _decide() -> str:
    requested = os.environ.get("PARITY_DEVICE", "auto").strip().lower() or "auto"
    if requested not in _CHOICES:
        raise ValueError(f"PARITY_DEVICE: expected one of {_CHOICES}, got {requested!r}")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise RuntimeError("PARITY_DEVICE=cuda, but torch sees no CUDA device on this machine")
    if requested == "cpu" or not has_cuda:
        return "cpu"
    return "cuda"


KIND: str = _decide()
"""'cuda' or 'cpu': where parity's kernels run in this process."""

if KIND == "cpu":
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "triton was imported before parity without TRITON_INTERPRET=1; on a machine without a "
            "GPU import parity first (or set TRITON_INTERPRET=1 yourself) so its kernels can run on "
            "the CPU through the Triton interpreter"
        )
    os.environ["TRITON_INTERPRET"] = "1"
    # The interpreter evaluates kernels with numpy, which warns on every NaN/inf it meets; those
    # values are part of the routing contract (NaN rows), not accidents.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"triton\.runtime\.interpreter")

INTERPRETER: bool = os.environ.get("TRITON_INTERPRET") == "1"
"""True when Triton kernels run through the CPU interpreter."""

if INTERPRETER:
    from parity import interpreter

    interpreter.skip_repatching()  # the same kernels in less time (parity/interpreter.py)


def default() -> torch.device:
    """The device that inputs should be created on for parity's kernels."""
    return torch.device(KIND)


def resolve(name: str = "auto") -> torch.device:
    """Turn a CLI-style device name (auto|cuda|cpu) into the device this process can use."""
    name = name.strip().lower()
    if name not in _CHOICES:
        raise ValueError(f"device: expected one of {_CHOICES}, got {name!r}")
    if name == "auto":
        return default()
    if name != KIND:
        raise ValueError(
            f"device: {name!r} was asked for, but this process runs kernels on {KIND!r}; "
            f"set PARITY_DEVICE={name} before starting it"
        )
    return torch.device(name)


def describe() -> dict:
    """Device and versions, for report headers."""
    import triton

    info = {
        "device": torch.cuda.get_device_name() if KIND == "cuda" else "cpu (Triton interpreter)",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "interpreter": INTERPRETER,
    }
    if KIND == "cuda":
        info["device_count"] = torch.cuda.device_count()
    return info
