"""Peers: other projects' fused routing kernels behind parity's routing signature.

Each adapter is ``fn(gating_output, topk, router) -> (weights float32 [T, K], ids int32 [T, K])``
(the third argument a parity Router, or Gemma4's per_expert_scale tensor). An adapter computes only
routers its kernel computes; for any other it raises NotImplementedError naming what is missing.
A scaling factor or per-expert scale the kernel does not apply is applied by the adapter afterwards,
in fp32, as the engines do (``_scaled``).

The kernels come from a carry directory (``peers/``, git-ignored) holding files of the
``sglang-kernel`` 0.4.10 wheel: ``sgl_kernel/`` (its Python files and the one extension the ops
below live in, ``sm90/common_ops.abi3.so``, 12 MB) and the pure Python + Triton ``triton_kernels/``.
``load_peers`` imports what it can and says why the rest did not load; importing this module
never fails.

Build facts (the wheel's METADATA, readelf, nm): common_ops.abi3.so needs
``torch==2.14.1`` and CUDA 13 (libcudart.so.13, libcublas.so.13, libnvrtc.so.13); "abi3" is the
Python limited API only: the ops register through TORCH_LIBRARY with torch's C++ ABI (no
``aoti_torch_*`` stable shims), so the extension loads only under a torch that exports the same
C++ symbols. Against torch 2.11.0+cu130, five are missing (the c10::cuda error-check signature with
CUDAErrorLogCapture, torch::Library::_def taking torch::headeronly::Tag, c10::NotImplementedError's
constructor), so there it fails with ``undefined symbol``. The sm90 build uses fast math
(sgl_kernel/load_utils.py), the sm100 build precise math.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Callable

import torch

from parity import device as _device  # noqa: F401  (decides TRITON_INTERPRET before triton loads)
from parity.routing.contract import validate_router
from parity.routing.router import Router, as_router

REPO = Path(__file__).resolve().parent.parent
SGL_LIBRARY = Path("sgl_kernel") / "sm90" / "common_ops.abi3.so"
"""The extension holding topk_softmax and topk_sigmoid, relative to the carry directory."""


def _unsupported(peer: str, what: str):
    """The error an adapter raises for a router its kernel does not compute."""
    return NotImplementedError(f"{peer}: {what}")


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
    """torch.ops.sgl_kernel.<name>.default, registered by loading common_ops.abi3.so."""
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
    id; 0.3.x source), weights the unbiased sigmoid renormalised over the K (always).

    Not in sglang-kernel 0.4.10: the op was retired there (sgl_kernel/moe.py, sglang issue
    #26771); this adapter serves an older wheel carried instead. Op (0.3.x): ``moe_fused_gate(
    Tensor input, Tensor bias, int num_expert_group, int topk_group, int topk,
    int num_fused_shared_experts, float routed_scaling_factor[, bool
    apply_routed_scaling_factor_on_output]) -> Tensor[]``; older schemas stop after topk or the
    shared-expert count. The factor is applied by the kernel only where the last flag exists,
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
    Restrictions: CUDA or Triton's interpreter; E < 32768; K a power of two; softmax routers with renormalize (the
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


def _load_sglang(root: Path) -> None:
    """Load common_ops.abi3.so into torch.ops.sgl_kernel (raises with the loader's own text)."""
    if hasattr(torch.ops.sgl_kernel, "topk_softmax"):
        return
    library = root / SGL_LIBRARY
    if not library.is_file():
        raise FileNotFoundError(f"{library}: not found")
    torch.ops.load_library(str(library))


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


SGLANG_PEERS = {"sglang_topk_softmax": ("topk_softmax", sglang_topk_softmax),
                "sglang_topk_sigmoid": ("topk_sigmoid", sglang_topk_sigmoid),
                "sglang_moe_fused_gate": ("moe_fused_gate", sglang_moe_fused_gate)}


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
    try:
        _load_sglang(root)
        sglang_failure = None
    except Exception as e:  # noqa: BLE001  (any loader failure is a reason, not a crash)
        sglang_failure = _reason(e)
    for name, (op, fn) in SGLANG_PEERS.items():
        if sglang_failure is not None:
            reasons[name] = sglang_failure
        elif not hasattr(torch.ops.sgl_kernel, op):
            reasons[name] = f"torch.ops.sgl_kernel has no {op} in {root / SGL_LIBRARY}"
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
    for name in loaded:
        print(f"loaded  {name}")
    for name, why in failed.items():
        print(f"failed  {name}: {why}")
