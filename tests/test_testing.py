"""parity.testing (assert_routing_close, check_routing), the signature adapters, the shipped
tolerances, user grids and `parity diff`'s hull test, in process. tests/test_outside.py uses the
same API from a package outside parity's tree."""
import json
from pathlib import Path

import pytest
import torch

from external_candidates import _softmax_fp32, higher_id_ties, nan_ranked_lowest
from parity import grids, inputs, routing, shipped
from parity.diff import hull_growth, majorant
from parity.routing.router import Router
from parity.signatures import normalize, wrap
from parity.testing import assert_routing_close, check_routing

ROOT = Path(__file__).resolve().parents[1]
T, E, K = 4096, 128, 8


def fp32_topk_softmax(gating_output, topk, per_expert_scale):
    """Correct, with the oracle's tie rule (a stable descending sort: the lower id first among
    equal logits); torch.topk's own order among ties is the backend's."""
    x = gating_output.float()
    ids = torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :topk]
    return _softmax_fp32(x.gather(1, ids)) * per_expert_scale.float()[ids], ids.to(torch.int32)


@pytest.fixture(scope="module")
def case():
    inp = inputs.make("upstream", T, E, torch.bfloat16, 0, "cpu")
    return inp.gating_output, inp.per_expert_scale


def test_a_correct_kernel_passes_silently(case):
    g, s = case
    assert assert_routing_close(fp32_topk_softmax(g, K, s), g, K, s) is None
    assert assert_routing_close(routing.get("oracle")(g, K, s), g, K, s) is None


def test_one_expert_off_by_1e3_names_row_and_expert(case):
    g, s = case
    w, ids = fp32_topk_softmax(g, K, s)
    w[17, 3] *= 1 + 1e-3
    with pytest.raises(AssertionError) as info:
        assert_routing_close((w, ids), g, K, s)
    msg = str(info.value)
    assert f"worst at row 17, expert {int(ids[17, 3])}: candidate " in msg
    assert "Mismatched weights: 1 of 32768 outside the tolerance (first rows [17])" in msg
    assert "rel err 0.001" in msg
    assert "Tolerance: atol=" in msg and "fp32 envelope of gemma4 for bfloat16 logits" in msg
    assert "Mismatched ids" not in msg and "Tie rule" not in msg


def test_higher_id_ties_pass_only_where_allowed(case):
    g, s = case
    out = higher_id_ties(g, K, s)
    with pytest.raises(AssertionError) as info:
        assert_routing_close(out, g, K, s)
    msg = str(info.value)
    assert "rows whose K-th key ties do not go to the lower id" in msg
    assert "Allow it with ties='higher id' or ties='any'" in msg
    assert "Mismatched ids" not in msg and "Mismatched weights" not in msg   # ties are not genuine mismatches
    assert_routing_close(out, g, K, s, ties="higher id")
    assert_routing_close(out, g, K, s, ties="any")
    with pytest.raises(AssertionError, match="do not go to the higher id"):
        assert_routing_close(fp32_topk_softmax(g, K, s), g, K, s, ties="higher id")


def test_genuine_mismatch_names_the_experts(case):
    g, s = case
    w, ids = fp32_topk_softmax(g, K, s)
    order = torch.sort(g[5].float(), descending=True, stable=True).indices
    ids = ids.clone()
    ids[5, K - 1] = int(order[K + 20])   # far below the K-th: not a tie
    with pytest.raises(AssertionError) as info:
        assert_routing_close((w, ids), g, K, s)
    msg = str(info.value)
    assert "1 rows pick genuinely different experts (first rows [5])" in msg
    assert "row 5: candidate" in msg and f"chose {int(order[K + 20])} (key" in msg


def test_lenient_outputs_and_precision(case):
    g, s = case
    w, ids = fp32_topk_softmax(g, K, s)
    assert_routing_close((ids.long(), w), g, K, s)                     # (ids, weights), int64 ids
    bf16 = (w.to(torch.bfloat16), ids)
    assert_routing_close(bf16, g, K, s, precision="input-dtype")       # weights rounded to bf16
    with pytest.raises(AssertionError, match="Mismatched weights"):
        assert_routing_close(bf16, g, K, s)
    with pytest.raises(AssertionError, match="expected dtype torch.float32, got torch.float64"):
        assert_routing_close((w.double(), ids), g, K, s)               # would round: refused
    with pytest.raises(AssertionError, match="expected shape"):
        assert_routing_close((w[:, :-1], ids[:, :-1]), g, K, s)


