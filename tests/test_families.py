"""Routing families: each is data (a Router, real models) plus its references; the oracle, the
analyzer and the sweep read the family. Checked here: the family records are consistent, bad
parameters are refused before any work with a message naming them, the oracle computes the
definition (hand-worked rows, groups included), Gemma4 through a Router is Gemma4 through its
tensor, every reference agrees with the oracle on ids up to ties on every smoke-grid case, and each
family's mutants are caught."""
from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
import torch

from parity import device, grids, inputs, routing, sweep
from parity.analysis import Routing, compare
from parity.routing.oracle import route64
from parity.routing.router import Router

pytestmark = pytest.mark.xdist_group("family-smoke-sweep")  # the smoke sweep fixture runs once

FAMILIES = list(routing.FAMILIES)
OTHERS = [f for f in FAMILIES if f != "gemma4"]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_records_are_consistent(name):
    fam = routing.family(name)
    assert fam.stand_in in fam.implementations and fam.reference in fam.implementations
    assert set(fam.arithmetic) <= set(fam.implementations) and set(fam.kernels) <= set(fam.implementations)
    assert set(fam.arithmetic.values()) <= {"fp32", "input-dtype"}
    assert set(fam.roundings) == {n for n, a in fam.arithmetic.items() if a == "input-dtype"}
    assert set(fam.distributions) <= set(inputs.DISTRIBUTIONS) and "upstream" in fam.distributions
    assert fam.models and all(1 <= m.K <= m.E for m in fam.models)
    assert set(fam.mutants) and all(m.description.endswith(".") for m in fam.mutants.values())
    assert set(routing.names(name)) == {*fam.implementations, "oracle", *fam.mutants}


def _grouped(E=8, n_group=4, topk_group=2, **kw) -> Router:
    return Router("sigmoid", True, 2.5, n_group, topk_group, correction_bias=torch.zeros(E), **kw)


@pytest.mark.parametrize("router, E, K, error, message", [
    (_grouped(E=9, n_group=2, topk_group=2), 9, 2, ValueError, "n_group: expected a divisor of E=9, got n_group=2"),
    (_grouped(E=8, n_group=8, topk_group=2), 8, 2, ValueError, "n_group: expected at least 2 experts per group"),
    (_grouped(E=8, n_group=4, topk_group=1), 8, 3, ValueError, re.escape("topk: expected at most topk_group * E / n_group = 2")),
    (Router("sigmoid", correction_bias=torch.zeros(7)), 8, 2, ValueError, r"correction_bias: expected shape \(8,\)"),
    (Router("sigmoid", correction_bias=torch.zeros(8, dtype=torch.int32)), 8, 2, TypeError,
     "correction_bias: expected a floating dtype"),
    (Router("sigmoid", correction_bias=torch.tensor([0.0] * 7 + [math.nan])), 8, 2, ValueError,
     "correction_bias: expected finite values"),
])
def test_bad_router_parameters_are_refused_before_any_work(router, E, K, error, message):
    g = torch.randn(4, E)
    for name in ("oracle", "hf_deepseek_v3", "deepseek_official", "mutant-groups-by-max"):
        with pytest.raises(error, match=message):
            routing.get(name, "deepseek_v3")(g, K, router)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"score": "relu"}, ValueError, "score: expected one of softmax, sigmoid, got 'relu'"),
    ({"scaling_factor": -2.5}, ValueError, "scaling_factor: expected a finite number > 0, got -2.5"),
    ({"scaling_factor": math.inf}, ValueError, "scaling_factor: expected a finite number > 0"),
    ({"scaling_factor": "2.5"}, TypeError, "scaling_factor: expected a number, got str"),
    ({"renormalize": 1}, TypeError, "renormalize: expected a bool, got int"),
    ({"n_group": 0}, ValueError, "n_group: expected n_group >= 1, got 0"),
    ({"n_group": 2.0}, TypeError, "n_group: expected an int, got float"),
    ({"n_group": 4, "topk_group": 5}, ValueError, "topk_group: expected 1 <= topk_group <= n_group=4, got 5"),
])
def test_a_router_is_checked_when_it_is_made(kwargs, error, message):
    with pytest.raises(error, match=message):
        Router(**kwargs)


