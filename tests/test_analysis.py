"""The divergence analyzer: tie-aware id classification, planted errors found where they were
planted, the error hull's verdicts equal brute force, tie rules, attribution."""
import numpy as np
import pytest
import torch

from parity import tolerance
from parity.analysis import Routing, attribute, classify_ids, compare, hull, tie_rule
from parity.check import assert_weights_close
from parity.routing import mutants
from parity.routing.gemma4 import FAMILY as GEMMA4
from parity.routing.oracle import oracle, route64
from parity.routing.reference import softmax_all
from routing_cases import logits, scale, tied_logits


def test_ties_where_the_rules_disagree_are_tie_explained_not_genuine():
    g = tied_logits(2048, 128, "cpu")
    s = scale(128, "cpu")
    truth = Routing.of(route64(g, 8, s))
    high = Routing.of(mutants.MUTANTS["mutant-ties-high"](g, 8, s))   # the higher-id rule
    v = classify_ids(g, high.ids, truth.ids)
    assert int(v.tie_explained.sum()) > 100 and int(v.genuine.sum()) == 0
    cpu_torch = Routing.of(softmax_all(g, 8, s))                        # torch.topk's own rule
    v = classify_ids(g, cpu_torch.ids, truth.ids, dtype=torch.float64)
    assert int(v.genuine.sum()) == 0 and int(v.near_tie.sum()) == 0


def test_planted_genuine_mismatch_is_reported_at_its_row():
    g, s = logits(512, 128, torch.float32, "cpu", seed=3), scale(128, "cpu")
    w, ids = route64(g, 8, s)
    bad = ids.clone()
    worst_expert = int(torch.argmin(g[200]))
    bad[200, 7] = worst_expert                   # a clearly wrong expert in row 200
    r = compare(g, Routing(w.float(), bad), Routing(w, ids), s, pair="planted~oracle")
    assert (r.rows_mismatched, r.rows_genuine, r.rows_tie_explained) == (1, 1, 0)
    assert r.genuine_rows == [200]


def test_planted_weight_error_is_found_at_its_index():
    g, s = logits(512, 128, torch.bfloat16, "cpu", seed=4), scale(128, "cpu").abs() + 0.5
    w, ids = route64(g, 8, s)
    bad = w.clone()
    bad[321, 5] *= 1 + 1e-3
    r = compare(g, Routing(bad, ids), Routing(w, ids), s, pair="planted~oracle")
    assert r.worst["row"] == 321 and r.worst["expert"] == int(ids[321, 5])
    assert r.max_rel == pytest.approx(1e-3, rel=1e-6) and r.worst_rows[0] == 321
    with pytest.raises(AssertionError, match=r"1 of 4096 elements outside the allowance; worst at index \(321, 5\)"):
        assert_weights_close(bad, w, rtol=1e-4)


def test_hull_gives_the_brute_force_verdict():
    rng = np.random.default_rng(0)
    b = torch.tensor(rng.uniform(0, 1, 20000) ** 3)
    e = torch.tensor(rng.uniform(0, 1e-3, 20000)) * (b + 1e-4)
    h = hull(b, e)
    assert 1 <= len(h) < 60
    for atol, rtol in [(0.0, 1e-3), (1e-6, 0.0), (1e-7, 1e-4), (3e-5, 3e-3), (1e-9, 1e-9)]:
        brute = float((e / (atol + rtol * b)).max())
        assert tolerance.margin(h, atol, rtol) == pytest.approx(brute, rel=1e-12)


def test_tie_rules_are_named():
    g = tied_logits(1024, 128, "cpu")
    s = scale(128, "cpu")
    assert tie_rule(g, oracle(g, 8, s)[1])["rule"] == "lower id"
    assert tie_rule(g, mutants.MUTANTS["mutant-ties-high"](g, 8, s)[1])["rule"] == "higher id"
    assert tie_rule(logits(64, 128, torch.float32, "cpu"), oracle(logits(64, 128, torch.float32, "cpu"), 8, s)[1])["rule"] == "untested"


def test_attribution_says_who_is_closer():
    g, s = logits(256, 128, torch.bfloat16, "cpu", seed=5), scale(128, "cpu")
    truth = Routing.of(route64(g, 8, s))
    ref = Routing.of(softmax_all(g, 8, s))
    exact = Routing(truth.weights.float(), truth.ids)
    a = attribute(compare(g, exact, truth, s), compare(g, ref, truth, s))
    assert a["closer"] == "candidate" and a["ratio"] > 1000


def test_derived_tolerance_covers_its_own_data_and_is_validated():
    g_cases = [logits(512, 128, torch.bfloat16, "cpu", seed=i) for i in range(3)]
    s = scale(128, "cpu")
    recs = []
    for i, g in enumerate(g_cases):
        r = compare(g, Routing.of(softmax_all(g, 8, s)), Routing.of(route64(g, 8, s)), s).as_dict()
        recs.append({**r, "case_id": f"case{i}"})
    tol = tolerance.derive("softmax_all~oracle", "bfloat16", recs[:2], 1 / 8, GEMMA4.roundings)
    assert all(tolerance.verdict(r, tol.atol, tol.rtol)[0] for r in recs[:2])
    tol = tolerance.validate(tol, recs[2:])
    assert tol.holdout_cases == 1 and tol.margin > 0


