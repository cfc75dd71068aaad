"""Public ``fast_mlp`` and ``fast_mlp_step`` (SPEC §4, §6): checks, state, dispatch."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ...core import checks
from ...core.backends import TRITON_FIRST, Backend, select_backend
from ...core.custom_op import OpSpec, StepSpec, autograd_backward
from ...core.sequences import num_sequences
from ...core.step_backend import with_state
from . import chunk, reference, step as step_impl
from .inputs import INPUTS, OUTPUTS, compute_dtype, state_dtype, weight_dtype_name
from .mlp import MLPS, weight_names, weight_shapes
from .state import FastMLPState


def _fake(inputs, cfg):
    x = inputs["x"]
    B, T, D = x.shape
    y = x.new_empty(B, T, D)
    dt, wdt = compute_dtype(x), state_dtype(x, cfg)
    if not cfg["output_final_state"]:
        return (y,) + tuple(x.new_empty(0, dtype=dt) for _ in range(6)) + (x.new_empty(0, dtype=torch.int64),)
    N = num_sequences(B, inputs["cu_seqlens"])
    pick = lambda i: inputs[f"w{i}"] if inputs[f"w{i}"] is not None else inputs[f"s_w{i}"]  # noqa: E731
    shapes = [None if pick(i) is None else pick(i).shape[-2:] for i in range(3)]
    state = lambda d: [x.new_empty(0, dtype=d) if s is None else x.new_empty(N, *s, dtype=d)  # noqa: E731
                       for s in shapes]
    return (y, *state(wdt), *state(dt), x.new_empty(N, dtype=torch.int64))


def _cuda_unsupported(inputs, cfg) -> Optional[str]:
    x = inputs["x"]
    if x.device.type != "cuda":
        return f"the CUDA backend needs CUDA tensors, got {x.device}"
    if x.dtype == torch.float64:
        return "the CUDA kernel computes in float32; float64 inputs need backend='torch' or 'reference'"
    return None


def _cuda_backward(inputs, outputs, grads, cfg):
    """Gradients of the ``cuda`` backend: autograd through the ``torch`` backend's forward."""
    return autograd_backward(chunk.forward, INPUTS, inputs, [grads[n] for n in OUTPUTS], cfg)


BACKENDS = {
    "reference": Backend(reference.forward),
    "torch": Backend(chunk.forward),
    "cuda": Backend(chunk.cuda_forward, backward=_cuda_backward, unsupported=_cuda_unsupported),
}
try:  # the Triton backend; triton itself is imported only when a kernel first runs
    from .triton_backend import BACKEND as _TRITON, keeps_residuals
    from .dual import chosen as dual_form
    BACKENDS["triton"] = _TRITON
except ImportError:  # pragma: no cover
    pass
# residual output: the Triton backend's per-piece weight copies and activations, reused by its backward
OP = OpSpec("fast_mlp", INPUTS, OUTPUTS, _fake, BACKENDS, residuals=("saved",))
# backend="auto": the triton backend (bf16 products, fused update, hand-written backward) is ~10x
# faster than ``cuda`` (the torch chunk loop with the outer_update kernel, autograd backward).
AUTO_ORDER = TRITON_FIRST

StateLike = Union[FastMLPState, tuple, list, None]
def _weight_forms(mlp: str, D: int, F_: int) -> list[tuple[str, tuple, str]]:
    """(name, shape, form) per weight: e.g. ("w_in", (F, D), "F, D")."""
    forms = ("F, D", "F, D", "D, F") if mlp == "swiglu" else ("F, D", "D, F")
    return list(zip(weight_names(mlp), weight_shapes(mlp, D, F_), forms))


def _check_eta(eta, shape, form: str, device):
    if isinstance(eta, torch.Tensor):
        checks.check_tensor("eta", eta, shape, names=form, device=device)
    elif isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta != eta or abs(eta) == float("inf"):
        raise ValueError(f"eta must be a tensor [{form}] or a finite Python number, got {eta!r}")


def _check_signal(target, teach, shape, form: str, device):
    if (target is None) == (teach is None):
        raise ValueError("target / teach: exactly one of them must be given (target: the inner loss is "
                         "½‖y − target‖²; teach: an output gradient treated as data), got "
                         + ("both" if target is not None else "neither"))
    name = "target" if target is not None else "teach"
    checks.check_tensor(name, target if target is not None else teach, shape, names=form, device=device)


