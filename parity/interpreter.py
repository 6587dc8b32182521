"""Triton's CPU interpreter, without its repeated patching of triton.language.

The interpreter runs a kernel by replacing triton.language's builtins with numpy versions for the
launch (``_patch_lang``) and restoring them afterwards. It does the same again at every call of a
``@triton.jit`` device function inside the kernel, and that second patching changes nothing: the
builtins are already replaced. It still walks triton.language's members each time (``inspect.
getmembers`` on four modules), about 0.25 ms a call. parity's kernels call small device functions
in their rounds, so on the CPU that walk was ~40% of a kernel's time (cProfile of
tests/test_properties.py::test_fused_is_deterministic[32]: 50 s of 118 s in ``_patch_lang``).

``skip_repatching()`` makes a device function's call skip it while its kernel's launch has patched
every triton.language module the function can see. Anything else still patches as before, so the
kernels compute the same; tests/test_interpreter.py checks that and that the skip happens.
"""
from __future__ import annotations

import inspect

_MARK = "parity_skips_repatching"


def skip_repatching() -> bool:
    """Install the skip into triton's interpreter (once). False where this triton's interpreter is
    not built as expected (no ``_patch_lang`` or ``_LangPatchScope``): it then runs unchanged, only
    slower."""
    from triton import language as tl
    from triton.runtime import interpreter

    patch = getattr(interpreter, "_patch_lang", None)
    if patch is None or not hasattr(interpreter, "_LangPatchScope"):
        return False
    if getattr(patch, _MARK, False):
        return True
    patched: set[int] = set()  # the modules patched since the launch began; empty between launches
    seen_by: dict[object, set[int]] = {}  # a function's triton.language modules, by function

    def languages(fn) -> set[int]:
        return {id(v) for v in fn.__globals__.values() if inspect.ismodule(v) and v in (tl, tl.core)}

    def patch_lang(fn):
        seen = seen_by.get(fn)
        if seen is None:
            seen = seen_by[fn] = languages(fn)
        if patched and seen <= patched:
            return interpreter._LangPatchScope()  # nothing to patch, nothing to restore
        scope = patch(fn)
        if patched:  # a device function that sees a module not patched yet (triton.language.standard's see
            patched.update(seen)  # triton.language.core): patched as upstream patches it, and never restored
            return scope
        restore = scope.restore

        def restore_and_forget() -> None:
            patched.clear()
            restore()

        scope.restore = restore_and_forget
        patched.update(seen)
        return scope

    setattr(patch_lang, _MARK, True)
    patch_lang.upstream = patch
    interpreter._patch_lang = patch_lang
    return True
