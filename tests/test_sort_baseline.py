"""The per-token full-sort baseline against the fp64 oracle: ids exactly, weights within 8 fp32 ulps.

tl.sort runs in Python under the Triton interpreter (tenths of a second per row), so every call
here routes a handful of rows; on a GPU the same file takes well under a second of kernel time.
"""
import pytest
import torch

from parity import device
from parity.analysis import kth_logit
from parity.check import assert_routing_close, assert_same_ids
from parity.numerics import fp32_ulp
from parity.routing.oracle import route64
from parity.routing.sort_baseline import MAX_EXPERTS, num_warps, sort_baseline
from routing_cases import DTYPES, FUSED_MAX_ULP, logits, scale, tied_logits
from strategies import Spec

ROWS = 4  # rows per call: the interpreter pays per program

inf, nan = float("inf"), float("nan")


def check_against_oracle(g, K, s):
    assert_routing_close(sort_baseline(g, K, s), route64(g, K, s), ordered=True, max_ulp=FUSED_MAX_ULP)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("E,K", [(7, 1), (128, 1), (128, 8), (200, 1), (200, 8)])
def test_matches_oracle(E, K, dtype, dev):
    check_against_oracle(logits(ROWS, E, dtype, dev, seed=E + K), K, scale(E, dev))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_peaked_logits_keep_the_ulp_bound(dtype, dev):
    """Large logit gaps: the max-subtraction's rounding would cost tens of ulps without TwoSum."""
    check_against_oracle(logits(ROWS, 128, dtype, dev, seed=3, spread=30.0), 8, scale(128, dev))


def test_wide_logit_gaps_need_the_twosum_correction(dev):
    """fp32 logits spread over [-40, 0], all chosen: d = v - max rounds by up to 2**-19, i.e. 11 to
    30 ulps per row without TwoSum (a plain-subtraction kernel fails this on every seed tried)."""
    gen = torch.Generator().manual_seed(13)
    check_against_oracle((torch.rand(6, 8, generator=gen) * -40).to(dev), 8, scale(8, dev))


@pytest.mark.parametrize("E,K", [(1, 1), (7, 7)])
def test_every_expert_chosen(E, K, dev):
    check_against_oracle(logits(ROWS, E, torch.float32, dev, seed=E), K, scale(E, dev))


def test_bf16_ties_follow_the_lower_id_rule(dev):
    g = tied_logits(6, 128, dev, seed=2)
    kth = kth_logit(g.cpu(), 8)[:, None]
    tied = ((g.cpu().double() == kth).sum(-1) > 1).sum().item()
    assert tied >= 3, "the input should hold ties at the K-th place"
    check_against_oracle(g, 8, scale(128, dev))


def test_fp32_near_ties_order_by_full_value(dev):
    """fp32 logits that differ only in their lowest mantissa bits: the full 32-bit key decides."""
    gen = torch.Generator().manual_seed(7)
    check_against_oracle((1.0 + 1e-6 * torch.randn(ROWS, 128, generator=gen)).to(dev), 8, scale(128, dev))


def _h200_ci_spec(seed: int) -> Spec:
    return Spec(T=32, E=119, K=64, dtype="float16", layout="transposed", regime="huge",
                scale_regime="huge", scale_dtype="float16", scale_layout="strided", seed=seed)


H200_CI_FAILURES = {"generated": (_h200_ci_spec(30600), slice(8, 15)),
                    "shrunk": (_h200_ci_spec(32), slice(1, 11))}
