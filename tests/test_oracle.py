import math

import torch

from parity.routing.oracle import order, oracle, route64

inf, nan = float("inf"), float("nan")


def test_order_descending_with_ties_to_lower_id():
    g = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert order(g)[0].tolist() == [1, 2, 4, 3, 0]


def test_nan_ranks_above_inf_and_nans_by_id():
    g = torch.tensor([[inf, nan, 0.0, nan, -inf]])
    assert order(g)[0].tolist() == [1, 3, 0, 2, 4]


def test_negative_zero_ties_with_zero():
    g = torch.tensor([[-0.0, 0.0, -1.0]])
    assert order(g)[0].tolist() == [0, 1, 2]


def test_weights_are_scaled_softmax_over_chosen():
    g = torch.tensor([[0.0, 2.0, 1.0, -5.0]])
    s = torch.tensor([1.0, 2.0, 3.0, 4.0])
    w, ids = route64(g, 2, s)
    assert ids.tolist() == [[1, 2]]
    z = math.exp(2.0) + math.exp(1.0)
    assert w[0].tolist() == [math.exp(2.0) / z * 2.0, math.exp(1.0) / z * 3.0]


def test_rows_with_nan_or_inf_or_all_minus_inf_get_nan_weights():
    g = torch.tensor([[nan, 0.0, 1.0], [inf, 0.0, 1.0], [-inf, -inf, -inf], [-inf, 0.0, 1.0]])
    w, ids = oracle(g, 2, torch.ones(3))
    assert torch.isnan(w[:3]).all()
    assert ids.tolist() == [[0, 2], [0, 2], [0, 1], [2, 1]]
    assert w.dtype == torch.float32 and ids.dtype == torch.int32
    assert torch.isfinite(w[3]).all()


def test_fewer_finite_than_k_gives_zero_weight_to_minus_inf():
    g = torch.tensor([[-inf, 0.5, -inf, -inf]])
    w, ids = oracle(g, 3, torch.ones(4))
    assert ids.tolist() == [[1, 0, 2]]
    assert w.tolist() == [[1.0, 0.0, 0.0]]


def test_empty_batch():
    w, ids = oracle(torch.empty(0, 8), 2, torch.ones(8))
    assert w.shape == (0, 2) and ids.shape == (0, 2)
