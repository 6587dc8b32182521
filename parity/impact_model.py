"""A tiny whole model, greedy decoding, with its router replaced: do the tokens change, and when do
the logits first part from the oracle-routed run?

The model is Qwen3-MoE from transformers (the ``mixtral`` family, softmax then top K, renormalised),
built from a small random config (no weights downloaded) in bf16; every layer's router computes
its logits as the model code does and hands them to a parity implementation (or the oracle, whose
float64 weights are rounded to the model dtype as the model's own router does). Needs the
``models`` extra.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from parity import routing
from parity.routing.oracle import route64


@dataclass
class DecodeResult:
    implementation: str
    steps: int
    prompts: int
    token_agreement: float = 0.0                 # fraction of generated tokens equal to the oracle-routed run's
    first_token_change: list = field(default_factory=list)   # per prompt: the first step whose token differs (None: never)
    first_logit_change: list = field(default_factory=list)   # per prompt: the first step whose logits differ in any bit
    max_logit_diff: float = 0.0                  # over the steps before the first token change

    def as_dict(self) -> dict:
        return asdict(self)


def build(E: int = 16, K: int = 4, layers: int = 2, hidden: int = 64, vocab: int = 512, seed: int = 0,
          device="cpu", dtype=torch.bfloat16):
    try:
        from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    except ImportError as e:
        raise RuntimeError("the tiny model needs the models extra: pip install -e '.[models]'") from e
    cfg = Qwen3MoeConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, moe_intermediate_size=hidden // 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                         num_experts=E, num_experts_per_tok=K, norm_topk_prob=True, decoder_sparse_step=1,
                         mlp_only_layers=[], max_position_embeddings=256)
    torch.manual_seed(seed)
    model = Qwen3MoeForCausalLM(cfg).to(device=device, dtype=dtype).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():      # router weights large enough that the routing is not a coin toss
        for layer in model.model.layers:
            g = layer.mlp.gate.weight
            g.copy_((torch.randn(g.shape, generator=gen) * 0.5).to(g.dtype))
    return model


def route_with(model, name: str):
    """Make every router of ``model`` route its logits through ``name`` (a mixtral-family
    implementation, or "oracle"). Returns a function that restores the model's own."""
    fam = routing.family("mixtral")
    saved = []
    for layer in model.model.layers:
        gate = layer.mlp.gate
        router = fam.make_router(fam.model("qwen3-moe"), "randn", 0, None, gate.weight.device)
        K = gate.top_k

        def forward(hidden_states, gate=gate, router=router, K=K):
            h = hidden_states.reshape(-1, gate.hidden_dim)
            logits = torch.nn.functional.linear(h, gate.weight)
            if name == "oracle":
                w, ids = route64(logits, K, router)
            else:
                w, ids = routing.get(name, "mixtral")(logits, K, router)
            return logits, w.to(logits.dtype), ids.long()
        saved.append((gate, gate.forward))
        gate.forward = forward

    def restore():
        for gate, f in saved:
            gate.forward = f
    return restore


@torch.no_grad()
def greedy(model, prompts: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Tokens [B, steps] and the last position's logits at every step (full recompute, no cache:
    the same batch shapes for every routing)."""
    ids = prompts
    logits = []
    for _ in range(steps):
        out = model(input_ids=ids).logits[:, -1].float()
        logits.append(out)
        ids = torch.cat([ids, out.argmax(-1, keepdim=True)], dim=1)
    return ids[:, prompts.shape[1]:], logits


def default_implementations() -> list[str]:
    """The family's implementations and mutants (the oracle is the baseline)."""
    fam = routing.family("mixtral")
    return list(fam.implementations) + list(fam.mutants)


def decode(implementations: list[str], *, prompts: int = 8, prompt_len: int = 8, steps: int = 24, seed: int = 0,
           device="cpu", **model_args) -> list[DecodeResult]:
    model = build(seed=seed, device=device, **model_args)
    gen = torch.Generator().manual_seed(seed + 1)
    p = torch.randint(0, model.config.vocab_size, (prompts, prompt_len), generator=gen).to(device)
    restore = route_with(model, "oracle")
    base_tokens, base_logits = greedy(model, p, steps)
    restore()
    results = []
    for name in implementations:
        restore = route_with(model, name)
        tokens, logits = greedy(model, p, steps)
        restore()
        r = DecodeResult(name, steps, prompts, float((tokens == base_tokens).double().mean()))
        for b in range(prompts):
            diff = (tokens[b] != base_tokens[b]).nonzero().flatten()
            first_tok = int(diff[0]) if diff.numel() else None
            lchange = [s for s in range(steps) if not torch.equal(logits[s][b], base_logits[s][b])]
            r.first_token_change.append(first_tok)
            r.first_logit_change.append(lchange[0] if lchange else None)
            upto = steps if first_tok is None else first_tok + 1
            r.max_logit_diff = max(r.max_logit_diff, max(float((logits[s][b] - base_logits[s][b]).abs().max())
                                                         for s in range(upto)))
        results.append(r)
    return results
