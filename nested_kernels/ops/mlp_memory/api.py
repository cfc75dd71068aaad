"""Public ``mlp_memory`` and ``mlp_memory_step`` (SPEC §3, §6): checks, state, dispatch."""
from __future__ import annotations

from typing import Optional, Union

import torch

from ...core import checks
from ...core.backends import AUTO_ORDER, TRITON_FIRST, Backend, select_backend
from ...core.custom_op import OpSpec, StepSpec
from ...core.sequences import num_sequences
from ...core.step_backend import with_state
from . import chunk, reference, step as step_impl
from .inputs import compute_dtype
from .recurrence import ACTIVATIONS
from .state import MLPMemoryState

TARGETS = ("external", "self")
READS = ("after", "before", "chunk")
INPUTS = ("q", "k", "v", "eta", "w1", "w2", "log_alpha", "beta", "mu", "w1_0", "w2_0", "s1_0", "s2_0",
          "w1_chunk0", "w2_chunk0", "position0", "cu_seqlens")
OUTPUTS = ("o", "W1", "W2", "S1", "S2", "W1_chunk", "W2_chunk", "position")


def _fake(inputs, cfg):
    q, w1 = inputs["q"], inputs["w1"]
    B, T, H, K = q.shape
    V, F = w1.shape[-2:]
    dt = compute_dtype(q)
    o = q.new_empty(B, T, H, V)
    empty = lambda: q.new_empty(0, dtype=dt)  # noqa: E731
    if not cfg["output_final_state"]:
        return (o,) + tuple(empty() for _ in range(6)) + (q.new_empty(0, dtype=torch.int64),)
    N = num_sequences(B, inputs["cu_seqlens"])
    w1s = lambda: q.new_empty(N, H, V, F, dtype=dt)  # noqa: E731
    w2s = lambda: q.new_empty(N, H, F, K, dtype=dt)  # noqa: E731
    mom = inputs["mu"] is not None
    S1, S2 = (w1s(), w2s()) if mom else (empty(), empty())
    return o, w1s(), w2s(), S1, S2, w1s(), w2s(), q.new_empty(N, dtype=torch.int64)


BACKENDS = {"reference": Backend(reference.forward), "torch": Backend(chunk.forward)}
try:  # Triton kernels; triton itself is imported only when they first run
    from .triton_backend import BACKEND as _TRITON_BACKEND, keeps_residuals
    BACKENDS["triton"] = _TRITON_BACKEND
    from . import cuda_walk as _CUDA_WALK               # the triton backend with a CUDA forward walk
    BACKENDS["cuda"] = _CUDA_WALK.BACKEND
except ImportError:  # pragma: no cover
    keeps_residuals = None


def auto_order(inputs) -> tuple:
    """``backend="auto"``'s order: cuda first where its forward walk runs as one cooperative round
    (``cuda_walk.one_round``; H100 2026-12-06h at issue 4's shape: forward 6.99 against 7.78 ms,
    fwd+bwd 37.84 against 40.56), else triton first (the cluster walk, in several rounds, was
    slower: 14.46 against 7.94 ms, 2026-12-06f; docs/mlp_memory_triton.md "CUDA forward walk")."""
    return AUTO_ORDER if "cuda" in BACKENDS and _CUDA_WALK.one_round(inputs) else TRITON_FIRST
# residual output: the Triton backend's checkpoints and per-token rows, reused by its backward
OP = OpSpec("mlp_memory", INPUTS, OUTPUTS, _fake, BACKENDS, residuals=("saved",))


StateLike = Union[MLPMemoryState, tuple, None]
_TUPLE_FORM = "(W1 [N,H,V,F], W2 [N,H,F,K], S1 [N,H,V,F] or None, S2 [N,H,F,K] or None)"


