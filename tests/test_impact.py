"""parity.impact on the CPU with small layers: identical routings have no effect at all, a planted
expert swap on one row changes that row only, the layer's own noise is measured (and is what the
dtype's rounding makes it), the categories come from the analyzer, the command writes its report."""
from __future__ import annotations

import json

import pytest
import torch

from parity import impact, routing
from parity.cli import main
from parity.routing.family import Layer

SMALL = dict(T=512, hidden=48, intermediate=24)   # on the default device: parity's kernels run there


def routing_of(T=64, E=16, K=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(E, generator=gen)[:K] for _ in range(T)])
    w = torch.rand(T, K, generator=gen, dtype=torch.float64)
    return ids, w / w.sum(-1, keepdim=True)


@pytest.mark.parametrize("weighted", ["output", "input"])
def test_a_swap_on_one_row_changes_that_row_only(weighted):
    moe = impact.SyntheticMoE(16, Layer(32, 16, "silu", weighted), seed=3)
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ids, w = routing_of()
    swapped = ids.clone()
    swapped[17, 2] = next(e for e in range(16) if e not in ids[17].tolist())
    same, again, other = moe(x, [(ids, w), (ids.clone(), w.clone()), (swapped, w)], torch.float64)
    assert torch.equal(same, again)                          # identical routing: identical bits
    changed = (same != other).any(-1)
    assert changed.nonzero().flatten().tolist() == [17]


def test_expert_weights_are_drawn_again_identically_and_differ_between_experts():
    moe = impact.SyntheticMoE(4, Layer(8, 4), seed=5)
    a, b = moe.expert(1, torch.float32), moe.expert(1, torch.float32)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(moe.expert(2, torch.float32)[0], a[0])
    assert abs(float(a[0].std()) * 8 ** 0.5 - 1) < 0.3      # 1/sqrt(fan in)


def test_identical_routings_have_exactly_no_effect():
    r = impact.measure("gemma4", [("oracle", "oracle"), ("softmax_all", "softmax_all")], **SMALL)
    for p in r.pairs:
        assert set(p.rows) == {"identical"} and p.rows["identical"] == SMALL["T"]
        assert p.effect["identical"]["max"] == 0.0 and p.expert_set_changed == 0.0
    assert r.pairs[0].as_run["identical"]["max"] == 1.0     # the oracle's routing as run is the noise itself


def test_the_noise_floor_is_measured_and_follows_the_dtype():
    bf16 = impact.measure("mixtral", [("hf_mixtral", "oracle")], dtype="bfloat16", **SMALL)
    fp32 = impact.measure("mixtral", [("hf_mixtral", "oracle")], dtype="float32", **SMALL)
    assert bf16.noise["zero_rows"] == 0 and fp32.noise["zero_rows"] == 0
    u_bf16, u_fp32 = 2.0 ** -8, 2.0 ** -24
    assert u_bf16 / 8 < bf16.noise["relative"]["q50"] < u_bf16 * 8                 # a few bf16 roundings
    assert u_fp32 / 8 < fp32.noise["relative"]["q50"] < u_fp32 * 64
    assert bf16.noise["relative"]["q50"] > 1000 * fp32.noise["relative"]["q50"]


def test_rows_fall_into_the_analyzers_categories():
    r = impact.measure("gemma4", [("mutant-ties-high", "oracle"), ("mutant-duplicate", "oracle"), ("fused", "oracle"),
                                  ("softmax_all", "oracle")], dist="integer", **SMALL)
    high, dup, fused, ref = r.pairs
    assert high.rows.get("tie swap", 0) > 0 and high.effect["tie swap"]["q50"] > 1   # another expert: above the noise
    assert dup.rows["genuine"] == SMALL["T"] and dup.expert_set_changed == 1.0
    assert set(fused.rows) <= {"identical", "weights only"} and fused.effect["weights only"]["max"] < 1e-2
    assert sum(high.rows.values()) == sum(ref.rows.values()) == SMALL["T"]
    # the weights-only effect is linear in Δweight: the crossing is one property of the layer
    assert ref.crossover_dweight == pytest.approx(fused.crossover_dweight, rel=0.5)


def test_deepseek_groups_and_llama4_input_weighting_run():
    for fam in ("deepseek_v3", "llama4", "gpt_oss"):
        r = impact.measure(fam, [(routing.family(fam).stand_in, "oracle")], **{**SMALL, "T": 128})
        assert sum(r.pairs[0].rows.values()) == 128 and r.noise["relative"]["q50"] > 0


def test_hf_experts_modules_route_like_the_synthetic_layer():
    pytest.importorskip("transformers", reason="the transformers layers need the models extra")
    for fam in ("gemma4", "mixtral", "deepseek_v3", "gpt_oss", "llama4"):
        r = impact.measure(fam, [("oracle", "oracle"), (routing.family(fam).stand_in, "oracle")], layer="hf",
                           **{**SMALL, "T": 96})
        same, stand_in = r.pairs
        assert same.effect["identical"]["max"] == 0.0, fam
        assert r.noise["zero_rows"] < 96 and 0 < r.noise["relative"]["q50"] < 0.1, fam


def test_cli(tmp_path, capsys):
    out = tmp_path / "imp"
    assert main(["impact", "--hidden", "32", "--intermediate", "16", "--pairs", "mutant-ties-high,fused:oracle",
                 "--out", str(out), "--no-progress", "--T", "1024"]) == 0
    text = capsys.readouterr().out
    assert "impact gemma4 mutant-ties-high vs oracle: expert set changes in" in text
    assert "weights-only divergence reaches the layer's own bfloat16 noise at" in text
    data = json.loads((out / "impact.json").read_text())
    assert [p["candidate"] for p in data["results"][0]["pairs"]] == ["mutant-ties-high", "fused"]
    assert (out / "impact-gemma4.png").stat().st_size > 10_000
    assert "| mutant-ties-high vs oracle | tie swap |" in (out / "impact.md").read_text()
    for argv, message in ((["--pairs", "nope"], "--pairs: 'nope' is not an implementation of gemma4"),
                          (["--T", "0"], "--T: expected at least 1"),
                          (["--dtype", "half"], "--dtype: expected one of")):
        assert main(["impact", *argv, "--no-progress", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err


def test_tiny_model_decodes_alike_under_the_oracle_and_apart_under_a_mutant():
    pytest.importorskip("transformers", reason="the tiny model needs the models extra")
    from parity import impact_model

    same, mutant = impact_model.decode(["oracle", "mutant-renorm-flag-ignored"], steps=6, prompts=4)
    assert same.token_agreement == 1.0 and same.first_logit_change == [None] * 4 and same.max_logit_diff == 0.0
    assert all(s == 0 for s in mutant.first_logit_change)          # weights that do not sum to one: every logit moves
    assert mutant.max_logit_diff > 0