def test_tolerance_and_baseline_choices(case):
    g, s = case
    out = fp32_topk_softmax(g, K, s)
    assert_routing_close(out, g, K, s, tolerance=(0.0, 1e-5))
    assert_routing_close(out, g, K, s, baseline="softmax_all")         # derived fused~softmax_all
    w, ids = out
    w = w.clone()
    w[3, 0] *= 1.1
    with pytest.raises(AssertionError) as info:
        assert_routing_close((w, ids), g, K, s, baseline="softmax_all")
    msg = str(info.value)
    assert "softmax_all " in msg and "oracle " in msg and "derived: fused~softmax_all" in msg
    assert_routing_close((w, ids), g, K, s, tolerance=(1e-2, 1e-1))


@pytest.mark.parametrize("kwargs,error,message", [
    ({"tolerance": "loose"}, ValueError, "tolerance: expected 'derived' or (atol, rtol)"),
    ({"tolerance": (1e-2, -1)}, ValueError, "tolerance: expected 'derived' or (atol, rtol)"),
    ({"baseline": "numpy"}, ValueError, "baseline: expected 'oracle' or one of gemma4's references (softmax_all, "),
    ({"baseline": "hf_gemma4"}, ValueError, "no shipped tolerance against 'hf_gemma4'"),
    ({"ties": "lowest"}, ValueError, "ties: expected one of 'lower id', 'higher id', 'any'"),
    ({"precision": "fp16"}, ValueError, "precision: expected one of fp32, input-dtype"),
    ({"special_values": "ignore"}, ValueError, "special_values: expected one of report, fail"),
    ({"family": "qwen"}, ValueError, "family: unknown family 'qwen'"),
    ({"router": Router(), "renormalize": True}, TypeError, "router: given with renormalize"),
])
def test_bad_arguments_raise_usage_errors(case, kwargs, error, message):
    g, s = case
    with pytest.raises(error) as info:
        assert_routing_close(fp32_topk_softmax(g, K, s), g, K, s, **kwargs)
    assert message in str(info.value)


def test_gemma4_needs_its_scale(case):
    g, s = case
    with pytest.raises(TypeError, match="per_expert_scale: the gemma4 router multiplies"):
        assert_routing_close(fp32_topk_softmax(g, K, s), g, K)


def test_special_values_reported_or_failed():
    check_routing(nan_ranked_lowest, T=64, dtype="float32", dist="special")
    with pytest.raises(AssertionError, match="follow another convention than the oracle's"):
        check_routing(nan_ranked_lowest, T=64, dtype="float32", dist="special", special_values="fail")


@pytest.mark.parametrize("name", list(routing.FAMILIES))
def test_check_routing_every_family(name):
    fam = routing.family(name)
    ref = fam.implementations[fam.stand_in]
    check_routing(ref, family=name, T=(1, 256), dtype=("bfloat16", "float32"), dist=("upstream", "randn"), ties="any")
    for m in fam.models[1:]:
        check_routing(ref, family=name, model=m.name, T=64, ties="any")
    mutant = next(iter(fam.mutants.values()))
    with pytest.raises(AssertionError, match=f"check_routing: {name} T="):
        check_routing(mutant.fn, family=name, T=(256,), dist=("randn", "upstream"), ties="any")


def test_signatures():
    fam = routing.family("deepseek_v3")
    ref = fam.implementations[fam.stand_in]

    def by_keywords(gating_output, topk, correction_bias, n_group, topk_group, scaling_factor):
        return ref(gating_output, topk, Router("sigmoid", True, scaling_factor, n_group, topk_group, None, correction_bias))

    check_routing(by_keywords, family="deepseek_v3", T=64, signature="keywords", ties="any")

    def outputs_last(g, topk, router, weights, ids):
        w, i = ref(g, topk, router)
        weights.copy_(w)
        ids[:-1].copy_(i[:-1])            # forgets the last row

    with pytest.raises(AssertionError, match=r"ids: expected expert ids in \[0, 256\), got values in \[-1,"):
        check_routing(outputs_last, family="deepseek_v3", T=64, signature="outputs-last")
    with pytest.raises(TypeError, match="signature 'sglang': .* is Gemma4's"):
        check_routing(ref, family="deepseek_v3", T=4, signature="sglang")
    with pytest.raises(ValueError, match="signature: unknown signature 'vllm'; known: parity, sglang"):
        wrap(ref, "vllm")
    with pytest.raises(TypeError, match="signature 'keywords': the function has no parameter 'gating_output'"):
        wrap(lambda x, topk: None, "keywords")