def _check_state(initial_state: StateLike, N, H, K, V, F, chunk_size, mu, device):
    """Returns (w1_0, w2_0, s1_0, s2_0, w1_chunk0, w2_chunk0, position0) tensors or Nones."""
    if initial_state is None:
        return (None,) * 7
    s1 = (N, H, V, F), "N, H, V, F"
    s2 = (N, H, F, K), "N, H, F, K"
    if isinstance(initial_state, MLPMemoryState):
        st = initial_state
        if st.chunk_size != chunk_size:
            raise ValueError(f"initial_state was produced with chunk_size={st.chunk_size}, "
                             f"but this call has chunk_size={chunk_size}")
        W1, W2, S1, S2 = st.W1, st.W2, st.S1, st.S2
        W1c, W2c, pos = st.W1_chunk, st.W2_chunk, st.position
        checks.check_tensor("initial_state.W1_chunk", W1c, s1[0], names=s1[1], device=device)
        checks.check_tensor("initial_state.W2_chunk", W2c, s2[0], names=s2[1], device=device)
        checks.check_tensor("initial_state.position", pos, (N,), names="N", dtypes=checks.INDEX_DTYPES,
                            device=device)
    elif isinstance(initial_state, (tuple, list)) and len(initial_state) in (2, 4):
        W1, W2, S1, S2 = (tuple(initial_state) + (None, None))[:4]
        W1c = W2c = pos = None
    else:
        raise ValueError(f"initial_state must be None, a tuple {_TUPLE_FORM} or an MLPMemoryState, "
                         f"got {type(initial_state).__name__}")
    checks.check_tensor("initial_state.W1", W1, s1[0], names=s1[1], device=device)
    checks.check_tensor("initial_state.W2", W2, s2[0], names=s2[1], device=device)
    if (S1 is None) != (S2 is None):
        raise ValueError("initial_state.S1 and initial_state.S2 must both be given or both be None")
    if S1 is not None:
        if mu is None:
            raise ValueError("initial_state has momenta S1, S2, but mu is None (no momentum state); "
                             "pass mu or drop S1, S2")
        checks.check_tensor("initial_state.S1", S1, s1[0], names=s1[1], device=device)
        checks.check_tensor("initial_state.S2", S2, s2[0], names=s2[1], device=device)
    return W1, W2, S1, S2, W1c, W2c, pos


PRECISIONS = ("auto", "float32", "tf32")


def _check_options(target, read, activation, residual, scale):
    checks.check_option("target", target, TARGETS)
    checks.check_option("read", read, READS)
    checks.check_option("activation", activation, ACTIVATIONS)
    if not isinstance(residual, bool):
        raise ValueError(f"residual must be True or False, got {residual!r}")
    checks.check_scalar("scale", scale)


def _check_args(q, k, v, eta, w1, w2, log_alpha, beta, mu, chunk_size, target, read, scale,
                activation, residual, cu_seqlens):
    _check_options(target, read, activation, residual, scale)
    checks.check_tensor("q", q, (None,) * 4, names="B, T, H, K")
    B, T, H, K = q.shape
    device = q.device
    checks.check_tensor("k", k, (B, T, H, K), names="B, T, H, K", device=device)
    checks.check_tensor("w2", w2, (H, None, K), names="H, F, K", device=device)
    F = w2.shape[1]
    checks.check_tensor("w1", w1, (H, None, F), names="H, V, F", device=device)
    V = w1.shape[1]
    if residual and V != K:
        raise ValueError(f"residual=True needs V == K (M(x) = x + W1 φ(W2 x)), but w1 [H,V,F] has "
                         f"V = {V} and q has K = {K}; pass residual=False or make V == K")
    if target == "self":
        checks.check_tensor("v", v, (B, T, H, K), names="B, T, H, K (target='self' feeds v to the memory)",
                            device=device)
    else:
        checks.check_tensor("v", v, (B, T, H, V), names="B, T, H, V (V = w1.shape[1])", device=device)
    for name, gate in (("eta", eta), ("log_alpha", log_alpha), ("beta", beta), ("mu", mu)):
        if gate is not None or name == "eta":
            checks.check_tensor(name, gate, (B, T, H), names="B, T, H", device=device)
    checks.check_positive_int("chunk_size", chunk_size)
    N = B if cu_seqlens is None else checks.check_cu_seqlens(cu_seqlens, B, T, device)
    return N, H, K, V, F, device


