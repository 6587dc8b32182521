import os

import pytest

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
