"""parity: numerical parity and tolerance research harness for fused MoE routing kernels.

Import order matters: ``parity.device`` decides between CUDA and the Triton interpreter and must
run before triton is imported, so it is imported first here.
"""
from parity import device as device  # noqa: F401  (must come first)

__version__ = "0.1.0"
