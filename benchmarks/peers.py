"""Peers: other projects' fused routing kernels behind parity's routing signature.

Each adapter is ``fn(gating_output, topk, router) -> (weights float32 [T, K], ids int32 [T, K])``
(the third argument a parity Router, or Gemma4's per_expert_scale tensor). An adapter computes only
routers its kernel computes; for any other it raises parity.routing.Unsupported naming what is missing (a
sweep records the case as not computed by it, bench skips it). A scaling factor or per-expert scale the kernel does not apply is applied by the adapter afterwards,
in fp32, as the engines do (``_scaled``).

The kernels come from a carry directory (``peers/``, git-ignored) that ``scripts/fetch_peers.py``
fills from the package index (its docstring says why these versions: the newest whose C++ extensions
load under the GPU machine's torch 2.11.0+cu130):

- SGLang, ``sglang-kernel`` 0.4.4: ``sgl_kernel/sm90/common_ops.abi3.so`` (topk_softmax, topk_sigmoid,
  moe_fused_gate; registered through TORCH_LIBRARY with torch's C++ ABI, built with fast math for
  sm90) and the pure Python + Triton ``triton_kernels/`` (OpenAI's, GPT-OSS's top-k).
- vLLM 0.26.0 (requires torch==2.11.0): ``vllm/_moe_C_stable_libtorch.abi3.so`` (topk_softmax,
  topk_sigmoid, grouped_topk; registered through torch's stable ABI).

The extensions are carried as ``*.so.xz`` with their non-sm_90 cubins zeroed (the carry's 64 MiB);
``_library`` decompresses one into the temporary folder on first use. ``load_peers`` loads what it can and says
why the rest did not load; importing this module never fails.

History: sglang-kernel 0.4.10 (torch==2.14.1) failed to load under torch 2.11 (``undefined symbol:
_ZN3c104cuda19CUDAErrorLogCaptureC1Ev``; reports/h200-peers/peers.log at de5cf99), and could not have
been made to: 2.14's TensorImpl lays out its fields 8 bytes earlier than 2.11's (PyObjectSlot lost its
interpreter pointer), and the extension reads sizes and strides inline.
"""
from __future__ import annotations

import hashlib
import importlib
import lzma
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

from parity import device as _device  # noqa: F401  (decides TRITON_INTERPRET before triton loads)
from parity.routing.contract import Unsupported, validate_router
from parity.routing.router import Router, as_router

REPO = Path(__file__).resolve().parent.parent
SGL_LIBRARY = Path("sgl_kernel") / "sm90" / "common_ops.abi3.so"
"""SGLang's extension holding topk_softmax, topk_sigmoid and moe_fused_gate, relative to the carry
directory."""
VLLM_LIBRARY = Path("vllm") / "_moe_C_stable_libtorch.abi3.so"
"""vLLM's extension holding topk_softmax, topk_sigmoid and grouped_topk (torch.ops._moe_C)."""


def _unsupported(peer: str, what: str):
    """The error an adapter raises for a router its kernel does not compute."""
    return Unsupported(f"{peer}: {what}")


def _plain(peer: str, router: Router, score: str) -> None:
    """Require an ungrouped router scored by ``score``."""
    if router.score != score:
        raise _unsupported(peer, f"computes score={score!r} routers, got score={router.score!r}")
    if router.n_group > 1:
        raise _unsupported(peer, f"has no expert groups, got n_group={router.n_group}")


def _scaled(weights: torch.Tensor, ids: torch.Tensor, router: Router, *, factor: bool = True) -> torch.Tensor:
    """The kernel's weights times what the kernel left out: the scaling factor (when ``factor``)
    and per_expert_scale[id], in fp32."""
    if factor and router.scaling_factor != 1.0:
        weights = weights * router.scaling_factor
    if router.per_expert_scale is not None:
        weights = weights * router.per_expert_scale.float()[ids.long()]
    return weights


