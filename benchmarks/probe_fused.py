"""Probe: time the fused kernel (v2, rounds) and the v3 network variant over launch configurations
on the GPU, for reports/bench/NOTES.md. Kernels are launched directly (no Python-side validation)
and timed under CUDA-graph replay (triton.testing.do_bench_cudagraph, median) with input copies
rotated beyond L2: a Triton launch with many compile-time arguments costs the host tens of µs,
which plain event timing would report instead of any shorter kernel. Every configuration's ids are
checked against the oracle, its weights against the oracle's within tolerance.FUSED_ULP and against
the first configuration's, bit for bit (until the eighteenth round only the latter: a change that
computed wrong weights in every tile passed; reports/bench/NOTES.md).

python3 -m benchmarks.probe_fused [--shapes 128:bf16,...] [--configs rounds,network,small,regs,vec,align] [--out FILE.json] [T ...]
(regs: the table's tile under register caps 64 / 72 / 80 / 88 / 96; vec: with 2 to 64 logits a vector; align:
without ROW_ALIGN, and other rows a warp with it; words: picks_by_word off and on, and on under caps;
fp32keys: fp32 keys without the NaN select off and on; fmakeys: 16-bit keys by multiplies (even halves) and ids
less their lane's part, each off and on, then both with the odd halves' keys by multiplies too; econst: E as a
compile-time constant off and on; any other name, e.g. table: the launch table's tile alone.)
A shape is E:dtype[:K[:score]], K 8 unless given, score k (softmax over the K, Gemma4), all (softmax
over all E, Qwen2-MoE) or sigmoid (Llama 4): 60:bf16:4:all is Qwen2-MoE's router.
The first configuration of each (shape, T) is the launch table's at that T.
"""
import argparse
import importlib.util
import itertools
import json

import torch
import triton
import triton.testing

from parity.check import weights_within
from parity.provenance import Run
from parity.routing.fused import plan, route_kernel, row_align, sixteen_byte_vec, tile, vec_for, warps_for
from parity.routing.kernel_parts import SIGMOID, SOFTMAX_ALL, SOFTMAX_K
from parity.routing.oracle import route64
from parity.routing.router import Router
from parity.tolerance import FUSED_ULP

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def load_variant(name):
    """A kernel variant of benchmarks/variants, imported on first use (some need newer Triton)."""
    return importlib.import_module(f"benchmarks.variants.{name}")


def write_rows(path, rows) -> None:
    """Probe rows as JSON, with the device and versions they were measured on."""
    with open(path, "w") as f:
        json.dump({"meta": Run().meta(), "rows": rows}, f, indent=1)


