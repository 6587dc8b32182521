"""Routing kernels as a user brings them to ``parity sweep --candidate module:function``: written
outside parity, with torch alone, under the routing contract ``(gating_output, topk,
per_expert_scale) -> (weights float32 [T, K], ids int32 [T, K])``.

Three are correct (one with another tie rule, one not batch-invariant); one follows another convention for NaN
logits; the rest carry one bug each. tests/test_candidates.py says what parity must conclude of each.
"""
import torch

BAD_ROW_EVERY = 100
"""one_expert_off: the rows that carry the bug (1%)."""
OFF_BY = 1e-3
"""one_expert_off: the relative error of the top expert's weight in those rows."""
FLIP_ROW_EVERY = 50
"""near_tie_flip: the rows where the K-th and (K+1)-th experts are swapped."""


def _softmax_fp32(values: torch.Tensor) -> torch.Tensor:
    """Softmax over the chosen logits in fp32, written out: largest subtracted, exp, sum, divide."""
    e = torch.exp(values - values[:, :1])
    return e / e.sum(-1, keepdim=True)


def fp32_topk_softmax(gating_output, topk, per_expert_scale):
    """Correct, and written differently from parity's kernel: torch.topk on fp32 logits (whose tie
    rule is the backend's), a plain fp32 softmax without TwoSum, times the scale in fp32."""
    values, ids = torch.topk(gating_output.float(), topk, dim=-1)
    weights = _softmax_fp32(values) * per_expert_scale.float()[ids]
    return weights, ids.to(torch.int32)


def higher_id_ties(gating_output, topk, per_expert_scale):
    """Correct, with the other tie rule: among equal logits the higher expert id wins (a stable
    descending sort of the columns reversed)."""
    x = gating_output.float()
    E = x.shape[1]
    ids = (E - 1) - torch.sort(x.flip(-1), dim=-1, descending=True, stable=True).indices[:, :topk]
    weights = _softmax_fp32(x.gather(1, ids)) * per_expert_scale.float()[ids]
    return weights, ids.to(torch.int32)


def one_expert_off(gating_output, topk, per_expert_scale):
    """Bug: in one row of every BAD_ROW_EVERY the top expert's weight is OFF_BY too large."""
    weights, ids = fp32_topk_softmax(gating_output, topk, per_expert_scale)
    weights[::BAD_ROW_EVERY, 0] *= 1 + OFF_BY
    return weights, ids


def scale_ignored_for_expert_0(gating_output, topk, per_expert_scale):
    """Bug: expert 0's weight is not multiplied by its per_expert_scale."""
    values, ids = torch.topk(gating_output.float(), topk, dim=-1)
    scale = per_expert_scale.float()[ids]
    scale = torch.where(ids == 0, torch.ones_like(scale), scale)
    return _softmax_fp32(values) * scale, ids.to(torch.int32)


def near_tie_flip(gating_output, topk, per_expert_scale):
    """Bug: in one row of every FLIP_ROW_EVERY the K-th expert is replaced by the (K+1)-th (an
    off-by-one in a selection loop); whether that is a near-tie or a genuine flip depends on the
    gap between their logits."""
    x = gating_output.float()
    K = topk
    order = torch.sort(x, dim=-1, descending=True, stable=True).indices
    ids = order[:, :K].clone()
    if x.shape[1] > K:
        ids[::FLIP_ROW_EVERY, K - 1] = order[::FLIP_ROW_EVERY, K]
    weights = _softmax_fp32(x.gather(1, ids)) * per_expert_scale.float()[ids]
    return weights, ids.to(torch.int32)


def softmax_in_input_dtype(gating_output, topk, per_expert_scale):
    """The softmax runs in the logits' dtype (a bf16 softmax inside a kernel meant to compute in
    fp32: the upcast was forgotten). Exact selection; weights rounded like a torch reference's."""
    values, ids = torch.topk(gating_output, topk, dim=-1)
    weights = torch.softmax(values, dim=-1) * per_expert_scale.to(gating_output.dtype)[ids]
    return weights.float(), ids.to(torch.int32)


def nan_ranked_lowest(gating_output, topk, per_expert_scale):
    """Another convention for NaN: a NaN logit ranks below every number (the oracle and torch.topk
    rank it above +inf), so a row with a NaN gets finite weights from its other logits."""
    x = gating_output.float()
    x = torch.where(torch.isnan(x), torch.full_like(x, float("-inf")), x)
    values, ids = torch.topk(x, topk, dim=-1)
    weights = _softmax_fp32(values) * per_expert_scale.float()[ids]
    return weights, ids.to(torch.int32)


SMALL_BATCH = 64
"""batch_size_dispatch: batches of at most this many rows take the other path."""


def batch_size_dispatch(gating_output, topk, per_expert_scale):
    """Correct on every batch, but not batch-invariant: small batches (decode) take a float64 path,
    larger ones the fp32 one, as kernels that dispatch on the batch size do. A token's weights
    then depend, in their last bits, on the batch it came in."""
    x = gating_output.float()
    ids = torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :topk]
    if x.shape[0] <= SMALL_BATCH:
        p = torch.softmax(x.gather(1, ids).double(), dim=-1)
        return (p * per_expert_scale.double()[ids]).float(), ids.to(torch.int32)
    return _softmax_fp32(x.gather(1, ids)) * per_expert_scale.float()[ids], ids.to(torch.int32)