def _outputs(gating_output: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty (weights float32, ids int32) [T, K] buffers on the logits' device."""
    shape = (gating_output.shape[0], topk)
    return (torch.empty(shape, dtype=torch.float32, device=gating_output.device),
            torch.empty(shape, dtype=torch.int32, device=gating_output.device))


def _sgl_op(name: str):
    """torch.ops.sgl_kernel.<name>.default, the extension loaded from peers/ first where no op of it
    is registered yet (so that ``--candidate benchmarks.peers:sglang_...`` works without load_peers)."""
    _load_extension(REPO / "peers", SGL_LIBRARY, "sgl_kernel", name)
    return getattr(torch.ops.sgl_kernel, name).default


def sglang_topk_softmax(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """SGLang's topk_softmax (sgl_kernel.moe.topk_softmax): softmax over all E in fp32, the top K
    by iterated arg-max (equal values: the lower id), renormalised over the K when
    router.renormalize.

    Op: ``topk_softmax(Tensor! topk_weights, Tensor! topk_indices, Tensor gating_output,
    bool renormalize, float moe_softcapping, Tensor? correction_bias) -> ()``; called with
    softcapping 0 and no bias (its bias would enter the softmax, unlike any parity router).
    Restrictions: CUDA; logits fp32, fp16 or bf16, contiguous 2-D; weights fp32 and ids int32
    buffers; E a power of two up to 512 takes the one-warp kernel, any other E a workspace path
    (softmax kernel, then block arg-max); ungrouped softmax routers only.
    """
    router = as_router(router)
    validate_router(gating_output, topk, router)
    _plain("sglang_topk_softmax", router, "softmax")
    if router.correction_bias is not None:
        raise _unsupported("sglang_topk_softmax", "a correction bias here would shift the softmax itself")
    weights, ids = _outputs(gating_output, topk)
    _sgl_op("topk_softmax")(weights, ids, gating_output.contiguous(), router.renormalize, 0.0, None)
    return _scaled(weights, ids, router), ids


def sglang_topk_sigmoid(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """SGLang's topk_sigmoid: sigmoid of each logit in fp32 plus the correction bias as the key,
    the top K by arg-max (equal keys: the lower id), the weight the key minus the bias again
    (one more fp32 rounding than the unbiased score), renormalised when router.renormalize.

    Op: ``topk_sigmoid(Tensor! topk_weights, Tensor! topk_indices, Tensor gating_output,
    bool renormalize, Tensor? correction_bias) -> ()``. Restrictions: CUDA; logits fp32, fp16 or
    bf16; bias fp32 [E]; E a power of two up to 256 one-warp, others a workspace path; no groups
    (the grouped DeepSeek-V3 router needs moe_fused_gate).
    """
    router = as_router(router)
    validate_router(gating_output, topk, router)
    _plain("sglang_topk_sigmoid", router, "sigmoid")
    bias = None if router.correction_bias is None else router.correction_bias.float().contiguous()
    weights, ids = _outputs(gating_output, topk)
    _sgl_op("topk_sigmoid")(weights, ids, gating_output.contiguous(), router.renormalize, bias)
    return _scaled(weights, ids, router), ids


def _fused_gate_checks(E: int, router: Router) -> None:
    """moe_fused_gate's shape limits, raised before the op's own TORCH_CHECKs."""
    peer = "sglang_moe_fused_gate"
    if router.score != "sigmoid" or router.correction_bias is None:
        raise _unsupported(peer, "computes sigmoid routers with a correction bias only")
    if not router.renormalize:
        raise _unsupported(peer, "always renormalises over the K")
    if E & (E - 1):
        raise _unsupported(peer, f"needs E a power of two, got E={E}")
    if E // router.n_group > 32:
        raise _unsupported(peer, f"needs E / n_group <= 32, got {E} / {router.n_group}")


def sglang_moe_fused_gate(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """SGLang's moe_fused_gate (DeepSeek-V3's grouped sigmoid): sigmoid, plus bias as the key,
    groups by their top-2 key sum, the top K in the topk_group best groups (equal keys: the lower
    id), weights the unbiased sigmoid renormalised over the K (always).

    In sglang-kernel 0.4.4 (retired from 0.4.5 on, sgl_kernel/moe.py, sglang issue #26771). Op
    (0.4.4): ``moe_fused_gate(Tensor input, Tensor bias, int num_expert_group, int topk_group, int
    topk, int num_fused_shared_experts, float routed_scaling_factor, bool
    apply_routed_scaling_factor_on_output) -> Tensor[]``; older schemas (0.3.x) stop after topk or
    the shared-expert count. The factor is applied by the kernel only where the last flag exists,
    otherwise here. Restrictions: CUDA; E a power of two, E / n_group <= 32 (templated 256/8,
    256/16, 128/4, 128/8, dynamic otherwise); the bias is read in the logits' dtype (cast here:
    a bf16 run rounds the bias to bf16), sigmoid and key compared in that dtype.
    """
    router = as_router(router)
    p = validate_router(gating_output, topk, router)
    _fused_gate_checks(p.E, router)
    op = _sgl_op("moe_fused_gate")
    names = [a.name for a in op._schema.arguments]
    bias = router.correction_bias.to(gating_output.dtype).contiguous()
    args = [gating_output.contiguous(), bias, router.n_group, router.topk_group, topk][: len(names)]
    args += [0, router.scaling_factor, True][: len(names) - len(args)]
    kernel_scales = "apply_routed_scaling_factor_on_output" in names
    weights, ids = op(*args)
    return _scaled(weights.float(), ids, router, factor=not kernel_scales), ids.to(torch.int32)


def _vllm_op(name: str):
    """torch.ops._moe_C.<name>.default, vLLM's _moe_C extension loaded from peers/ first (as _sgl_op)."""
    _load_extension(REPO / "peers", VLLM_LIBRARY, "_moe_C", name)
    return getattr(torch.ops._moe_C, name).default


def _vllm_outputs(gating_output: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """vLLM's three buffers: weights float32, ids int32 and token_expert_indices int32, [T, K]."""
    weights, ids = _outputs(gating_output, topk)
    return weights, ids, torch.empty_like(ids)


def vllm_topk_softmax(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's topk_softmax (csrc moe/topk_softmax_kernels.cu, from TensorRT-LLM): softmax over all E
    in fp32 (its own max and shuffle-sum order), the top K (equal values: the lower id),
    renormalised over the K when router.renormalize (a zero sum divides by 1).

    Op (0.26.0): ``topk_softmax(Tensor! topk_weights, Tensor! topk_indices, Tensor!
    token_expert_indices, Tensor gating_output, bool renormalize, Tensor? bias) -> ()``, called as
    vLLM's fused_topk calls it (no bias: its bias shifts the selection only, which no parity softmax
    router has). Restrictions: CUDA; logits fp32, fp16 or bf16, contiguous; E a power of two or a
    multiple of 64 in one pass, others through a workspace the op allocates; E padded below 1024;
    ungrouped softmax routers.
    """
    router = as_router(router)
    validate_router(gating_output, topk, router)
    _plain("vllm_topk_softmax", router, "softmax")
    if router.correction_bias is not None:
        raise _unsupported("vllm_topk_softmax", "a correction bias shifts its selection only; no parity softmax router has one")
    weights, ids, token_expert = _vllm_outputs(gating_output, topk)
    _vllm_op("topk_softmax")(weights, ids, token_expert, gating_output.contiguous(), router.renormalize, None)
    return _scaled(weights, ids, router), ids


def vllm_topk_sigmoid(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's topk_sigmoid: sigmoid of each logit in fp32, plus the fp32 correction bias for the
    selection, the top K (equal keys: the lower id), renormalised when router.renormalize, times
    the routed scaling factor (in the kernel).

    Op (0.26.0): ``topk_sigmoid(Tensor! topk_weights, Tensor! topk_indices, Tensor!
    token_expert_indices, Tensor gating_output, bool renormalize, Tensor? bias, float
    routed_scaling_factor) -> ()``. Restrictions: CUDA; bias fp32 [E], contiguous; no groups (the
    grouped DeepSeek-V3 router takes grouped_topk).
    """
    router = as_router(router)
    validate_router(gating_output, topk, router)
    _plain("vllm_topk_sigmoid", router, "sigmoid")
    bias = None if router.correction_bias is None else router.correction_bias.float().contiguous()
    weights, ids, token_expert = _vllm_outputs(gating_output, topk)
    _vllm_op("topk_sigmoid")(weights, ids, token_expert, gating_output.contiguous(), router.renormalize, bias,
                             float(router.scaling_factor))
    return _scaled(weights, ids, router, factor=False), ids


def vllm_grouped_topk(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's grouped_topk (csrc moe/grouped_topk_kernels.cu, from TensorRT-LLM; DeepSeek-V3's grouped
    sigmoid): sigmoid in fp32 stored in the logits' dtype, plus the bias as the key, groups by
    their top-2 key sum, the top K in the topk_group best groups (equal keys: the lower id),
    weights the unbiased sigmoid renormalised when router.renormalize, times the routed scaling
    factor (in the kernel).

    Op (0.26.0): ``grouped_topk(Tensor scores, int n_group, int topk_group, int topk, bool
    renormalize, float routed_scaling_factor, Tensor bias, int scoring_func) -> (Tensor, Tensor)``,
    called as vLLM's fused_grouped_topk calls it for sigmoid routers (scoring_func 1, raw logits;
    the bias as the model holds it). vLLM takes this path only for n_group <= 32, K <= 32 and a bias;
    restrictions: CUDA; E divisible by n_group; bias fp32, fp16 or bf16, 1-D, contiguous.
    """
    router = as_router(router)
    p = validate_router(gating_output, topk, router)
    peer = "vllm_grouped_topk"
    if router.score != "sigmoid" or router.correction_bias is None:
        raise _unsupported(peer, "computes sigmoid routers with a correction bias (the path vLLM fuses)")
    if router.n_group > 32 or topk > 32:
        raise _unsupported(peer, f"vLLM fuses n_group <= 32 and K <= 32 only, got n_group={router.n_group}, K={topk}")
    if p.E % router.n_group:
        raise _unsupported(peer, f"needs E divisible by n_group, got {p.E} / {router.n_group}")
    weights, ids = _vllm_op("grouped_topk")(gating_output.contiguous(), router.n_group, router.topk_group, topk,
                                             router.renormalize, float(router.scaling_factor),
                                             router.correction_bias.contiguous(), 1)
    ids = ids.to(torch.int32)
    return _scaled(weights.float(), ids, router, factor=False), ids


def _triton_kernels_topk(root: Path = REPO / "peers"):
    """triton_kernels.topk.topk, imported from the carry directory (so that the adapter also works
    as ``--candidate benchmarks.peers:triton_kernels_topk`` without load_peers)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    _shim_target_info()
    return importlib.import_module("triton_kernels.topk").topk


def triton_kernels_topk(gating_output: torch.Tensor, topk: int, router) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenAI's triton_kernels top-k (GPT-OSS): the top K logits by a packed (value, index) sort
    (equal values: the lower id), softmax over the K in fp32, **stored in the logits' dtype**.

    API: ``topk(x, k, apply_softmax=True, dim=1, y_indx=None, n_rows=None, all_gather=False,
    symm_mem_pool=None) -> SparseMatrix(vals [T, K] x.dtype, indx [T, K] int16, mask bitmatrix)``.
    Restrictions: CUDA (its launch passes triton_kernels' own Tensor wrappers, which Triton 3.9's
    interpreter cannot copy: AttributeError 'untyped_storage'); E < 32768; K a power of two; softmax routers with renormalize (the
    softmax over the K) and no groups or bias.
    """
    router = as_router(router)
    validate_router(gating_output, topk, router)
    _plain("triton_kernels_topk", router, "softmax")
    if not router.renormalize or router.correction_bias is not None:
        raise _unsupported("triton_kernels_topk", "computes the softmax over the chosen K only, without bias")
    if topk & (topk - 1):
        raise _unsupported("triton_kernels_topk", f"needs K a power of two (tl.arange over K), got K={topk}")
    out = _triton_kernels_topk()(gating_output.contiguous(), topk, apply_softmax=True)
    ids = out.indx.to(torch.int32)
    return _scaled(out.vals.float(), ids, router), ids


def _library(root: Path, relative: Path) -> Path:
    """The extension at root/relative, or decompressed from its .xz (as scripts/fetch_peers.py stores
    it) into the temporary folder, under the digest of the packed bytes (outside the carry
    directory, which would otherwise grow by the unpacked copies on the next carry)."""
    library = root / relative
    packed = library.with_name(library.name + ".xz")
    if library.is_file():
        return library
    if not packed.is_file():
        raise FileNotFoundError(f"{library} (or {packed.name}): not found; fill {root} with "
                                "python3 scripts/fetch_peers.py")
    data = packed.read_bytes()
    unpacked = Path(tempfile.gettempdir()) / "parity-peers" / hashlib.sha256(data).hexdigest()[:16] / relative.name
    if not unpacked.is_file():
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        partial = unpacked.with_name(unpacked.name + f".{os.getpid()}.partial")
        partial.write_bytes(lzma.decompress(data))
        partial.replace(unpacked)   # whole or absent: a killed run leaves no half extension behind
    return unpacked


def _load_extension(root: Path, relative: Path, namespace: str, op: str) -> None:
    """Load an extension into torch.ops.<namespace> unless ``op`` is there already (raises with the
    loader's own text)."""
    if hasattr(getattr(torch.ops, namespace), op):
        return
    torch.ops.load_library(str(_library(root, relative)))


def _shim_target_info() -> None:
    """triton_kernels 0.4.10 imports triton.language.target_info.is_hip_gfx1250, which Triton 3.6
    lacks: supply it (a gfx1250 AMD target), only where missing."""
    import triton
    import triton.language.target_info as target_info

    if hasattr(target_info, "is_hip_gfx1250"):
        return

    @triton.constexpr_function
    def is_hip_gfx1250():
        target = target_info.current_target()
        return target is not None and target.backend == "hip" and target.arch == "gfx1250"

    target_info.is_hip_gfx1250 = is_hip_gfx1250


def _load_triton_kernels(root: Path) -> None:
    """Import triton_kernels.topk from the carry directory."""
    if not (root / "triton_kernels").is_dir():
        raise FileNotFoundError(f"{root / 'triton_kernels'}: not found")
    _triton_kernels_topk(root)


EXTENSION_PEERS = {
    # extension (relative to the carry directory), op namespace: {peer: (op, adapter)}
    (SGL_LIBRARY, "sgl_kernel"): {"sglang_topk_softmax": ("topk_softmax", sglang_topk_softmax),
                                  "sglang_topk_sigmoid": ("topk_sigmoid", sglang_topk_sigmoid),
                                  "sglang_moe_fused_gate": ("moe_fused_gate", sglang_moe_fused_gate)},
    (VLLM_LIBRARY, "_moe_C"): {"vllm_topk_softmax": ("topk_softmax", vllm_topk_softmax),
                               "vllm_topk_sigmoid": ("topk_sigmoid", vllm_topk_sigmoid),
                               "vllm_grouped_topk": ("grouped_topk", vllm_grouped_topk)},
}


def _reason(e: BaseException) -> str:
    """An exception as 'Type: text', with its causes (torch.ops.load_library hides the loader's
    own text, e.g. the undefined symbol, in __cause__)."""
    parts = []
    while e is not None and len(parts) < 4:
        parts.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    return " <- ".join(parts)


def load_peers(path: str | Path = "peers") -> tuple[dict[str, Callable], dict[str, str]]:
    """(the peers that loaded by name, the reason for each that did not: the exception's exact text).

    ``path``, relative to the repository root unless absolute, goes first on sys.path."""
    root = Path(path) if Path(path).is_absolute() else REPO / path
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    peers: dict[str, Callable] = {}
    reasons: dict[str, str] = {}
    for (library, namespace), adapters in EXTENSION_PEERS.items():
        first_op = next(iter(adapters.values()))[0]
        try:
            _load_extension(root, library, namespace, first_op)
            failure = None
        except Exception as e:  # noqa: BLE001  (any loader failure is a reason, not a crash)
            failure = _reason(e)
        for name, (op, fn) in adapters.items():
            if failure is not None:
                reasons[name] = failure
            elif not hasattr(getattr(torch.ops, namespace), op):
                reasons[name] = f"torch.ops.{namespace} has no {op} in {root / library}"
            else:
                peers[name] = fn
    try:
        _load_triton_kernels(root)
        peers["triton_kernels_topk"] = triton_kernels_topk
    except Exception as e:  # noqa: BLE001
        reasons["triton_kernels_topk"] = _reason(e)
    return peers, reasons


if __name__ == "__main__":
    loaded, failed = load_peers(sys.argv[1] if len(sys.argv) > 1 else "peers")
    ops = {name: (namespace, op) for (_, namespace), table in EXTENSION_PEERS.items() for name, (op, _) in table.items()}
    for name in loaded:
        schema = getattr(getattr(torch.ops, ops[name][0]), ops[name][1]).default._schema if name in ops else ""
        print(f"loaded  {name}" + (f"  {schema}" if schema else ""))
    for name, why in failed.items():
        print(f"failed  {name}: {why}")
