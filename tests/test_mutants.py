"""The mutants: each keeps the output contract and is wrong exactly where it claims to be.

A mutant that is accidentally right would make every tolerance policy look tight, so each bug is
measured against the fp64 oracle (``route64``) on the inputs where it should bite, and, where the
bug is confined to special inputs, shown to be harmless elsewhere. The bar for "wrong on plain
inputs" is FUSED_MAX_ULP: more than the fused kernel's tested bound, so a policy as tight as that
bound would catch it.
"""
import re

import pytest
import torch

from parity.check import assert_weights_close
from parity.numerics import ulp_error
from parity.routing.contract import validate, check_output
from parity.routing.mutants import DESCRIPTIONS, MUTANTS, SPECIAL_INPUTS, APPROX_EXP_REL_ERROR
from parity.routing.oracle import order, route64
from routing_cases import DTYPES, FUSED_MAX_ULP, logits, scale, tied_logits

NAMES = sorted(MUTANTS)
T, E, K = 256, 64, 8


def positive_scale(E: int, device, seed: int = 0) -> torch.Tensor:
    """rand(E) in [0.5, 1.5): relative errors stay meaningful (no scale near zero)."""
    gen = torch.Generator().manual_seed(seed + 2)
    return (torch.rand(E, generator=gen) + 0.5).to(device)


def run(name, g, k, s):
    """A mutant's output and the truth's, on the CPU: (w, ids, w64, ids64)."""
    w, ids = MUTANTS[name](g, k, s)
    w64, ids64 = route64(g, k, s)
    return w.cpu(), ids.cpu().long(), w64.cpu(), ids64.cpu()


def rel_error(w: torch.Tensor, w64: torch.Tensor) -> torch.Tensor:
    """Slot-wise relative error in float64; NaN counts as infinitely wrong."""
    return ((w.double() - w64) / w64).abs().nan_to_num(nan=float("inf"))


def test_registry_names_descriptions_and_docstrings():
    assert set(DESCRIPTIONS) == set(MUTANTS), set(DESCRIPTIONS) ^ set(MUTANTS)
    assert set(SPECIAL_INPUTS) <= set(MUTANTS), set(SPECIAL_INPUTS) - set(MUTANTS)
    for name, fn in MUTANTS.items():
        assert re.fullmatch(r"mutant-[a-z0-9]+(-[a-z0-9]+)*", name), name
        assert fn.__doc__ and fn.__doc__.strip(), f"{name}: no docstring"
        d = DESCRIPTIONS[name]
        assert d.endswith(".") and ". " not in d, f"{name}: expected one sentence, got {d!r}"


@pytest.mark.parametrize("rows", [0, 1, 37])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_output_contract(name, dtype, rows, dev):
    g = logits(rows, 16, dtype, dev, seed=rows)
    s = scale(16, dev)
    check_output(name, MUTANTS[name](g, 4, s), validate(g, 4, s), g.device)


@pytest.mark.parametrize("name", NAMES)
def test_arguments_are_validated_first(name, dev):
    g = logits(4, 8, torch.float32, dev)
    with pytest.raises(ValueError, match="topk"):
        MUTANTS[name](g, 0, scale(8, dev))
    with pytest.raises(TypeError, match="gating_output"):
        MUTANTS[name](g.to(torch.int32), 2, scale(8, dev))
    with pytest.raises(ValueError, match="per_expert_scale"):
        MUTANTS[name](g, 2, scale(7, dev))


@pytest.mark.parametrize("name", NAMES)
def test_wrong_on_plain_fp32_inputs_unless_special(name, dev):
    """Plain randn fp32 logits: more than FUSED_MAX_ULP off somewhere (ids or weights), except the
    SPECIAL_INPUTS mutants, which there must match the truth like a correct fp32 kernel."""
    g = logits(T, E, torch.float32, dev, seed=11)
    w, ids, w64, ids64 = run(name, g, K, scale(E, dev))
    worst_ulp = ulp_error(w, w64).nan_to_num(nan=float("inf")).max().item()
    ids_equal = torch.equal(ids, ids64)
    if name in SPECIAL_INPUTS:
        assert ids_equal, f"{name}: ids differ on tie-free fp32 logits"
        assert_weights_close(w, w64, max_ulp=FUSED_MAX_ULP, name=name)
    else:
        assert not ids_equal or worst_ulp > FUSED_MAX_ULP, (
            f"{name}: indistinguishable from a correct kernel on plain fp32 inputs "
            f"(ids equal, worst error {worst_ulp:.2f} fp32 ulp <= {FUSED_MAX_ULP})"
        )


