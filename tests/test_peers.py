"""benchmarks/peers.py and scripts/fetch_peers.py without a GPU.

The engines' ops run on CUDA only; here each op is replaced by a stand-in with the op's exact schema
(argument names and order, as the extensions register them) that routes with parity's oracle under
the router its arguments describe. An adapter that passes an argument in the wrong place, forgets a
flag, applies the scaling factor twice or drops Gemma4's per-expert scale then routes differently
from the oracle of the model's own router. The table of which peer computes which model is fixed
too: a peer that declines a router it computes (or takes one it does not) fails it.
"""
from __future__ import annotations

import inspect
import lzma
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import peers
from parity import inputs, routing
from parity.routing import Unsupported
from parity.routing.oracle import route64
from parity.routing.router import Router
from script_modules import script_module


def _routed(g: torch.Tensor, K: int, router: Router) -> tuple[torch.Tensor, torch.Tensor]:
    w, ids = route64(g, K, router)
    return w.float(), ids.to(torch.int32)


class Op:
    """A stand-in op: ``fn`` called with the registered schema's arguments, by position."""

    def __init__(self, fn):
        self.fn = fn
        self._schema = SimpleNamespace(arguments=[SimpleNamespace(name=n) for n in inspect.signature(fn).parameters])

    def __call__(self, *args):
        assert len(args) == len(self._schema.arguments), "called with another number of arguments than the schema"
        return self.fn(*args)


def _fill(weights, ids, routed):
    weights.copy_(routed[0])
    ids.copy_(routed[1])


# SGLang sglang-kernel 0.4.4 (schemas as registered; tests print them on the GPU: benchmarks.peers)
def sgl_topk_softmax(topk_weights, topk_indices, gating_output, renormalize, moe_softcapping, correction_bias):
    assert moe_softcapping == 0.0 and correction_bias is None
    _fill(topk_weights, topk_indices, _routed(gating_output, topk_weights.shape[1], Router("softmax", renormalize)))


def sgl_topk_sigmoid(topk_weights, topk_indices, gating_output, renormalize, correction_bias):
    router = Router("sigmoid", renormalize, correction_bias=correction_bias)
    _fill(topk_weights, topk_indices, _routed(gating_output, topk_weights.shape[1], router))


def sgl_moe_fused_gate(input, bias, num_expert_group, topk_group, topk, num_fused_shared_experts,
                       routed_scaling_factor, apply_routed_scaling_factor_on_output):
    assert num_fused_shared_experts == 0
    router = Router("sigmoid", True, routed_scaling_factor if apply_routed_scaling_factor_on_output else 1.0,
                    num_expert_group, topk_group, correction_bias=bias)
    return list(_routed(input, topk, router))


# vLLM 0.26.0
def vllm_topk_softmax(topk_weights, topk_indices, token_expert_indices, gating_output, renormalize, bias):
    assert bias is None and token_expert_indices.dtype == torch.int32
    _fill(topk_weights, topk_indices, _routed(gating_output, topk_weights.shape[1], Router("softmax", renormalize)))


def vllm_topk_sigmoid(topk_weights, topk_indices, token_expert_indices, gating_output, renormalize, bias,
                      routed_scaling_factor):
    assert bias is None or bias.dtype == torch.float32
    router = Router("sigmoid", renormalize, routed_scaling_factor, correction_bias=bias)
    _fill(topk_weights, topk_indices, _routed(gating_output, topk_weights.shape[1], router))


def vllm_grouped_topk(scores, n_group, topk_group, topk, renormalize, routed_scaling_factor, bias, scoring_func):
    assert scoring_func == 1, "sigmoid routers are called with scoring_func 1 (raw logits)"
    router = Router("sigmoid", renormalize, routed_scaling_factor, n_group, topk_group, correction_bias=bias)
    return _routed(scores, topk, router)


def triton_kernels_topk(x, k, apply_softmax=True):
    """OpenAI's topk: the softmax over the K largest logits, stored in the logits' dtype, int16 ids."""
    assert apply_softmax
    w, ids = _routed(x, k, Router("softmax", True))
    return SimpleNamespace(vals=w.to(x.dtype), indx=ids.to(torch.int16))


