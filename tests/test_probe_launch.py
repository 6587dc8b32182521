"""benchmarks/probe_launch's floor kernels run (in the interpreter here): the row-latency kernel
really reads its row and stores K outputs, so the floor it times includes a DRAM round trip, a
reduction and the stores, and the empty kernels launch at every tiling the probe names."""
import torch

from benchmarks import probe_launch


def test_row_latency_reads_each_row_and_stores_k_outputs(dev):
    g = torch.randn(5, 60).to(torch.bfloat16).to(dev)   # the suite's device: the GPU's launcher takes no CPU tensor
    w, ids = probe_launch.row_latency(g, 4, None)
    top = g.float().max(dim=1).values.cpu()
    assert torch.equal(w.cpu(), top[:, None] + torch.arange(4, dtype=torch.float32)[None, :])
    assert torch.equal(ids.cpu(), torch.arange(4, dtype=torch.int32)[None, :] + torch.arange(5, dtype=torch.int32)[:, None])


def test_every_floor_launches_at_odd_batch_sizes(dev):
    for T in (1, 7):
        g = torch.randn(T, 128).to(torch.bfloat16).to(dev)
        for name, fn in probe_launch.FLOORS.items():
            fn(g, 8, None)
