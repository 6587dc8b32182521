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


def test_min3_configurations_under_caps_only_for_the_word_shape():
    """MIN3 off and on at the table's tile: under the plan's cap, 80 and 72 where Gemma4's words run, else the
    plan's."""
    def settings(E, score="k"):
        return [(c.get("MIN3"), c.get("maxnreg")) for c in configs_for(250000, E, torch.bfloat16, ["min3"], score)[1:]]

    assert settings(128) == [(False, None), (True, None), (False, 80), (True, 80), (False, 72), (True, 72)]
    assert settings(60, "all") == [(False, None), (True, None)]


def test_fp32fma_configurations_only_for_fp32():
    """fp32 keys by multiplies and MIN3, each off and on, uncapped and under 64 registers, and at twice the table's
    rows a warp; nothing for 16-bit logits."""
    cfgs = configs_for(250000, 128, torch.float32, ["fp32fma"])
    table = cfgs[0]["BLOCK_T"]
    assert [(c["BLOCK_T"], c.get("FMA_KEYS"), c.get("MIN3"), c.get("maxnreg")) for c in cfgs[1:]] == [
        (table, 0, False, None), (table, 1, False, None), (table, 0, True, None), (table, 1, True, None),
        (table, 0, False, 64), (table, 1, False, 64), (table, 0, True, 64), (table, 1, True, 64),
        (2 * table, 0, False, None), (2 * table, 1, False, None),
        (2 * table, 0, True, None), (2 * table, 1, True, None)]
    assert configs_for(250000, 128, torch.bfloat16, ["fp32fma"]) == configs_for(250000, 128, torch.bfloat16, [])
