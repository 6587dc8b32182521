"""The torch references against the oracle: within their own dtype's rounding, ties aside.

Tolerance, and why: each reference rounds to the input dtype at every step. softmax_all rounds the
softmax, the renormalising sum, the division, the scale cast and the product (5 roundings);
topk_softmax rounds the softmax, the scale cast and the product (3). Each rounding adds at most u
(the dtype's unit roundoff) relative error, so |w - w_oracle| <= (n + 1) * u * |w_oracle| with one
rounding of slack for the fp32 internals, plus the dtype's smallest subnormal step as an absolute
floor (fp16 probabilities below 6e-8 round to subnormals). torch's softmax computes in fp32
inside, and its own error (the max-subtraction and exp each cost about |x - max| * 2**-24; up to
about 5 fp32 ulp measured on random normal logits) matters only when the input dtype is fp32 itself:
SOFTMAX_FP32_ULP covers it. Id sets must equal the oracle's except in
rows where the differing experts all carry exactly the K-th logit: torch.topk's tie choice differs by
backend, and that is not an error.
"""
import pytest

from parity import tolerance
from parity.analysis import classify_ids
from parity.check import assert_weights_close
from parity.numerics import smallest_step, unit_roundoff
from parity.routing import softmax_all, topk_softmax
from parity.routing.oracle import route64
from routing_cases import DTYPES, logits, scale, tied_logits

ROUNDINGS = {softmax_all: tolerance.ROUNDINGS["softmax_all"], topk_softmax: tolerance.ROUNDINGS["topk_softmax"]}
SOFTMAX_FP32_ULP = tolerance.SOFTMAX_FP32_ULP


def sorted_by_id(w, ids):
    order = ids.long().argsort(dim=-1)
    return w.gather(1, order), ids.long().gather(1, order)


def check(impl, g, K, s):
    w, ids = impl(g, K, s)
    w64, ids64 = route64(g, K, s)
    verdict = classify_ids(g, ids, ids64)
    assert int(verdict.genuine.sum()) == 0 and int(verdict.near_tie.sum()) == 0, verdict.counts()
    same = ~verdict.mismatched
    w, _ = sorted_by_id(w.cpu(), ids.cpu())
    w64, _ = sorted_by_id(w64.cpu(), ids64.cpu())
    u = unit_roundoff(g.dtype)
    assert_weights_close(
        w[same], w64[same], rtol=(ROUNDINGS[impl] + 1) * u, atol=smallest_step(g.dtype),
        max_ulp=SOFTMAX_FP32_ULP,
        name=f"{impl.__name__} weights ({g.dtype})",
    )
    return verdict


@pytest.mark.parametrize("impl", [softmax_all, topk_softmax], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reference_within_its_dtype_rounding(impl, dtype, dev):
    check(impl, logits(8192, 128, dtype, dev, seed=21), 8, scale(128, dev))


@pytest.mark.parametrize("impl", [softmax_all, topk_softmax], ids=lambda f: f.__name__)
def test_reference_ties_are_all_tie_explained(impl, dev):
    verdict = check(impl, tied_logits(4096, 128, dev), 8, scale(128, dev))
    # On the CPU torch.topk breaks many of these ties differently from the lower-id rule; on the
    # GPU it may agree everywhere. Either way nothing may be genuine (checked inside `check`).
    assert int(verdict.tie_explained.sum()) == int(verdict.mismatched.sum())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_the_tolerance_is_not_vacuous(dtype, dev):
    """A 6u error in one weight breaks topk_softmax's 4u allowance, at the right index."""
    g = logits(256, 128, dtype, dev, seed=22)
    s = scale(128, dev).abs() + 0.5
    w64, ids = route64(g, 8, s)
    bad = w64.clone()
    bad[7, 3] *= 1 + 6 * unit_roundoff(dtype)
    with pytest.raises(AssertionError, match=r"index \(7, 3\)"):
        assert_weights_close(bad, w64, rtol=(ROUNDINGS[topk_softmax] + 1) * unit_roundoff(dtype))
