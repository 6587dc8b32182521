"""The per-token full-sort baseline against the fp64 oracle: ids exactly, weights within 8 fp32 ulps.

tl.sort runs in Python under the Triton interpreter (tenths of a second per row), so every call
here routes a handful of rows; on a GPU the same file takes well under a second of kernel time.
"""
import pytest
import torch

from parity.analysis import kth_logit
from parity.check import assert_routing_close
from parity.routing.oracle import route64
from parity.routing.sort_baseline import MAX_EXPERTS, num_warps, sort_baseline
from routing_cases import DTYPES, FUSED_MAX_ULP, logits, scale, tied_logits

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
    w64, ids64 = route64(g, 8, s.float())  # the kernel multiplies by the scale read as fp32
    assert_routing_close((w, ids), (w64, ids64), max_ulp=FUSED_MAX_ULP)


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
