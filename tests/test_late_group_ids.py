"""The grouped kernel's keys packed with their position in their group alone, the group's base id added to the list
heads after the list passes (grouped_kernel's LATE_GROUP_IDS, plan(late_group_ids=True); prepared, off by default):
where plan lets it, and the same weight bits, ids and flags as the default's (and ids the oracle's) for random rows,
rows whose keys tie across groups (only the group's base id orders them), rows whose top keys all lie in one group
(its list runs out: the whole tile's rounds), NaN rows, near ties and groups in doubt (the group test reads the
heads' ids)."""
from __future__ import annotations

import pytest
import torch

from routing_cases import logits, tied_logits
from test_fused_grouped import (SHAPES, _planted_deepseek_rows, near_tie_rows, plan_for, router_for,
                                same_with_and_without)


def test_plan_lets_it_only_for_several_rows_a_program_of_whole_groups_in_lists():
    router = router_for("deepseek-v3", "cpu")
    g = torch.empty(64, 256, dtype=torch.bfloat16)
    assert plan_for(g, 8, router, block_t=4, late_group_ids=True).constexprs["LATE_GROUP_IDS"]
    assert plan_for(g.float(), 8, router, block_t=4, late_group_ids=True).constexprs["LATE_GROUP_IDS"]
    assert not plan_for(g, 8, router, block_t=4).constexprs["LATE_GROUP_IDS"]   # off by default
    assert not plan_for(g, 8, router, block_t=1, late_group_ids=True).constexprs["LATE_GROUP_IDS"]   # one row: no lists
    assert not plan_for(g, 8, router, block_t=4, lists=False, late_group_ids=True).constexprs["LATE_GROUP_IDS"]
    for shape in ("kimi-k2", "glm-4.5", "odd-groups"):   # one group, or groups padded to a power of two
        E, K = SHAPES[shape][:2]
        other = router_for(shape, "cpu")
        assert not plan_for(torch.empty(64, E), K, other, block_t=4, late_group_ids=True).constexprs["LATE_GROUP_IDS"]


def _same_as_the_default(g, K, router, **overrides):
    """Both packings' weight bits, ids and flags equal, the late one's ids the oracle's: the flags of the late run."""
    return same_with_and_without("late_group_ids", g, K, router, **overrides)[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("bias", ["spread", "tied", "wide"])
def test_random_and_tied_rows_as_the_default(bias, dtype, dev):
    E, K = SHAPES["deepseek-v3"][:2]
    router = router_for("deepseek-v3", dev, bias=bias)
    _same_as_the_default(logits(96, E, dtype, dev, seed=13, spread=2.0), K, router)
    if dtype == torch.bfloat16:
        _same_as_the_default(tied_logits(96, E, dev, seed=7), K, router)


def test_keys_tied_across_groups_take_the_lower_group(dev):
    """Every chosen group's keys equal (a constant row, bias 0): the distances tie everywhere and only the ids, the
    group's base in them, order the picks: the oracle's are the lowest ids of the chosen groups."""
    E, K = SHAPES["deepseek-v3"][:2]
    router = router_for("deepseek-v3", dev, bias=torch.zeros(E, device=dev))
    g = torch.zeros(8, E, device=dev)
    g[4:, 33::32] = 1.0   # rows 4..7: each group's second expert above the rest
    _same_as_the_default(g.to(torch.bfloat16), K, router)


@pytest.mark.parametrize("group_test", [False, True], ids=["", "group-test"])
def test_lists_that_run_out_nan_rows_and_groups_in_doubt_as_the_default(group_test, dev):
    E, K = SHAPES["deepseek-v3"][:2]
    per = E // SHAPES["deepseek-v3"][2]
    router = router_for("deepseek-v3", dev, bias="tied")   # 5.0 everywhere: the planted rows' near groups
    g = logits(48, E, torch.float32, dev, seed=11, spread=2.0)
    g[40:44, per:2 * per] += 6.0                   # group 1 holds every top key: its list runs out
    g[44, :] = float("nan")
    g[45:48, :] = -4.0
    g[45:48, :16] = near_tie_rows(dev)[:3]
    planted = _planted_deepseek_rows({0: 1.0, 1: 0.9, 32: 0.95, 33: 0.85, 64: 0.8, 65: 0.75, 96: 0.0, 97: 5e-7,
                                      128: 0.0, 129: 0.0}, range(5, 8), dev)   # groups 3 and 4 near (the group test)
    flags = _same_as_the_default(torch.cat([g, planted]), K, router, group_test=group_test)
    assert flags[44] != 0 and (flags[48:] != 0).all(), f"flags {flags.tolist()}: the rare rows are no longer flagged"


def test_with_word_loads_as_the_default(dev):
    """Both prepared switches on (a side of the A/B) against WORD_LOADS alone: on the GPU WORD_LOADS's pair conversion
    feeds the late ids' packing (on the CPU the default conversion does: the interpreter runs no inline PTX)."""
    E, K = SHAPES["deepseek-v3"][:2]
    router = router_for("deepseek-v3", dev, bias="wide")
    g = torch.cat([logits(64, E, torch.bfloat16, dev, seed=17, spread=2.0), tied_logits(32, E, dev, seed=19)])
    assert plan_for(g, K, router, block_t=4, word_loads=True).constexprs["WORD_LOADS"]
    _same_as_the_default(g, K, router, word_loads=True)