def _check_common(mlp, residual, retention, weight_dtype) -> Optional[str]:
    """Checks the options shared with the step; returns the cfg value of ``weight_dtype``."""
    checks.check_option("mlp", mlp, MLPS)
    if not isinstance(residual, bool):
        raise ValueError(f"residual must be True or False, got {residual!r}")
    checks.check_scalar("retention", retention)
    return weight_dtype_name(weight_dtype)


def _dtype_str(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _check_weight_dtype(name: str, t: torch.Tensor, want: Optional[torch.dtype], arg: str):
    """A state's fast weights must be stored in the dtype ``weight_dtype`` asks for."""
    if want is not None and t.dtype != want:
        raise ValueError(f"{name} must be {_dtype_str(want)} to match {arg}, got {_dtype_str(t.dtype)}")


def _check_args(x, weights, eta, chunk_size, target, teach, mlp, residual, retention, weight_dtype,
                cu_seqlens):
    checks.check_tensor("x", x, (None,) * 3, names="B, T, D")
    B, T, D = x.shape
    device = x.device
    wname = _check_common(mlp, residual, retention, weight_dtype)
    names = weight_names(mlp)
    if not isinstance(weights, (tuple, list)) or len(weights) != len(names):
        raise ValueError(f"weights must be a tuple ({', '.join(names)}) for mlp={mlp!r}, got "
                         + (f"{len(weights)} tensors" if isinstance(weights, (tuple, list))
                            else type(weights).__name__))
    checks.check_tensor(f"weights[0] ({names[0]})", weights[0], (None, D), names="F, D", device=device)
    F_ = weights[0].shape[0]
    for i, (name, shape, form) in enumerate(_weight_forms(mlp, D, F_)):
        checks.check_tensor(f"weights[{i}] ({name})", weights[i], shape, names=form, device=device)
    _check_eta(eta, (B, T), "B, T", device)
    _check_signal(target, teach, (B, T, D), "B, T, D", device)
    checks.check_positive_int("chunk_size", chunk_size)
    N = B if cu_seqlens is None else checks.check_cu_seqlens(cu_seqlens, B, T, device)
    return N, D, F_, device, wname


def _check_state(initial_state: StateLike, mlp: str, N: int, D: int, F_: int, chunk_size: int, device,
                 wdt: Optional[torch.dtype]):
    """Returns (per-sequence weights, pending update, position) — lists of tensors or Nones.
    ``wdt``: the dtype the state's weights must have (None: any floating dtype)."""
    if initial_state is None:
        return None, None, None
    forms = _weight_forms(mlp, D, F_)
    if isinstance(initial_state, FastMLPState):
        st = initial_state
        if st.chunk_size != chunk_size:
            raise ValueError(f"initial_state was produced with chunk_size={st.chunk_size}, "
                             f"but this call has chunk_size={chunk_size}")
        if (st.w2 is not None) != (mlp == "swiglu") or (st.u2 is not None) != (mlp == "swiglu"):
            raise ValueError(f"initial_state holds {len(st.weights)} weights ({st.mlp_family}), but "
                             f"mlp={mlp!r} needs {len(forms)}")
        ws, us = list(st.weights), list(st.updates)
        for i, (name, shape, form) in enumerate(forms):
            checks.check_tensor(f"initial_state.u{i} ({name})", us[i], (N, *shape), names="N, " + form,
                                device=device)
        checks.check_tensor("initial_state.position", st.position, (N,), names="N",
                            dtypes=checks.INDEX_DTYPES, device=device)
        label, position = "initial_state.w", st.position
    elif isinstance(initial_state, (tuple, list)) and len(initial_state) == len(forms):
        ws, us, position, label = list(initial_state), None, None, "initial_state["
    else:
        raise ValueError(f"initial_state must be None, a tuple ({', '.join(weight_names(mlp))}) of "
                         f"per-sequence weights [N, out, in] or a FastMLPState, got "
                         f"{type(initial_state).__name__}"
                         + (f" of length {len(initial_state)}" if isinstance(initial_state, (tuple, list)) else ""))
    for i, (name, shape, form) in enumerate(forms):
        where = f"{label}{i}" + ("]" if label.endswith("[") else "")
        checks.check_tensor(f"{where} ({name})", ws[i], (N, *shape), names="N, " + form, device=device)
        _check_weight_dtype(f"{where} ({name})", ws[i], wdt, "weight_dtype")
    return ws, us, position


def _slots(prefix: str, tensors: Optional[Sequence[torch.Tensor]]) -> dict:
    tensors = list(tensors or [])
    return {f"{prefix}{i}": tensors[i] if i < len(tensors) else None for i in range(3)}


def fast_mlp(x: torch.Tensor, weights: Sequence[torch.Tensor], eta: Union[torch.Tensor, float], *,
             chunk_size: int, target: Optional[torch.Tensor] = None,
             teach: Optional[torch.Tensor] = None, mlp: str = "gelu", residual: bool = True,
             retention: float = 1.0, initial_state: StateLike = None, output_final_state: bool = False,
             cu_seqlens: Optional[torch.Tensor] = None, weight_dtype: Optional[torch.dtype] = None,
             backend: str = "auto"):
    """Fast-weight MLP updated once per chunk: one level of a continuum memory system (SPEC §4).

    x [B,T,D]; ``weights`` the shared initial (meta-learned) weights in nn.Linear orientation:
    (w_in [F,D], w_out [D,F]) for mlp "gelu"/"silu" (MLP(x) = w_out φ(w_in x), exact-erf gelu),
    (w_gate [F,D], w_up [F,D], w_down [D,F]) for "swiglu" (MLP(x) = w_down(silu(w_gate x) ⊙ w_up x)).
    eta [B,T] or a Python number. Exactly one of ``target`` [B,T,D] and ``teach`` [B,T,D].

    Each sequence gets its own copy of the weights. Inside chunk c (chunks of ``chunk_size``
    tokens counted from each sequence's start) every token uses the chunk-start weights W_c:
    y_t = [x_t +] MLP_{W_c}(x_t). At the end of every complete chunk
    W_{c+1} = retention·W_c − Σ_{t∈c} η_t ∇_W⟨g_t, MLP_W(x_t)⟩ at W_c, with g_t = y_t − target_t
    (inner loss ½‖y_t − target_t‖², target a constant for the inner gradient) or g_t = teach_t
    (a given output gradient). A trailing partial chunk updates nothing; its partial sum is kept
    in the final state so that a later call completing the chunk applies the full update.

    ``initial_state``: None (every sequence starts from ``weights``), a tuple of per-sequence
    weights [N,out,in] (at a chunk boundary; ``weights`` are then only checked, not used), or a
    :class:`FastMLPState` from an earlier call (resumes mid-chunk). ``cu_seqlens`` ([N+1], B == 1)
    packs N sequences. Gradients flow to x, weights, eta, target/teach and the initial state.
    ``weight_dtype``: None (fast weights in float32; float64 for float64 inputs), torch.float32 or
    torch.bfloat16: the fast weights are stored in that dtype between chunks — the per-sequence
    copy of ``weights`` is rounded to it and every end-of-chunk update is computed in float32
    (from the stored weights and the float32 sum of the chunk's gradients) and rounded once.
    Final-state weights have that dtype (pending updates stay float32), an ``initial_state``'s
    weights must have it; float64 inputs keep float64 tensors rounded at the same points
    (the reference's witness of a bfloat16 kernel). Gradients pass straight through the rounding.
    Returns (y [B,T,D] in x's dtype, final_state: FastMLPState or None).
    ``backend``: "auto", "reference", "torch", "triton" or "cuda" (see core.backends and
    docs/fast_mlp.md).
    """
    N, D, F_, device, wname = _check_args(x, weights, eta, chunk_size, target, teach, mlp, residual,
                                          retention, weight_dtype, cu_seqlens)
    eta_tensor = eta if isinstance(eta, torch.Tensor) else None
    cfg = dict(chunk_size=chunk_size, mlp=mlp, residual=residual, retention=float(retention),
               eta_value=None if eta_tensor is not None else float(eta),
               output_final_state=bool(output_final_state), weight_dtype=wname)
    s_w, s_u, pos0 = _check_state(initial_state, mlp, N, D, F_, chunk_size, device,
                                  None if wname is None else state_dtype(x, cfg))
    inputs = dict(x=x, **_slots("w", None if s_w is not None else weights), eta=eta_tensor,
                  target=target, teach=teach, **_slots("s_w", s_w), **_slots("s_u", s_u),
                  position0=pos0, cu_seqlens=cu_seqlens)
    cfg["backend"] = select_backend("fast_mlp", backend, BACKENDS, device, inputs, cfg, AUTO_ORDER)
    if cfg["backend"] == "triton":      # decided here, so that the fake forward's shapes agree
        cfg["dual"] = dual_form(inputs, cfg)
        cfg["keep_residuals"] = keeps_residuals(inputs, cfg)
    out = OP(cfg, **inputs)
    if not output_final_state:
        return out["y"], None
    three = mlp == "swiglu"
    return out["y"], FastMLPState(out["w0"], out["w1"], out["w2"] if three else None, out["u0"], out["u1"],
                                  out["u2"] if three else None, out["position"], chunk_size)


STEP_INPUTS = ("x", "eta", "target", "teach")
STEP_STATE = ("w0", "w1", "w2", "u0", "u1", "u2", "position")
STEP_BACKENDS = {"torch": Backend(step_impl.forward)}
try:  # the Triton step; triton itself is imported only when it first runs
    from .triton_step import BACKEND as _TRITON_STEP
    STEP_BACKENDS["triton"] = _TRITON_STEP
except ImportError:  # pragma: no cover
    pass
STEP_OP = StepSpec("fast_mlp_step", STEP_INPUTS, STEP_STATE, step_impl.fake, STEP_BACKENDS)


def fast_mlp_step(x: torch.Tensor, eta: Union[torch.Tensor, float], *, state: FastMLPState,
                  target: Optional[torch.Tensor] = None, teach: Optional[torch.Tensor] = None,
                  mlp: str = "gelu", residual: bool = True, retention: float = 1.0,
                  weight_dtype: Optional[torch.dtype] = None, backend: str = "auto") -> torch.Tensor:
    """One decode token per sequence, updating ``state`` in place (SPEC §6).

    x [N,D]; eta [N] or a Python number; exactly one of target / teach [N,D]; ``state`` a
    :class:`FastMLPState` (its chunk_size is used; pass a detached state, e.g.
    ``final_state.detach()``). Equal to ``fast_mlp`` over the same token with
    ``initial_state=state``. ``weight_dtype`` as in ``fast_mlp``: the state's weights must be
    stored in it (or be float64), its pending updates in float32 (float64).
    Returns y [N,D] in x's dtype.
    """
    if not isinstance(state, FastMLPState):
        raise ValueError(f"state must be a FastMLPState, got {type(state).__name__}")
    wname = _check_common(mlp, residual, retention, weight_dtype)
    forms = _weight_forms(mlp, 0, 0)
    if (state.w2 is not None) != (mlp == "swiglu") or (state.u2 is not None) != (mlp == "swiglu"):
        raise ValueError(f"state holds {len(state.weights)} weights ({state.mlp_family}), but "
                         f"mlp={mlp!r} needs {len(forms)}")
    checks.check_tensor("state.w0", state.w0, (None, None, None), names="N, F, D")
    N, F_, D = state.w0.shape
    device = state.w0.device
    f64 = state.w0.dtype == torch.float64
    wdt = torch.float64 if f64 else weight_dtype or torch.float32
    udt = torch.float64 if f64 else torch.float32
    for i, (name, shape, form) in enumerate(_weight_forms(mlp, D, F_)):
        for field, t, want, arg in ((f"state.w{i}", state.weights[i], wdt, f"weight_dtype={weight_dtype}"),
                                    (f"state.u{i}", state.updates[i], udt, "the state's weights")):
            checks.check_tensor(f"{field} ({name})", t, (N, *shape), names="N, " + form, device=device)
            _check_weight_dtype(f"{field} ({name})", t, want, arg)
    checks.check_tensor("state.position", state.position, (N,), names="N", dtypes=(torch.int64,),
                        device=device)
    checks.check_tensor("x", x, (N, D), names="N, D", device=device)
    _check_eta(eta, (N,), "N", device)
    _check_signal(target, teach, (N, D), "N, D", device)
    eta_tensor = eta if isinstance(eta, torch.Tensor) else None
    inputs = dict(x=x, eta=eta_tensor, target=target, teach=teach)
    cfg = dict(chunk_size=state.chunk_size, mlp=mlp, residual=residual, retention=float(retention),
               eta_value=None if eta_tensor is not None else float(eta), weight_dtype=wname)
    tensors = {n: t if t is not None else state.w0.new_empty(0)
               for n, t in state.tensors().items()}
    cfg["backend"] = select_backend("fast_mlp_step", backend, STEP_BACKENDS, device,
                                    with_state(inputs, tensors), cfg)
    return STEP_OP(cfg, tensors, **inputs)