def mlp_memory(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eta: torch.Tensor,
               w1: torch.Tensor, w2: torch.Tensor, log_alpha: Optional[torch.Tensor] = None,
               beta: Optional[torch.Tensor] = None, mu: Optional[torch.Tensor] = None, *,
               chunk_size: int = 64, target: str = "external", read: str = "after", scale: float = 1.0,
               activation: str = "gelu", residual: bool = True, initial_state: StateLike = None,
               output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
               precision: str = "auto", backend: str = "auto"):
    """Chunked 2-layer MLP memory M(x) = [x +] W1 φ(W2 x) with DGD, retention and momentum (SPEC §3).

    q, k [B,T,H,K]; v [B,T,H,V] ([B,T,H,K] for target="self"); eta, log_alpha, beta, mu [B,T,H];
    w1 [H,V,F], w2 [H,F,K]: the meta-learned initial weights shared by all sequences
    (differentiable; their gradients sum over sequences). φ = exact (erf) "gelu" or "silu";
    ``residual=True`` adds x and needs V == K.
    Per chunk of ``chunk_size`` tokens, with chunk-start weights (W1_s, W2_s): z_t = W2_s k_t,
    a_t = φ(z_t), e_t = [k_t +] W1_s a_t − target_t (target_t = v_t, or M_s(v_t) for "self"),
    d_t = (W1_sᵀe_t) ⊙ φ'(z_t); S1_t = μ_t S1_{t−1} − η_t e_t a_tᵀ, S2_t = μ_t S2_{t−1} − η_t d_t k_tᵀ
    (no μ term without mu); W1_t = α_t W1_{t−1} + S1_t; W2_t = W2_{t−1}(α_t I − β_t k_t k_tᵀ) + S2_t;
    o_t = M(scale·q_t) at (W1_t, W2_t) for read="after", (W1_{t−1}, W2_{t−1}) for "before",
    (W1_s, W2_s) for "chunk". α = exp(log_alpha) (1 if None), β = beta (0 if None).
    ``cu_seqlens`` ([N+1], B == 1) packs sequences. ``initial_state``: None (every sequence starts
    from w1, w2), a tuple (W1 [N,H,V,F], W2 [N,H,F,K], S1 or None, S2 or None) at a chunk boundary
    (overrides w1, w2), or an :class:`MLPMemoryState` from an earlier call (resumes mid-chunk).
    Returns (o [B,T,H,V] in q's dtype, final_state: MLPMemoryState or None).
    ``precision``: the products of the kernel backends (triton, cuda). "auto": operands rounded to
    tf32 for bfloat16 / float16 inputs, float32-accurate (tf32x3) for float32 inputs; "float32":
    float32-accurate always (slower; for runaway dynamics, where tf32's rounding grows with the
    outputs and the gradients miss SPEC §7: docs/semantics.md); "tf32": tf32 always (fastest).
    The reference and torch backends compute in the inputs' precision whatever it says.
    ``backend``: "auto", "reference", "torch", "triton" or "cuda" (see core.backends).
    """
    checks.check_option("precision", precision, PRECISIONS)
    N, H, K, V, F, device = _check_args(q, k, v, eta, w1, w2, log_alpha, beta, mu, chunk_size, target,
                                        read, scale, activation, residual, cu_seqlens)
    w1_0, w2_0, s1_0, s2_0, w1c0, w2c0, pos0 = _check_state(initial_state, N, H, K, V, F,
                                                            chunk_size, mu, device)
    inputs = dict(q=q, k=k, v=v, eta=eta, w1=w1, w2=w2, log_alpha=log_alpha, beta=beta, mu=mu,
                  w1_0=w1_0, w2_0=w2_0, s1_0=s1_0, s2_0=s2_0, w1_chunk0=w1c0, w2_chunk0=w2c0,
                  position0=pos0, cu_seqlens=cu_seqlens)
    cfg = dict(chunk_size=chunk_size, target=target, read=read, scale=float(scale),
               activation=activation, residual=residual, output_final_state=bool(output_final_state),
               precision=precision)
    cfg["backend"] = select_backend("mlp_memory", backend, BACKENDS, device, inputs, cfg, auto_order(inputs))
    if cfg["backend"] in ("triton", "cuda"):      # decided here, so that the fake forward's shapes agree
        cfg["keep_residuals"] = keeps_residuals(inputs, cfg)
    out = OP(cfg, **inputs)
    if not output_final_state:
        return out["o"], None
    S1, S2 = (out["S1"], out["S2"]) if mu is not None else (None, None)
    return out["o"], MLPMemoryState(out["W1"], out["W2"], S1, S2, out["W1_chunk"], out["W2_chunk"],
                                    out["position"], chunk_size)