def test_reference_allowance_grows_with_the_logit_gap():
    """torch's fp32 softmax rounds x - max by |x - max| * 2**-24: far-apart chosen logits need more
    than the gap-free a-priori bound, and the allowance gives it (the references stay within it)."""
    from parity.tolerance import a_priori, reference_allowance

    gen = torch.Generator().manual_seed(3)
    g = torch.randn(512, 64, generator=gen)
    g[:, :4] += torch.tensor([0.0, -40.0, -80.0, -84.0]) + 100.0  # the chosen four, up to 84 apart
    s = torch.rand(64, generator=gen) + 0.5
    w64, ids64 = route64(g, 4, s)
    w, ids = softmax_all(g, 4, s)
    allowed = reference_allowance("softmax_all", g, s, w64, ids64, GEMMA4.roundings)
    flat = a_priori("softmax_all~oracle", "float32", GEMMA4.roundings)
    gap_free = flat["rtol"] * w64.abs() + flat["atol"]
    assert (allowed[:, -1] > 5 * gap_free[:, -1]).all()  # the gap term dominates for the farthest pick
    by_id, by_id64 = ids.long().argsort(-1), ids64.argsort(-1)  # compare expert by expert
    assert torch.equal(ids.long().gather(1, by_id), ids64.gather(1, by_id64))
    err = (w.double().gather(1, by_id) - w64.gather(1, by_id64)).abs()
    assert (err <= allowed.gather(1, by_id64)).all()


def test_tie_rule_names_its_proportion_and_counts_special_rows_apart():
    g = tied_logits(512, 64, "cpu", seed=9)
    g[:40, 5] = float("nan")                 # rows with a special value: counted apart
    s = scale(64, "cpu")
    high = mutants.MUTANTS["mutant-ties-high"](g, 8, s)[1]
    t = tie_rule(g, high)
    n = t["tied_rows"]
    assert n > 20 and t["higher_id"] == n and t["special_tied_rows"] > 0
    assert t["detail"].startswith(f"higher id ({n} of {n} tied finite rows); ties at special values apart: "
                                  f"{t['special_tied_rows']} rows")
    mixed = high.clone()
    lower = oracle(g, 8, s)[1]
    mixed[::2] = lower[::2]                  # half the rows by each rule
    t = tie_rule(g, mixed)
    assert t["rule"] == "no consistent rule"
    assert t["detail"].startswith(f"no consistent rule (lower id in {t['lower_id']}, higher id in {t['higher_id']}, "
                                  f"neither in {n - t['lower_id'] - t['higher_id']} of {n} tied finite rows)")
    assert 0 < t["lower_id"] < n and 0 < t["higher_id"] < n


def test_repeated_ids_are_genuine_even_at_a_tie():
    g = tied_logits(256, 64, "cpu", seed=10)
    s = scale(64, "cpu")
    w, ids = route64(g, 8, s)
    dup = ids.clone()
    dup[:, -1] = dup[:, 0]                   # the K-th expert dropped, the top one repeated
    v = classify_ids(g, dup, ids)
    assert int(v.genuine.sum()) == len(g) and int(v.tie_explained.sum()) == 0


def test_hull_points_name_the_element_that_decides():
    g, s = logits(512, 128, torch.bfloat16, "cpu", seed=4), scale(128, "cpu").abs() + 0.5
    w, ids = route64(g, 8, s)
    bad = w.clone()
    bad[321, 5] *= 1 + 1e-3
    r = compare(g, Routing(bad.float(), ids), Routing(w, ids), s, pair="planted~oracle")
    assert len(r.hull_where) == len(r.hull)
    m, i = tolerance.worst_point(r.hull, 1e-9, 1e-6)
    row, expert, cand, base = r.hull_where[i]
    assert (row, expert) == (321, int(ids[321, 5])) and m > 100
    assert cand == float(bad.float()[321, 5]) and base == float(w[321, 5])


def test_another_nan_convention_is_reported_as_special_values_not_as_a_genuine_mismatch():
    g, s = logits(64, 32, torch.float32, "cpu", seed=6), scale(32, "cpu")
    g[3, 7] = float("nan")
    g[9, 2] = float("inf")
    x = torch.where(torch.isnan(g), torch.full_like(g, float("-inf")), g)   # NaN ranked lowest
    values, ids = torch.topk(x, 4)
    cand = Routing((torch.softmax(values, -1) * s[ids]).float(), ids)
    r = compare(g, cand, Routing.of(route64(g, 4, s)), s, pair="nan-lowest~oracle")
    assert (r.rows_genuine, r.rows_near_tie, r.nonfinite, r.nan_rows_agree) == (0, 0, 0, True)
    assert (r.rows_special, r.rows_special_differ, r.special_rows) == (2, 1, [3])
    assert r.special_values["nan"] == {"rows": 1, "differ": 1, "candidate_chose": 0, "baseline_chose": 1,
                                       "candidate_nan_weights": 0, "baseline_nan_weights": 1}
    assert r.special_values["+inf"]["differ"] == 0
