"""Probe: does Triton sum neighbouring columns right after tl.reshape(x, [R, N // 2, 2])?
The seventeenth round's paired denominator (git 4bdd4b7, kernel_parts.denominator_sum with
PAIRED) gave wrong softmax denominators on an H100 at four of five route_kernel tiles, not merely
other bits (scripts/probe_tile_bits.py; reports/bench/NOTES.md, "Eighteenth round"). This probe
takes the kernel out: rows [R, N] of fp32 terms (or bf16 logits read as route_kernel reads them,
16-bit pairs reshaped to [R, C, V] vectors, their exp below the row's max), the pair sums tl.sum(tl.reshape(e, [R, C * V // 2, 2]), axis=2), then each
row's int64 sum of the truncated pairs as denominator_sum does, for several R, C, V and warps;
each result is compared with torch's over the same rows. Prints one line a configuration and a
count of the wrong ones.

python3 scripts/probe_reshape_pairs.py [--out FILE.json]
"""
import argparse
import json

import torch
import triton
import triton.language as tl

F = 55   # denominator_sum's fraction bits at 64 columns (61 - LOG2_BLOCK_E)
SUMS = {"int64 of pairs": (0, F), "int32 of pairs": (1, 20), "int64 of terms": (2, F)}   # SUM, its F


@triton.jit
def pair_sums(x_ptr, pairs_ptr, total_ptr, N: tl.constexpr, R: tl.constexpr, C: tl.constexpr,
              V: tl.constexpr, FROM_BF16: tl.constexpr, F: tl.constexpr, SUM: tl.constexpr):
    pid = tl.program_id(0)
    r = pid * R + tl.arange(0, R)
    c = tl.arange(0, C)
    v = tl.arange(0, V)
    if FROM_BF16:   # as route_kernel reads words: [R, C, V // 2, 2], reshaped to [R, C, V], minus the row's max
        h = tl.arange(0, 2)
        col4 = (c[None, :, None, None] * V + 2 * tl.arange(0, V // 2)[None, None, :, None] + h[None, None, None, :])
        x = tl.reshape(tl.load(x_ptr + r[:, None, None, None] * N + col4).to(tl.float32), [R, C, V])
        top = tl.max(tl.max(x, axis=2), axis=1)
        e = tl.exp2((x - top[:, None, None]) * 1.4426950408889634)
    else:
        x = tl.load(x_ptr + r[:, None, None] * N + c[None, :, None] * V + v[None, None, :])
        e = x
    if SUM == 2:   # no pairs: the int64 sum over the vectors' own axes (the kernel's default)
        total = tl.sum(tl.sum((e * (2.0**F)).to(tl.int64), axis=2), axis=1)
    else:
        p = tl.sum(tl.reshape(e, [R, C * V // 2, 2]), axis=2)
        tl.store(pairs_ptr + r[:, None] * (N // 2) + tl.arange(0, C * V // 2)[None, :], p)
        if SUM == 0:   # as denominator_sum with PAIRED
            total = tl.sum((p * (2.0**F)).to(tl.int64), axis=1)
        else:          # the same pairs summed in int32 (F small enough)
            total = tl.sum((p * (2.0**F)).to(tl.int32), axis=1).to(tl.int64)
    tl.store(total_ptr + r, total)


def reference(x: torch.Tensor, from_bf16: bool):
    x = x.float()
    e = torch.exp2((x - x.max(1, keepdim=True).values) * 1.4426950408889634) if from_bf16 else x
    return e, e.view(e.shape[0], -1, 2).sum(2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(3)
    rows, bad = [], 0
    for from_bf16 in (False, True):
        for R, C, V, warps in [(1, 1, 64, 1), (1, 8, 8, 1), (4, 8, 8, 1), (64, 1, 64, 4), (16, 32, 2, 1),
                               (16, 8, 8, 4), (1, 32, 2, 1), (4, 1, 64, 1), (8, 4, 16, 2)]:
            T, N = 64, C * V
            x = torch.rand(T, N, generator=gen) if not from_bf16 else (torch.randn(T, N, generator=gen) * 3).bfloat16()
            e_ref, p_ref = reference(x, from_bf16)
            x = x.to(dev)
            for kind, (SUM, f) in SUMS.items():
                pairs = torch.full((T, N // 2), float("nan"), device=dev)
                total = torch.empty(T, dtype=torch.int64, device=dev)
                pair_sums[(T // R,)](x, pairs, total, N, R, C, V, from_bf16, f, SUM, num_warps=warps)
                got = total.cpu().double() * 2.0**-f
                # the terms' truncation loses at most N 2**-f; exp2 (ex2.approx on CUDA) may differ from
                # torch's by a few ulps of each term
                total_close = bool(((got - e_ref.double().sum(1)).abs() <= N * 2.0**-f + 2**-18 * got).all())
                row = {"src": "bf16 logits" if from_bf16 else "fp32 terms", "R": R, "C": C, "V": V, "warps": warps,
                       "sum": kind, "total_close": total_close}
                if SUM != 2:   # the pairs are stored: the total must be what they give, bit for bit
                    p = pairs.cpu()
                    row["pairs_close"] = torch.allclose(p, p_ref, rtol=2**-20, atol=0)
                    own = (p.double() * 2.0**f).floor().long().sum(1)
                    row["total_is_its_pairs"] = torch.equal(total.cpu(), own)
                row["ok"] = total_close and row.get("pairs_close", True) and row.get("total_is_its_pairs", True)
                bad += not row["ok"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"{bad} of {len(rows)} configurations wrong on {dev}"
          f" ({torch.cuda.get_device_name() if dev == 'cuda' else 'interpreter'}, triton {triton.__version__})")
    if a.out:
        meta = {"torch": torch.__version__, "triton": triton.__version__,
                "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
