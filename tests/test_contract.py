"""Bad arguments raise before any launch, naming the argument, the expected and the received."""
import pytest
import torch

from parity import routing
from parity.routing.fused import MAX_EXPERTS

IMPLS = ["fused", "softmax_all", "topk_softmax", "oracle", "sort_baseline"]


def good(dev):
    return torch.randn(4, 16, device=dev), 2, torch.rand(16, device=dev)


CASES = [
    # (what is wrong, builder(g, k, s) -> args, exception, message pattern)
    ("gating not a tensor", lambda g, k, s: (g.tolist(), k, s), TypeError, r"gating_output: expected a torch.Tensor, got list"),
    ("integer gating", lambda g, k, s: (g.to(torch.int32), k, s), TypeError, r"gating_output: expected dtype float32, bfloat16 or float16, got torch.int32"),
    ("float64 gating", lambda g, k, s: (g.double(), k, s), TypeError, r"got torch.float64"),
    ("1-D gating", lambda g, k, s: (g[0], k, s), ValueError, r"gating_output: expected a 2-D tensor \[T, E\], got 1-D with shape \(16,\)"),
    ("3-D gating", lambda g, k, s: (g[None], k, s), ValueError, r"got 3-D with shape \(1, 4, 16\)"),
    ("no experts", lambda g, k, s: (g[:, :0], 1, s[:0]), ValueError, r"E >= 1\), got E=0"),
    ("topk zero", lambda g, k, s: (g, 0, s), ValueError, r"topk: expected 1 <= topk <= E=16, got topk=0"),
    ("topk above E", lambda g, k, s: (g, 17, s), ValueError, r"topk: expected 1 <= topk <= E=16, got topk=17"),
    ("topk float", lambda g, k, s: (g, 2.0, s), TypeError, r"topk: expected an int, got float"),
    ("topk bool", lambda g, k, s: (g, True, s), TypeError, r"topk: expected an int, got bool"),
    ("scale not a tensor", lambda g, k, s: (g, k, 1.0), TypeError, r"per_expert_scale: expected a torch.Tensor, got float"),
    ("integer scale", lambda g, k, s: (g, k, s.to(torch.int64)), TypeError, r"per_expert_scale: expected a floating dtype, got torch.int64"),
    ("scale too short", lambda g, k, s: (g, k, s[:15]), ValueError, r"per_expert_scale: expected shape \(16,\) to match gating_output's E=16, got \(15,\)"),
    ("scale 2-D", lambda g, k, s: (g, k, s[None]), ValueError, r"got \(1, 16\)"),
    ("scale on another device", lambda g, k, s: (g, k, s.to("meta")), ValueError, r"per_expert_scale: expected device .*, got meta"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_argument(impl, case, dev):
    _, build, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        routing.get(impl)(*build(*good(dev)))


def test_fused_refuses_too_many_experts(dev):
    E = MAX_EXPERTS + 1
    with pytest.raises(ValueError, match=rf"gating_output: expected at most {MAX_EXPERTS} experts .*got E={E}"):
        routing.get("fused")(torch.randn(2, E, device=dev), 2, torch.ones(E, device=dev))


@pytest.mark.gpu
def test_fused_refuses_cpu_tensors_on_a_gpu_machine():
    with pytest.raises(ValueError, match=r"gating_output: expected a tensor on cuda .*got cpu"):
        routing.get("fused")(torch.randn(2, 16), 2, torch.ones(16))


def test_registry():
    assert set(IMPLS) <= set(routing.names())
    with pytest.raises(KeyError, match=r"no routing implementation named 'nope'; known: .*fused"):
        routing.get("nope")
    with pytest.raises(ValueError, match=r"the name 'fused' is taken"):
        routing.register("fused", lambda g, k, s: None)
    with pytest.raises(TypeError, match=r"expected a callable"):
        routing.register("x", 3)


def test_a_correction_bias_is_checked_again_after_it_changes():
    """The finiteness of a bias is read from the device once per tensor version (so CUDA graphs can
    capture a validated call); writing a NaN into the same tensor is caught on the next call."""
    from parity.routing.contract import validate_router
    from parity.routing.router import Router

    bias = torch.zeros(8)
    router = Router("sigmoid", correction_bias=bias)
    validate_router(torch.zeros(2, 8), 2, router)
    validate_router(torch.zeros(2, 8), 2, router)
    bias[3] = float("nan")
    with pytest.raises(ValueError, match="correction_bias: expected finite values"):
        validate_router(torch.zeros(2, 8), 2, router)
