"""PARITY_SHARD splits the suite into disjoint parts that together hold every test (tests/conftest.py)."""
import pytest

from conftest import in_shard, parse_shard

IDS = [f"tests/test_{m}.py::test_{t}[{p}]" for m in ("fused", "properties", "cli") for t in range(40) for p in "ab"]
SWEEP = [f"tests/sweep/test_grid.py::test_case[T{t}]" for t in range(30)]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_partition_the_suite(n):
    owners = [[i for i in range(1, n + 1) if in_shard(nodeid, i, n)] for nodeid in IDS + SWEEP]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(o == [i] for o in owners[:len(IDS)]) for i in range(1, n + 1)]
    assert min(sizes) >= len(IDS) / n / 2, sizes  # no shard left nearly empty


def test_the_sweep_stays_in_one_shard():
    assert len({next(i for i in (1, 2, 3) if in_shard(nodeid, i, 3)) for nodeid in SWEEP}) == 1


@pytest.mark.parametrize("text", ["x", "1", "0/2", "3/2", "1/0", "a/b"])
def test_bad_shards_are_usage_errors(text):
    with pytest.raises(pytest.UsageError, match="PARITY_SHARD"):
        parse_shard(text)


def test_good_shard():
    assert parse_shard("2/3") == (2, 3)
