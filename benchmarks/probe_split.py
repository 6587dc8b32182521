"""Probe: do the torch references give the same bits when a batch is routed in two parts?

On the H200 the property test_reference_and_oracle_are_deterministic found softmax_all's outputs
changing when the batch was cut (reports/h200-reliability). This measures where: per dtype, E, T and
cut, how many rows change their ids, how many change any weight bit, and the largest weight change
in units of the input dtype's eps (relative). Rows-major inputs alone (the first run, 144 cases on the
H200: reports/bench/probes/split-references.json) showed no difference; column-major inputs, which
the property strategies also draw, were added as the next suspect: 288 cases on the H200 at c2cb7bf,
no difference either (reports/bench/probes/split-references-columns.json).

The "primitives" rows test the two torch ops inside softmax_all whose rounding could depend on the
batch's shape: torch.softmax over E, and the row sum of the kept probabilities (K nonzero among E;
a CUDA reduction's thread layout may follow the number of rows, and with it the order in which the
K values are added), and whether torch.softmax gives other bits for a view that does not start on
a 16-byte boundary (g[cut:] when cut * E * itemsize is not a multiple of 16: the property tests
draw such E and cuts, the first probe's E and cuts seldom did) than for an aligned copy of it. Each
row counts, for one (dtype, E, K, T, cut), the rows whose bits differ. On the H200 at ec7065e
(reports/bench/probes/split-primitives.json): softmax never differed, misaligned views neither; the
row sum differed in 22 fp32 cases, and softmax_all's weights (never its ids) in 9 fp32 E=999 cases.
python3 -m benchmarks.probe_split [--out FILE.json]
"""
import argparse
import itertools
import json

import torch

from parity.routing.reference import softmax_all, topk_softmax

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    gen = torch.Generator(device="cpu").manual_seed(0)
    for name, fn in (("softmax_all", softmax_all), ("topk_softmax", topk_softmax)):
        for dt, dtype in DTYPES.items():
            for E, K in ((7, 3), (100, 8), (128, 8), (256, 8), (999, 16), (1000, 16)):
                for (T, cut), layout in itertools.product(
                        ((2, 1), (17, 5), (64, 1), (64, 32), (1000, 333), (4096, 1)), ("rows", "columns")):
                    g = (3 * torch.randn(T, E, generator=gen)).to(dtype).to(dev)
                    if layout == "columns":  # column-major, as the property strategies also draw
                        g = g.t().contiguous().t()
                    s = (torch.rand(E, generator=gen) + 0.5).to(dev)
                    w, i = fn(g, K, s)
                    a1, b1 = fn(g[:cut], K, s), fn(g[cut:], K, s)
                    w2, i2 = torch.cat([a1[0], b1[0]]), torch.cat([a1[1], b1[1]])
                    rel = ((w2 - w).abs() / w.abs().clamp_min(1e-30)).max().item() / torch.finfo(dtype).eps
                    row = {"impl": name, "dtype": dt, "E": E, "K": K, "T": T, "cut": cut, "layout": layout,
                           "rows_ids_differ": int((i2 != i).any(1).sum()),
                           "rows_weights_differ": int((w2.view(torch.int32) != w.view(torch.int32)).any(1).sum()),
                           "max_rel_change_in_eps": round(rel, 3)}
                    rows.append(row)
                    if row["rows_ids_differ"] or row["rows_weights_differ"]:
                        print(row, flush=True)
    print(f"{len(rows)} cases, {sum(bool(r['rows_ids_differ'] or r['rows_weights_differ']) for r in rows)} differ")
    prims = primitives(dev, gen)
    differ = [r for r in prims if r["rows_softmax_differ"] or r["rows_sum_differ"] or r["rows_softmax_view_vs_copy"]]
    print(f"primitives: {len(prims)} cases ({sum(r['view_misaligned'] for r in prims)} with a misaligned view), "
          f"{len(differ)} differ ({sum(r['view_misaligned'] for r in differ)} of them misaligned)")
    if a.out:
        meta = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__}
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "rows": rows, "primitives": prims}, f, indent=1)


def primitives(dev: torch.device, gen: torch.Generator) -> list[dict]:
    """softmax over E and the kept probabilities' row sum, whole batch against two parts."""
    out = []
    splits = ((2, 1), (3, 1), (4, 2), (8, 3), (16, 1), (17, 5), (64, 1), (64, 33), (1000, 333), (4096, 1),
              (4096, 2047))
    for dt, dtype in DTYPES.items():
        for E, K in ((7, 3), (100, 8), (128, 8), (250, 16), (256, 64), (999, 16), (1000, 16), (1024, 64)):
            for T, cut in splits:
                g = (3 * torch.randn(T, E, generator=gen)).to(dtype).to(dev)
                probs = torch.softmax(g, dim=-1)
                ids = torch.topk(g, K, dim=-1).indices
                kept = probs * torch.nn.functional.one_hot(ids, num_classes=E).sum(dim=1).to(dtype)
                parts = [torch.softmax(g[:cut], dim=-1), torch.softmax(g[cut:], dim=-1)]
                sums = [kept[:cut].clone().sum(dim=-1), kept[cut:].clone().sum(dim=-1)]
                bits = lambda x: x.float().view(torch.int32)  # noqa: E731
                row = {"dtype": dt, "E": E, "K": K, "T": T, "cut": cut,
                       "view_misaligned": cut * E * g.element_size() % 16 != 0,
                       "rows_softmax_differ": int((bits(torch.cat(parts)) != bits(probs)).any(1).sum()),
                       "rows_softmax_view_vs_copy": int(
                           (bits(parts[1]) != bits(torch.softmax(g[cut:].clone(), dim=-1))).any(1).sum()),
                       "rows_sum_differ": int((bits(torch.cat(sums)) != bits(kept.sum(dim=-1))).sum())}
                out.append(row)
                if row["rows_softmax_differ"] or row["rows_sum_differ"] or row["rows_softmax_view_vs_copy"]:
                    print(row, flush=True)
    return out


if __name__ == "__main__":
    main()
