"""benchmarks/probe_fused.py's configurations, checked without a GPU: the table's tile first, then
the kinds asked for."""
import torch

from benchmarks.probe_fused import configs_for, launcher
from parity import device
from parity.routing.fused import tile
from parity.routing.oracle import route64
from parity.routing.router import Router


def test_words_configurations_follow_the_table_tile():
    table = tile(250000, 128, torch.bfloat16, interpreter=False)
    cfgs = configs_for(250000, 128, torch.bfloat16, ["words"])
    assert cfgs[0] == {"kernel": "rounds", "BLOCK_T": table.block_t, "warps": table.num_warps, "VEC": table.vec}
    words = [(c.get("WORD_MAXIMA"), c.get("maxnreg")) for c in cfgs[1:]]
    assert words == [(False, None), (True, None), (True, 96), (True, 88), (True, 80), (True, 72), (False, 88)]
    assert all(c["BLOCK_T"] == table.block_t and c["VEC"] == table.vec for c in cfgs)


def test_fp32keys_configurations_only_for_fp32():
    cfgs = configs_for(250000, 128, torch.float32, ["fp32keys"])
    assert [c.get("FP32_UNCHECKED") for c in cfgs] == [None, False, True]
    assert configs_for(250000, 128, torch.bfloat16, ["fp32keys"]) == configs_for(250000, 128, torch.bfloat16, [])


def test_regs_configurations_are_the_table_tile_under_caps():
    """regs: the table's tile (the first row) again under each cap, nothing else changed."""
    cfgs = configs_for(250000, 128, torch.bfloat16, ["regs"])
    assert [c.get("maxnreg") for c in cfgs[1:]] == [64, 72, 80, 88, 96]
    assert all(c == {**cfgs[0], "maxnreg": c["maxnreg"]} for c in cfgs[1:])


def test_rounds_without_pairs_route_as_the_oracle_where_the_table_reads_words():
    """The rounds configurations that read 16-bit logits one by one (PAIRS False) at Gemma4's shape, whose table
    tile reads words under picks_by_word: they launch without picks_by_word and its lane-less ids, and route as the
    oracle (an H100 run of the default configurations stopped at the first of them on the kernel's static assert).
    The inputs lie where the kernels run: on a GPU the launch refuses CPU tensors."""
    T, E, K = 32, 128, 8
    torch.manual_seed(0)
    g, s = torch.randn(T, E).to(torch.bfloat16), torch.rand(E)
    oracle_ids = route64(g, K, Router("softmax", True, per_expert_scale=s))[1]
    cfgs = [c for c in configs_for(250000, E, torch.bfloat16, ["rounds"]) if c.get("PAIRS") is False]
    assert cfgs
    on = device.default()
    for cfg in cfgs[:2]:
        w, ids = torch.empty(T, K, device=on), torch.empty(T, K, dtype=torch.int32, device=on)
        launcher(cfg, g.to(on), s.to(on), w, ids, K)()
        assert torch.equal(ids.long().cpu(), oracle_ids), cfg