SGL_OPS = {"topk_softmax": sgl_topk_softmax, "topk_sigmoid": sgl_topk_sigmoid, "moe_fused_gate": sgl_moe_fused_gate}
VLLM_OPS = {"topk_softmax": vllm_topk_softmax, "topk_sigmoid": vllm_topk_sigmoid, "grouped_topk": vllm_grouped_topk}
ADAPTERS = {**{name: fn for table in peers.EXTENSION_PEERS.values() for name, (_, fn) in table.items()},
            "triton_kernels_topk": peers.triton_kernels_topk}
SOFTMAX = {"gemma4", "qwen3-moe", "mixtral-8x7b", "qwen2-moe", "gpt-oss-120b", "gpt-oss-20b"}
COMPUTES = {   # peer -> the models whose router it computes
    "sglang_topk_softmax": SOFTMAX,
    "vllm_topk_softmax": SOFTMAX,
    "triton_kernels_topk": SOFTMAX - {"qwen2-moe"},                      # softmax over the K only
    "sglang_topk_sigmoid": {"llama4-maverick", "llama4-scout", "kimi-k2", "glm-4.5"},   # no groups
    "vllm_topk_sigmoid": {"llama4-maverick", "llama4-scout", "kimi-k2", "glm-4.5"},
    "sglang_moe_fused_gate": {"deepseek-v3"},                            # E a power of two
    "vllm_grouped_topk": {"deepseek-v3", "kimi-k2", "glm-4.5"},          # any sigmoid router with a bias
}
MODELS = [(fam, m) for fam in map(routing.family, ("gemma4", "mixtral", "gpt_oss", "deepseek_v3", "llama4"))
          for m in fam.models]


@pytest.fixture
def stand_in_ops(monkeypatch):
    monkeypatch.setattr(peers, "_sgl_op", lambda name: Op(SGL_OPS[name]))
    monkeypatch.setattr(peers, "_vllm_op", lambda name: Op(VLLM_OPS[name]))
    monkeypatch.setattr(peers, "_triton_kernels_topk", lambda: triton_kernels_topk)


def test_the_peers_table_names_every_adapter():
    assert set(COMPUTES) == set(ADAPTERS)


@pytest.mark.parametrize("peer", sorted(ADAPTERS))
def test_each_peer_routes_the_models_it_computes_as_the_oracle_and_declines_the_rest(peer, stand_in_ops):
    computed = set()
    for fam, model in MODELS:
        inp = inputs.make("randn", 33, model.E, torch.float32, 5, "cpu")
        router = fam.make_router(model, "randn", 5, inp.per_expert_scale)
        arg, g = fam.argument(router), inp.gating_output
        try:
            w, ids = ADAPTERS[peer](g, model.K, arg)
        except Unsupported as e:
            assert str(e).startswith(peer + ": "), "the reason names the peer"
            continue
        computed.add(model.name)
        want_w, want_ids = route64(g, model.K, arg)
        assert ids.dtype == torch.int32 and w.dtype == torch.float32
        assert torch.equal(ids, want_ids.to(torch.int32)), f"{peer} on {model.name}: ids"
        # the scale or factor applied in fp32 after the kernel's fp32 weight: a rounding or two
        torch.testing.assert_close(w.double(), want_w, rtol=4e-7, atol=0, msg=f"{peer} on {model.name}: weights")
    assert computed == COMPUTES[peer]


def test_load_peers_says_why_each_peer_did_not_load(tmp_path):
    loaded, reasons = peers.load_peers(tmp_path)
    for name in ("sglang_topk_softmax", "sglang_moe_fused_gate", "vllm_topk_softmax", "vllm_grouped_topk"):
        if name in loaded:   # a machine with the ops registered already (not this suite's CPU run)
            continue
        assert "not found; fill" in reasons[name] and "scripts/fetch_peers.py" in reasons[name], reasons[name]
    assert "triton_kernels_topk" in loaded or "not found" in reasons["triton_kernels_topk"]
    assert set(loaded) | set(reasons) == set(ADAPTERS)


