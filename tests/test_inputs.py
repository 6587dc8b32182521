"""Input distributions: reproducible bit for bit, each with the property its claim promises.

Sizes are the Gemma4 router's (E=128, K=8) where a claim is statistical, with enough rows (4096)
that the thresholds below sit far from the measured values: a failure means the recipe changed,
not bad luck. Every check runs on a fixed seed, so it is deterministic either way.
"""
import dataclasses
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import device
from parity.inputs import (
    DISTRIBUTIONS, DTYPES, HEAVY_TAIL_CLAMP, INTEGER_HIGH, INTEGER_LOW, PEAKED_SPREAD, SPECIAL_KINDS,
    Inputs, generator_seed, make,
)

NAMES = list(DISTRIBUTIONS)
PRIVATE = [name for name in NAMES if name != "upstream"]
E, K = 128, 8
DEVICE = device.default()
INT_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality, so that NaN equals NaN and -0.0 differs from +0.0."""
    return (a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
            and torch.equal(a.view(INT_VIEW[a.dtype]), b.view(INT_VIEW[b.dtype])))


def same_inputs(a: Inputs, b: Inputs) -> bool:
    return (same_bits(a.gating_output, b.gating_output)
            and same_bits(a.per_expert_scale, b.per_expert_scale) and a.special_rows == b.special_rows)


def kth_gap(x: torch.Tensor, k: int = K) -> torch.Tensor:
    """Per row: the k-th largest logit minus the (k+1)-th, in float32 (0 means a tie across the k-th place)."""
    top = torch.topk(x.float().cpu(), k + 1, dim=-1).values
    return top[:, k - 1] - top[:, k]


# --- reproducibility, shape, dtype, device ---------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(
    dist=st.sampled_from(NAMES), T=st.integers(0, 40), E=st.integers(1, 40),
    dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1),
)
def test_same_arguments_give_the_same_bits(dist, T, E, dtype, seed):
    a = make(dist, T, E, dtype, seed, DEVICE)
    b = make(dist, T, E, dtype, seed, DEVICE)
    assert a.gating_output.shape == (T, E) and a.gating_output.dtype == dtype
    assert a.per_expert_scale.shape == (E,) and a.per_expert_scale.dtype == torch.float32
    assert a.gating_output.device.type == a.per_expert_scale.device.type == DEVICE.type
    assert same_inputs(a, b), f"{dist} T={T} E={E} {dtype} seed={seed}: two draws differ"
    if dist == "special":
        assert set(a.special_rows) == set(SPECIAL_KINDS)
    else:
        assert a.special_rows == {}


@pytest.mark.parametrize("dist", NAMES)
def test_different_seeds_give_different_tensors(dist):
    a = make(dist, 64, 32, torch.float32, 0, DEVICE)
    b = make(dist, 64, 32, torch.float32, 1, DEVICE)
    assert not same_bits(a.gating_output, b.gating_output)
    assert not same_bits(a.per_expert_scale, b.per_expert_scale)


def test_distributions_with_one_seed_draw_independent_streams():
    scales = [make(dist, 4, 16, torch.float32, 0, DEVICE).per_expert_scale for dist in NAMES]
    for i in range(len(NAMES)):
        for j in range(i):
            assert not same_bits(scales[i], scales[j]), f"{NAMES[i]} and {NAMES[j]} share a stream"


@pytest.mark.parametrize("dist", NAMES)
def test_no_tokens(dist):
    x = make(dist, 0, E, torch.bfloat16, 0, DEVICE)
    assert x.gating_output.shape == (0, E) and x.per_expert_scale.shape == (E,)
    assert all(rows == [] for rows in x.special_rows.values())


def test_the_generator_seed_is_a_stable_hash_of_every_argument():
    # Pinned: Python's hash() would change with PYTHONHASHSEED, i.e. from one process to the next.
    assert generator_seed("randn", 4096, 128, torch.bfloat16, 0) == 4849094624307895263
    base = ("randn", 4096, 128, torch.bfloat16, 0)
    variants = [("peaked",) + base[1:], base[:1] + (4095,) + base[2:], base[:2] + (127,) + base[3:],
                base[:3] + (torch.float16, 0), base[:4] + (1,)]
    assert len({generator_seed(*args) for args in [base] + variants}) == 6


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_upstream_is_the_upstream_recipe_bit_for_bit(dtype):
    got = make("upstream", 33, E, dtype, 1234, DEVICE)
    torch.manual_seed(1234)
    gating_output = torch.randn(33, E, dtype=dtype, device=DEVICE)
    per_expert_scale = torch.rand(E, dtype=torch.float32, device=DEVICE)
    assert same_bits(got.gating_output, gating_output)
    assert same_bits(got.per_expert_scale, per_expert_scale)
    assert got.special_rows == {}


@pytest.mark.gpu
@pytest.mark.parametrize("dist", PRIVATE)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_the_gpu_sees_the_cpu_values(dist, dtype):
    on_gpu = make(dist, 256, E, dtype, 5, "cuda")
    on_cpu = make(dist, 256, E, dtype, 5, "cpu")
    assert same_bits(on_gpu.gating_output.cpu(), on_cpu.gating_output)
    assert same_bits(on_gpu.per_expert_scale.cpu(), on_cpu.per_expert_scale)
    assert on_gpu.special_rows == on_cpu.special_rows


# --- each distribution keeps its claim -------------------------------------------------------------

def draw(dist: str, dtype: torch.dtype = torch.float32, T: int = 4096, seed: int = 0) -> torch.Tensor:
    return make(dist, T, E, dtype, seed, DEVICE).gating_output.cpu()


def test_randn_is_standard_normal():
    x = draw("randn")
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01


def test_peaked_is_spread_wide():
    assert abs(float(draw("peaked").std()) / PEAKED_SPREAD - 1) < 0.01


def test_flat_is_near_ties_in_fp32_and_exact_ties_below():
    gap = kth_gap(draw("flat"))
    assert float((gap < 1e-5).float().mean()) > 0.99
    # 1e-6 is about 8 fp32 ulps at 1.0: rows of both kinds, exact ties and near-ties, must occur.
    exact = float((gap == 0).float().mean())
    assert 0.1 < exact < 0.9, f"fp32 flat rows should mix exact and near ties; {exact:.0%} are exact"
    for dtype in (torch.bfloat16, torch.float16):
        assert (kth_gap(draw("flat", dtype)) == 0).all()


def test_bf16_grid_holds_bf16_values_with_exact_ties():
    x = draw("bf16-grid")
    assert torch.equal(x.to(torch.bfloat16).float(), x), "every fp32 logit must be a bf16 value"
    tied = float((kth_gap(x) == 0).float().mean())
    tied_randn = float((kth_gap(draw("randn")) == 0).float().mean())
    assert tied > 0.02 and tied_randn < 0.001, (tied, tied_randn)


def test_integer_ties_in_most_rows():
    x = draw("integer")
    assert torch.equal(x, x.round()) and int(x.min()) == INTEGER_LOW and int(x.max()) == INTEGER_HIGH
    assert float((kth_gap(x) == 0).float().mean()) > 0.9


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_heavy_tail_has_huge_but_finite_logits(dtype):
    x, normal = draw("heavy-tail", dtype), draw("randn", dtype)
    assert torch.isfinite(x).all() and float(x.abs().max()) <= HEAVY_TAIL_CLAMP
    assert float(x.abs().max()) > 20 * float(normal.abs().max()), (x.abs().max(), normal.abs().max())


def test_imbalanced_favours_some_experts():
    ids = torch.topk(draw("imbalanced"), K, dim=-1).indices
    chosen = torch.bincount(ids.flatten(), minlength=E).float()
    assert float(chosen.max()) > 5 * float(chosen.median()), (chosen.max(), chosen.median())
    uniform = torch.bincount(torch.topk(draw("randn"), K, dim=-1).indices.flatten(), minlength=E).float()
    assert float(uniform.max()) < 1.5 * float(uniform.median()), "randn should be balanced"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_special_rows_hold_their_kind(dtype):
    inputs = make("special", 64, E, dtype, 7, DEVICE)
    x, rows = inputs.gating_output.cpu().double(), inputs.special_rows
    info = torch.finfo(dtype)
    listed = [r for kind in SPECIAL_KINDS for r in rows[kind]]
    assert len(listed) == len(set(listed)) == 32 and all(0 <= r < 64 for r in listed)
    assert all(rows[kind] == sorted(rows[kind]) and rows[kind] for kind in SPECIAL_KINDS)
    checks = {
        "nan": lambda row: torch.isnan(row).any(),
        "posinf": lambda row: (row == float("inf")).any() and not torch.isnan(row).any(),
        "neginf": lambda row: (row == float("-inf")).any() and not torch.isnan(row).any()
                              and not (row == float("inf")).any() and torch.isfinite(row).any(),
        "all_neginf": lambda row: (row == float("-inf")).all(),
        "huge": lambda row: ((row.abs() >= info.max / 4) & (row.abs() <= info.max / 2)).all(),
        "subnormal": lambda row: (row.abs() < info.tiny).all() and (row != 0).any(),
    }
    for kind, holds in checks.items():
        bad = [r for r in rows[kind] if not holds(x[r])]
        assert not bad, f"{kind} rows {bad} ({dtype}) do not hold their kind: {x[bad[0]][:8]}"
    clean = sorted(set(range(64)) - set(listed))
    assert torch.isfinite(x[clean]).all() and (x[clean].abs() < 10).all()


@pytest.mark.parametrize("T", range(14))
def test_special_places_kinds_cycling_as_far_as_rows_allow(T):
    rows = make("special", T, 4, torch.float32, 0, DEVICE).special_rows
    counts = [len(rows[kind]) for kind in SPECIAL_KINDS]
    assert sum(counts) == (T + 1) // 2
    present = [kind for kind, n in zip(SPECIAL_KINDS, counts) if n]
    assert present == list(SPECIAL_KINDS[: min(len(SPECIAL_KINDS), (T + 1) // 2)])
    if T >= 12:
        assert all(counts), counts


def test_special_places_rows_by_seed():
    assert make("special", 64, 8, torch.float32, 0, DEVICE).special_rows != \
        make("special", 64, 8, torch.float32, 1, DEVICE).special_rows


# --- metadata and errors ---------------------------------------------------------------------------

def test_every_distribution_states_a_one_line_claim():
    for name, dist in DISTRIBUTIONS.items():
        assert dist.name == name and dist.description and dist.claim and "\n" not in dist.claim
    with pytest.raises(dataclasses.FrozenInstanceError):
        DISTRIBUTIONS["randn"].claim = "anything"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        make("randn", 1, 2, torch.float32, 0, DEVICE).special_rows = {}  # type: ignore[misc]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"dist: unknown distribution 'gaussian'; known: upstream, randn"):
        make("gaussian", 4, E, torch.float32, 0, DEVICE)
    with pytest.raises(ValueError, match=re.escape(", ".join(NAMES))):
        make("bf16_grid", 4, E, torch.float32, 0, DEVICE)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, "bfloat16"], ids=str)
def test_bad_dtype_is_a_type_error(dtype):
    want = r"dtype: expected torch.float32, torch.bfloat16 or torch.float16, got "
    with pytest.raises(TypeError, match=want + re.escape(repr(dtype))):
        make("randn", 4, E, dtype, 0, DEVICE)


@pytest.mark.parametrize(
    "T, E, error, message",
    [(-1, 8, ValueError, r"T: expected T >= 0 tokens, got T=-1"),
     (4, 0, ValueError, r"E: expected at least one expert \(E >= 1\), got E=0"),
     (2.5, 8, TypeError, r"T: expected an int, got float \(2.5\)"),
     (4, True, TypeError, r"E: expected an int, got bool \(True\)")],
)
def test_bad_sizes(T, E, error, message):
    with pytest.raises(error, match=message):
        make("randn", T, E, torch.float32, 0, DEVICE)


def test_sigmoid_saturating_puts_many_logits_where_an_fp32_sigmoid_saturates():
    x = make("sigmoid-saturating", 512, 64, torch.float32, 0, DEVICE).gating_output.cpu()
    beyond = (x.abs() > 17).double().mean().item()
    assert beyond > 0.3, beyond
    s = torch.sigmoid(x)
    assert bool((s == 1.0).any())                                    # ties in fp32 ...
    assert torch.sigmoid(x.double()).unique().numel() > s.unique().numel()   # ... that fp64 keeps apart


@pytest.mark.parametrize("E, blocks", [(256, 8), (160, 8), (60, 1)])
def test_group_ties_repeat_the_first_block(E, blocks):
    x = make("group-ties", 64, E, torch.bfloat16, 0, DEVICE).gating_output.cpu()
    per = E // blocks
    for b in range(blocks):
        assert torch.equal(x[:, b * per:(b + 1) * per], x[:, :per])
    assert x[:, :per].unique().numel() > per // 2
