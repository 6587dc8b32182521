"""User-style candidates for the CLI tests: one correct, two that break the output contract, and
two that say which routers they do not compute (parity.routing.Unsupported)."""

import torch

from parity.routing import Unsupported
from parity.routing.oracle import oracle


def correct(gating_output, topk, per_expert_scale):
    return oracle(gating_output, topk, per_expert_scale)


def wrong_dtype(gating_output, topk, per_expert_scale):
    w, ids = oracle(gating_output, topk, per_expert_scale)
    return w.double(), ids


def wrong_shape(gating_output, topk, per_expert_scale):
    w, ids = oracle(gating_output, topk, per_expert_scale)
    return w[:, :-1], ids


def no_float16(gating_output, topk, per_expert_scale):
    """Correct where it computes; float16 logits it declines, as an engine kernel built without them."""
    if gating_output.dtype == torch.float16:
        raise Unsupported("no_float16: built for float32 and bfloat16 logits only")
    return oracle(gating_output, topk, per_expert_scale)


def computes_nothing(gating_output, topk, per_expert_scale):
    raise Unsupported("computes_nothing: needs E = 7")


NOT_A_FUNCTION = 3