def test_a_router_where_a_tensor_belongs_is_refused():
    with pytest.raises(TypeError, match="router: expected a parity.routing.router.Router, got Tensor"):
        routing.get("hf_mixtral", "mixtral")(torch.randn(3, 8), 2, torch.ones(8))


def test_gemma4_through_a_router_is_gemma4_through_its_scale():
    g, s = torch.randn(64, 128).to(torch.bfloat16), torch.rand(128)
    w, ids = route64(g, 8, s)
    w2, ids2 = route64(g, 8, Router(per_expert_scale=s))
    assert torch.equal(ids, ids2) and torch.equal(w, w2)


def test_softmax_oracle_by_hand():
    x = torch.tensor([[2.0, 0.0, 1.0, -1.0]])
    e = [math.exp(v) for v in (2.0, 0.0, 1.0, -1.0)]
    w, ids = route64(x, 2, Router("softmax", renormalize=False))
    assert ids.tolist() == [[0, 2]]
    assert w[0].tolist() == pytest.approx([e[0] / sum(e), e[2] / sum(e)], rel=1e-15)
    w, _ = route64(x, 2, Router("softmax", renormalize=True))
    assert w[0].tolist() == pytest.approx([e[0] / (e[0] + e[2]), e[2] / (e[0] + e[2])], rel=1e-15)


def test_sigmoid_oracle_by_hand():
    x = torch.tensor([[0.5, 3.0, -1.0, 2.0]])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    w, ids = route64(x, 2, Router("sigmoid", renormalize=False))
    assert ids.tolist() == [[1, 3]] and w[0].tolist() == pytest.approx([sig(3.0), sig(2.0)], rel=1e-15)
    w, _ = route64(x, 2, Router("sigmoid", renormalize=True, scaling_factor=2.5))
    total = sig(3.0) + sig(2.0)
    assert w[0].tolist() == pytest.approx([2.5 * sig(3.0) / total, 2.5 * sig(2.0) / total], rel=1e-15)


def test_grouped_oracle_by_hand():
    """4 groups of 2; keys = sigmoid(x) + bias. Group scores (top-2 sums) pick groups 2 and 0;
    the best expert of group 1 is the row's best key, and is not chosen."""
    bias = torch.tensor([0.0, 0.0, -2.0, 0.9, 0.2, 0.2, -1.0, -1.0])
    x = torch.tensor([[1.0, 1.0, -8.0, 3.0, 2.0, 1.5, 0.0, 0.0]])
    router = Router("sigmoid", True, 1.0, 4, 2, correction_bias=bias)
    keys = torch.sigmoid(x.double()) + bias.double()
    scores = keys.reshape(4, 2).sum(-1)
    assert scores.argsort(descending=True)[:2].tolist() == [2, 0] and int(keys.argmax()) == 3
    w, ids = route64(x, 2, router)
    assert sorted(ids[0].tolist()) == [4, 5]
    s = torch.sigmoid(x.double())[0].tolist()
    assert w[0].tolist() == pytest.approx([s[4] / (s[4] + s[5]), s[5] / (s[4] + s[5])], rel=1e-15)


def test_group_ties_go_to_the_lower_group_and_expert_ties_to_the_lower_id():
    x = torch.tensor([[1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]])   # every group the same
    router = Router("sigmoid", True, 1.0, 4, 2, correction_bias=torch.zeros(8))
    _, ids = route64(x, 3, router)
    assert ids[0].tolist() == [1, 3, 0]     # groups 0 and 1; keys 2, 2, then 1 (expert 0 before 2)


@pytest.fixture(scope="module")
def smoke_records():
    """Every non-Gemma4 family through the smoke grid (references, oracle, mutants), on the kernels'
    device (on a GPU machine a CPU tensor is no kernel's input: the kernels' records were errors)."""
    records = []
    for case in grids.grid("smoke", OTHERS).cases:
        records += sweep.run_case(case, device.default())
    return records