"""The inputs on which test_properties.py::test_sort_baseline_agrees_with_the_oracle failed in the
H200's derandomized CI runs, replayed with the test of those runs (commits up to 8fa45b1: one test of
20 examples over every regime, no size limit on a GPU; the CPU draws T <= 3, E <= 128, so never
these) and hypothesis 6.168.3 as on the H200: "generated" is the 4th example drawn, the first to
fail; "shrunk" is what hypothesis reduced it to and printed (@reproduce_failure('6.168.3',
b'AEEBQSBBA0F3QQFBAkEBQQJBA0EDQQFBIA==') on that test). Each holds two rows whose top two fp16 logits
are 96 apart (32720 and 32624, say): exp(-96) = 2.03e-42 is an fp32 subnormal probability, and a
scale of ~1e4 makes it a normal weight ~3e-38 whose 8 ulps (2.2e-44) lie far below the probability's
own fp32 rounding times the scale (0.44 * 2**-149 * 15016 = 9.2e-42: 3400 ulps). Not a kernel error:
fp32 cannot hold that probability closer, ``fused`` gives the same bits, and the GPU the same bits as
the interpreter (the known limit of the strict xfail
test_kernel_weights_keep_8_ulps_when_a_probability_underflows). The property check of those runs
granted the scaled floor only to the ``underflow`` value regime with a ``huge`` scale, and these are
the ``huge`` value regime; since 98409d4 it grants it wherever the oracle's probability is an fp32
subnormal, the allowance checked here. The slice: the rows that hold the case, routed alone in the
interpreter (tl.sort is slow there), with the layout kept."""
FP32_TINY = torch.finfo(torch.float32).tiny
SCALED_FLOOR = 2.0  # |scale| * 2**-149 units, as test_properties.KERNEL_SCALED_FLOOR


@pytest.mark.parametrize("which", list(H200_CI_FAILURES))
def test_h200_ci_failure_subnormal_probability_times_huge_scale(which, dev):
    spec, rows = H200_CI_FAILURES[which]
    g, K, s = spec.build(dev).args
    if device.INTERPRETER:
        g = g[rows]
    w, ids = sort_baseline(g, K, s)
    w64, ids64 = route64(g, K, s)
    p64, _ = route64(g, K, torch.ones(g.shape[1], dtype=torch.float64, device=g.device))
    assert_same_ids(ids, ids64, ordered=True)
    w, w64, p64 = w.cpu().double(), w64.cpu(), p64.cpu()
    ulp8 = FUSED_MAX_ULP * fp32_ulp(w64)
    floor = SCALED_FLOOR * 2.0**-149 * s.cpu().double()[ids64.cpu()].abs()
    underflows = (p64 > 0) & (p64 < FP32_TINY)
    # the input still holds the case: subnormal probabilities whose scaled rounding no ulp count covers
    assert (underflows & (floor > 100 * ulp8)).sum() >= 2
    assert torch.equal(torch.isnan(w), torch.isnan(w64))
    err = (w - w64).abs().nan_to_num(0.0)
    allowed = ulp8 + torch.where(underflows, floor, 0.0)
    assert (err <= allowed).all(), f"worst {(err / allowed).max().item():.2f} x the allowance"
    # where the probability is a normal fp32 number, the 8-ulp claim holds unaided
    assert (err[~underflows] <= ulp8[~underflows]).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bad_rows_are_isolated(dtype, dev):
    clean = logits(6, 128, dtype, dev, seed=11)
    s = scale(128, dev)
    g = clean.clone()
    g[1, 17] = nan
    g[3, 40] = inf
    g[4, 2] = -inf  # a -inf that is never chosen: a clean row
    w_clean, ids_clean = sort_baseline(clean, 8, s)
    w, ids = sort_baseline(g, 8, s)
    assert torch.isnan(w[[1, 3]]).all()
    assert ids[1, 0] == 17 and ids[3, 0] == 40
    others = [0, 2, 4, 5]
    assert torch.equal(w[others], w_clean[others]) and torch.equal(ids[others], ids_clean[others])
    w_ref, ids_ref = route64(g, 8, s)
    assert torch.equal(ids.long().cpu(), ids_ref.cpu())
    assert torch.equal(torch.isnan(w).cpu(), torch.isnan(w_ref).cpu())


def test_minus_inf_and_signed_zero_rows(dev):
    """All -inf: NaN weights; 3 finite logits: the 5 -inf slots follow by id with weight 0;
    -0.0 ties +0.0 (lower id first)."""
    g = torch.full((3, 8), -inf, device=dev)
    g[1, [6, 2, 4]] = torch.tensor([1.0, 2.0, 3.0], device=dev)
    g[2] = torch.tensor([-1.0, 0.0, -0.0, -2.0, -0.0, 0.0, -3.0, -4.0], device=dev)
    s = scale(8, dev)
    check_against_oracle(g, 8, s)
    w, _ = sort_baseline(g, 8, s)
    assert torch.isnan(w[0]).all() and (w[1, 3:] == 0).all()


