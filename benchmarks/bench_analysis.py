"""Benchmark: how long the analyzer takes to compare two 250000 x 8 routings on 250000 x 128 logits
(the upstream size), on whatever CPU runs it. Target: under 2 s on a 2-core machine.

python3 -m benchmarks.bench_analysis [T]
"""
import statistics
import sys
import time

import torch

from parity.analysis import Routing, compare
from parity.routing.reference import softmax_all
from parity.routing.oracle import route64


def main(T: int = 250000) -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(T, 128, generator=gen).to(torch.bfloat16)
    s = torch.rand(128, generator=gen)
    candidate, baseline = Routing.of(softmax_all(g, 8, s)), Routing.of(route64(g, 8, s))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        result = compare(g, candidate, baseline, s, pair="softmax_all~oracle", dtype=torch.float64)
        times.append(time.perf_counter() - t0)
    print(f"compare, T={T}, E=128, K=8, bf16 (CPU torch threads: {torch.get_num_threads()}): "
          f"median {statistics.median(times):.3f} s, min {min(times):.3f} s over {len(times)} runs; "
          f"{result.rows_tie_explained} tie-explained rows, {len(result.hull)} hull points")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