def test_a_packed_extension_is_unpacked_outside_the_carry_directory_once(tmp_path):
    relative = Path("lib") / "ext.so"
    (tmp_path / "lib").mkdir()
    body = b"\x7fELF" + bytes(range(256)) * 64
    (tmp_path / "lib" / "ext.so.xz").write_bytes(lzma.compress(body))
    first = peers._library(tmp_path, relative)
    assert first.read_bytes() == body and tmp_path not in first.parents
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["ext.so.xz"]
    assert peers._library(tmp_path, relative) == first
    (tmp_path / "lib" / "ext.so").write_bytes(b"plain")        # an unpacked extension wins
    assert peers._library(tmp_path, relative) == tmp_path / "lib" / "ext.so"


def _fetch_peers():
    return script_module("fetch_peers")


def _entry(kind: int, arch: int, payload: bytes) -> bytes:
    header = struct.pack("<HHIQ", kind, 0x101, 64, len(payload)) + bytes(12) + struct.pack("<I", arch)  # arch at 28
    return header.ljust(64, b"\0") + payload


def _elf_with_fatbin(section: bytes) -> bytes:
    """A minimal 64-bit ELF file: a null section, .shstrtab, and .nv_fatbin holding ``section``."""
    names = b"\0.shstrtab\0.nv_fatbin\0"
    body_at = 64
    names_at, fatbin_at = body_at, body_at + len(names)
    shoff = (fatbin_at + len(section) + 7) // 8 * 8
    head = bytearray(64)
    head[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", head, 0x28, shoff)
    struct.pack_into("<HHH", head, 0x3A, 64, 3, 1)
    sh = lambda name, offset, size: struct.pack("<IIQQQQIIQQ", name, 1, 0, 0, offset, size, 0, 0, 1, 0)  # noqa: E731
    table = bytes(64) + sh(1, names_at, len(names)) + sh(11, fatbin_at, len(section))
    return (bytes(head) + names + section).ljust(shoff, b"\0") + table


def test_keep_arch_zeroes_only_the_other_architectures_cubins():
    fp = _fetch_peers()
    payloads = [(fp.CUBIN, 80, b"\xa1" * 24), (fp.CUBIN, 90, b"\xb2" * 40), (fp.PTX, 80, b"\xc3" * 16),
                (fp.CUBIN, 120, b"\xd4" * 8)]
    entries = b"".join(_entry(*p) for p in payloads)
    fatbin = struct.pack("<IHHQ", fp.FATBIN_MAGIC, 1, 16, len(entries)) + entries
    second = struct.pack("<IHHQ", fp.FATBIN_MAGIC, 1, 16, len(_entry(fp.CUBIN, 89, b"\xe5" * 8))) + _entry(fp.CUBIN, 89, b"\xe5" * 8)
    elf = _elf_with_fatbin(fatbin + second)
    offset, size = fp.elf_section(elf, ".nv_fatbin")
    assert elf[offset:offset + size] == fatbin + second
    found = fp.fatbin_entries(elf[offset:offset + size])
    assert [(e.kind, e.arch, e.size) for e in found] == [(k, a, len(p)) for k, a, p in payloads] + [(fp.CUBIN, 89, 8)]
    thin, zeroed = fp.keep_arch(elf, 90)
    assert zeroed == 24 + 8 + 8 and len(thin) == len(elf)
    kept = {(e.kind, e.arch): thin[offset + e.offset: offset + e.offset + e.size] for e in found}
    assert kept[(fp.CUBIN, 90)] == b"\xb2" * 40 and kept[(fp.PTX, 80)] == b"\xc3" * 16
    assert kept[(fp.CUBIN, 80)] == bytes(24) and kept[(fp.CUBIN, 120)] == bytes(8) and kept[(fp.CUBIN, 89)] == bytes(8)
    assert thin[:offset] == elf[:offset]     # everything outside the section as it was
    with pytest.raises(SystemExit, match="no sm_100 cubin"):
        fp.keep_arch(elf, 100)


def test_every_wheel_member_that_is_compressed_is_an_extension_the_adapters_load():
    fp = _fetch_peers()
    compressed = {m for w in fp.WHEELS for m in w.compress}
    assert compressed == {lib.as_posix() for lib, _ in peers.EXTENSION_PEERS}
    assert all(m in w.members for w in fp.WHEELS for m in w.compress)
