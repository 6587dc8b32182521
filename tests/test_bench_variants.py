"""The kernel variants kept under benchmarks/variants (measured alternatives, not used by parity)
still compile against the current kernel parts and route like ``fused``: ids exactly the
oracle's, weights bit for bit fused's. Keeps benchmarks/probe_fused.py's comparisons meaningful."""
import pytest
import torch
import triton

from benchmarks.variants import v3_bitonic_network as v3
from parity.routing.fused import fused, plan
from parity.routing.oracle import route64
from routing_cases import logits, scale, tied_logits


@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("dtype,E,K", [(torch.bfloat16, 128, 8), (torch.float16, 7, 3), (torch.float32, 100, 6),
                                       (torch.float32, 128, 8)], ids=str)
def test_v3_bitonic_network_routes_like_fused(dtype, E, K, lanes, dev):
    g = logits(200, E, dtype, dev, seed=E + K)
    if dtype == torch.float32:  # near ties: the exactness test and the exact path must run
        g[::3] = (1.0 + 1e-6 * torch.randn(g[::3].shape, generator=torch.Generator().manual_seed(1))).to(dev)
    s = scale(E, dev)
    T, block_t, block_e = g.shape[0], 32, triton.next_power_of_2(E)
    w = torch.full((T, K), float("nan"), device=dev)
    ids = torch.full((T, K), -1, dtype=torch.int32, device=dev)
    v3._network_kernel[(triton.cdiv(T, block_t),)](
        g, s, w, ids, T, E, g.stride(0), g.stride(1), s.stride(0), BLOCK_T=block_t, BLOCK_E=block_e,
        **v3.network_args(g, plan(g, K, s).constexprs, block_e, block_t, lanes))
    assert torch.equal(ids.long(), route64(g, K, s)[1])
    w_fused, _ = fused(g, K, s)
    assert torch.equal(w, w_fused)


def test_v3_takes_only_its_own_parameters():
    """What the GPU's launcher refuses and the interpreter passes over: a compile-time argument the
    network kernel does not take (plan's SCORE failed every launch of it on the GPU alone)."""
    g = logits(8, 128, torch.bfloat16, "cpu")
    constexprs = plan(g, 8, scale(128, "cpu")).constexprs
    assert set(v3.network_args(g, constexprs, 128, 8)) <= set(v3._network_kernel.arg_names)
    with pytest.raises(TypeError, match="NEW_SWITCH"):
        v3.network_args(g, {**constexprs, "NEW_SWITCH": 1}, 128, 8)
    with pytest.raises(ValueError, match="softmax over the K"):
        v3.network_args(g, {**constexprs, "SCORE": constexprs["SCORE"] + 1}, 128, 8)


@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize("dtype,E,K", [(torch.bfloat16, 128, 8), (torch.float16, 64, 6)], ids=str)
def test_v6_persistent_routes_like_fused(dtype, E, K, prefetch, dev):
    from benchmarks.variants import v6_persistent as v6
    g = logits(300, E, dtype, dev, seed=E + K)
    g[7, 3] = float("nan")  # one block takes the NaN pass
    s = scale(E, dev)
    w = torch.full((300, K), float("nan"), device=dev)
    ids = torch.full((300, K), -1, dtype=torch.int32, device=dev)
    v6.launcher(g, K, s, w, ids, programs=3, prefetch=prefetch, block_t=16)()
    assert torch.equal(ids.long(), route64(g, K, s)[1])
    assert torch.equal(w.nan_to_num(7.0), fused(g, K, s)[0].nan_to_num(7.0))


NAN_BITS = {torch.bfloat16: {"payloads": (0x7F81, 0x7FC1), "negative": (-64, None)},    # -64: 0xFFC0
            torch.float16: {"payloads": (0x7C01, 0x7E00), "negative": (-512, None)}}   # -512: 0xFE00


