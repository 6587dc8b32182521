import pytest
import torch

import parity  # noqa: F401  (decides TRITON_INTERPRET before anything imports triton)
from parity import device

pytest_plugins = ["parity.pytest_plugin"]  # the parallel sweep in tests/sweep

DEVICE = device.default()


@pytest.fixture
def dev() -> torch.device:
    return DEVICE


def pytest_report_header(config):
    info = device.describe()
    return f"parity: kernels on {info['device']} (torch {info['torch']}, triton {info['triton']}, interpreter={info['interpreter']})"


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; this run uses the Triton interpreter")
    for item in items:
        if "gpu" in item.keywords and device.KIND != "cuda":
            item.add_marker(skip_gpu)
