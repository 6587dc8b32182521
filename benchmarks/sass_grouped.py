"""Probe without a GPU: compile the grouped kernel (parity.routing.fused_grouped) for sm_90 with the
installed Triton's ptxas and count its SASS, the numbers reports/bench/NOTES.md quotes ("1264 ->
1064 instructions a warp"). Per configuration: instructions, registers, stack, the instructions
before the first store of the flags (the fast path and any branch laid out before it) and the spill
instructions among them; --lines adds the count per source line (nvdisasm's line info). "sass" is the code's
fingerprint (sass_common.fingerprint): a kernel's text mended without changing what it compiles to keeps it, for every
configuration printed (run before and after; 2026-12-07's FIXED_REF mend kept all 18 it was checked at).

The counts depend on the Triton version, by much: the notes' figures are triton 3.6.0's (the
H200's); under triton 3.9.0 (what CI installs) the same source compiles to ~60% more instructions
before the flags and, with the inline float64 passes at the 64-register cap, spills there (94
spill instructions with the groups' lists, 67 without; none under 3.6.0). Run it with the device's Triton on the path to compare with the
notes. "before_flags" includes any branch laid out before the flags' store (the lists' fallback to
the whole tile's rounds is): the notes' 1064 a warp is the lists' path with that branch compiled
out. Nothing here runs a kernel.

python3 -m benchmarks.sass_grouped [--model deepseek-v3] [--dtype bf16] [--lines] [--quick] [--out FILE.json]
python3 -m benchmarks.sass_grouped --route --model gemma4 [--dtype bf16] [--lines]: route_kernel the same way
(every instruction, the rare branches' included: the notes' fast-path counts skip those by hand)
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import subprocess
import sys

import torch

torch.cuda.is_available = lambda: True   # parity.device: compile for the GPU, not the interpreter

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402

import triton  # noqa: E402


class _Sm90:
    """A stand-in for the CUDA driver: Triton asks it for the target and the current device."""

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_device_capability(self, device=0):
        return (9, 0)

    def get_active_torch_device(self):
        return torch.device("cpu")


driver.set_active(_Sm90())

from benchmarks.profile_ncu import family_of  # noqa: E402
from benchmarks.sass_common import common_path, fingerprint, path_instructions  # noqa: E402
from parity import routing  # noqa: E402
from parity.routing import fused, fused_grouped  # noqa: E402

BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
INSTRUCTION = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)")   # address, opcode
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# (rows a program, lists, the float64 passes inline): the table's two tiles for DeepSeek-V3, the
# old rounds beside the lists, and the fast path alone
CONFIGS = [(4, True, True), (4, False, True), (4, True, False), (4, False, False), (1, False, True)]


def compile_one(model: str, dtype: torch.dtype, block_t: int, lists: bool, inline: bool):
    """The compiled grouped_kernel for one configuration, launched on no device (warmup)."""
    fam = routing.family("deepseek_v3")
    m = fam.model(model)
    router = fam.make_router(m, "randn", 0, device="cpu")
    T = 512
    g = torch.empty(T, m.E, dtype=dtype)
    bias, scale = router.correction_bias.float(), fused.router_scale(router, m.E, "cpu")
    launch = fused_grouped.plan(g, m.K, bias, scale, router.n_group, router.topk_group, router.renormalize,
                                interpreter=False, block_t=block_t, lists=lists, inline=inline)
    w, ids = torch.empty(T, m.K), torch.empty(T, m.K, dtype=torch.int32)
    flags = torch.empty(T, dtype=torch.int8)
    kernel = fused_grouped.grouped_kernel.warmup(g, bias, scale, w, ids, flags, bias, T, m.E, 1, 1, 1, grid=(1,),
                                                 **launch.kernel_options())
    return kernel, launch


def compile_route(model: str, dtype: torch.dtype, T: int = 250000, overrides: dict | None = None):
    """The compiled route_kernel (parity.routing.fused) for a model of a family that chooses by the
    logits, at the launch table's tile for T rows, its weight epilogue the router's; ``overrides``:
    compile-time arguments set otherwise than the plan sets them."""
    fam = family_of(model)
    m = fam.model(model)
    router = fam.make_router(m, "randn", 0, device="cpu")
    score, renormalize = fused.SCORES[(router.score, router.renormalize)]
    g = torch.empty(T, m.E, dtype=dtype)
    scale = fused.router_scale(router, m.E, "cpu")
    launch = fused.plan(g, m.K, scale, interpreter=False, score=score, renormalize=renormalize)
    w, ids = torch.empty(T, m.K), torch.empty(T, m.K, dtype=torch.int32)
    kernel = fused.route_kernel.warmup(g, scale, w, ids, T, m.E, m.E, 1, 1, grid=(1,),
                                       **{**launch.options(), **(overrides or {})})
    return kernel, launch


def _tool(name: str, *args: str) -> str:
    return subprocess.run([os.path.join(BIN, name), *args], capture_output=True, text=True, check=True).stdout


@contextlib.contextmanager
def cubin_file(kernel):
    """A compiled kernel's cubin written to a temporary file for the SASS tools: its path."""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sass_grouped_{os.getpid()}.cubin")
    with open(path, "wb") as f:
        f.write(kernel.asm["cubin"])
    try:
        yield path
    finally:
        os.remove(path)


