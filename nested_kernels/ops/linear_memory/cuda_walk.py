"""The ``cuda`` backend of the chunked ``linear_memory``: the ``triton`` backend with its two
sequential kernels, the forward state walk ``_state_fwd_kernel`` and the adjoint walk
``_state_bwd_kernel``, replaced by the CUDA kernels of csrc/linear_memory/walk.cu
(``nested_kernels._C.linear_memory_walk``). Everything else — the prep kernel's factors, the
outputs, the token gradients, the residual layout — is the Triton backend's (``triton_backend``
with ``walk="cuda"``), so the walks read and write exactly the buffers the Triton walks do: the
tile-start states and tile-end adjoints [tiles, H, K, V] in the storage dtype, the final states and
the initial-state gradients [N, H, K, V] float32. Design: one CTA per (V block of min(V, 64)
columns, sequence·head), the state slices as mma.sync accumulators in registers, the tile rows in
a cp.async ring (docs/linear_memory_cuda.md).

**Experimental** (core.backends.Backend): ``backend="auto"``, the verify command's and the bench's
default backend lists skip it; ``backend="cuda"``, NESTED_KERNELS_BACKEND_LINEAR_MEMORY=cuda or
``verify --backends cuda`` run it. On the H100 (2026-12-07c) 7 of its GPU tests ran, within 5e-3 of
the triton backend, and it was slower than the Triton walks at issue 3's shape (η only fwd+bwd
2.083 vs 1.918 ms); the rest of tests/ops/test_linear_memory_cuda.py's GPU grid has not run.

Covered (else ``unsupported`` names why and dispatch moves on): an sm_90 GPU with the extension
built and Triton importable; bfloat16 inputs with the Triton defaults for them (bf16 products,
bf16 stored factors and tile states) and float16 inputs with theirs (products on operands rounded
to nearest tf32, "tf32r", float32 stored factors and tile states) — other
NESTED_KERNELS_LM_TRITON_PRECISION / _STORE choices and float32 inputs are refused; q, k (and v)
of one dtype; K ∈ {64, 128}, V ∈ {16, 32, 64, 128} (V = K for self targets); chunk_size ∈ {1, 16,
32, 64} (1: the exact rule's tiles of NESTED_KERNELS_LM_TRITON_EXACT_TILE tokens); every gate set,
both targets, all three reads, cu_seqlens, initial states, final states and resumed positions.
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import torch

from ...core.backends import Backend
from ...core.extension import cuda_extension, dtype_code, sm90_unavailable_reason
from . import triton_backend as tb

DIMS_K = (64, 128)
DIMS_V = (16, 32, 64, 128)
CHUNKS = (1, 16, 32, 64)
# input dtype -> (operand precision, storage dtype) that the walks implement (triton_backend's defaults)
NUMERICS = {torch.bfloat16: ("bf16", torch.bfloat16), torch.float16: ("tf32r", torch.float32)}


def walk_unsupported(inputs, cfg) -> Optional[str]:
    """Why the CUDA walks cannot take these shapes, dtypes and numerics (None when they can);
    the device-independent part of ``unsupported``."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    self_target = cfg["target"] == "self"
    K, V, C = q.shape[-1], q.shape[-1] if self_target else v.shape[-1], cfg["chunk_size"]
    if q.dtype not in NUMERICS:
        return f"{q.dtype} inputs: the CUDA walks take bfloat16 / float16"
    if k.dtype != q.dtype or v.dtype != q.dtype:
        return f"q, k, v of dtypes {q.dtype}, {k.dtype}, {v.dtype}: the CUDA walks take one token dtype"
    if K not in DIMS_K:
        return f"K={K}: the CUDA walks take K in {DIMS_K}"
    if V not in DIMS_V:
        return f"V={V}: the CUDA walks take V in {DIMS_V}"
    if C not in CHUNKS:
        return f"chunk_size={C}: the CUDA walks take chunk_size in {CHUNKS}"
    prec, store = NUMERICS[q.dtype]
    if tb._precision(q.dtype) != prec or tb._store_dtype(q.dtype) != store:
        return (f"NESTED_KERNELS_LM_TRITON_PRECISION / _STORE: for {q.dtype} inputs the CUDA walks implement "
                f"{prec} products over {store} factors, got {tb._precision(q.dtype)} over {tb._store_dtype(q.dtype)}")
    return None


