"""How deep the grouped kernel's per-group lists must be (CPU, float64; no kernel runs).

fused_grouped's four-row tile keeps each group's six best keys (a1 ... a6: GROUP_LISTS) and picks the K + 1 first
from the chosen groups' lists; a block where some chosen group holds six or more of its row's K + 1 first picks has
run out (`ran_out`) and takes the rounds over its whole tile. A shallower list saves passes over every key (each is
~1/6 of the list stage); a deeper one sends fewer blocks to the tile's rounds. This counts, on `make bench`'s inputs
for a model (parity.bench.model_inputs), the most picks any chosen group holds in each row, in float64 as the oracle
ranks (ties to the lower id), and from it the share of rows and of blocks of BLOCK_T consecutive rows that a list of
each depth would leave short. reports/bench/NOTES.md, "Thirty-second round", quotes it.

python3 scripts/probe_list_depth.py [--model deepseek-v3] [--T 250000] [--dtype bf16] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from parity import bench, routing


def most_picks_in_a_group(x: torch.Tensor, bias: torch.Tensor, n_group: int, topk_group: int, picks: int,
                          chunk: int = 32768) -> torch.Tensor:
    """Per row of logits x [T, E]: the most of its first ``picks`` picks (by sigmoid + bias, within the
    ``topk_group`` groups of largest top-two sum) that one chosen group holds."""
    T, E = x.shape
    per = E // n_group
    out = torch.empty(T, dtype=torch.int64)
    order = torch.arange(E, dtype=torch.float64) * 2.0**-40   # ties to the lower id (a shift far below any gap)
    for start in range(0, T, chunk):
        s = torch.sigmoid(x[start:start + chunk].double()) + bias.double() - order
        grouped = s.view(-1, n_group, per)
        group_score = grouped.topk(2, dim=2).values.sum(dim=2) - torch.arange(n_group, dtype=torch.float64) * 2.0**-40
        chosen = group_score.topk(topk_group, dim=1).indices                                  # [rows, topk_group]
        keep = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, chosen, True)
        masked = torch.where(keep[:, :, None], grouped, torch.tensor(-torch.inf, dtype=torch.float64)).view(-1, E)
        first = masked.topk(picks, dim=1).indices // per                                     # the picks' groups
        counts = torch.zeros(first.shape[0], n_group, dtype=torch.int64).scatter_add_(1, first, torch.ones_like(first))
        out[start:start + chunk] = counts.max(dim=1).values
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="deepseek-v3")
    ap.add_argument("--T", type=int, default=250000)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--block-t", type=int, default=4, help="rows a block (the table's tile at large T: 4)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    fam = routing.family("deepseek_v3")
    m = fam.model(a.model)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    gs, router = bench.model_inputs(fam.name, m, dtype, a.T, on_gpu=False)
    most = most_picks_in_a_group(gs[0].float(), router.correction_bias.float(), router.n_group, router.topk_group,
                                 m.K + 1)
    T = most.numel() - most.numel() % a.block_t
    blocks = most[:T].view(-1, a.block_t).max(dim=1).values
    depths = {}
    for d in range(2, m.K + 2):
        depths[d] = {"rows_short": float((most >= d).double().mean()), "blocks_short": float((blocks >= d).double().mean())}
        print(f"depth {d}: a list this deep runs out in {100 * depths[d]['rows_short']:.3f}% of rows, "
              f"{100 * depths[d]['blocks_short']:.3f}% of {a.block_t}-row blocks")
    result = {"model": a.model, "E": m.E, "K": m.K, "n_group": router.n_group, "topk_group": router.topk_group,
              "dtype": a.dtype, "T": a.T, "block_t": a.block_t, "inputs": "parity.bench.model_inputs (make bench's)",
              "histogram": {int(v): int((most == v).sum()) for v in most.unique()}, "depths": depths}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