def test_any_row_stride_and_scale_layout(dev):
    base = logits(ROWS, 128, torch.bfloat16, dev, seed=5)
    s = scale(256, dev)[::2]                                          # non-contiguous scale
    transposed = base.t().contiguous().t()                            # strides (1, ROWS)
    sliced = logits(ROWS, 256, torch.bfloat16, dev, seed=5)[:, ::2]   # strides (256, 2)
    for g in (transposed, sliced):
        assert not g.is_contiguous()
        check_against_oracle(g, 8, s)


@pytest.mark.parametrize("scale_dtype", [torch.float64, torch.bfloat16], ids=str)
def test_scale_in_any_float_dtype(scale_dtype, dev):
    g = logits(ROWS, 128, torch.float32, dev, seed=6)
    s = scale(128, dev).to(scale_dtype)
    w, ids = sort_baseline(g, 8, s)
    # the kernel multiplies in float32 (a float64 scale in float64) and rounds once: within the
    # bound of the oracle with the scale as given
    assert_routing_close((w, ids), route64(g, 8, s), max_ulp=FUSED_MAX_ULP)


def test_empty_batch(dev):
    w, ids = sort_baseline(torch.empty(0, 128, device=dev), 8, torch.ones(128, device=dev))
    assert w.shape == (0, 8) and w.dtype == torch.float32
    assert ids.shape == (0, 8) and ids.dtype == torch.int32


@pytest.mark.parametrize("build,exc,pattern", [
    (lambda g, s: (g.double(), 2, s), TypeError, r"gating_output: expected dtype float32, bfloat16 or float16, got torch.float64"),
    (lambda g, s: (g[0], 2, s), ValueError, r"gating_output: expected a 2-D tensor \[T, E\]"),
    (lambda g, s: (g, 0, s), ValueError, r"topk: expected 1 <= topk <= E=16, got topk=0"),
    (lambda g, s: (g, 17, s), ValueError, r"topk: expected 1 <= topk <= E=16, got topk=17"),
    (lambda g, s: (g, 2.0, s), TypeError, r"topk: expected an int, got float"),
    (lambda g, s: (g, 2, s[:15]), ValueError, r"per_expert_scale: expected shape \(16,\)"),
    (lambda g, s: (g, 2, s.to(torch.int64)), TypeError, r"per_expert_scale: expected a floating dtype"),
    (lambda g, s: (g, 2, s.to("meta")), ValueError, r"per_expert_scale: expected device .*, got meta"),
], ids=["float64", "1-D", "topk 0", "topk > E", "topk float", "scale short", "scale int", "scale device"])
def test_bad_arguments_raise_like_fused(build, exc, pattern, dev):
    g, s = torch.randn(4, 16, device=dev), torch.rand(16, device=dev)
    with pytest.raises(exc, match=pattern):
        sort_baseline(*build(g, s))


def test_refuses_too_many_experts(dev):
    E = MAX_EXPERTS + 1
    with pytest.raises(ValueError, match=rf"gating_output: expected at most {MAX_EXPERTS} experts .*got E={E}"):
        sort_baseline(torch.randn(2, E, device=dev), 2, torch.ones(E, device=dev))


@pytest.mark.gpu
def test_refuses_cpu_tensors_on_a_gpu_machine():
    with pytest.raises(ValueError, match=r"gating_output: expected a tensor on cuda .*got cpu"):
        sort_baseline(torch.randn(2, 16), 2, torch.ones(16))


def test_fake_tensor_shapes(dev):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        w, ids = sort_baseline(torch.empty(5, 128, device=dev), 8, torch.empty(128, device=dev))
    assert w.shape == (5, 8) and w.dtype == torch.float32 and ids.dtype == torch.int32


def test_num_warps_by_row_width():
    assert num_warps(128) == 1 and num_warps(256) == 4 and num_warps(MAX_EXPERTS) == 4