def unsupported(inputs, cfg) -> Optional[str]:
    why = sm90_unavailable_reason(inputs["q"], "the CUDA walks") or tb.unsupported(inputs, cfg)
    if why is not None:
        return why
    if importlib.util.find_spec("triton") is None:     # prep, outputs and token gradients are Triton's
        return "the cuda backend runs its other kernels on Triton, which is not installed"
    return walk_unsupported(inputs, cfg)


def _launch(a, ptrs: dict, backward: bool, output_final: bool = False) -> None:
    """``_C.linear_memory_walk`` on the _Args ``a`` with the extra pointers ``ptrs`` (tensors or None)."""
    ext = cuda_extension()
    ptrs = dict(k=a.k, eta=a.eta, log_alpha=a.la, pos=a.pos, cu=a.cu, tile_base=a.tile_base, **ptrs)
    dims = dict(token_dtype=dtype_code(a.q.dtype), eta_dtype=dtype_code(a.eta.dtype),
                alpha_dtype=dtype_code((a.la if a.la is not None else a.eta).dtype),
                N=a.N, T=a.T, H=a.H, K=a.K, V=a.V, BT=a.BT, has_beta=int(a.beta is not None),
                has_mu=int(a.mu is not None), exact=int(a.exact), has_off=int(a.has_off), plain_x=int(a.plain_x),
                output_final=int(output_final), read=a.read)
    with torch.cuda.device(a.device):
        ext.linear_memory_walk({n: 0 if t is None else t.data_ptr() for n, t in ptrs.items()}, dims, backward,
                               torch.cuda.current_stream(a.device).cuda_stream)


def _f32(t):
    return None if t is None else t.float().contiguous()


def _factors(f) -> dict:
    return {n: f.get(n) for n in ("xw", "xz", "yw", "yz", "qw", "qz", "tsc")}


def state_walk(a, f, finals, tiles) -> None:
    """``triton_backend._Args.states`` on the CUDA forward walk (no fused outputs)."""
    m_out, s_out, mc_out = finals if finals is not None else (None, None, None)
    has_mu = a.mu is not None
    _launch(a, dict(_factors(f), v=a.v if a.plain_x else None, xu=f.get("xu"), yu=f.get("yu"), m0=_f32(a.m0),
                    s0=_f32(a.s0), mc0=_f32(a.mc0), m_out=m_out, s_out=s_out, mc_out=mc_out, tiles_m=tiles[0],
                    tiles_s=tiles[1] if has_mu else None),
            backward=False, output_final=finals is not None)


def adjoint_walk(a, f, dO, final_grads, adj, init_grads) -> None:
    """``triton_backend._Args.adjoints`` on the CUDA backward walk."""
    (dMf, dSf, dMcf), (adj_m, adj_s), (dm0, ds0, dmc0) = final_grads, adj, init_grads
    _launch(a, dict(_factors(f), dO=dO.to(a.q.dtype).contiguous(), dmf=dMf, dsf=dSf, dmcf=dMcf, dm0=dm0, ds0=ds0,
                    dmc0=dmc0, tiles_m=adj_m, tiles_s=adj_s),
            backward=True)


def _forward(inputs, cfg):
    return tb.forward(inputs, cfg, walk="cuda")


def _backward(inputs, outputs, grads, cfg):
    return tb.backward(inputs, outputs, grads, cfg, walk="cuda")


BACKEND = Backend(_forward, _backward, unsupported, tb.residuals,
                  experimental="its CUDA walks are slower than the Triton walks and not fully GPU-tested")