@pytest.mark.parametrize("name", ["mutant-no-scale", "mutant-scale-by-slot"])
def test_scale_mutants_are_far_off(name, dev):
    g = logits(T, E, torch.float32, dev, seed=12)
    gen = torch.Generator().manual_seed(5)
    w, ids, w64, ids64 = run(name, g, K, torch.rand(E, generator=gen).to(dev))
    assert torch.equal(ids, ids64)
    rel = rel_error(w, w64)
    frac = (rel > 1e-2).double().mean().item()
    assert frac > 0.9, f"{name}: only {frac:.1%} of weights off by more than 1e-2 relative"


def test_no_renorm_weights_sum_below_one(dev):
    g = logits(T, E, torch.float32, dev, seed=13)
    w, ids, w64, ids64 = run("mutant-no-renorm", g, K, torch.ones(E, device=dev))
    assert torch.equal(ids, ids64)
    sums = w.double().sum(-1)
    assert sums.max().item() < 1 - 1e-3, f"row sums up to {sums.max().item()!r}, expected < 1"
    # what is left is the chosen experts' share of the full softmax: w = w64 * mass, per row
    mass = torch.softmax(g.double().cpu(), -1).gather(1, ids64).sum(-1, keepdim=True)
    assert_weights_close(w, w64 * mass, rtol=1e-5, name="no-renorm = oracle * chosen mass")


def test_duplicate_repeats_the_top_expert_in_every_row(dev):
    g = logits(T, E, torch.float32, dev, seed=14)
    w, ids, _, ids64 = run("mutant-duplicate", g, K, scale(E, dev))
    assert torch.equal(ids[:, : K - 1], ids64[:, : K - 1])
    assert torch.equal(ids[:, -1], ids64[:, 0])
    distinct = torch.tensor([len(set(r)) for r in ids.tolist()])
    assert (distinct == K - 1).all(), "every row must hold exactly one repeated id"
    assert torch.equal(w[:, -1], w[:, 0]), "the duplicate slot is weighted like the top slot"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_ties_high_differs_exactly_on_rows_tied_at_the_kth_place(dtype, dev):
    g = tied_logits(1024, E, dev, seed=15).to(dtype)
    w, ids, w64, ids64 = run("mutant-ties-high", g, K, scale(E, dev))
    x = g.double().cpu()
    ranked = x.gather(1, order(g).cpu())
    tied = ranked[:, K - 1] == ranked[:, K]  # the K-th and (K+1)-th largest logits are equal
    differs = (ids.sort(-1).values != ids64.sort(-1).values).any(-1)
    assert 0 < int(tied.sum()) < len(tied), "the grid must give some tied rows and some untied"
    assert torch.equal(differs, tied), (
        f"id sets differ on {int(differs.sum())} rows, tied at the K-th place on {int(tied.sum())}; "
        f"first disagreement at row {int((differs != tied).nonzero()[0])}"
    )
    # on the tied rows the mutant takes the higher ids among the experts at the K-th logit
    kth = ranked[:, K - 1 : K]
    at_kth = lambda i: torch.where(x.gather(1, i) == kth, i, -1).max(-1).values  # noqa: E731
    assert (at_kth(ids)[tied] > at_kth(ids64)[tied]).all()


def test_bf16_sum_errors_are_of_bf16_size(dev):
    g = logits(T, E, torch.float32, dev, seed=16)
    w, ids, w64, ids64 = run("mutant-bf16-sum", g, K, positive_scale(E, dev))
    assert torch.equal(ids, ids64)
    rel = rel_error(w, w64)
    worst = rel.max().item()
    assert 1e-3 <= worst <= 3e-2, f"worst relative error {worst:.3e}, expected 1e-3..3e-2"
    assert (rel.max(-1).values > 1e-6).double().mean().item() > 0.5, "most rows must be off"


