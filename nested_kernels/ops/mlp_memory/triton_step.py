"""The ``triton`` backend of ``mlp_memory_step``: one fused kernel launch per call
(``triton_step_kernel._mm_step_kernel``; see docs/decode_step.md).

Supported: every option of SPEC §3 (gelu / silu, residual on/off, target external/self, read
after/before/chunk, optional log_alpha, beta, mu, scale, any chunk size), float32 / bfloat16 /
float16 inputs (q, k, v may be strided views with a unit last stride), K, V ≤ 256 and any F,
float32 contiguous states. float64, other states and larger heads run on the torch step.
"""
from __future__ import annotations

from typing import Optional

from ...core.alloc import new_empty
from ...core.backends import Backend
from ...core.env import getenv
from ...core.fast_launch import launch
from ...core.step_backend import (float64_unsupported, next_pow2, position_counters, token_rows,
                                  state_unsupported)

MAX_DIM = 256
_READ = {"after": 0, "before": 1, "chunk": 2}
STATE = ("W1", "W2", "S1", "S2", "W1_chunk", "W2_chunk", "position")


def unsupported(inputs, cfg) -> Optional[str]:
    V, _ = inputs["state.W1"].shape[-2:]
    K = inputs["state.W2"].shape[-1]
    if max(K, V) > MAX_DIM:
        return f"K={K}, V={V}: the Triton step keeps a BF×K and a V×BF block in registers (K, V ≤ {MAX_DIM})"
    return float64_unsupported(inputs) or state_unsupported(inputs, STATE)


def block_f(K: int, V: int) -> int:
    """Hidden units per block: about 2048 elements per weight block."""
    env = getenv("NESTED_KERNELS_MM_STEP_BF")
    return int(env) if env else max(16, 2048 // next_pow2(max(K, V)))


def forward(inputs, state, cfg):
    from .triton_step_kernel import _mm_step_kernel
    W1, W2 = state["W1"], state["W2"]
    N, H, V, F = W1.shape
    K = W2.shape[-1]
    tokens, strides = token_rows(inputs)
    q = tokens[0]
    o = new_empty(N, H, V, dtype=q.dtype, device=q.device)
    if N * H == 0:
        return o
    mom = inputs["mu"] is not None
    BK, BV = next_pow2(K), next_pow2(V)
    launch(_mm_step_kernel, (N * H,),
        *tokens, W1, W2, state["S1"] if mom else None, state["S2"] if mom else None,
        state["W1_chunk"], state["W2_chunk"], state["position"], position_counters(W1.device, N), o,
        *strides,
        H, cfg["chunk_size"], float(cfg["scale"]),
        K=K, V=V, F=F, BK=BK, BV=BV, BF=min(block_f(K, V), next_pow2(F)),
        ACT=0 if cfg["activation"] == "gelu" else 1, RESIDUAL=bool(cfg["residual"]),
        HAS_ALPHA=inputs["log_alpha"] is not None, HAS_BETA=inputs["beta"] is not None, HAS_MU=mom,
        SELF_TARGET=cfg["target"] == "self", READ=_READ[cfg["read"]],
        num_warps=int(getenv("NESTED_KERNELS_MM_STEP_WARPS", "4")))
    return o


BACKEND = Backend(forward, unsupported=unsupported)
