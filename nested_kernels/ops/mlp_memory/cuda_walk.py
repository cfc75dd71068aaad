"""The ``cuda`` backend of ``mlp_memory``: the ``triton`` backend with its sequential forward walk
(``_fwd_kernel``) replaced by the CUDA kernel ``nested_kernels._C.mlp_memory_walk``
(csrc/mlp_memory/walk.cu): F / 64 CTAs per (sequence, head), each owning 64 hidden units (its W1 /
W2 slices kept in shared memory), the frozen errors and the partial outputs summed across them —
through a global scratch in a cooperative launch when all CTAs fit the GPU at once, else through
distributed shared memory in thread-block clusters — products on the tensor cores (WMMA, operands
rounded to nearest tf32 like the Triton default ``tf32r``). The prep rows, the residual layout
and the backward (the Triton adjoint chain and the token gradients of ``tile_grads``) are the
``triton`` backend's, so the walk writes exactly what ``_fwd_kernel`` writes: outputs, final
states, tile-start checkpoints, E and B Aᵀ rows. H100 2026-12-06h (issue 4's shape, cooperative
exchange): forward 6.99 against the Triton walk's 7.78 ms, fwd+bwd 37.84 against 40.56 ms;
``auto`` takes it first where the walk runs in one cooperative round (``one_round``, ``api.auto_order``);
docs/mlp_memory_triton.md ("CUDA forward walk").

Covered (else ``unsupported`` names why and ``auto`` moves on): an sm_90 GPU with the extension
built and Triton importable, bfloat16 / float16 inputs, K = V ∈ {32, 64}, F ∈ {64, 128, 256, 512},
chunk_size ∈ {16, 32, 64}, a fixed-length batch (no cu_seqlens, no resumed state) whose length
is a multiple of chunk_size, the prep rows on (NESTED_KERNELS_MLP_TRITON_PREP=1, the default);
not precision="float32" (2026-12-06f's failing K = 32, chunk 64 case was runaway test data, the
triton backend failing it too: docs/mlp_memory_triton.md, "Where tf32 is too coarse").
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import torch

from ...core.backends import Backend
from ...core.env import env_choice
from ...core.extension import cuda_extension, cuda_extension_unavailable_reason, dtype_code, \
    sm90_unavailable_reason
from . import triton_backend as tb

DIMS = (32, 64)
HIDDEN = (64, 128, 256, 512)
CHUNKS = (16, 32, 64)


def one_round(inputs) -> bool:
    """Whether the walk's (F / MLP_WALK_SLICE)·B·H CTAs fit a CUDA device at once, one per SM (so
    that it runs as one cooperative launch rather than clusters in rounds; walk.cu's
    ``fits_cooperative`` decides the launch exactly). False without CUDA tensors or the extension."""
    q, w1 = inputs["q"], inputs["w1"]
    if q.device.type != "cuda" or cuda_extension_unavailable_reason() is not None:
        return False
    ctas = w1.shape[-1] // cuda_extension().MLP_WALK_SLICE * q.shape[0] * q.shape[2]
    return ctas <= torch.cuda.get_device_properties(q.device).multi_processor_count


def unsupported(inputs, cfg) -> Optional[str]:
    q, w1 = inputs["q"], inputs["w1"]
    why = sm90_unavailable_reason(q, "the CUDA walk") or tb.unsupported(inputs, cfg)    # sm_90: thread-block clusters
    if why is not None:
        return why
    if importlib.util.find_spec("triton") is None:     # the backward is the triton backend's
        return "the CUDA walk's backward runs on Triton, which is not installed"
    K, (V, F), C, T = q.shape[-1], w1.shape[-2:], cfg["chunk_size"], q.shape[1]
    if q.dtype not in (torch.bfloat16, torch.float16):
        return f"{q.dtype} inputs: the CUDA walk takes bfloat16 / float16 (tf32 products)"
    if K != V or K not in DIMS:
        return f"K={K}, V={V}: the CUDA walk takes K = V in {DIMS}"
    if F not in HIDDEN:
        return f"F={F}: the CUDA walk takes F in {HIDDEN}"
    if C not in CHUNKS:
        return f"chunk_size={C}: the CUDA walk takes chunk_size in {CHUNKS}"
    precision = cfg.get("precision", "auto")
    if precision == "float32":
        return "precision='float32': the CUDA walk has tf32 products only"
    if inputs["cu_seqlens"] is not None or inputs["position0"] is not None:
        return "cu_seqlens or a resumed state: the CUDA walk takes fixed-length batches from a chunk start"
    if T % C:
        return f"T={T} is not a multiple of chunk_size={C}: the CUDA walk takes whole chunks only"
    if not tb._prep_on():
        return "NESTED_KERNELS_MLP_TRITON_PREP=0: the CUDA walk reads the prep rows"
    return None


def exchange() -> str:
    """NESTED_KERNELS_MLP_CUDA_EXCHANGE: how the CTAs of a (sequence, head) exchange their partial
    sums — "auto" (default): a cooperative launch through a global scratch when all CTAs fit the
    GPU at once, else thread-block clusters; "cluster": clusters always."""
    return env_choice("NESTED_KERNELS_MLP_CUDA_EXCHANGE", "auto", ("auto", "cluster"))


def run_walk(a, st: dict, pr: dict, *, o=None, chunk_out=None, saved=None) -> None:
    """``triton_backend._Args.run_forward``'s contract on the CUDA walk: the states ``st`` updated
    in place, outputs into ``o``, checkpoints, E and B Aᵀ rows into ``saved``. Every tile is a
    whole chunk here, so the final chunk-start weights are the final states (``chunk_out`` is not
    written; ``_Args.chunk_start`` takes the states at a chunk boundary)."""
    ext = cuda_extension()
    addr = lambda t: 0 if t is None else t.data_ptr()  # noqa: E731
    ptrs = dict(q=a.q, k=a.k, v=a.v, eta=a.eta, beta=a.beta, W1=st["W1"], W2=st["W2"], S1=st["S1"], S2=st["S2"],
                o=o, tile_base=a.tile_base, **pr)
    if exchange() == "auto":   # the cooperative launch's scratch and barrier counters (walk.h)
        NH, ns = a.B * a.H, a.F // ext.MLP_WALK_SLICE
        scratch = torch.empty(3, NH, ns, a.C, ext.MLP_WALK_LD, dtype=torch.float32, device=a.device)
        ptrs.update(xp=scratch[0], xo=scratch[1], xba=scratch[2],
                    sync=torch.empty(NH, dtype=torch.int32, device=a.device))
    if saved is not None:
        ptrs.update({"sv_" + n: saved.get(n) for n in ("W1", "W2", "S1", "S2", "E", "BA")})
    code = lambda t: dtype_code(torch.float32 if t is None else t.dtype)  # noqa: E731
    f = a.flags
    dims = dict(B=a.B, T=a.T, H=a.H, D=a.K, F=a.F, C=a.C, act=f["ACT"], residual=int(f["RESIDUAL"]),
                has_beta=int(f["HAS_BETA"]), has_mu=int(f["HAS_MU"]), self_target=int(f["SELF_TARGET"]),
                read=f["READ"], save=int(saved is not None), token_dtype=code(a.q), eta_dtype=code(a.eta),
                beta_dtype=code(a.beta))
    with torch.cuda.device(a.device):
        ext.mlp_memory_walk({n: addr(t) for n, t in ptrs.items()}, dims, a.scale,
                            torch.cuda.current_stream(a.device).cuda_stream)


def _forward(inputs, cfg, bf: int = 16):
    return tb._forward(inputs, cfg, bf, walk="cuda")


def _backward(inputs, outputs, grads, cfg, bf: int = 16):
    return tb._backward(inputs, outputs, grads, cfg, bf, walk="cuda")


BACKEND = Backend(tb._fallback_on_resources(_forward, tb._torch_forward),
                  tb._fallback_on_resources(_backward, tb._torch_backward), unsupported, tb.residuals)
