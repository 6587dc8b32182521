"""Probe (CPU, float64): how many of DeepSeek-V3's rows the grouped kernel sends to its float64
reorder because two of the K + 1 picks lie within the fp32 keys' error bound, and how many a
finer test of the same pairs would still send.

The kernel orders picks by fp32 keys fl(sigmoid(x) + b) turned into distances below the row's top;
two consecutive picks closer than fused_grouped.error_bound (~6.7e-6 at DeepSeek-V3's keys of ~5.5:
mostly the keys' own rounding, 2**-22 |key| each) flag the row, and its K + 1 candidates are read
again and ranked by float64 keys (~0.85 µs of one warp's dependent steps at one row a program;
reports/bench/NOTES.md, "Eleventh round"). The finer test this probe prices (not in the kernel):
for consecutive picks i, j, the sign of (s_i - s_j) + (b_i - b_j), with b_i - b_j exact in fp32
(Sterbenz: the biases lie within a factor 2) and s_i - s_j = s_i (1 - s_j) (1 - exp(x_j - x_i))
(x_j - x_i exact in fp32 for bf16 logits), each factor to a few fp32 ulps: an error of about
REL * |s_i - s_j| + ABS. Rows where the two sides are closer than that still need float64.

Both rules are applied to the float64 truth here; the group stage's own near ties (which flag a
row for the whole row's pass) are counted apart, with what a like test of the group scores would
leave of them (``group_stage``; priced, not built: the twentieth round built the picks' test). Prints and writes rows per million under each
rule, and the bench's DeepSeek-V3 batches at T = 64 and 512 (parity.bench's inputs) row by row.

python3 scripts/probe_near_rows.py [--rows N] [--out FILE.json]
"""
import argparse
import json

import torch

from parity import bench, routing
from parity.provenance import Run

REL = 2.0**-19   # the finer test's relative error: three fp32 factors of a few ulps each, and the products' roundings
ABS = 2.0**-24   # and its absolute part: the final sum's rounding against |b_i - b_j| <= 1


def near_pairs(x: torch.Tensor, bias: torch.Tensor, K: int, n_group: int, topk_group: int, shift: int):
    """Per row: the smallest gap between consecutive picks of the K + 1 (float64 truth), whether the
    kernel's bound flags it, whether the finer test would, and whether the group stage is in doubt."""
    s = torch.sigmoid(x.double())
    key = s + bias.double()
    T, E = key.shape
    per = E // n_group
    g = key.view(T, n_group, per).topk(2, dim=2).values.sum(2)
    gs = g.sort(dim=1, descending=True).values
    top = key.max(1).values
    mag = top.abs() + 1.0
    bound = 2 * (2.0**-21 + 2.0**-22 + 2.0**-22 * mag) + 4 * 2.0**-shift      # error_bound in key units, roughly
    group_near = (gs[:, topk_group - 1] - gs[:, topk_group]) <= 2 * bound
    chosen = g.topk(topk_group, dim=1).indices
    allowed = torch.zeros(T, n_group, dtype=torch.bool).scatter_(1, chosen, True).repeat_interleave(per, 1)
    val, idx = torch.where(allowed, key, float("-inf")).topk(K + 1, dim=1)
    gap = val[:, :-1] - val[:, 1:]                                              # >= 0
    si, sj = s.gather(1, idx[:, :-1]), s.gather(1, idx[:, 1:])
    finer = REL * (si - sj).abs() + ABS * (bias[idx[:, :-1]] - bias[idx[:, 1:]]).double().abs() + 2.0**-40
    return gap.min(1).values, (gap <= bound[:, None]).any(1), (gap <= finer).any(1), group_near


