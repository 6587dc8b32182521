"""parity's torch references are the models' own routing code: each family's router module, built
from transformers with a small random config (no weights downloaded), routes the same logits to the
same ids with bit-identical weights, on the CPU.

The routers compute their logits with a linear layer; here ``torch.nn.functional.linear`` passes its
input through (hidden_size == E), so the module's routing math runs on logits we choose, exactly
(an identity weight would turn -inf into NaN and -0.0 into +0.0). Gemma4's router also normalises and
scales its input before the projection: those are set to the identity.

Needs the ``models`` extra (``pip install -e '.[models]'``); skipped, with that reason, without it.
"""
from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch

from parity import routing

transformers = pytest.importorskip("transformers", reason="the cross-check needs the models extra: pip install -e '.[models]'")

T = 97


@contextlib.contextmanager
def logits_pass_through():
    """Every F.linear (nn.Linear's too) returns its input: the router's logits are its input."""
    def linear(x, weight, bias=None):
        return x if bias is None else x + bias

    with mock.patch.object(torch.nn.functional, "linear", linear):
        yield


def random_logits(E: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """randn * 3 with exact ties in bf16, a -inf and a -0.0: the cases where formulations part."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, E, generator=gen) * 3).to(dtype)
    x[0, 1], x[1, 2] = float("-inf"), -0.0
    return x


def fill(module: torch.nn.Module, seed: int) -> None:
    """Direct construction skips transformers' weight init: give every parameter values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)


def by_id(w: torch.Tensor, ids: torch.Tensor):
    o = ids.long().argsort(-1)
    return w.float().gather(1, o), ids.long().gather(1, o)


def assert_same(ours, theirs, what: str) -> None:
    (w, ids), (w2, ids2) = by_id(*ours), by_id(*theirs)
    assert torch.equal(ids, ids2), f"{what}: ids differ in {int((ids != ids2).any(-1).sum())} rows"
    same = (w.view(torch.int32) == w2.view(torch.int32)) | (torch.isnan(w) & torch.isnan(w2))
    assert bool(same.all()), f"{what}: {int((~same).sum())} weights differ in their bits"


def model(family: str, name: str):
    return routing.family(family).model(name)


CONFIGS = {  # (family, model) -> a builder of the transformers router for (E, K, settings)
    ("gemma4", "gemma4"): lambda m: _gemma4(m),
    ("mixtral", "mixtral-8x7b"): lambda m: _router("mixtral", "MixtralTopKRouter", "MixtralConfig",
                                                   hidden_size=m.E, num_local_experts=m.E, num_experts_per_tok=m.K),
    ("mixtral", "qwen3-moe"): lambda m: _router("qwen3_moe", "Qwen3MoeTopKRouter", "Qwen3MoeConfig", hidden_size=m.E,
                                                num_experts=m.E, num_experts_per_tok=m.K, norm_topk_prob=True),
    ("mixtral", "qwen2-moe"): lambda m: _router("qwen2_moe", "Qwen2MoeTopKRouter", "Qwen2MoeConfig", hidden_size=m.E,
                                                num_experts=m.E, num_experts_per_tok=m.K, norm_topk_prob=False),
    ("gpt_oss", "gpt-oss-120b"): lambda m: _router("gpt_oss", "GptOssTopKRouter", "GptOssConfig", hidden_size=m.E,
                                                   num_local_experts=m.E, num_experts_per_tok=m.K),
    ("deepseek_v3", "deepseek-v3"): lambda m: _router(
        "deepseek_v3", "DeepseekV3TopkRouter", "DeepseekV3Config", hidden_size=m.E, n_routed_experts=m.E,
        num_experts_per_tok=m.K, n_group=m.settings["n_group"], topk_group=m.settings["topk_group"],
        routed_scaling_factor=m.settings["scaling_factor"], norm_topk_prob=True),
    ("deepseek_v3", "glm-4.5"): lambda m: _router(
        "glm4_moe", "Glm4MoeTopkRouter", "Glm4MoeConfig", hidden_size=m.E, n_routed_experts=m.E,
        num_experts_per_tok=m.K, n_group=1, topk_group=1, routed_scaling_factor=m.settings["scaling_factor"],
        norm_topk_prob=True),
    ("llama4", "llama4-scout"): lambda m: _router("llama4", "Llama4Router", "Llama4TextConfig", hidden_size=m.E,
                                                  num_local_experts=m.E, num_experts_per_tok=m.K),
}


def _router(module: str, cls: str, config: str, **kwargs):
    mod = pytest.importorskip(f"transformers.models.{module}.modeling_{module}")
    if not hasattr(mod, cls):
        pytest.skip(f"transformers {transformers.__version__} has no {cls}")
    return getattr(mod, cls)(getattr(transformers, config)(**kwargs))


def _gemma4(m):
    mod = pytest.importorskip("transformers.models.gemma4.modeling_gemma4")
    cfg = pytest.importorskip("transformers.models.gemma4.configuration_gemma4")
    r = mod.Gemma4TextRouter(cfg.Gemma4TextConfig(hidden_size=m.E, num_experts=m.E, top_k_experts=m.K,
                                                  enable_moe_block=True, moe_intermediate_size=8))
    r.norm = torch.nn.Identity()       # the router's input normalisation and scaling: not routing
    r.scalar_root_size = 1.0
    return r


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("family, name", list(CONFIGS), ids=[f"{f}-{n}" for f, n in CONFIGS])
def test_reference_is_the_model_code(family, name, dtype):
    fam, m = routing.family(family), model(family, name)
    module = CONFIGS[(family, name)](m)
    fill(module, seed=m.E)
    module = module.to(dtype)
    if family == "gemma4":
        with torch.no_grad():
            module.scale.fill_(1.0)
    if family == "gpt_oss":
        module.bias = None             # a router bias is part of the logits
    router = fam.make_router(m, "upstream", 0, per_expert_scale=getattr(module, "per_expert_scale", None))
    if hasattr(module, "e_score_correction_bias"):   # parity's draw, in fp32 as real checkpoints keep it
        module.e_score_correction_bias = router.correction_bias.clone()
    x = random_logits(m.E, dtype, seed=m.E + m.K)
    with torch.no_grad(), logits_pass_through():
        out = module(x)
    arg = fam.argument(router)
    if family == "gemma4":
        theirs, ours = (out[1], out[2]), routing.get("hf_gemma4", family)(x, m.K, module.per_expert_scale.detach())
    elif family == "llama4":
        ids = torch.topk(out[1], m.K, dim=1)[1]
        theirs, ours = (out[0].gather(1, ids), ids), routing.get("hf_llama4", family)(x, m.K, arg)
    else:
        name_of = {"mixtral-8x7b": "hf_mixtral", "qwen3-moe": "hf_qwen_moe", "qwen2-moe": "hf_qwen_moe",
                   "gpt-oss-120b": "hf_gpt_oss", "deepseek-v3": "hf_deepseek_v3", "glm-4.5": "hf_deepseek_v3"}[name]
        theirs, ours = (out[1], out[2]), routing.get(name_of, family)(x, m.K, arg)
    assert_same(ours, theirs, f"{family} {name} {dtype}")