STEP_INPUTS = ("q", "k", "v", "eta", "log_alpha", "beta", "mu")
STEP_STATE = ("W1", "W2", "S1", "S2", "W1_chunk", "W2_chunk", "position")
STEP_BACKENDS = {"torch": Backend(step_impl.forward)}
try:  # the fused Triton step; triton itself is imported only when it first runs
    from .triton_step import BACKEND as _TRITON_STEP
    STEP_BACKENDS["triton"] = _TRITON_STEP
except ImportError:  # pragma: no cover
    pass
STEP_OP = StepSpec("mlp_memory_step", STEP_INPUTS, STEP_STATE, step_impl.fake, STEP_BACKENDS)


def mlp_memory_step(q, k, v, eta, log_alpha=None, beta=None, mu=None, *, state: MLPMemoryState,
                    target: str = "external", read: str = "after", scale: float = 1.0,
                    activation: str = "gelu", residual: bool = True, backend: str = "auto") -> torch.Tensor:
    """One decode token per sequence, updating ``state`` in place (SPEC §6).

    q, k [N,H,K]; v [N,H,V] ([N,H,K] for target="self"); gates [N,H]. ``state`` is an
    :class:`MLPMemoryState` (its chunk_size is used; momenta S1, S2 are required iff mu is given;
    ``MLPMemoryState.from_weights`` makes a fresh one from w1, w2). Equal to ``mlp_memory`` over the
    same token with ``initial_state=state`` and the same options. Returns o [N,H,V] in q's dtype.
    """
    if not isinstance(state, MLPMemoryState):
        raise ValueError(f"state must be an MLPMemoryState, got {type(state).__name__}")
    _check_options(target, read, activation, residual, scale)
    checks.check_tensor("state.W2", state.W2, (None,) * 4, names="N, H, F, K")
    N, H, F, K = state.W2.shape
    device = state.W2.device
    checks.check_tensor("state.W1", state.W1, (N, H, None, F), names="N, H, V, F", device=device)
    V = state.W1.shape[2]
    checks.check_tensor("state.W1_chunk", state.W1_chunk, (N, H, V, F), names="N, H, V, F", device=device)
    checks.check_tensor("state.W2_chunk", state.W2_chunk, (N, H, F, K), names="N, H, F, K", device=device)
    checks.check_tensor("state.position", state.position, (N,), names="N", dtypes=(torch.int64,),
                        device=device)
    if residual and V != K:
        raise ValueError(f"residual=True needs V == K, but the state has V = {V}, K = {K}")
    checks.check_tensor("q", q, (N, H, K), names="N, H, K", device=device)
    checks.check_tensor("k", k, (N, H, K), names="N, H, K", device=device)
    if target == "self":
        checks.check_tensor("v", v, (N, H, K), names="N, H, K (target='self')", device=device)
    else:
        checks.check_tensor("v", v, (N, H, V), names="N, H, V", device=device)
    for name, gate in (("eta", eta), ("log_alpha", log_alpha), ("beta", beta), ("mu", mu)):
        if gate is not None or name == "eta":
            checks.check_tensor(name, gate, (N, H), names="N, H", device=device)
    if (mu is None) != (state.S1 is None) or (state.S1 is None) != (state.S2 is None):
        raise ValueError("mu and state.S1, state.S2 must be given together (momentum needs its state)")
    if mu is not None:
        checks.check_tensor("state.S1", state.S1, (N, H, V, F), names="N, H, V, F", device=device)
        checks.check_tensor("state.S2", state.S2, (N, H, F, K), names="N, H, F, K", device=device)
    inputs = dict(q=q, k=k, v=v, eta=eta, log_alpha=log_alpha, beta=beta, mu=mu)
    cfg = dict(chunk_size=state.chunk_size, target=target, read=read, scale=float(scale),
               activation=activation, residual=residual)
    tensors = state.tensors()
    for name in ("S1", "S2"):
        if tensors[name] is None:
            tensors[name] = state.W1.new_empty(0)
    cfg["backend"] = select_backend("mlp_memory_step", backend, STEP_BACKENDS, device,
                                    with_state(inputs, tensors), cfg)
    return STEP_OP(cfg, tensors, **inputs)
