"""parity: numerical parity and tolerance research harness for fused MoE routing kernels.

Where kernels run (CUDA, or the Triton interpreter on the CPU) is decided once, in
``parity.device``, when the first module that needs it is imported; the CLI sets
``PARITY_DEVICE`` from ``--device`` before that happens.
"""
__version__ = "0.1.0"
