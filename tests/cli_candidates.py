"""User-style candidates for the CLI tests: one correct, two that break the output contract."""

from parity.routing.oracle import oracle


def correct(gating_output, topk, per_expert_scale):
    return oracle(gating_output, topk, per_expert_scale)


def wrong_dtype(gating_output, topk, per_expert_scale):
    w, ids = oracle(gating_output, topk, per_expert_scale)
    return w.double(), ids


def wrong_shape(gating_output, topk, per_expert_scale):
    w, ids = oracle(gating_output, topk, per_expert_scale)
    return w[:, :-1], ids


NOT_A_FUNCTION = 3
