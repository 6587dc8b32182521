"""scripts/probe_list_depth.py: the most of a row's first picks that one chosen group holds, against a row-by-row
count written out plainly."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location(
    "probe_list_depth", Path(__file__).resolve().parents[1] / "scripts" / "probe_list_depth.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def _by_hand(x, bias, n_group, topk_group, picks):
    per = x.shape[1] // n_group
    out = []
    for row in x.double():
        s = torch.sigmoid(row) + bias.double()
        groups = sorted(range(n_group), key=lambda g: (-sorted(s[g * per:(g + 1) * per].tolist())[-2:][0]
                                                       - sorted(s[g * per:(g + 1) * per].tolist())[-1], g))
        chosen = set(groups[:topk_group])
        experts = sorted((e for e in range(x.shape[1]) if e // per in chosen), key=lambda e: (-s[e].item(), e))
        first = [e // per for e in experts[:picks]]
        out.append(max(first.count(g) for g in chosen))
    return out


def test_the_count_matches_a_plain_one():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 32, generator=gen)
    bias = torch.randn(32, generator=gen) * 0.1
    got = probe.most_picks_in_a_group(x, bias, 4, 2, 5, chunk=64)
    assert got.tolist() == _by_hand(x, bias, 4, 2, 5)
    assert 3 <= got.max() <= 5   # some row puts most of its picks in one group


def test_ties_go_to_the_lower_id():
    # expert 0 first, then experts 1, 4 and 5 tie: the lower id (1, group 0) takes the second pick; the higher (5,
    # group 1) would leave each group one pick
    x = torch.tensor([[1.0, 0.0, -5.0, -5.0, 0.0, 0.0, -5.0, -5.0]])
    assert probe.most_picks_in_a_group(x, torch.zeros(8), 2, 2, 2).tolist() == [2]
