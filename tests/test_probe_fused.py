"""benchmarks/probe_fused.py's configurations, checked without a GPU: the table's tile first, then
the kinds asked for."""
import torch

from benchmarks.probe_fused import configs_for
from parity.routing.fused import tile


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
