import os

import pytest
import torch

from parity import device


def test_interpreter_is_on_exactly_when_running_on_cpu():
    assert device.KIND in ("cpu", "cuda")
    assert device.INTERPRETER == (device.KIND == "cpu")
    assert (os.environ.get("TRITON_INTERPRET") == "1") == (device.KIND == "cpu")


def test_resolve():
    assert device.resolve("auto") == device.default()
    with pytest.raises(ValueError, match=r"device: expected one of .*got 'tpu'"):
        device.resolve("tpu")


def test_describe_names_versions():
    info = device.describe()
    assert {"device", "torch", "triton", "interpreter"} <= set(info)


def test_the_interpreter_refuses_a_keyword_the_kernel_does_not_take(dev):
    """conftest.launch_as_the_gpu_does: on the GPU a launch with a compile-time argument the kernel
    does not take raises; the suite's interpreter must raise too, while launch options pass."""
    import triton
    import triton.language as tl

    @triton.jit
    def copy_kernel(src, dst, N: tl.constexpr):
        offs = tl.arange(0, N)
        tl.store(dst + offs, tl.load(src + offs))

    src = torch.arange(8, dtype=torch.float32, device=dev)
    dst = torch.zeros_like(src)
    copy_kernel[(1,)](src, dst, N=8, num_warps=1)
    assert torch.equal(dst, src)
    with pytest.raises(KeyError, match="SCORE"):
        copy_kernel[(1,)](src, dst, N=8, SCORE=0)
