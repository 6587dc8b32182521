"""Probe: route_kernel's launch table against the pipelined persistent variant (benchmarks/
variants/v7_pipelined.py: programs loop over row blocks; Triton's pipeliner moves the next blocks'
words into shared memory by cp.async while the current block is routed) on the GPU, for
reports/bench/NOTES.md ("Pipelined loads"). CUDA-graph replay, inputs rotated beyond L2, every
configuration's ids checked against the oracle and its weights against the table's, bit for bit;
then one batch holding NaNs of both signs (the variant's second loop) checked against fused.

python3 -m benchmarks.probe_pipelined [--shapes 128:bf16:8,...] [--out FILE.json] [T ...]
"""
import argparse
import json

from parity.routing.fused import fused  # noqa: F401  first: parity decides TRITON_INTERPRET before triton loads
from benchmarks.probe_fused import write_rows
from benchmarks.probe_persistent import nan_batch, same_as_fused, sweep
from benchmarks.variants import v7_pipelined as v7

import torch

# (stages, rows a block, warps a program, ptxas's register cap, programs an SM)
CONFIGS = [(1, 16, 1, 96, 16), (2, 16, 1, 96, 16), (3, 16, 1, 96, 12), (3, 16, 1, 96, 16), (3, 16, 1, 96, 20),
           (3, 16, 1, 96, 24), (4, 16, 1, 96, 16), (4, 16, 1, 96, 20), (3, 16, 1, 104, 16), (3, 16, 1, 80, 20),
           (3, 16, 1, 80, 24), (3, 8, 1, 80, 24), (3, 8, 1, 80, 32), (3, 8, 1, 80, 40), (3, 32, 2, 96, 8),
           (3, 32, 2, 96, 10)]


def configs():
    yield {"kernel": "table"}
    for stages, bt, warps, cap, per_sm in CONFIGS:
        yield {"kernel": "pipelined", "stages": stages, "block_t": bt, "warps": warps, "max_registers": cap,
               "programs_per_sm": per_sm}


def nan_check(sms: int) -> list[dict]:
    """A batch with NaNs of both signs in a few rows: the variant's ids and weights against fused's."""
    out = []
    g, s, want_w, want_ids = nan_batch(128, torch.bfloat16)
    for stages, bt, warps, cap, per_sm in CONFIGS[:4]:
        out.append({"nan_batch": True, "stages": stages, "block_t": bt, **same_as_fused(
            lambda w, ids: v7.launcher(g, 8, s, w, ids, programs=per_sm * sms, stages=stages, block_t=bt,
                                       num_warps=warps, max_registers=cap)(), want_w, want_ids)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--shapes", default="128:bf16:8")
    ap.add_argument("T", nargs="*", type=int, default=[250000, 65536])
    a = ap.parse_args()
    rows = sweep(a.shapes, a.T, list(configs()), lambda cfg, g, K, case, sms, w, ids: v7.launcher(
        g, K, case.scale, w, ids, programs=cfg["programs_per_sm"] * sms, stages=cfg["stages"],
        block_t=cfg["block_t"], num_warps=cfg["warps"], max_registers=cfg["max_registers"]))
    rows += nan_check(torch.cuda.get_device_properties(0).multi_processor_count)
    if a.out:
        write_rows(a.out, rows)


if __name__ == "__main__":
    main()
