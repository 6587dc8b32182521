"""Probe: where the softmax-over-all weights of one batch differ between route_kernel's tiles, and by
how much (the seventeenth round's paired denominator kept its bits in the interpreter and lost them on
CUDA; reports/bench/NOTES.md). Routes tests/test_fused_families.py's invariance batch (64 rows of 60,
spread 3, a NaN and a row of -inf) at the test's five tiles with the plan's compile-time arguments
(run it with another tree's parity/ through PARITY_TREE to probe that tree's kernel) and prints, per
tile against the first, the rows whose weights differ, the largest difference in fp32 ulps, and the
implied denominators (exp(v - max) / w for the row's top pick) in hex.

python3 scripts/probe_tile_bits.py [--dtypes bf16,fp16,fp32] [--set NAME=INT ...]
"""
import argparse
from dataclasses import replace

import torch

from parity.routing import fused
from parity.routing.kernel_parts import SOFTMAX_ALL, empty_outputs

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def batch(dtype: torch.dtype, device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    g = (torch.randn(64, 60, generator=gen) * 3.0).to(dtype).to(device)
    g[5, 7] = float("nan")
    g[9, :] = float("-inf")
    return g


def ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in units of fp32 ulps, by the ordered integer bits (both finite, same sign)."""
    return (a.view(torch.int32).long() - b.view(torch.int32).long()).abs()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", default="bf16,fp16,fp32")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=INT")
    a = ap.parse_args()
    overrides = {k: int(v) for k, v in (s.split("=", 1) for s in a.set)}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in a.dtypes.split(","):
        g = batch(DTYPES[name], device)
        scale = fused.constant_vector(60, 1.0, torch.float32, g.device)
        base = fused.plan(g, 4, scale, score=SOFTMAX_ALL, renormalize=False)
        base = replace(base, constexprs={**base.constexprs, **overrides})
        outs = {}
        for block_t, vec in [(1, 64), (1, 16 // g.element_size()), (4, 16 // g.element_size()), (64, 64), (16, 2)]:
            w, ids = empty_outputs(g, 4)
            replace(base, tile=fused.Tile(block_t, 64, vec, 1)).run(g, scale, w, ids)
            outs[(block_t, vec)] = (w.nan_to_num().cpu(), ids.cpu())
        (t0, (w0, i0)), *rest = outs.items()
        top = g.float().cpu().nan_to_num(float("inf")).max(1).values
        for t, (w, i) in rest:
            rows = (w != w0).any(1).nonzero().flatten().tolist()
            worst = int(ulps(w, w0).max()) if rows else 0
            print(f"{name} tile {t} vs {t0}: ids {'same' if torch.equal(i, i0) else 'DIFFER'}, "
                  f"{len(rows)} rows differ, worst {worst} ulps, rows {rows[:8]}", flush=True)
            for r in rows[:3]:
                v = g[r, i0[r, 0]].float().cpu()
                den0, den = torch.exp(v - top[r]) / w0[r, 0], torch.exp(v - top[r]) / w[r, 0]
                print(f"    row {r}: w {w0[r].tolist()} vs {w[r].tolist()}; "
                      f"den ~{float(den0).hex()} vs ~{float(den).hex()}", flush=True)


if __name__ == "__main__":
    main()
