"""What moving keys between a row's lanes costs in the grouped kernel's layout (SASS sm_90, no GPU).

The grouped tile gives each group of 32 keys one thread (four rows a warp, eight groups a row). Passes three to six
of the group lists run on all eight groups though only four are chosen; handing half of each chosen group's keys to
an unchosen group's lane would halve those passes (reports/bench/NOTES.md, thirtieth and thirty-second rounds). This
compiles a toy kernel of that layout twice, the group minima alone and with each group's second half fetched from a
data-dependent partner group of the same row by tl.gather, and prints both kernels' instruction counts by opcode.

PYTHONSAFEPATH=1 PYTHONPATH=<triton 3.6 target>:. python3 scripts/probe_lane_gather.py
"""
from __future__ import annotations

import collections
import sys

import torch

from benchmarks import sass_grouped   # replaces Triton's driver by an sm_90 stand-in: import it first
from benchmarks.sass_common import instructions, opcode

import triton  # noqa: E402
import triton.language as tl  # noqa: E402


@triton.jit
def lane_gather_kernel(x_ptr, out_ptr, GATHER: tl.constexpr):
    r = tl.arange(0, 4)[:, None, None, None]
    g = tl.arange(0, 8)[None, :, None, None]
    p = tl.arange(0, 4)[None, None, :, None] * 8 + tl.arange(0, 8)[None, None, None, :]
    q = tl.load(x_ptr + r * 256 + g * 32 + p).to(tl.float32).to(tl.int32, bitcast=True)   # [4, 8, 4, 8] as the tile
    m = tl.min(tl.min(q, axis=3), axis=2)                      # [4, 8]: each group's minimum, in its thread
    if GATHER:
        partner = (tl.arange(0, 8)[None, :] + 4 + (m & 1)) % 8   # another group of the row, known only at run time
        first, second = tl.split(tl.permute(tl.reshape(q, [4, 8, 2, 2, 8]), [0, 1, 3, 4, 2]))   # the two halves
        moved = tl.gather(second, tl.broadcast_to(partner[:, :, None, None], second.shape), axis=1)
        m = tl.min(tl.min(first, axis=3), axis=2) + tl.min(tl.min(moved, axis=3), axis=2)
    tl.store(out_ptr + tl.arange(0, 4)[:, None] * 8 + tl.arange(0, 8)[None, :], m)


SHOWN = ("SHFL", "STS", "LDS", "BAR", "VIMNMX", "VIMNMX3", "SEL")


def main() -> int:
    x, out = torch.empty(1024, dtype=torch.bfloat16), torch.empty(32, dtype=torch.int32)
    for gather in (False, True):
        kernel = lane_gather_kernel.warmup(x, out, GATHER=gather, grid=(1,), num_warps=1)
        with sass_grouped.cubin_file(kernel) as path:
            sass = sass_grouped._tool("cuobjdump", "-sass", path).splitlines()
        ops = collections.Counter(opcode(text).split(".")[0] for _, text in instructions(sass))
        print(f"gather={gather}: {sum(ops.values())} instructions;", {op: ops[op] for op in SHOWN if ops[op]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