def test_no_max_sub_breaks_on_large_logits_only(dev):
    g = logits(T, E, torch.float32, dev, seed=17)
    hot = torch.zeros(T, dtype=torch.bool)
    hot[0::8] = True                      # whole row shifted above 100: every exp is inf
    g[0::8] += 100.0
    hot[1::8] = True                      # one logit of 120 among ordinary ones
    g[1::8, 3] = 120.0
    cold = torch.zeros(T, dtype=torch.bool)
    cold[2::8] = True                     # every logit below -103: every exp underflows to 0
    g[2::8] -= 120.0
    w, ids, w64, ids64 = run("mutant-no-max-sub", g, K, positive_scale(E, dev))
    assert torch.equal(ids, ids64)
    bad = (rel_error(w, w64) > 1e-2).any(-1)
    assert bad[hot].all() and bad[cold].all(), "rows with extreme logits must be NaN or wrong"
    ordinary = ~(hot | cold)
    assert_weights_close(w[ordinary], w64[ordinary], rtol=1e-5, name="no-max-sub on ordinary rows")


def test_bf16_logits_bites_on_fp32_and_fp16_but_not_on_bf16(dev):
    """On bf16 inputs the bf16 round trip is exact: what is left is the correct fp32 path's
    rounding, within FUSED_MAX_ULP of the oracle. On fp32 (and fp16) inputs: ~|x| * 2**-9."""
    s = positive_scale(E, dev)
    for dtype in (torch.float32, torch.float16):
        w, ids, w64, ids64 = run("mutant-bf16-logits", logits(T, E, dtype, dev, seed=18), K, s)
        assert torch.equal(ids, ids64)
        worst = rel_error(w, w64).max().item()
        assert 1e-4 <= worst <= 5e-2, f"{dtype}: worst relative error {worst:.3e}, expected ~1e-3"
    w, ids, w64, ids64 = run("mutant-bf16-logits", logits(T, E, torch.bfloat16, dev, seed=18), K, s)
    assert torch.equal(ids, ids64)
    assert_weights_close(w, w64, max_ulp=FUSED_MAX_ULP, name="bf16-logits on bf16 inputs")


def test_approx_exp_errors_are_about_its_exp_error(dev):
    g = logits(T, E, torch.float32, dev, seed=19)
    w, ids, w64, ids64 = run("mutant-approx-exp", g, K, positive_scale(E, dev))
    assert torch.equal(ids, ids64)
    rel = rel_error(w, w64)
    bound = 2 * APPROX_EXP_REL_ERROR / (1 - APPROX_EXP_REL_ERROR) + 1e-6  # ratio of two (1 +- eps)
    assert 1e-4 <= rel.max().item() <= bound, f"worst relative error {rel.max().item():.3e}"
    assert 1e-5 <= rel.median().item() <= APPROX_EXP_REL_ERROR, f"median {rel.median().item():.3e}"


def test_approx_exp_is_deterministic(dev):
    g = logits(37, E, torch.float32, dev, seed=20)
    a, b = MUTANTS["mutant-approx-exp"](g, K, scale(E, dev)), MUTANTS["mutant-approx-exp"](g, K, scale(E, dev))
    assert torch.equal(a[0], b[0])


def test_fp16_weights_within_fp16_rounding_and_no_closer(dev):
    g = logits(T, E, torch.float32, dev, seed=21)
    w, ids, w64, ids64 = run("mutant-fp16-weights", g, K, positive_scale(E, dev))
    assert torch.equal(ids, ids64)
    normal = w64 >= torch.finfo(torch.float16).smallest_normal
    rel = rel_error(w, w64)[normal]
    assert rel.max().item() <= 2.0**-11 + 1e-6
    assert rel.max().item() > 2.0**-13


def test_sum_k_minus_1_sums_above_one_and_divides_by_zero_at_k1(dev):
    g = logits(T, E, torch.float32, dev, seed=22)
    w, ids, _, ids64 = run("mutant-sum-k-minus-1", g, K, torch.ones(E, device=dev))
    assert torch.equal(ids, ids64)
    assert (w.double().sum(-1) > 1 + 1e-6).all()
    w1, _ = MUTANTS["mutant-sum-k-minus-1"](g, 1, torch.ones(E, device=dev))
    assert torch.isinf(w1).all()
