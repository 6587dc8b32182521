"""A candidate is judged by a tolerance it did not make.

The kernels of tests/external_candidates.py, written outside parity, go through `parity sweep` as a
user would run them; what parity concludes of each is fixed here: the verdict under each precision
class, the element named when weights are wrong, the tie rule with its proportions, the
special-value convention reported apart, and trusted results untouched by the candidates.
"""
import json
import re
import shutil

import pytest
import torch

import external_candidates as ext
from parity import inputs
from parity.analysis import PROBABILITY_ROUNDINGS, Routing, compare, kth_logit
from parity.cli import main
from parity.numerics import unit_roundoff
from parity.routing.oracle import order, route64
from parity.summary import summarize
from parity.grids import Case

pytestmark = pytest.mark.xdist_group("external-candidates-sweep")  # one sweep per worker at most

EXPECTED = {   # candidate -> passes under (fp32, input-dtype)
    "fp32_topk_softmax": (True, True),
    "higher_id_ties": (True, True),
    "nan_ranked_lowest": (True, True),
    "one_expert_off": (False, False),
    "scale_ignored_for_expert_0": (False, False),
    "near_tie_flip": (False, False),
    "softmax_in_input_dtype": (False, True),
    "batch_size_dispatch": (True, True),
}
NAME = {c: f"external_candidates:{c}" for c in EXPECTED}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("candidates")
    argv = ["sweep", "--grid", "smoke", "--out", str(out), "--no-progress"]
    for name in NAME.values():
        argv += ["--candidate", name]
    assert main(argv) == 1   # some candidates are wrong: the sweep fails
    return out


def summary_of(d) -> dict:
    """Gemma4's part of a sweep's summary, with the run's meta and overall verdict beside it."""
    s = json.loads((d / "summary.json").read_text())
    return {**s["families"]["gemma4"], "meta": s["meta"], "verdict": s["verdict"]}


def rejudge(sweep_dir, tmp_path, *flags) -> tuple[int, dict]:
    """`parity report` on a copy of the sweep with other verdict flags: (exit code, summary)."""
    if sweep_dir != tmp_path:
        for f in ("records.jsonl", "summary.json"):
            shutil.copy(sweep_dir / f, tmp_path / f)
    return main(["report", str(tmp_path), *flags]), summary_of(tmp_path)


@pytest.fixture(scope="module")
def summary(sweep_dir):
    return summary_of(sweep_dir)


@pytest.mark.parametrize("precision", ["fp32", "input-dtype"])
def test_each_candidate_gets_its_verdict_under_each_precision(summary, precision):
    i = ("fp32", "input-dtype").index(precision)
    got = {c: summary["candidates"][NAME[c]]["by_precision"][precision]["ok"] for c in EXPECTED}
    assert got == {c: want[i] for c, want in EXPECTED.items()}
    assert summary["candidates"]["fused"]["by_precision"][precision]["ok"]


def test_the_chosen_precision_decides_the_sweep(summary, sweep_dir, tmp_path, capsys):
    assert summary["verdict"]["precision"] == "fp32" and not summary["verdict"]["ok"]
    failing = {c for c, (ok, _) in EXPECTED.items() if not ok}
    named = {c for c in EXPECTED if any(NAME[c] + ":" in r for r in summary["verdict"]["reasons"])}
    assert named == failing
    # the same records judged again under input-dtype: only the wrong kernels still fail
    code, again = rejudge(sweep_dir, tmp_path, "--precision", "input-dtype")
    assert code == 1 and again["verdict"]["precision"] == "input-dtype"
    assert {c for c in EXPECTED if not again["candidates"][NAME[c]]["ok"]} == {
        c for c, (_, ok) in EXPECTED.items() if not ok}
    assert "external_candidates:softmax_in_input_dtype: pass" in capsys.readouterr().out


def test_a_small_consistent_error_is_named_by_row_and_expert(summary, dev):
    reasons = [r for r in summary["candidates"][NAME["one_expert_off"]]["reasons"] if "envelope" in r]
    assert reasons
    for reason in reasons:
        case_id = reason.split(":")[0]
        m = re.search(r"margin (\S+) at row (\d+), expert (\d+): got (\S+), oracle (\S+),", reason)
        assert m, reason
        row, expert = int(m.group(2)), int(m.group(3))
        assert float(m.group(1)) > 100 and row % ext.BAD_ROW_EVERY == 0
        case = next(Case(**c) for c in [r["case"] for r in _records(summary, case_id)])
        g = inputs.make(case.dist, case.T, case.E, getattr(torch, case.dtype), case.seed, dev)
        _, ids = route64(g.gating_output, case.K, g.per_expert_scale)
        assert int(ids[row, 0]) == expert      # the top expert of a bad row: where the bug is
        cand, base = float(m.group(4)), float(m.group(5))
        assert cand / base - 1 == pytest.approx(ext.OFF_BY, rel=1e-3)


def _records(summary, case_id):
    return [{"case": {k: c[k] for k in ("T", "E", "K", "dtype", "dist", "seed", "role")}}
            for c in summary["cases"] if c["id"] == case_id]


