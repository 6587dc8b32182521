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
import torch

from parity import tolerance
from parity.analysis import classify_ids
from parity.routing.contract import by_id
from parity.check import assert_weights_close
from parity.numerics import smallest_step, unit_roundoff
from parity.routing.gemma4 import FAMILY as GEMMA4
from parity.routing.reference import softmax_all, topk_softmax
from parity.routing.oracle import route64
from routing_cases import DTYPES, logits, scale, tied_logits

ROUNDINGS = {softmax_all: GEMMA4.roundings["softmax_all"], topk_softmax: GEMMA4.roundings["topk_softmax"]}
SOFTMAX_FP32_ULP = tolerance.SOFTMAX_FP32_ULP


def check(impl, g, K, s):
    w, ids = impl(g, K, s)
    w64, ids64 = route64(g, K, s)
    verdict = classify_ids(g, ids, ids64)
    assert int((verdict.genuine | verdict.near_tie | verdict.special).sum()) == 0, verdict.counts()
    same = (~verdict.mismatched).cpu()   # the verdict lies on the logits' device, the weights are brought here
    w, _ = by_id(w.cpu(), ids.cpu())
    w64, _ = by_id(w64.cpu(), ids64.cpu())
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


@pytest.mark.gpu
def test_softmax_all_batch_split_on_cuda_is_the_row_sum(dev):
    """Pins the cause of softmax_all's batch-split finding on CUDA (reports/h200-reliability).

    On the H200 (torch 2.11) routing rows [0, 1) and [1, 4096) in two calls changed the weight bits
    of about a third of the rows, for fp32 logits with E=999 (benchmarks/probe_split.py). torch.softmax
    gives the same bits either way; the renormalising sum of the kept probabilities does not: CUDA's
    reduction chooses its thread layout, and with it the order of the additions, from the number of
    rows. This asserts today's torch behaviour (documented, not a contract): ids identical, every row
    whose weights changed is a row whose sum changed, and the change within the 4 eps the property
    test allows. If no row changes, torch's reduction became batch-invariant here: make the
    softmax_all split check in tests/test_properties.py (`deterministic`) exact."""
    T, E, K, cut = 4096, 999, 16, 1
    g, s = logits(T, E, torch.float32, dev, seed=23, spread=3.0), scale(E, dev).abs() + 0.5
    w, ids = softmax_all(g, K, s)
    a, b = softmax_all(g[:cut], K, s), softmax_all(g[cut:], K, s)
    w2, ids2 = torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])
    assert torch.equal(ids2, ids)
    bits = lambda x: x.view(torch.int32)
    changed = (bits(w2) != bits(w)).any(dim=1)
    assert int(changed.sum()) > 0, "no row changed: torch's row sum is batch-invariant here (see docstring)"
    assert torch.equal(bits(torch.cat([torch.softmax(g[:cut], -1), torch.softmax(g[cut:], -1)])),
                       bits(torch.softmax(g, -1))), "torch.softmax itself changed with the batch"
    kept = torch.softmax(g, -1) * torch.nn.functional.one_hot(ids.long(), E).sum(dim=1).float()
    # Each part's routing sums a fresh tensor of its own rows: so must this (the view kept[cut:] does
    # not start on a 16-byte boundary here, and a misaligned view takes yet another reduction path).
    sums = torch.cat([kept[:cut].clone().sum(-1), kept[cut:].clone().sum(-1)])
    sum_changed = bits(sums) != bits(kept.sum(-1))
    assert not bool((changed & ~sum_changed).any()), "a row changed whose renormalising sum did not"
    torch.testing.assert_close(w2, w, rtol=4 * torch.finfo(torch.float32).eps, atol=0.0)
