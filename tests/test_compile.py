"""`fused` is a torch custom op: torch.compile(fullgraph=True) captures a caller with no graph break."""
import torch

from parity.routing.fused import fused
from routing_cases import logits, scale


def moe_gate(g: torch.Tensor, s: torch.Tensor):
    weights, ids = fused(g, 8, s)
    return weights * 2.0, ids + 1


def test_fullgraph_compile_gives_the_same_output(dev):
    g, s = logits(64, 128, torch.bfloat16, dev, seed=31), scale(128, dev)
    torch._dynamo.reset()
    compiled = torch.compile(moe_gate, fullgraph=True)
    got, want = compiled(g, s), moe_gate(g, s)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_fake_tensor_shapes(dev):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        w, ids = fused(torch.empty(5, 128, device=dev), 8, torch.empty(128, device=dev))
    assert w.shape == (5, 8) and w.dtype == torch.float32 and ids.dtype == torch.int32