@pytest.mark.parametrize("nan", ["payloads", "negative"])
@pytest.mark.parametrize("dtype,E,K", [(torch.bfloat16, 128, 8), (torch.float16, 64, 6)], ids=str)
def test_v7_pipelined_routes_like_fused(dtype, E, K, nan, dev):
    """The pipelined variant's main loop routes without the NaN case; a program that met a NaN
    routes its blocks again in its second loop. Without it a negative NaN ranks below -inf and two
    NaNs rank by payload, not by the lower id (torch canonicalises a NaN assigned as a float, so the
    bits are set as integers)."""
    from benchmarks.variants import v7_pipelined as v7
    g = logits(300, E, dtype, dev, seed=E + K)
    first, second = NAN_BITS[dtype][nan]
    g.view(torch.int16)[7, 3] = first
    if second is not None:
        g.view(torch.int16)[7, E - 5] = second
    s = scale(E, dev)
    w = torch.full((300, K), float("nan"), device=dev)
    ids = torch.full((300, K), -1, dtype=torch.int32, device=dev)
    v7.launcher(g, K, s, w, ids, programs=3, stages=3, block_t=16)()
    assert torch.equal(ids.long(), route64(g, K, s)[1])
    assert torch.equal(w.nan_to_num(7.0), fused(g, K, s)[0].nan_to_num(7.0))


@pytest.mark.gpu
@pytest.mark.parametrize("stages,fused_rounds,decode", [(1, False, False), (3, False, False), (3, True, False),
                                                         (2, False, True)])
@pytest.mark.parametrize("nan", [None, "ties", "payloads", "negative"])
@pytest.mark.parametrize("dtype,E,K", [(torch.bfloat16, 128, 8), (torch.bfloat16, 128, 1), (torch.float16, 64, 6),
                                       (torch.bfloat16, 256, 8), (torch.float16, 128, 4)], ids=str)
def test_v8_tma_ring_routes_like_fused(dtype, E, K, nan, stages, fused_rounds, decode, dev):
    """The TMA-ring variant (Gluon, sm_90 and later): ids the oracle's and weights fused's, bit for bit,
    over a batch that ends inside a block and more blocks than programs (each program's ring wraps);
    a block with a NaN takes the NaN-checked keys; rows on a coarse grid tie at the K-th place."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA needs sm_90 or later")
    from benchmarks.variants import v8_tma_ring as v8
    T = 1000 + 3
    g = logits(T, E, dtype, dev, seed=E + K) if nan != "ties" else tied_logits(T, E, dev).to(dtype)
    if nan in NAN_BITS[dtype]:
        first, second = NAN_BITS[dtype][nan]
        g.view(torch.int16)[7, 3] = first
        if second is not None:
            g.view(torch.int16)[T - 1, E - 5] = second
    s = scale(E, dev)
    w = torch.full((T, K), float("nan"), device=dev)
    ids = torch.full((T, K), -1, dtype=torch.int32, device=dev)
    v8.launcher(g, K, s, w, ids, programs=5, stages=stages, max_registers=96, fused_rounds=fused_rounds,
                decode=decode)()
    assert torch.equal(ids.long(), route64(g, K, s)[1])
    assert torch.equal(w.nan_to_num(7.0), fused(g, K, s)[0].nan_to_num(7.0))


@pytest.mark.gpu
@pytest.mark.parametrize("stages", [1, 3])
@pytest.mark.parametrize("case", ["randn", "near_ties", "nan_inf"])
def test_v8_tma_ring_routes_fp32_like_fused(case, stages, dev):
    """fp32 rows of 128 through the ring run fused's whole selection (picks_of): rows near 1.0 whose
    keys tie once truncated take the ranked and the exact paths; NaNs (a payload, a negative one)
    and infinities keep fused's order."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA needs sm_90 or later")
    from benchmarks.variants import v8_tma_ring as v8
    T, E, K = 1000 + 3, 128, 8
    g = logits(T, E, torch.float32, dev, seed=5)
    if case == "near_ties":
        g[::3] = (1.0 + 1e-6 * torch.randn(g[::3].shape, generator=torch.Generator().manual_seed(1))).to(dev)
    elif case == "nan_inf":
        bits = g.view(torch.int32)
        bits[7, 3], bits[7, 90], bits[T - 1, E - 5] = 0x7FC00001, -0x400000, 0x7F800001   # NaNs, one negative
        g[11, 4], g[11, 5], g[12, :] = float("inf"), float("-inf"), float("-inf")
    s = scale(E, dev)
    w = torch.full((T, K), float("nan"), device=dev)
    ids = torch.full((T, K), -1, dtype=torch.int32, device=dev)
    v8.launcher(g, K, s, w, ids, programs=5, stages=stages, max_registers=64)()
    want_w, want_ids = fused(g, K, s)
    assert torch.equal(ids.long(), route64(g, K, s)[1])
    assert torch.equal(ids, want_ids) and torch.equal(w.nan_to_num(7.0), want_w.nan_to_num(7.0))