def test_a_scale_ignored_for_one_expert_is_named(summary):
    reasons = [r for r in summary["candidates"][NAME["scale_ignored_for_expert_0"]]["reasons"] if "envelope" in r]
    assert reasons and all(", expert 0: got" in r for r in reasons)


def test_the_other_tie_rule_passes_and_is_named_with_its_proportion(summary):
    t = summary["tie_rules"][NAME["higher_id_ties"]]
    assert t["rule"] == "higher id" and t["tied_rows"] > 100
    assert t["detail"].startswith(f"higher id ({t['tied_rows']} of {t['tied_rows']} tied finite rows)")
    assert summary["tie_rules"]["fused"]["detail"].startswith("lower id (")
    c = summary["candidates"][NAME["higher_id_ties"]]
    assert c["ok"] and c["rows_tie_explained"] > 100 and c["rows_genuine"] == 0


def test_a_bf16_softmax_fails_fp32_only_where_the_logits_are_not_fp32(summary):
    c = summary["candidates"][NAME["softmax_in_input_dtype"]]["by_precision"]
    dtypes = {r.split(":")[0].split("-")[4] for r in c["fp32"]["reasons"]}
    assert dtypes == {"bfloat16", "float16"}
    assert c["input-dtype"]["ok"] and c["input-dtype"]["margin"] < 1


def test_nan_ranked_lowest_is_a_special_value_convention_not_a_genuine_mismatch(summary, sweep_dir, tmp_path):
    name = NAME["nan_ranked_lowest"]
    nan = summary["special_semantics"][name]["nan"]
    assert nan["differ"] == nan["rows"] > 0 and nan["candidate_chose"] == 0 and nan["baseline_chose"] == nan["rows"]
    assert nan["candidate_nan_weights"] == 0 and nan["baseline_nan_weights"] == nan["rows"]
    assert summary["special_semantics"][name]["+inf"]["differ"] == 0
    c = summary["candidates"][name]
    assert c["ok"] and c["rows_genuine"] == 0 and c["rows_special_differ"] == nan["rows"]
    report = (sweep_dir / "report.md").read_text()
    assert f"| {name} | nan | {nan['rows']} | **{nan['rows']}** | 0 / {nan['rows']} |" in report
    # a policy switch makes it fail
    code, strict = rejudge(sweep_dir, tmp_path, "--fail-on-special-values")
    assert code == 1 and strict["verdict"]["fail_on_special_values"]
    assert not strict["candidates"][name]["ok"]
    assert any("follow another convention than the oracle's" in r for r in strict["candidates"][name]["reasons"])
    assert strict["candidates"][NAME["fp32_topk_softmax"]]["ok"]
    _, lenient = rejudge(tmp_path, tmp_path, "--no-fail-on-special-values")
    assert lenient["candidates"][name]["ok"]


def test_batch_invariance_is_reported_and_fails_only_when_required(summary, sweep_dir, tmp_path):
    name = NAME["batch_size_dispatch"]
    inv = summary["batch_invariance"]
    assert inv[name]["status"] == "ids only" and set(inv[name]["by_dtype"]) == {"bfloat16", "float16", "float32"}
    assert summary["candidates"][name]["ok"] and summary["candidates"][name]["batch_invariant"].startswith("ids only")
    # the bugs planted by row position (every 100th, every 50th row) move with the batch too
    assert {n: v["status"] for n, v in inv.items() if v["status"] != "yes"} == {
        name: "ids only", NAME["one_expert_off"]: "ids only", NAME["near_tie_flip"]: "no"}
    assert "## Batch invariance" in (sweep_dir / "report.md").read_text()
    code, strict = rejudge(sweep_dir, tmp_path, "--require-batch-invariance")
    assert code == 1 and strict["verdict"]["require_batch_invariance"]
    assert not strict["candidates"][name]["ok"]
    assert any(r.startswith(f"{name}: not batch-invariant: ids only") for r in strict["candidates"][name]["reasons"])
    assert all(strict["candidates"][NAME[c]]["ok"] for c in ("fp32_topk_softmax", "higher_id_ties", "nan_ranked_lowest"))


def test_near_tie_flips_are_classified_by_their_gap():
    g = torch.randn(2000, 128, generator=torch.Generator().manual_seed(7)).to(torch.bfloat16)
    s = torch.rand(128, generator=torch.Generator().manual_seed(8))
    K = 8
    cand = Routing.of(ext.near_tie_flip(g, K, s))
    truth = Routing.of(route64(g, K, s))
    r = compare(g, cand, truth, s, pair="near_tie_flip~oracle")
    x = g.double()
    ranked = x.gather(1, order(g))
    kth, nxt = ranked[:, K - 1], ranked[:, K]
    flipped = torch.zeros(len(g), dtype=torch.bool)
    flipped[:: ext.FLIP_ROW_EVERY] = True
    tie = flipped & (kth == nxt)
    u = unit_roundoff(torch.bfloat16)
    p = torch.softmax(x, dim=-1).gather(1, order(g))   # probabilities by rank
    close_keys = (kth - nxt).abs() <= 2 * u * kth.abs()
    close_probs = ((p[:, K - 1] - p[:, K]).abs()
                   <= 2 * PROBABILITY_ROUNDINGS * u * p[:, K - 1] + torch.finfo(torch.bfloat16).tiny)
    near = flipped & ~tie & (close_keys | close_probs)
    genuine = flipped & ~tie & ~near
    assert near.sum() > 0 and genuine.sum() > 0
    assert (r.rows_tie_explained, r.rows_near_tie, r.rows_genuine) == (int(tie.sum()), int(near.sum()), int(genuine.sum()))
    assert r.near_tie_rows == near.nonzero().flatten()[:10].tolist()
    assert r.genuine_rows == genuine.nonzero().flatten()[:10].tolist()
    assert torch.equal(kth_logit(g, K), kth)