def test_normalize_keeps_what_does_not_convert_exactly():
    w, ids = torch.rand(3, 2), torch.tensor([[0, 1], [2, 3], [4, 9]])
    nw, nids = normalize((ids, w), 10)
    assert nw is w and nids.dtype == torch.int32
    with pytest.raises(Exception, match=r"ids: expected expert ids in \[0, 8\), got values in \[0, 9\]"):
        normalize((w, ids), 8)
    assert normalize((w.double(), ids), 10)[0].dtype == torch.float64


def test_shipped_tolerances_are_the_committed_h200_sweep():
    """One source of truth: the package's data is what `--emit package` makes from reports/h200."""
    summary = json.loads((ROOT / "reports" / "h200" / "summary.json").read_text())
    assert shipped.load() == json.loads(json.dumps(shipped.from_summary(summary), sort_keys=True))
    assert shipped.load()["source"]["device"] == "NVIDIA H200"
    assert set(shipped.load()["families"]) == set(routing.FAMILIES)


def test_grid_from_toml(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text('name = "mine"\n[[shapes]]\nT = [1, 2048]\ndtype = "bfloat16"\ndist = ["randn", "integer"]\n'
                 '[[shapes]]\nfamily = "deepseek_v3"\nT = 8\nE = 384\nseeds = [0, 1, 4]\n')
    g = grids.from_toml(f, ["gemma4"])
    assert g.name == "mine"
    assert len(g.cases) == 2 * 2 * 2 + 3 * 3
    kimi = [c for c in g.cases if c.family == "deepseek_v3"]
    assert {c.model for c in kimi} == {"kimi-k2"} and {c.role for c in kimi} == {"derive", "holdout"}


@pytest.mark.parametrize("body,message", [
    ('[[shapes]]\nT = [1, "x"]\n', "shapes[0].T: expected integers >= 0"),
    ('[[shapes]]\nT = 1\nE = 100\n', "shapes[0].K: gemma4 has no real model with E=100; give K"),
    ('[[shapes]]\nT = 1\nE = 100\nK = 8\nfamily = "deepseek_v3"\n', "shapes[0].E: deepseek_v3's model deepseek-v3 does not fit"),
    ('[[shapes]]\nT = 1\ndist = "nope"\n', "shapes[0].dist: expected names from upstream"),
    ('[[shapes]]\nT = 1\ncolour = 2\n', "shapes[0].colour: unknown field"),
    ('[[shapes]]\nE = 8\n', "shapes[0].T: missing"),
    ("shapes = 3\n", "shapes: expected one or more [[shapes]] tables"),
    ("[[shapes\n", "not valid TOML"),
    ('[[shapes]]\nT = 1\n[[shapes]]\nT = [1, 2]\n', "comes twice"),
])
def test_grid_file_errors_name_the_field(tmp_path, capsys, body, message):
    from parity.cli import main

    f = tmp_path / "g.toml"
    f.write_text(body)
    assert main(["sweep", "--grid-file", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,message", [
    (["--T", "1,a"], "--T: expected integers separated by commas, got '1,a'"),
    (["--T", "4", "--E", "8,16"], "--E: expected one integer"),
    (["--E", "8"], "--T: needed with --E"),
    (["--T", "4", "--grid", "smoke"], "--grid: give a named grid or shapes (--T), not both"),
    (["--T", "4", "--dtype", "half"], "--dtype: expected names from float32, bfloat16, float16"),
    (["--T", "4", "--candidate", "external_candidates:higher_id_ties", "--signature", "vllm"],
     "signature: unknown signature 'vllm'"),
    (["--T", "4", "--signature", "sglang"], "--signature: applies to --candidate; none given"),
])
def test_shape_options_errors(tmp_path, capsys, argv, message):
    from parity.cli import main

    assert main(["sweep", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_hull_growth_is_exactly_a_tolerance_that_passed_and_fails_now():
    old = {"hull": [[0.01, 1e-9], [0.5, 4e-8]]}
    assert majorant(old["hull"], 0.001) == 1e-9 and majorant(old["hull"], 0.9) == 4e-8
    assert abs(majorant(old["hull"], 0.255) - 2.05e-8) < 1e-15
    same = {"hull": [[0.2, 1e-8]], "hull_where": [[3, 7, 0.2, 0.2]]}
    assert hull_growth(old, same) is None                       # below the old majorant
    worse = {"hull": [[0.2, 1e-6]], "hull_where": [[3, 7, 0.2, 0.2]]}
    assert "(row 3, expert 7)" in hull_growth(old, worse)
