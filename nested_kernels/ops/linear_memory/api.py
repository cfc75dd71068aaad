"""Public ``linear_memory`` and ``linear_memory_step`` (SPEC §2, §6): checks, state, dispatch."""
from __future__ import annotations

from typing import Optional, Union

import torch

from ...core import checks
from ...core.backends import TRITON_FIRST, Backend, select_backend, will_differentiate
from ...core.custom_op import OpSpec, StepSpec
from ...core.sequences import num_sequences
from ...core.step_backend import with_state
from . import chunk, cuda_step, reference, step as step_impl
from .inputs import compute_dtype
from .state import LinearMemoryState

TARGETS = ("external", "self")
READS = ("after", "before", "chunk")
INPUTS = ("q", "k", "v", "eta", "log_alpha", "beta", "mu", "m0", "s0", "m_chunk0", "position0", "cu_seqlens")
OUTPUTS = ("o", "M", "S", "M_chunk", "position")


def _fake(inputs, cfg):
    q, v = inputs["q"], inputs["v"]
    B, T, H, K = q.shape
    V = v.shape[-1]
    o = q.new_empty(B, T, H, V)
    if not cfg["output_final_state"]:
        states = [q.new_empty(0, dtype=compute_dtype(q)) for _ in range(3)]
        return o, *states, q.new_empty(0, dtype=torch.int64)
    N = num_sequences(B, inputs["cu_seqlens"])
    state = lambda: q.new_empty(N, H, K, V, dtype=compute_dtype(q))  # noqa: E731
    S = state() if inputs["mu"] is not None else q.new_empty(0, dtype=compute_dtype(q))
    return o, state(), S, state(), q.new_empty(N, dtype=torch.int64)


BACKENDS = {"reference": Backend(reference.forward), "torch": Backend(chunk.forward)}
try:  # Triton kernels; triton itself is imported only when they first run
    from .triton_backend import BACKEND as _TRITON_BACKEND
    from .cuda_walk import BACKEND as _CUDA_WALK      # the triton backend with CUDA walks
    BACKENDS["triton"] = _TRITON_BACKEND
    BACKENDS["cuda"] = _CUDA_WALK
except ImportError:  # pragma: no cover
    pass
# residual outputs: the Triton backend's tile-start states and tile factors, reused by its backward
OP = OpSpec("linear_memory", INPUTS, OUTPUTS, _fake, BACKENDS,
            residuals=("tile_m", "tile_s", "tile_factors", "tile_ainv", "tile_scalars"))


StateLike = Union[LinearMemoryState, tuple, None]


def _check_state(initial_state: StateLike, N, H, K, V, chunk_size, mu, device):
    """Returns (m0, s0, m_chunk0, position0) tensors or Nones."""
    if initial_state is None:
        return None, None, None, None
    shape, names = (N, H, K, V), "N, H, K, V"
    if isinstance(initial_state, LinearMemoryState):
        st = initial_state
        if st.chunk_size != chunk_size:
            raise ValueError(f"initial_state was produced with chunk_size={st.chunk_size}, "
                             f"but this call has chunk_size={chunk_size}")
        m0, s0, mc0, pos = st.M, st.S, st.M_chunk, st.position
        checks.check_tensor("initial_state.M_chunk", mc0, shape, names=names, device=device)
        checks.check_tensor("initial_state.position", pos, (N,), names="N", dtypes=checks.INDEX_DTYPES,
                            device=device)
        label = "initial_state"
    elif isinstance(initial_state, (tuple, list)) and len(initial_state) == 2:
        (m0, s0), mc0, pos = initial_state, None, None
        label = "initial_state"
    else:
        raise ValueError("initial_state must be None, a tuple (M0 [N,H,K,V], S0 [N,H,K,V] or None) "
                         f"or a LinearMemoryState, got {type(initial_state).__name__}")
    checks.check_tensor(f"{label}.M", m0, shape, names=names, device=device)
    if s0 is not None:
        if mu is None:
            raise ValueError("initial_state has a momentum S0, but mu is None (no momentum state); "
                             "pass mu or drop S0")
        checks.check_tensor(f"{label}.S", s0, shape, names=names, device=device)
    return m0, s0, mc0, pos


def _check_args(q, k, v, eta, log_alpha, beta, mu, chunk_size, target, read, scale,
                cu_seqlens):
    checks.check_tensor("q", q, (None,) * 4, names="B, T, H, K")
    B, T, H, K = q.shape
    device = q.device
    checks.check_tensor("k", k, (B, T, H, K), names="B, T, H, K", device=device)
    checks.check_option("target", target, TARGETS)
    checks.check_option("read", read, READS)
    if target == "self":
        checks.check_tensor("v", v, (B, T, H, K), names="B, T, H, K (target='self' needs V == K)",
                            device=device)
    else:
        checks.check_tensor("v", v, (B, T, H, None), names="B, T, H, V", device=device)
    for name, gate in (("eta", eta), ("log_alpha", log_alpha), ("beta", beta), ("mu", mu)):
        if gate is not None or name == "eta":
            checks.check_tensor(name, gate, (B, T, H), names="B, T, H", device=device)
    checks.check_positive_int("chunk_size", chunk_size)
    checks.check_scalar("scale", scale)
    N = B if cu_seqlens is None else checks.check_cu_seqlens(cu_seqlens, B, T, device)
    return N, H, K, v.shape[-1], device