def group_stage(x: torch.Tensor, bias: torch.Tensor, n_group: int, topk_group: int, shift: int) -> dict:
    """What a pair test of group scores would leave of the rows whose group stage is in doubt (the
    kernel sends all of them to the whole row's float64 pass, ~3 µs of one warp; not built). A group's
    score is the sum of its two largest keys. For the topk_group-th group c and the next, n (float64
    truth), the difference (k_c1 - k_n1) + (k_c2 - k_n2) would be bounded by REL (|s_c1 - s_n1| +
    |s_c2 - s_n2|) + ABS (the keys' pair differences as the pick test takes them). Sufficient for the
    groups to be certain: that bound proves c above n, each of c's and n's two largest keys are
    certain (the third lies beyond the fp32 keys' bound below the second), and no third group is
    near the boundary (the (topk_group-1)-th above n and the (topk_group+2)-th below c by more than
    the fp32 scores' bound). Counted per category over the rows the group stage flags today."""
    s = torch.sigmoid(x.double())
    key = s + bias.double()
    T, E = key.shape
    per = E // n_group
    kg = key.view(T, n_group, per)
    top3, arg3 = kg.topk(3, dim=2)
    score = top3[:, :, :2].sum(2)
    order = score.argsort(dim=1, descending=True)
    srt = score.gather(1, order)
    mag = key.max(1).values.abs() + 1.0
    bound = 2 * (2.0**-21 + 2.0**-22 + 2.0**-22 * mag) + 4 * 2.0**-shift
    flagged = (srt[:, topk_group - 1] - srt[:, topk_group]) <= 2 * bound
    c, n = order[:, topk_group - 1], order[:, topk_group]
    rows = torch.arange(T)
    sg = s.view(T, n_group, per)
    def top_s(grp, k):
        return sg[rows, grp, arg3[rows, grp, k]]
    err = REL * ((top_s(c, 0) - top_s(n, 0)).abs() + (top_s(c, 1) - top_s(n, 1)).abs()) + 2 * ABS + 2.0**-40
    proven = (srt[:, topk_group - 1] - srt[:, topk_group]) > err
    tops_certain = ((top3[rows, c, 1] - top3[rows, c, 2]) > bound) & ((top3[rows, n, 1] - top3[rows, n, 2]) > bound)
    above = srt[:, topk_group - 2] - srt[:, topk_group] > 2 * bound if topk_group >= 2 else torch.ones(T, dtype=torch.bool)
    below = srt[:, topk_group - 1] - srt[:, topk_group + 1] > 2 * bound if topk_group + 1 < n_group else \
        torch.ones(T, dtype=torch.bool)
    settled = flagged & proven & tops_certain & above & below
    f = flagged
    return {"rows_group_stage_near": int(f.sum()), "settled_by_a_group_pair_test": int(settled.sum()),
            "not_settled": {"gap_below_the_finer_bound": int((f & ~proven).sum()),
                            "a_group_top_two_in_doubt": int((f & ~tops_certain).sum()),
                            "a_third_group_near": int((f & ~(above & below)).sum())},
            "per_million_now": round(1e6 * float(f.float().mean()), 1),
            "per_million_left": round(1e6 * float((f & ~settled).float().mean()), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1 << 20)
    ap.add_argument("--out")
    a = ap.parse_args()
    fam = routing.family("deepseek_v3")
    m = fam.model("deepseek-v3")
    shift = 31 - 2 - max(1, (m.E - 1).bit_length())     # fused_grouped: 31 - RANGE_BITS - COL_BITS
    out = {"meta": Run().meta(), "rel": REL, "abs": ABS, "batches": []}
    for T in (64, 512, 2048, 65536, a.rows):
        gs, router = bench.model_inputs("deepseek_v3", m, torch.bfloat16, T, on_gpu=False)
        x = gs[0].float()
        gap, now, finer, group = near_pairs(x, router.correction_bias, m.K, router.n_group, router.topk_group, shift)
        row = {"T": T, "rows_flagged_by_picks_now": int((now & ~group).sum()),
               "rows_flagged_by_picks_finer": int((finer & ~group).sum()), "rows_group_stage_near": int(group.sum()),
               "per_million_now": round(1e6 * float((now & ~group).float().mean()), 1),
               "per_million_finer": round(1e6 * float((finer & ~group).float().mean()), 1)}
        row["group_stage"] = group_stage(x, router.correction_bias, router.n_group, router.topk_group, shift)
        if T <= 512:
            row["near_rows"] = [{"row": int(r), "smallest_gap": float(gap[r]), "finer_flags": bool(finer[r])}
                                for r in now.nonzero().flatten().tolist()]
        out["batches"].append(row)
        print(json.dumps(row), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
