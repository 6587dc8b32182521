"""parity.interpreter: a device function's call inside a launch skips the interpreter's re-patching
of triton.language, and the kernel computes the same."""
import pytest
import torch

from parity import device, interpreter

pytestmark = pytest.mark.skipif(not device.INTERPRETER, reason="only the Triton interpreter patches triton.language")

if device.INTERPRETER:
    import triton
    import triton.language as tl
    from triton.runtime import interpreter as upstream

    @triton.jit
    def doubled(x):
        return x * 2 + tl.zeros_like(x)

    @triton.jit
    def rounds_kernel(src, dst, N: tl.constexpr, ROUNDS: tl.constexpr, FAIL: tl.constexpr):
        offs = tl.arange(0, N)
        x = tl.load(src + offs)
        for _ in tl.static_range(ROUNDS):
            x = doubled(x)
        tl.static_assert(not FAIL, "asked to fail")
        tl.store(dst + offs, tl.max(x, axis=0) + x)


def counted(monkeypatch, skip: bool) -> list:
    """Install upstream's _patch_lang behind a counter, with parity's skip over it where skip."""
    calls = []
    patch = getattr(upstream._patch_lang, "upstream", upstream._patch_lang)

    def counting(fn):
        calls.append(fn.__name__)
        return patch(fn)

    monkeypatch.setattr(upstream, "_patch_lang", counting)
    if skip:
        assert interpreter.skip_repatching()
    return calls


def launch(rounds: int = 5, fail: bool = False) -> torch.Tensor:
    src = torch.arange(8, dtype=torch.float32)
    dst = torch.empty_like(src)
    rounds_kernel[(1,)](src, dst, N=8, ROUNDS=rounds, FAIL=fail)
    return dst


def test_parity_installs_the_skip_when_it_picks_the_interpreter():
    assert getattr(upstream._patch_lang, "parity_skips_repatching", False)
    assert interpreter.skip_repatching()  # a second install changes nothing


def test_device_calls_skip_the_patching_and_compute_the_same(monkeypatch):
    calls = counted(monkeypatch, skip=False)
    expected = launch()
    # upstream patches at the launch, at each of the five calls of doubled, and at tl.max (a
    # triton.language.standard function that also sees triton.language.core)
    assert calls.count("rounds_kernel") == 1 and calls.count("doubled") == 5, calls
    monkeypatch.undo()
    calls = counted(monkeypatch, skip=True)
    assert torch.equal(launch(), expected)
    assert calls.count("doubled") == 0 and calls.count("rounds_kernel") == 1, calls
    torch.testing.assert_close(expected, 2**5 * torch.arange(8.0) + 2**5 * 7.0)


def test_a_failed_launch_restores_triton_language_and_the_next_launch_patches_again(monkeypatch):
    calls = counted(monkeypatch, skip=True)
    with pytest.raises(Exception, match="asked to fail"):
        launch(fail=True)
    assert tl.core.is_builtin(tl.arange), "the failed launch left triton.language patched"
    del calls[:]
    launch()
    assert calls.count("rounds_kernel") == 1 and calls.count("doubled") == 0, calls
    assert tl.core.is_builtin(tl.arange)