class Case:
    """One probe case's inputs: a scale, copies of randn logits (seed 0) enough to rotate beyond L2,
    the oracle's routing of the first copy (the router ``score`` names, as SCORES launches it), and
    output buffers. ``measure`` checks and times one
    configuration; the first configuration measured sets the weights the others must equal."""

    def __init__(self, T: int, E: int, dtype: torch.dtype, K: int, score: str = "k"):
        torch.manual_seed(0)
        self.scale = torch.rand(E, device="cuda")
        copies = max(1, min(16, (512 << 20) // (T * E * dtype.itemsize)))
        self.inputs = [torch.randn(T, E, device="cuda").to(dtype) for _ in range(copies)]
        router = Router("sigmoid" if score == "sigmoid" else "softmax", SCORES[score][1], per_expert_scale=self.scale)
        self.oracle_w, self.oracle_ids = route64(self.inputs[0], K, router)
        # outputs for each copy, as the bench's op writes fresh ones every call: one buffer rewritten
        # every call stays in L2, and the probe read ~1.8% under the bench for Qwen2-MoE on the H200
        # (reports/bench/NOTES.md, "Nineteenth round"); probe_grouped rotates them too
        self.outs = [(torch.empty(T, K, device="cuda"), torch.empty(T, K, device="cuda", dtype=torch.int32))
                     for _ in self.inputs]
        self.w, self.ids = self.outs[0]
        self.first_w = None

    def measure(self, launch) -> dict:
        """launch(g, w, ids) gives a no-argument launch on logits g writing w and ids. Checked on the
        first copy (ids against the oracle, weights against the oracle's within FUSED_ULP and against the
        first configuration's, bit for bit, before timing overwrites them), then timed under CUDA-graph
        replay over the copies (median)."""
        self.w.fill_(float("nan"))
        self.ids.fill_(-1)
        launch(self.inputs[0], self.w, self.ids)()
        ids_ok = torch.equal(self.ids.long(), self.oracle_ids)
        self.first_w = self.w.clone() if self.first_w is None else self.first_w
        weights_same = torch.equal(self.w, self.first_w)
        weights_ok = weights_within(self.w, self.oracle_w, max_ulp=FUSED_ULP)
        runs = itertools.cycle([launch(g, w, ids) for g, (w, ids) in zip(self.inputs, self.outs)])
        ms = triton.testing.do_bench_cudagraph(lambda: next(runs)(), rep=50, return_mode="median")
        return {"us": round(ms * 1e3, 2), "ids_ok": ids_ok, "weights_ok": weights_ok, "weights_same": weights_same}


SCORES = {"k": (SOFTMAX_K, True), "all": (SOFTMAX_ALL, False), "sigmoid": (SIGMOID, False)}


def launcher(cfg, g, s, w, i, K, score="k"):
    """A no-argument launch of one configuration: {kernel, BLOCK_T, warps[, lanes]}."""
    T, E = g.shape
    block_e = triton.next_power_of_2(E)
    args = (g, s, w, i, T, E, g.stride(0), g.stride(1), s.stride(0))
    grid = (triton.cdiv(T, cfg["BLOCK_T"]),)
    sc, renorm = SCORES[score]
    launch = plan(g, K, s, score=sc, renormalize=renorm, word_maxima=cfg.get("WORD_MAXIMA"),
                  fp32_unchecked=cfg.get("FP32_UNCHECKED"), fma_keys=cfg.get("FMA_KEYS"), lane_ids=cfg.get("LANE_IDS"),
                  e_constant=cfg.get("E_CONSTANT"))
    tile = {"BLOCK_T": cfg["BLOCK_T"], "BLOCK_E": block_e, "num_warps": cfg["warps"]}
    if cfg["kernel"] != "rounds":
        v3 = load_variant("v3_bitonic_network")
        const = {**tile, **v3.network_args(g, launch.constexprs, block_e, cfg["BLOCK_T"], cfg["lanes"])}
        return lambda: v3._network_kernel[grid](*args, **const)
    const = {**tile, **launch.constexprs}
    const["PAIRS"] = const["PAIRS"] and cfg.get("PAIRS", True)
    if not const["PAIRS"]:   # picks_by_word and its lane-less ids read rows as words: without pairs, neither
        const.update(WORD_MAXIMA=False, ROW_LANES=1)
    cap = cfg.get("maxnreg", launch.max_registers)   # the plan's cap unless the configuration names one (None: none)
    if cap is not None:
        const["maxnreg"] = cap
    const["ROW_ALIGN"] = cfg.get("ROW_ALIGN", row_align(E, g.stride(0), cfg["VEC"]))
    return lambda: route_kernel[grid](*args, VEC=cfg["VEC"], **const)


def configs_for(T, E, dtype, kinds, score="k"):
    table = tile(T, E, dtype, interpreter=False, score=SCORES[score][0])  # first: what fused launches at this T
    out = [{"kernel": "rounds", "BLOCK_T": table.block_t, "warps": table.num_warps, "VEC": table.vec}]
    if "small" in kinds and table.block_t == 1:
        # One row per program (T <= 512): the other of the two vectors, 16 bytes or the whole row
        # (VEC = BLOCK_E: the row's reductions compile to REDUX instead of SHFL trees;
        # reports/bench/NOTES.md, "whole-row vectors"), whichever the table did not choose.
        sixteen_bytes = sixteen_byte_vec(table.block_e, dtype, E)
        other = sixteen_bytes if table.vec == table.block_e else table.block_e
        if other != table.vec:
            out.append({**out[0], "VEC": other})
    if "vec" in kinds:
        # the table's tile with other vectors: 2 logits up to the whole row (the tile's layout
        # follows the vector: Qwen2-MoE's 120-byte rows are not 16-byte aligned)
        out += [{**out[0], "VEC": v} for v in (2, 4, 8, 16, 32, 64) if v <= table.block_e]
    if "align" in kinds:
        # the table's tile with the rows' alignment kept from the compiler (ROW_ALIGN 1: the kernel
        # before it was told), then other rows a warp with it told
        out += [{**out[0], "ROW_ALIGN": 1}]
        out += [{**out[0], "BLOCK_T": bt, "warps": warps_for(bt, table.block_e, dtype)} for bt in (4, 16, 32)
                if bt != table.block_t]
    if "words" in kinds:
        # picks_by_word (fused.WORD_MAXIMA) off and on at the table's tile, and on under register caps (its
        # SASS at Gemma4's T=250000 tile holds 118 registers uncapped, one spill at 88 / 80 / 72: 23 / 25 / 28
        # one-warp programs an SM against the table's 21), beside the table's kernel at 88 (no spill there)
        out += [{**out[0], "WORD_MAXIMA": False}, {**out[0], "WORD_MAXIMA": True, "maxnreg": None}]
        out += [{**out[0], "WORD_MAXIMA": True, "maxnreg": r} for r in (96, 88, 80, 72)]
        out += [{**out[0], "WORD_MAXIMA": False, "maxnreg": 88}]
    if "fp32keys" in kinds and dtype == torch.float32:
        # fp32 keys without the NaN select (fused.FP32_UNCHECKED) off and on at the table's tile
        out += [{**out[0], "FP32_UNCHECKED": on} for on in (False, True)]
    if "fmakeys" in kinds and dtype.itemsize == 2:
        # the even columns' keys by multiplies (fused.FMA_KEYS) and, under picks_by_word, ids less their lane's
        # part (fused.LANE_IDS), each off and on at the table's tile
        out += [{**out[0], "FMA_KEYS": f, "LANE_IDS": lanes} for f in (0, 1, 2) for lanes in (False, True)]
    if "econst" in kinds:
        # E as a compile-time constant (fused.E_CONSTANT), with the 16-bit keys on the ALU pipe and by multiplies
        out += [{**out[0], "E_CONSTANT": e, "FMA_KEYS": f} for f in ((0, 1, 2) if dtype.itemsize == 2 else (0,))
                for e in (False, True)]
    if "regs" in kinds:
        # the table's tile under a register cap: more warps resident a scheduler, or spills (registers are
        # allocated 8 a thread at a time: Gemma4 bf16's tile, 92 -> 96, runs 21 one-warp programs an SM;
        # 88, without a spill in its SASS, 23; at 82 since FMA_KEYS, 80 holds six programs a scheduler where 82 holds
        # five: 33.23 -> 32.88 us on an H100 at T = 250000, reports/bench/probes/min3-h100.json)
        out += [{**out[0], "maxnreg": r} for r in (64, 72, 80, 88, 96)]
    if "rounds" in kinds:
        # The tile is [BLOCK_T, BLOCK_E // VEC, VEC]: rows go across lanes first (32 // BLOCK_T
        # lanes per row). VEC = BLOCK_E gave the old layout (a row across 16-32 lanes): slower at
        # every T >= 2048 on the H200 (reports/bench/NOTES.md).
        # PAIRS=False reads 16-bit logits one by one instead of as 32-bit words.
        out += [{"kernel": "rounds", "BLOCK_T": bt, "warps": w, "VEC": vec_for(bt, table.block_e, dtype, E),
                 "PAIRS": pairs}
                for bt in (4, 8, 16, 32) for w in (1, 2) for pairs in ((True, False) if dtype.itemsize == 2 else (True,))
                if E * bt <= 4096 and bt >= 4 * w]
    if "network" in kinds:
        for lanes, rows_per_thread, warps in [(1, 1, 1), (1, 2, 1), (4, 2, 2), (4, 4, 1), (4, 4, 2), (2, 2, 2)]:
            out.append({"kernel": "network", "BLOCK_T": 32 // lanes * rows_per_thread * warps, "warps": warps,
                        "lanes": lanes})
    return list({json.dumps(c, sort_keys=True): c for c in out}.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--shapes", default="128:bf16,128:fp32")
    ap.add_argument("--configs", default="rounds,network")
    ap.add_argument("T", nargs="*", type=int, default=[2048, 65536, 250000])
    a = ap.parse_args()
    rows = []
    for shape, T in itertools.product(a.shapes.split(","), a.T):
        parts = shape.split(":") + ["8", "k"][len(shape.split(":")) - 2:]
        E, dtype, K, score = int(parts[0]), DTYPES[parts[1]], int(parts[2]), parts[3]
        case = Case(T, E, dtype, K, score)
        for cfg in configs_for(T, E, dtype, a.configs.split(","), score):
            timing = case.measure(lambda g, w, ids, cfg=cfg: launcher(cfg, g, case.scale, w, ids, K, score))
            row = {"T": T, "E": E, "K": K, "score": score, "dtype": parts[1], **cfg, **timing}
            rows.append(row)
            print(row, flush=True)
    if a.out:
        write_rows(a.out, rows)


if __name__ == "__main__":
    main()
