"""The ``cuda`` backend of ``linear_memory_step``: one launch of the CUDA kernel
``nested_kernels._C.linear_memory_step`` per call (csrc/linear_memory/step.cu; see
docs/decode_step.md).

Supported: every option (target external/self, read after/before/chunk, optional log_alpha, beta,
mu, scale, any chunk size), float32 / bfloat16 / float16 inputs (q, k, v may be strided views with a
unit last stride; gates of any of these dtypes), K ≤ 4096, float32 contiguous states, when the
extension is built. float64 and other states run on the next backend.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...core.alloc import new_empty
from ...core.backends import Backend
from ...core.extension import cuda_extension, cuda_extension_unavailable_reason, dtype_code
from ...core.step_backend import float64_unsupported, position_counters, token_rows, state_unsupported

MAX_K = 4096
_READ = {"after": 0, "before": 1, "chunk": 2}


def unsupported(inputs, cfg) -> Optional[str]:
    M = inputs["state.M"]
    if M.device.type != "cuda":
        return f"the CUDA step needs CUDA tensors (got {M.device})"
    why = cuda_extension_unavailable_reason()
    if why is not None:
        return why
    if len({inputs[n].dtype for n in ("q", "k", "v")}) > 1:
        return "q, k and v have different dtypes: the CUDA step reads them as one token dtype"
    if M.shape[-2] > MAX_K:
        return f"K={M.shape[-2]}: the CUDA step stages q, k, v in shared memory (K ≤ {MAX_K})"
    return float64_unsupported(inputs) or state_unsupported(inputs, ("M", "S", "M_chunk", "position"))


def forward(inputs, state, cfg):
    ext = cuda_extension()
    M = state["M"]
    N, H, K, V = M.shape
    (q, k, v, eta, la, beta, mu), strides = token_rows(inputs)
    o = new_empty(N, H, V, dtype=q.dtype, device=q.device)
    code = lambda t: dtype_code(t.dtype)  # noqa: E731
    gates = [(0, 0, 0, code(q)) if g is None else (g.data_ptr(), strides[2 * i + 6], strides[2 * i + 7], code(g))
             for i, g in enumerate((eta, la, beta, mu))]
    S = state["S"] if mu is not None else None
    with torch.cuda.device(M.device):
        ext.linear_memory_step(
            q=q.data_ptr(), k=k.data_ptr(), v=v.data_ptr(), token_strides=tuple(strides[:6]),
            token_dtype=code(q), eta=gates[0], log_alpha=gates[1], beta=gates[2], mu=gates[3],
            M=M.data_ptr(), S=0 if S is None else S.data_ptr(), M_chunk=state["M_chunk"].data_ptr(),
            position=state["position"].data_ptr(), counters=position_counters(M.device, N).data_ptr(),
            o=o.data_ptr(), N=N, H=H, K=K, V=V, chunk_size=cfg["chunk_size"], scale=float(cfg["scale"]),
            self_target=cfg["target"] == "self", read=_READ[cfg["read"]],
            stream=torch.cuda.current_stream(M.device).cuda_stream)
    return o


BACKEND = Backend(forward, unsupported=unsupported)
