"""Batch invariance (parity.invariance): a row's output bit for bit whatever batch it is routed in."""
import pytest
import torch

from external_candidates import _softmax_fp32, batch_size_dispatch
from parity import grids, inputs, routing
from parity.invariance import check, describe, summarize, variants

T, E, K = 300, 128, 8


@pytest.fixture(scope="module")
def case():
    inp = inputs.make("upstream", T, E, torch.bfloat16, 0, "cpu")
    return inp.gating_output, inp.per_expert_scale


def row_local(g, topk, s):
    x = g.float()
    ids = torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :topk]
    return _softmax_fp32(x.gather(1, ids)) * s.float()[ids], ids.to(torch.int32)


def test_variants_map_every_routed_row_back_to_its_own():
    g = torch.arange(40 * 4, dtype=torch.float32).reshape(40, 4)
    for label, batches in variants(g):
        for logits, rows in batches:
            keep = rows >= 0
            assert torch.equal(logits[keep], g[rows[keep]]), label


@pytest.mark.parametrize("name", ["softmax_all", "topk_softmax", "hf_gemma4"])
def test_torch_references_are_invariant_on_the_cpu(case, name):
    g, s = case
    r = check(name, routing.get(name), g, K, s)
    assert r.status == "yes" and r.variants == 9 and r.rows == T, describe(r.as_dict())


@pytest.mark.parametrize("name", ["fused", "sort_baseline"])
def test_parity_kernels_are_invariant_where_they_run(case, name):
    """On the GPU too: one program routes whole rows, and nothing in a row's arithmetic depends on
    the batch (the sweep's invariance cases measure the torch references there)."""
    from parity import device

    g, s = (t.to(device.default()) for t in case)
    if name == "sort_baseline" and device.INTERPRETER:
        g = g[:40]          # its full sort per row takes seconds per row in the interpreter
    r = check(name, routing.get(name), g, K, s)
    assert r.status == "yes" and r.variants >= 7 and r.rows == g.shape[0], describe(r.as_dict())


def test_a_row_local_routing_is_invariant(case):
    g, s = case
    assert check("row_local", row_local, g, K, s).status == "yes"


def test_batch_size_dispatch_is_flagged_ids_only(case):
    g, s = case
    r = check("dispatch", batch_size_dispatch, g, K, s)
    assert r.status == "ids only" and r.rows_ids_differ == 0 and r.rows_weights_differ > 0
    assert 0 < r.max_abs < 1e-6
    assert r.worst["variant"].startswith(("split", "mixed")) and 0 <= r.worst["row"] < T
    assert describe(r.as_dict()).startswith("ids only (max Δ")


def test_a_position_dependent_routing_is_flagged(case):
    g, s = case

    def by_position(gg, topk, ss):
        w, ids = row_local(gg, topk, ss)
        return w * (1 + 1e-6 * (torch.arange(gg.shape[0])[:, None] % 2)), ids

    r = check("by_position", by_position, g, K, s)
    assert r.status == "ids only"


def test_ids_that_depend_on_the_batch_are_no(case):
    g, s = case

    def small_batch_higher_ids(gg, topk, ss):
        x = gg.float()
        if gg.shape[0] > 64:
            return row_local(gg, topk, ss)
        ids = (x.shape[1] - 1) - torch.sort(x.flip(-1), dim=-1, descending=True, stable=True).indices[:, :topk]
        return _softmax_fp32(x.gather(1, ids)) * ss.float()[ids], ids.to(torch.int32)

    tied = inputs.make("integer", T, E, torch.bfloat16, 0, "cpu").gating_output
    r = check("small", small_batch_higher_ids, tied, K, s)
    assert r.status == "no" and r.rows_ids_differ > 0
    assert describe(r.as_dict()).startswith(f"no ({r.rows_ids_differ} rows choose other experts")


def test_summarize_takes_the_worst_case():
    recs = [{"status": "yes", "case": {"dtype": "float32"}, "case_id": "a", "max_abs": 0.0},
            {"status": "ids only", "case": {"dtype": "bfloat16"}, "case_id": "b", "max_abs": 1e-7,
             "rows_weights_differ": 3, "worst": {"variant": "reversed", "row": 2, "expert": 5}}]
    s = summarize(recs)
    assert s["status"] == "ids only" and s["detail"].endswith("[b]") and s["by_dtype"]["float32"] == "yes"
    assert summarize([])["status"] == "untested"


def test_grids_mark_one_case_per_family_model_and_dtype():
    for name in grids.GRIDS:
        g = grids.grid(name)
        marked = [c for c in g.cases if c.invariance]
        keys = [(c.family, c.model, c.dtype) for c in marked]
        assert len(keys) == len(set(keys))
        assert {(c.family, c.model, c.dtype) for c in g.cases if c.T > 1} == set(keys), name
        assert all(c.T <= grids.INVARIANCE_MAX_T for c in marked if any(
            d.T <= grids.INVARIANCE_MAX_T and (d.family, d.model, d.dtype) == (c.family, c.model, c.dtype)
            for d in g.cases)), name
