"""Deliberately wrong routings: one realistic fused-kernel bug each, to test tolerances against.

A tolerance policy is only worth its name if it fails a kernel that is wrong. Each mutant here is
the correct fused computation (oracle order, logits upcast to fp32, softmax over the K chosen with
the first slot's logit subtracted, times ``per_expert_scale[id]``) with exactly one bug that has
shipped, or easily could, in a routing kernel. They share the routing contract, so the sweep runs
them like any implementation and records, per policy, "caught" or "missed".

Some bugs bite only on special inputs (``SPECIAL_INPUTS``): a policy that misses ``ties-high`` on
tie-free logits is not too loose; the grid simply never showed it the bug.
"""
from __future__ import annotations

import torch

from parity.routing.contract import Problem, RoutingFn, validate
from parity.routing.oracle import order

APPROX_EXP_REL_ERROR = 1e-3
"""The largest relative error of ``mutant-approx-exp``'s exp: a cheap polynomial's accuracy."""


def _select(gating_output, topk, per_expert_scale) -> tuple[Problem, torch.Tensor]:
    """Validate, then the correct ids [T, K] (int64, oracle order) on the input's device."""
    p = validate(gating_output, topk, per_expert_scale)
    return p, order(gating_output)[:, : p.K]


def _logits(gating_output: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The chosen logits upcast to fp32, as a fused kernel loads them."""
    return gating_output.float().gather(1, ids)


def _scale(per_expert_scale: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return per_expert_scale.float()[ids]


def _exp_shifted(v: torch.Tensor) -> torch.Tensor:
    """exp(v - v[:, 0]): slot 0 holds the row's largest logit (NaN and +inf there poison the row)."""
    return torch.exp(v - v[:, :1])


def _softmax(v: torch.Tensor) -> torch.Tensor:
    """The correct fp32 softmax over the K chosen logits."""
    e = _exp_shifted(v)
    return e / e.sum(dim=-1, keepdim=True)


def _out(weights: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return weights.float().contiguous(), ids.to(torch.int32).contiguous()


def no_scale(gating_output, topk, per_expert_scale):
    """Forgets ``per_expert_scale``: the easiest line to drop when porting from a Mixtral router."""
    _, ids = _select(gating_output, topk, per_expert_scale)
    return _out(_softmax(_logits(gating_output, ids)), ids)


def scale_by_slot(gating_output, topk, per_expert_scale):
    """Loads the scale with the slot index instead of the expert id (``scale_ptr + slots``)."""
    p, ids = _select(gating_output, topk, per_expert_scale)
    return _out(_softmax(_logits(gating_output, ids)) * per_expert_scale.float()[: p.K], ids)


def no_renorm(gating_output, topk, per_expert_scale):
    """Softmax over all E experts, keeps the chosen K and forgets to renormalise them: the
    weights sum to the chosen experts' probability mass, below one."""
    _, ids = _select(gating_output, topk, per_expert_scale)
    probs = torch.softmax(gating_output.float(), dim=-1).gather(1, ids)
    return _out(probs * _scale(per_expert_scale, ids), ids)


def duplicate(gating_output, topk, per_expert_scale):
    """The last slot repeats the top expert (a selection loop that failed to mask its first
    pick), weighted as a real slot and renormalised over the K. A no-op when K = 1."""
    _, ids = _select(gating_output, topk, per_expert_scale)
    ids = ids.clone()
    ids[:, -1] = ids[:, 0]
    return _out(_softmax(_logits(gating_output, ids)) * _scale(per_expert_scale, ids), ids)


def ties_high(gating_output, topk, per_expert_scale):
    """Equal logits go to the higher expert id (``>=`` where ``>`` was meant in an argmax loop);
    correct everywhere else."""
    p = validate(gating_output, topk, per_expert_scale)
    # The oracle's rule on the reversed columns picks the higher id among equals; map ids back.
    ids = (p.E - 1) - order(gating_output.flip(-1))[:, : p.K]
    return _out(_softmax(_logits(gating_output, ids)) * _scale(per_expert_scale, ids), ids)


def bf16_sum(gating_output, topk, per_expert_scale):
    """The softmax denominator accumulated in a bf16 register: rounded to bf16 after every
    addition, in slot order (relative error up to about K * 2**-9)."""
    p, ids = _select(gating_output, topk, per_expert_scale)
    e = _exp_shifted(_logits(gating_output, ids))
    total = torch.zeros_like(e[:, 0])
    for k in range(p.K):
        total = (total + e[:, k]).bfloat16().float()
    return _out(e / total[:, None] * _scale(per_expert_scale, ids), ids)


def no_max_sub(gating_output, topk, per_expert_scale):
    """Softmax without subtracting the max: exp overflows to inf above ~88.7 (NaN weights) and
    underflows to 0 when every chosen logit is below ~-103 (0/0, NaN); fine elsewhere."""
    _, ids = _select(gating_output, topk, per_expert_scale)
    e = torch.exp(_logits(gating_output, ids))
    return _out(e / e.sum(dim=-1, keepdim=True) * _scale(per_expert_scale, ids), ids)


def bf16_logits(gating_output, topk, per_expert_scale):
    """The chosen logits round-tripped through bf16 (a bf16 staging buffer in an fp32 path) before
    the softmax; selection is correct. Exact on bf16 inputs, ~|x| * 2**-9 relative on others."""
    _, ids = _select(gating_output, topk, per_expert_scale)
    v = _logits(gating_output, ids).bfloat16().float()
    return _out(_softmax(v) * _scale(per_expert_scale, ids), ids)


def _wobble(x: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random function of x's fp32 bit pattern, in [-1, 1): an integer hash, so it
    is the same on every device (a sin-based hash would not be)."""
    mask = 0xFFFFFFFF
    h = x.view(torch.int32).long() & mask
    for _ in range(2):  # two rounds of a well-known 32-bit multiply-xorshift hash; products < 2**59
        h = (((h >> 16) ^ h) * 0x45D9F3B) & mask
    h = (h >> 16) ^ h
    return (h & 0xFFFFFF).float() / 2**23 - 1.0


def approx_exp(gating_output, topk, per_expert_scale):
    """A fast exp with up to 1e-3 relative error (a low-degree polynomial, an ``ex2.approx`` with
    a sloppy range reduction), modelled as exp(x) * (1 + 1e-3 * f(x)) with f fixed in [-1, 1)."""
    _, ids = _select(gating_output, topk, per_expert_scale)
    v = _logits(gating_output, ids)
    d = v - v[:, :1]
    e = torch.exp(d) * (1.0 + APPROX_EXP_REL_ERROR * _wobble(d))
    return _out(e / e.sum(dim=-1, keepdim=True) * _scale(per_expert_scale, ids), ids)


def fp16_weights(gating_output, topk, per_expert_scale):
    """Weights stored through an fp16 buffer before the fp32 output (2**-11 relative; weights
    below ~6e-5 lose more as fp16 subnormals, below ~3e-8 become 0)."""
    _, ids = _select(gating_output, topk, per_expert_scale)
    w = _softmax(_logits(gating_output, ids)) * _scale(per_expert_scale, ids)
    return _out(w.half(), ids)


def sum_k_minus_1(gating_output, topk, per_expert_scale):
    """The denominator loop stops one slot early (``range(K - 1)``): weights sum above one, and
    K = 1 divides by zero (inf)."""
    p, ids = _select(gating_output, topk, per_expert_scale)
    e = _exp_shifted(_logits(gating_output, ids))
    return _out(e / e[:, : p.K - 1].sum(dim=-1, keepdim=True) * _scale(per_expert_scale, ids), ids)


MUTANTS: dict[str, RoutingFn] = {
    "mutant-no-scale": no_scale,
    "mutant-scale-by-slot": scale_by_slot,
    "mutant-no-renorm": no_renorm,
    "mutant-duplicate": duplicate,
    "mutant-ties-high": ties_high,
    "mutant-bf16-sum": bf16_sum,
    "mutant-no-max-sub": no_max_sub,
    "mutant-bf16-logits": bf16_logits,
    "mutant-approx-exp": approx_exp,
    "mutant-fp16-weights": fp16_weights,
    "mutant-sum-k-minus-1": sum_k_minus_1,
}

DESCRIPTIONS: dict[str, str] = {
    "mutant-no-scale": "Forgets per_expert_scale; any policy comparing weights at rtol below the "
                       "scale's spread from 1 catches it.",
    "mutant-scale-by-slot": "Multiplies by per_expert_scale[slot] instead of [id]; caught by any "
                            "weight comparison when the scale varies across experts.",
    "mutant-no-renorm": "Softmax over all E without renormalising the chosen K (weights sum below "
                        "one); caught by any weight comparison unless the top K hold all the mass.",
    "mutant-duplicate": "Repeats the top expert in the last slot (K >= 2); caught by an exact id "
                        "check, and by weights compared by expert id.",
    "mutant-ties-high": "Breaks equal logits toward the higher id; only an id check on inputs with "
                        "ties at the K-th place, measured against the lower-id rule, catches it.",
    "mutant-bf16-sum": "Accumulates the softmax denominator in bf16 (~1e-3..1e-2 relative); a "
                       "policy must allow less than ~1e-3 relative on fp32-path weights.",
    "mutant-no-max-sub": "Softmax without max subtraction (NaN weights for logits > ~88.7 or all "
                         "below ~-103); only inputs with such logits and a NaN-aware check catch it.",
    "mutant-bf16-logits": "Rounds the chosen logits to bf16 before the softmax (~|x| * 2**-9 "
                          "relative, none on bf16 inputs); needs rtol well below 1e-2 on fp32 inputs.",
    "mutant-approx-exp": "An exp with up to 1e-3 relative error; a policy must allow well under "
                         "1e-3 relative to catch it.",
    "mutant-fp16-weights": "Rounds the weights to fp16 (2**-11 relative); caught only by a policy "
                           "tighter than ~5e-4 relative.",
    "mutant-sum-k-minus-1": "The denominator skips the last slot (weights sum above one, inf at "
                            "K = 1); caught by any weight comparison.",
}

SPECIAL_INPUTS: dict[str, str] = {
    "mutant-ties-high": "logits with a tie at the K-th place (bf16/fp16 or coarse-grid logits)",
    "mutant-no-max-sub": "a chosen logit above ~88.7, or all chosen logits below ~-103",
}
"""Mutants that agree with the truth (to fp32 rounding) on plain random-normal fp32 logits, and the
inputs they need to show their bug. Every other mutant is wrong on any input with K >= 2."""