@pytest.mark.parametrize("name", OTHERS)
def test_every_reference_agrees_with_the_oracle_on_ids_up_to_ties(smoke_records, name):
    """No reference picks a genuinely different expert on any smoke case; where the model code
    rounds before it chooses, the differences are near-ties (and special-value rows, reported
    apart). Every kind of pair was compared."""
    refs = [r for r in smoke_records if r["kind"] == "pair" and r["case"]["family"] == name
            and r["candidate_kind"] == "baseline" and r["baseline"] == "oracle"]
    fam = routing.family(name)
    assert {r["candidate"] for r in refs} == set(fam.implementations) - set(fam.kernels)
    bad = [(r["case_id"], r["pair"], r["genuine_rows"]) for r in refs if r["rows_genuine"]]
    assert not bad, bad
    # parity's kernels (candidates): the oracle's experts exactly, not even a near-tie apart
    kernels = [r for r in smoke_records if r["kind"] == "pair" and r["case"]["family"] == name
               and r["candidate"] in fam.kernels and r["baseline"] == "oracle"]
    assert {r["candidate"] for r in kernels} == set(fam.kernels)
    off = [(r["case_id"], r["pair"]) for r in kernels if r["rows_genuine"] or r["rows_near_tie"]]
    assert not off, off
    errors = [r for r in smoke_records if r["kind"] == "error" and r["case"]["family"] == name]
    assert not errors, errors[0]["error"]


@pytest.mark.parametrize("name", OTHERS)
def test_the_family_mutants_are_caught_against_the_oracle(smoke_records, name):
    from parity.summary import summarize

    fam = routing.family(name)
    fs = summarize([r for r in smoke_records if r["case"]["family"] == name], {})["families"][name]
    caught = fs["mutants_by_precision"]["fp32"]
    expected = set(fam.mutants) - ({"mutant-groups-by-max"} if name != "deepseek_v3" else set())
    assert {m for m, v in caught.items() if v == "caught"} == expected, caught
    oracle_matrix = fs["mutants_by_baseline"]["oracle"]
    assert all(v["derived"] == "caught" for v in oracle_matrix.values()), oracle_matrix


def test_groups_by_max_is_caught_only_with_several_groups():
    fam = routing.family("deepseek_v3")
    for model, several in (("deepseek-v3", True), ("kimi-k2", False)):
        m = fam.model(model)
        inp = inputs.make("randn", 512, m.E, torch.float32, 0, "cpu")
        router = fam.make_router(m, "randn", 0)
        truth = Routing.of(route64(inp.gating_output, m.K, router))
        got = Routing.of(fam.mutants["mutant-groups-by-max"].fn(inp.gating_output, m.K, router))
        r = compare(inp.gating_output, got, truth, router=router)
        assert (r.rows_genuine > 0) == several, (model, r.rows_genuine)


def test_the_bias_of_a_case_is_a_large_offset_with_a_small_spread():
    fam = routing.family("deepseek_v3")
    b = fam.make_router(fam.model(), "randn", 0).correction_bias
    assert b.dtype == torch.float32 and 4.5 < float(b.mean()) < 5.5 and 0.01 < float(b.std()) < 0.1
    assert bool((b == b[0]).all()) is False
    tied = fam.make_router(fam.model(), "group-ties", 0).correction_bias
    assert bool((tied == tied[0]).all())
    # rounded to bf16, the spread collapses onto a few values (the mutant bias-in-bf16)
    assert b.to(torch.bfloat16).unique().numel() < b.unique().numel() / 4


def test_a_router_moves_with_its_tensors():
    r = _grouped().to("cpu")
    assert r.correction_bias.device.type == "cpu" and replace(r, n_group=2).n_group == 2
    assert r.describe()["correction_bias"] == "float32[8]" and r.describe()["n_group"] == 4