def line_info(path: str) -> list[tuple[int, str, str]]:
    """Every instruction of a cubin as (address, "file:line" of its source, opcode), from nvdisasm's
    line info ("?" before the first line marker)."""
    where, out = "?", []
    for ln in _tool("nvdisasm", "--print-line-info", "-c", path).splitlines():
        m = re.search(r'File "(.*)", line (\d+)', ln)
        if m:
            where = f"{os.path.basename(m.group(1))}:{m.group(2)}"
        elif op := INSTRUCTION.match(ln):
            out.append((int(op.group(1), 16), where, op.group(2)))
    return out


def count(kernel, lines: bool) -> dict:
    """SASS counts of one compiled kernel (see the module docstring)."""
    with cubin_file(kernel) as path:
        sass = [ln for ln in _tool("cuobjdump", "-sass", path).splitlines() if INSTRUCTION.match(ln)]
        res = _tool("cuobjdump", "-res-usage", path).strip().splitlines()[-1]
        info = line_info(path) if lines else []
    first_flag = next((i for i, ln in enumerate(sass) if "STG.E.U8" in ln), len(sass))
    spills = sum(1 for ln in sass[:first_flag] if re.search(r"\b(STL|LDL)", ln))
    out = {"instructions": len(sass), "before_flags": first_flag, "spills_before_flags": spills,
           "registers": int(re.search(r"REG:(\d+)", res).group(1)), "stack": int(re.search(r"STACK:(\d+)", res).group(1)),
           "spills": sum(1 for ln in sass if re.search(r"\b(STL|LDL)", ln)), **common_path(sass),
           "sass": fingerprint(sass)}
    if lines:
        on_path = {a for a, _ in path_instructions(sass)}
        out["by_line"] = dict(collections.Counter(where for _, where, op in info if op != "NOP").most_common())
        out["path_by_line"] = dict(collections.Counter(
            where for a, where, op in info if a in on_path and op != "NOP").most_common())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="deepseek-v3")
    ap.add_argument("--dtype", default="bf16", choices=DTYPES)
    ap.add_argument("--lines", action="store_true", help="count per source line")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="the table's tile alone (the test's smoke run)")
    ap.add_argument("--route", action="store_true",
                    help="route_kernel instead, for --model of a family that chooses by the logits (gemma4, "
                         "qwen3-moe, qwen2-moe, gpt-oss-120b, llama4-maverick...), at the table's tile for T=250000")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=INT",
                    help="with --route: a compile-time argument of route_kernel set to INT (repeatable)")
    a = ap.parse_args()
    rows = []
    if a.route:
        overrides = {k: int(v) for k, v in (item.split("=", 1) for item in a.set)}
        kernel, launch = compile_route(a.model, DTYPES[a.dtype], overrides=overrides)
        t = launch.tile
        counts = count(kernel, a.lines)
        for flags_only in ("before_flags", "spills_before_flags"):   # route_kernel stores no flags
            counts.pop(flags_only)
        rows.append({"model": a.model, "dtype": a.dtype, "kernel": "route_kernel", "block_t": t.block_t,
                     "vec": t.vec, "warps": t.num_warps, **overrides, **counts})
    for block_t, lists, inline in [] if a.route else CONFIGS[:1] if a.quick else CONFIGS:
        if lists and block_t == 1:
            continue
        kernel, launch = compile_one(a.model, DTYPES[a.dtype], block_t, lists, inline)
        row = {"model": a.model, "dtype": a.dtype, "block_t": block_t, "warps": launch.num_warps,
               "lists": launch.constexprs["GROUP_LISTS"], "inline": inline, "max_registers": launch.max_registers,
               **count(kernel, a.lines)}
        rows.append(row)
    for row in rows:
        print(" ".join(f"{k}={v}" for k, v in row.items() if not k.endswith("by_line")), flush=True)
        path_by_line = row.get("path_by_line", {})
        if path_by_line:
            print("    every instruction / on the common path, per source line:")
        for where, n in row.get("by_line", {}).items():
            print(f"    {n:5d} {path_by_line.get(where, 0):5d} {where}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"triton": triton.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