def linear_memory(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eta: torch.Tensor,
                  log_alpha: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
                  mu: Optional[torch.Tensor] = None, *, chunk_size: int = 64, target: str = "external",
                  read: str = "after", scale: float = 1.0, initial_state: StateLike = None,
                  output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
                  backend: str = "auto"):
    """Chunked linear memory with DGD decay, retention and momentum (SPEC §2).

    q, k [B,T,H,K]; v [B,T,H,V] ([B,T,H,K] for target="self"); eta, log_alpha, beta, mu [B,T,H].
    Per chunk of ``chunk_size`` tokens, errors e_t = M_sᵀk_t − target_t are taken at the
    chunk-start memory M_s; S_t = μ_t S_{t−1} − η_t k_t e_tᵀ (S_t = −η_t k_t e_tᵀ without mu);
    M_t = α_t M_{t−1} − β_t k_t(k_tᵀM_{t−1}) + S_t; o_t = M_tᵀ(scale·q_t) for read="after"
    (M_{t−1} for "before", M_s for "chunk"). ``cu_seqlens`` ([N+1], B == 1) packs sequences.
    ``initial_state``: None (zeros), (M0 [N,H,K,V], S0 or None) at a chunk boundary, or a
    :class:`LinearMemoryState` from an earlier call (resumes mid-chunk).
    Returns (o [B,T,H,V] in q's dtype, final_state: LinearMemoryState or None).
    ``backend``: "auto", "reference", "torch", "triton" or "cuda" (see core.backends).
    """
    N, H, K, V, device = _check_args(q, k, v, eta, log_alpha, beta, mu, chunk_size, target, read,
                                     scale, cu_seqlens)
    m0, s0, mc0, pos0 = _check_state(initial_state, N, H, K, V, chunk_size, mu, device)
    inputs = dict(q=q, k=k, v=v, eta=eta, log_alpha=log_alpha, beta=beta, mu=mu, m0=m0, s0=s0,
                  m_chunk0=mc0, position0=pos0, cu_seqlens=cu_seqlens)
    cfg = dict(chunk_size=chunk_size, target=target, read=read, scale=float(scale),
               output_final_state=bool(output_final_state))
    cfg["backend"] = select_backend("linear_memory", backend, BACKENDS, device, inputs, cfg)
    if cfg["backend"] in ("triton", "cuda"):    # decided here, so that the fake and the real forward agree
        cfg["keep_factors"] = will_differentiate(inputs)
    out = OP(cfg, **inputs)
    if not output_final_state:
        return out["o"], None
    S = out["S"] if mu is not None else None
    return out["o"], LinearMemoryState(out["M"], S, out["M_chunk"], out["position"], chunk_size)


STEP_INPUTS = ("q", "k", "v", "eta", "log_alpha", "beta", "mu")
STEP_STATE = ("M", "S", "M_chunk", "position")
STEP_BACKENDS = {"torch": Backend(step_impl.forward)}
try:  # the fused Triton step; triton itself is imported only when it first runs
    from .triton_step import BACKEND as _TRITON_STEP
    STEP_BACKENDS["triton"] = _TRITON_STEP
except ImportError:  # pragma: no cover
    pass
STEP_BACKENDS["cuda"] = cuda_step.BACKEND      # the extension is looked up when a step first runs
# "auto" takes the Triton step before the CUDA one: H100 2026-12-06d (docs/gpu_runs/2026-12-06d_call4,
# N64 H16 K=V=128 C64, CUDA-graph replay) Triton 119.3 / 74.5 µs, CUDA 147.9 / 107.6 µs (α+β+μ / no
# gates; float32-state floors 112.2 / 67.5 µs).
STEP_AUTO_ORDER = TRITON_FIRST
STEP_OP = StepSpec("linear_memory_step", STEP_INPUTS, STEP_STATE, step_impl.fake, STEP_BACKENDS)


def linear_memory_step(q, k, v, eta, log_alpha=None, beta=None, mu=None, *,
                       state: LinearMemoryState, target: str = "external", read: str = "after",
                       scale: float = 1.0, backend: str = "auto") -> torch.Tensor:
    """One decode token per sequence, updating ``state`` in place (SPEC §6).

    q, k [N,H,K]; v [N,H,V] ([N,H,K] for target="self"); gates [N,H]. ``state`` is a
    :class:`LinearMemoryState` (its chunk_size is used; momentum state S is required iff mu is
    given). Equal to ``linear_memory`` over the same token with ``initial_state=state``.
    Returns o [N,H,V] in q's dtype.
    """
    if not isinstance(state, LinearMemoryState):
        raise ValueError(f"state must be a LinearMemoryState, got {type(state).__name__}")
    checks.check_option("target", target, TARGETS)
    checks.check_option("read", read, READS)
    N, H, K, V = state.M.shape
    device = state.M.device
    checks.check_tensor("q", q, (N, H, K), names="N, H, K", device=device)
    checks.check_tensor("k", k, (N, H, K), names="N, H, K", device=device)
    checks.check_tensor("v", v, (N, H, K if target == "self" else V), names="N, H, V", device=device)
    for name, gate in (("eta", eta), ("log_alpha", log_alpha), ("beta", beta), ("mu", mu)):
        if gate is not None or name == "eta":
            checks.check_tensor(name, gate, (N, H), names="N, H", device=device)
    if (mu is None) != (state.S is None):
        raise ValueError("mu and state.S must be given together (momentum needs its state S)")
    inputs = dict(q=q, k=k, v=v, eta=eta, log_alpha=log_alpha, beta=beta, mu=mu)
    cfg = dict(chunk_size=state.chunk_size, target=target, read=read, scale=float(scale))
    tensors = state.tensors()
    if tensors["S"] is None:
        tensors["S"] = state.M.new_empty(0)
    cfg["backend"] = select_backend("linear_memory_step", backend, STEP_BACKENDS, device,
                                    with_state(inputs, tensors), cfg, STEP_AUTO_ORDER)
    return STEP_OP(cfg, tensors, **inputs)