@pytest.mark.parametrize("dtype,E", [(torch.bfloat16, 128), (torch.float16, 256), (torch.bfloat16, 64),
                                     (torch.float32, 128)], ids=str)
def test_v8_tma_ring_descriptor_views_the_words_the_kernel_keys(dtype, E):
    """CPU: the ring's descriptor, read as the strided view TMA copies from, puts row r's box b, word j
    at [b, r, j], and that word holds the logits the kernel's ids name: columns 64b + 2j and
    64b + 2j + 1 (low half, high half) for 16-bit rows, 32b + j for fp32."""
    from benchmarks.variants import v8_tma_ring as v8
    T = 37
    bits = torch.arange(T * E, dtype=torch.int32).reshape(T, E)   # every element a distinct bit pattern
    g = (bits % 32768).to(torch.int16).view(dtype) if dtype.itemsize == 2 else bits.view(dtype)
    desc, args = v8.kernel_args(g, 8, torch.ones(E), stages=3)
    view = torch.as_strided(g.view(torch.int32), desc.shape, desc.strides)
    assert list(view.shape) == [args["BOXES"], T, 32] and list(desc.block_shape) == [args["BOXES"], args["BLOCK_T"], 32]
    b, r, j = torch.meshgrid(torch.arange(args["BOXES"]), torch.arange(T), torch.arange(32), indexing="ij")
    if dtype.itemsize == 2:
        halves = view.contiguous().view(torch.int16).reshape(args["BOXES"], T, 32, 2)
        g16 = g.view(torch.int16)
        assert torch.equal(halves[..., 0], g16[r, 64 * b + 2 * j]) and torch.equal(halves[..., 1], g16[r, 64 * b + 2 * j + 1])
    else:
        assert torch.equal(view, bits[r, 32 * b + j])
    assert args["BLOCK_T"] * args["BOXES"] * 32 * 4 == {2: 4096, 4: 2048}[dtype.itemsize]   # fused's keys a warp


@pytest.mark.gpu
def test_v8_probe_profiles_the_table_and_the_ring(tmp_path):
    """benchmarks/probe_tma_ring --profile (what `h200_run.sh ncuring` runs under Nsight Compute; without
    a profiler attached cudaProfilerStart is a no-op): one labelled launch each, ids the oracle's."""
    import subprocess
    import sys
    from pathlib import Path
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA needs sm_90 or later")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "benchmarks.probe_tma_ring", "--shapes", "128:bf16:8,128:fp32:8",
                           "--profile", "3:96:16,2:none:12", "20000"], cwd=root, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    labels = [ln.split(":")[0] for ln in done.stdout.splitlines() if "profiled one launch; ids as the oracle's: True" in ln]
    assert labels == [f"{k} {dt} T=20000 E=128 K=8" for dt in ("bf16", "fp32")
                      for k in ("table", "ring3/96/16", "ring2/none/12")], done.stdout


def test_v8_tma_ring_takes_only_what_it_was_written_for():
    """The variant's scope is checked before any launch (CPU: no kernel runs)."""
    from benchmarks.variants import v8_tma_ring as v8
    s = torch.ones(128)
    with pytest.raises(ValueError, match="64, 128 or 256"):
        v8.kernel_args(torch.zeros(4, 100, dtype=torch.bfloat16), 8, s, stages=3)
    with pytest.raises(ValueError, match="fp32 rows of 128"):
        v8.kernel_args(torch.zeros(4, 256), 8, s, stages=3)
    with pytest.raises(ValueError, match="contiguous"):
        v8.kernel_args(torch.zeros(4, 256, dtype=torch.bfloat16)[:, :128], 8, s, stages=3)