def test_near_tie_flips_fail_fp32_and_genuine_ones_fail_both(summary):
    c = summary["candidates"][NAME["near_tie_flip"]]["by_precision"]
    assert any("flip a near-tie" in r for r in c["fp32"]["reasons"])
    assert not any("flip a near-tie" in r for r in c["input-dtype"]["reasons"])
    assert any("genuinely different experts" in r for r in c["input-dtype"]["reasons"])


def test_user_candidates_change_no_trusted_result(sweep_dir, summary):
    records = [json.loads(line) for line in (sweep_dir / "records.jsonl").read_text().splitlines()]
    alone = summarize([r for r in records if r.get("impl", r.get("candidate")) not in NAME.values()
                       and r.get("candidate") not in NAME.values()], summary["meta"])["families"]["gemma4"]
    with_them = summarize(records, summary["meta"])["families"]["gemma4"]
    assert alone["tolerances"] == with_them["tolerances"]
    assert alone["precision_envelopes"] == with_them["precision_envelopes"]
    assert alone["policies"] == with_them["policies"] and alone["mutants"] == with_them["mutants"]
    assert set(with_them["observed_envelopes"]["bfloat16"]) >= {f"{NAME['one_expert_off']}~oracle"}
    assert not any(NAME["one_expert_off"] in p for d in with_them["tolerances"].values() for p in d)


def test_the_report_shows_the_verdicts_and_why(sweep_dir):
    report = (sweep_dir / "report.md").read_text()
    assert "## Candidates" in report and "## Precision envelopes: what judges a candidate" in report
    assert f"| {NAME['one_expert_off']} (user) | **FAIL**" in report
    assert f"{NAME['one_expert_off']} fails under `--precision fp32`:" in report
    assert "Observed error envelopes (a description, never a pass mark)" in report


def _record(case_id, role, hull, where, dtype="bfloat16", **ids):
    fields = {"rows_genuine": 0, "rows_near_tie": 0, "rows_tie_explained": 0, "rows_special_differ": 0,
              "nonfinite": 0, "nan_rows_agree": True, "genuine_rows": [], "near_tie_rows": [], "special_rows": []}
    return {"case_id": case_id, "case": {"dtype": dtype, "role": role}, "hull": hull, "hull_where": where,
            **fields, **ids}


def test_judge_holds_a_trusted_kernel_to_held_out_cases_only_and_says_when_no_envelope_exists():
    from parity.verdict import Rule, judge

    env = {"bfloat16": {"fp32": {"precision": "fp32", "atol": 0.0, "rtol": 1e-6}}}
    big = [[0.5, 1e-3]]
    recs = [_record("a-derive", "derive", big, [[4, 7, 0.501, 0.5]]),
            _record("b-holdout", "holdout", [[0.5, 1e-7]], [[1, 2, 0.5000001, 0.5]])]
    assert judge("k", recs, env, Rule("fp32"), trusted=True).ok
    j = judge("k", recs, env, Rule("fp32"), trusted=False)
    assert not j.ok and j.failed_cases == 1 and j.worst_case == "a-derive"
    assert "margin 2e+03 at row 4, expert 7: got 0.501, oracle 0.5," in j.reasons[0]
    j = judge("k", recs, env, Rule("input-dtype"))
    assert not j.ok and all("no input-dtype envelope for bfloat16" in r for r in j.reasons)
    with pytest.raises(ValueError, match="precision: expected one of fp32, input-dtype, got 'fp16'"):
        Rule("fp16")


def test_the_pytest_sweep_gives_the_same_verdict(tmp_path):
    """tests/sweep with PARITY_CANDIDATES: every per-case test passes (ids and NaN are fine), and the
    run fails at the end on the envelope, naming the same element as the CLI."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root / "tests"), "PARITY_SWEEP_OUT": str(tmp_path),
           "PARITY_CANDIDATES": NAME["one_expert_off"], "PARITY_PRECISION": "fp32"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sweep"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout[-2000:]
    assert "passed" in run.stdout and "failed" not in run.stdout.split("\n")[-2]
    assert "verdict FAIL" in run.stdout
    s = summary_of(tmp_path)
    assert not s["candidates"][NAME["one_expert_off"]]["ok"] and s["candidates"]["fused"]["ok"]
    assert s["meta"]["runner"] == "pytest-xdist" and s["meta"]["precision"] == "fp32"
