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


def test_caps_configurations_by_shape():
    """The table's tile under the plan's cap (the first row), and under 80 and 72 at E = 128 16-bit tiles of several
    rows, 64 at fp32 ones; nothing more where the table runs a row a program or for other 16-bit shapes."""
    def caps(E, dtype, T=250000, score="k"):
        cfgs = configs_for(T, E, dtype, ["caps"], score)
        assert all(c == {**cfgs[0], "maxnreg": c["maxnreg"]} for c in cfgs[1:])
        return [c["maxnreg"] for c in cfgs[1:]]

    assert caps(128, torch.bfloat16) == [80, 72]
    assert caps(128, torch.float32) == [64]
    assert caps(60, torch.bfloat16, score="all") == []
    assert caps(128, torch.bfloat16, T=8) == []
