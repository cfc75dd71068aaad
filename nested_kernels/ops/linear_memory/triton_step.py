"""The ``triton`` backend of ``linear_memory_step``: one fused kernel launch per call
(``triton_step_kernel._lm_step_kernel``; see docs/decode_step.md).

Supported: every option (target external/self, read after/before/chunk, optional log_alpha, beta,
mu, scale, any chunk size), float32 / bfloat16 / float16 inputs (q, k, v may be strided views with a
unit last stride), K, V ≤ 512, float32 contiguous states. float64, other states and larger heads
run on the torch step. Triton is imported when the kernel first runs.
"""
from __future__ import annotations

from typing import Optional

from ...core.alloc import new_empty
from ...core.backends import Backend
from ...core.env import getenv
from ...core.fast_launch import launch
from ...core.step_backend import (float64_unsupported, next_pow2, position_counters, token_rows,
                                  state_unsupported)

MAX_DIM = 512
_READ = {"after": 0, "before": 1, "chunk": 2}


def unsupported(inputs, cfg) -> Optional[str]:
    K, V = inputs["state.M"].shape[-2:]
    if max(K, V) > MAX_DIM:
        return f"K={K}, V={V}: the Triton step holds a K×BV slice in registers (K, V ≤ {MAX_DIM})"
    return float64_unsupported(inputs) or state_unsupported(inputs, ("M", "S", "M_chunk", "position"))


def block_v(K: int, V: int) -> int:
    """Columns per program: about 4096 state elements per program (32 registers per array)."""
    env = getenv("NESTED_KERNELS_LM_STEP_BV")
    bv = int(env) if env else max(16, 4096 // next_pow2(K))
    return min(bv, next_pow2(V))


def forward(inputs, state, cfg):
    from .triton_step_kernel import _lm_step_kernel
    M = state["M"]
    N, H, K, V = M.shape
    tokens, strides = token_rows(inputs)
    q = tokens[0]
    o = new_empty(N, H, V, dtype=q.dtype, device=q.device)
    if N * H == 0:
        return o
    BV = block_v(K, V)
    grid = (-(-V // BV), N * H)
    launch(_lm_step_kernel, grid,
        *tokens, M, state["S"] if inputs["mu"] is not None else None,
        state["M_chunk"], state["position"], position_counters(M.device, N), o, *strides,
        H, cfg["chunk_size"], float(cfg["scale"]),
        K=K, V=V, BK=next_pow2(K), BV=BV,
        HAS_ALPHA=inputs["log_alpha"] is not None, HAS_BETA=inputs["beta"] is not None,
        HAS_MU=inputs["mu"] is not None, SELF_TARGET=cfg["target"] == "self", READ=_READ[cfg["read"]],
        num_warps=4)
    return o


BACKEND = Backend(forward, unsupported=unsupported)
