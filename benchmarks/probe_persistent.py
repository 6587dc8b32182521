"""Probe: route_kernel's launch table against the persistent variant (benchmarks/variants/
v6_persistent.py: programs that loop over row blocks, optionally loading the next block's words
before routing the current one) on the GPU, for reports/bench/NOTES.md ("Overlap"). CUDA-graph
replay, inputs rotated beyond L2, every configuration's ids checked against the oracle and its
weights against fused's, bit for bit.

python3 -m benchmarks.probe_persistent [--shapes 128:bf16:8,...] [--out FILE.json] [T ...]
"""
import argparse
import itertools
import json

from parity.routing.fused import fused, plan  # first: parity decides TRITON_INTERPRET before triton loads
from benchmarks.probe_fused import DTYPES, Case, write_rows
from benchmarks.variants import v6_persistent as v6

import torch

PROGRAMS_PER_SM = (8, 12, 16)


def configs():
    """The table, then the persistent kernel: reloading each block (122 registers), prefetching
    uncapped (168) and under ptxas's cap of 128 (no spill), over programs an SM."""
    yield {"kernel": "table"}
    for prefetch, cap in ((False, None), (True, None), (True, 128)):
        for per_sm in PROGRAMS_PER_SM:
            yield {"kernel": "persistent", "prefetch": prefetch, "max_registers": cap, "programs_per_sm": per_sm}


def nan_batch(E: int, dtype: torch.dtype, K: int = 8, T: int = 250000):
    """A batch with NaNs of both signs in a few rows (seed 1), a scale, and fused's weights and ids
    for it: what a variant that routes without the NaN case first must still match."""
    torch.manual_seed(1)
    g = torch.randn(T, E, device="cuda").to(dtype)
    bits = g.view(torch.int16)
    for r, c, v in ((7, 3, 0x7FC1), (7, 90 % E, -1), (123457 % T, 5, 0x7F81), (T - 1, E - 1, -0x7F)):
        bits[r, c] = v   # -1 (0xFFFF) and -0x7F (0xFF81) are negative NaNs in bf16 and fp16
    s = torch.rand(E, device="cuda")
    return (g, s, *fused(g, K, s))


def same_as_fused(route_into, want_w: torch.Tensor, want_ids: torch.Tensor) -> dict:
    """route_into(weights, ids) fills fresh outputs; whether they equal fused's (NaN weights as 0)."""
    w, ids = torch.full_like(want_w, float("nan")), torch.full_like(want_ids, -1)
    route_into(w, ids)
    return {"ids_same": torch.equal(ids, want_ids), "weights_same": torch.equal(w.nan_to_num(0), want_w.nan_to_num(0))}


def sweep(shapes: str, Ts, configs, variant_launch) -> list[dict]:
    """Every configuration (the launch table's first, {"kernel": "table"}) at every shape
    ("E:dtype:K", comma-separated) and T, checked and timed (probe_fused.Case); variant_launch(cfg,
    g, K, case, sms, w, ids) gives a variant configuration's no-argument launch writing w and ids."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for shape, T in itertools.product(shapes.split(","), Ts):
        E, dt, K = shape.split(":")
        E, dtype, K = int(E), DTYPES[dt], int(K)
        case = Case(T, E, dtype, K)
        for cfg in configs:
            def launch(g, w, ids, cfg=cfg):
                if cfg["kernel"] == "table":
                    p = plan(g, K, case.scale)
                    return lambda: p.run(g, case.scale, w, ids)
                return variant_launch(cfg, g, K, case, sms, w, ids)
            row = {"T": T, "E": E, "K": K, "dtype": dt, **cfg, **case.measure(launch)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--shapes", default="128:bf16:8,128:bf16:4")
    ap.add_argument("T", nargs="*", type=int, default=[250000, 65536])
    a = ap.parse_args()
    rows = sweep(a.shapes, a.T, list(configs()), lambda cfg, g, K, case, sms, w, ids: v6.launcher(
        g, K, case.scale, w, ids, programs=cfg["programs_per_sm"] * sms, prefetch=cfg["prefetch"],
        max_registers=cfg["max_registers"]))
    if a.out:
        write_rows(a.out, rows)


if __name__ == "__main__":
    main()
