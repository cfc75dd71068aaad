"""Public ``self_modifying_titans`` and ``self_modifying_titans_step`` (SPEC §5, §6): checks,
state, dispatch."""
from __future__ import annotations

import functools
import math
from typing import Mapping, Optional, Union

import torch

from ...core import checks
from ...core.backends import Backend, select_backend
from ...core.custom_op import OpSpec, StepSpec
from ...core.sequences import num_sequences
from . import chunk, reference, step as step_impl
from .inputs import INPUTS, OUTPUTS, compute_dtype
from .memories import MAX_SLOTS, MEMORIES, SCALAR_MEMORIES, SLOTS
from .state import FLAT_KINDS, FLAT_STATE, SelfModifyingTitansState, flat_name

MEMORY_KINDS = ("mlp", "linear")
READS = ("chunk", "before")
ACTIVATIONS = ("gelu", "silu")


def _fake(inputs, cfg):
    x = inputs["x"]
    B, T, H, D = x.shape
    dt = compute_dtype(x)
    out = [x.new_empty(B, T, H, D)]
    N = num_sequences(B, inputs["cu_seqlens"])
    for kind in FLAT_KINDS:
        for m in MEMORIES:
            for i in range(MAX_SLOTS):
                p = inputs[flat_name("P", m, i)]
                present = cfg["output_final_state"] and p is not None and (kind != "S" or cfg["mu"] is not None)
                out.append(x.new_empty(N, *p.shape, dtype=dt) if present else x.new_empty(0, dtype=dt))
    n_pos = N if cfg["output_final_state"] else 0
    out += [x.new_empty(n_pos, dtype=torch.int64) for _ in range(2)]
    return tuple(out)


BACKENDS = {"reference": Backend(reference.forward), "torch": Backend(chunk.forward)}
OP = OpSpec("self_modifying_titans", INPUTS, OUTPUTS, _fake, BACKENDS)


Params = Mapping[str, tuple]
StateLike = Union[SelfModifyingTitansState, Mapping, None]


def _slot_forms(memory: str, m: str) -> list[tuple[str, Optional[tuple], str]]:
    """(slot name, expected shape with None for H/D placeholders resolved later, names) per slot."""
    O = "1" if m in SCALAR_MEMORIES else "D"
    if memory == "linear":
        return [("w", (None, O, "D"), f"H, {O}, D")]
    skip = ("w_skip", (None, "1", "D"), "H, 1, D") if m in SCALAR_MEMORIES else ("w_skip", None, "None")
    return [("w1", (None, O, "D"), f"H, {O}, D"), ("w2", (None, "D", "D"), "H, D, D"), skip]


def _shape(form, H, D, lead=()):
    return tuple(lead) + tuple(H if s is None else (1 if s == "1" else D) for s in form)


def _tuple_form(memory: str, m: str) -> str:
    return "(" + ", ".join(name if form is not None else "None" for name, form, _ in _slot_forms(memory, m)) \
        + ("," if memory == "linear" else "") + ")"


@functools.lru_cache(maxsize=256)
def _memory_checks(label: str, memory: str, H: int, D: int, lead: tuple) -> tuple:
    """Per memory: (m, forms, [(slot, name for messages, shape or None, names)])."""
    lead_names = "N, " if lead else ""
    return tuple((m, forms, tuple((i, f"{label}[{m!r}][{i}]", name, None if form is None else
                                   _shape(form, H, D, lead), lead_names + names)
                                  for i, (name, form, names) in enumerate(forms)))
                 for m in MEMORIES for forms in (_slot_forms(memory, m),))


def _check_memories(label: str, group, memory: str, H: int, D: int, device, lead=()) -> dict:
    """Check a dict memory -> tuple of weights; ``lead`` = leading dims (N,) for states."""
    if not isinstance(group, Mapping) or group.keys() != _MEMORY_SET:
        got = sorted(group) if isinstance(group, Mapping) else type(group).__name__
        raise ValueError(f"{label} must be a dict with keys 'k', 'v', 'eta', 'alpha', 'mem' (one tuple of "
                         f"weights per memory), got {got}")
    out = {}
    for m, forms, slots in _memory_checks(label, memory, H, D, tuple(lead)):
        w = group[m]
        if not isinstance(w, (tuple, list)) or len(w) != len(forms):
            raise ValueError(f"{label}[{m!r}] must be a tuple {_tuple_form(memory, m)} for memory={memory!r}, "
                             f"got {type(w).__name__}{'' if not isinstance(w, (tuple, list)) else f' of length {len(w)}'}")
        for i, where, name, shape, names in slots:
            if shape is None:
                if w[i] is not None:
                    raise ValueError(f"{where} ({name}) must be None: the skip of a D→D memory is the identity")
                continue
            checks.check_tensor(where, w[i], shape, names=names, device=device)
        out[m] = tuple(w)
    return out


_MEMORY_SET = frozenset(MEMORIES)


def _check_state(initial_state: StateLike, memory, N, H, D, cs_other, cs_memory, mu, device) -> dict:
    """Flat name -> tensor for the state inputs of the op (empty dict for no state)."""
    if initial_state is None:
        return {}
    lead = (N,)
    if isinstance(initial_state, SelfModifyingTitansState):
        st = initial_state
        if st.memory != memory:
            raise ValueError(f"initial_state was produced with memory={st.memory!r}, but this call has "
                             f"memory={memory!r}")
        for name, got, want in (("chunk_size_other", st.chunk_size_other, cs_other),
                                ("chunk_size_memory", st.chunk_size_memory, cs_memory)):
            if got != want:
                raise ValueError(f"initial_state was produced with {name}={got}, but this call has {name}={want}")
        _check_memories("initial_state.weights", st.weights, memory, H, D, device, lead)
        _check_memories("initial_state.chunk_start", st.chunk_start, memory, H, D, device, lead)
        if st.momentum is not None:
            if mu is None:
                raise ValueError("initial_state has momenta, but mu is None (no momentum state); pass mu "
                                 "or drop the momenta")
            _check_memories("initial_state.momentum", st.momentum, memory, H, D, device, lead)
        for name in ("position_other", "position_memory"):
            checks.check_tensor(f"initial_state.{name}", getattr(st, name), (N,), names="N",
                                dtypes=checks.INDEX_DTYPES, device=device)
        po, pm = st.position_other.tolist(), st.position_memory.tolist()
        if any(not 0 <= p < cs_other for p in po) or any(not 0 <= p < cs_memory for p in pm):
            raise ValueError(f"initial_state.position_other must lie in [0, {cs_other}) and "
                             f"initial_state.position_memory in [0, {cs_memory}), got {po} and {pm}")
        small = min(cs_other, cs_memory)
        if any(a % small != b % small for a, b in zip(po, pm)):
            raise ValueError("initial_state.position_other and initial_state.position_memory disagree "
                             f"(both count the tokens of the same sequence): {po} vs {pm}")
        flat = st.tensors()
        flat["pos_other"] = st.position_other.to(torch.int64)
        flat["pos_memory"] = st.position_memory.to(torch.int64)
        return {k: v for k, v in flat.items() if v is not None}
    if isinstance(initial_state, Mapping):
        weights = _check_memories("initial_state", initial_state, memory, H, D, device, lead)
        flat = {}
        for m, w in weights.items():
            for i, t in enumerate(w):
                if t is not None:
                    flat[flat_name("W", m, i)] = t
                    flat[flat_name("C", m, i)] = t
        flat["pos_other"] = torch.zeros(N, dtype=torch.int64, device=device)
        flat["pos_memory"] = torch.zeros(N, dtype=torch.int64, device=device)
        return flat
    raise ValueError("initial_state must be None, a SelfModifyingTitansState, or a dict of per-sequence "
                     "weights {'k': (...), 'v': ..., 'eta': ..., 'alpha': ..., 'mem': ...} with [N, H, ...] "
                     f"tensors (at a chunk boundary), got {type(initial_state).__name__}")


def _check_options(memory, chunk_size_other, chunk_size_memory, eta_scale, use_alpha, mu, read,
                   activation):
    checks.check_option("memory", memory, MEMORY_KINDS)
    checks.check_option("read", read, READS)
    checks.check_option("activation", activation, ACTIVATIONS)
    checks.check_positive_int("chunk_size_other", chunk_size_other)
    checks.check_positive_int("chunk_size_memory", chunk_size_memory)
    if chunk_size_memory % chunk_size_other and chunk_size_other % chunk_size_memory:
        raise ValueError(f"chunk_size_memory must be a multiple of chunk_size_other or vice versa, got "
                         f"chunk_size_memory={chunk_size_memory}, chunk_size_other={chunk_size_other}")
    checks.check_scalar("eta_scale", eta_scale, low=0.0, high=math.inf)
    if not isinstance(use_alpha, bool):
        raise ValueError(f"use_alpha must be True or False, got {use_alpha!r}")
    if mu is not None and (isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0.0 <= mu < 1.0):
        raise ValueError(f"mu must be None or a float in [0, 1), got {mu!r}")


def _build(x, q, params, memory, chunk_size_other, chunk_size_memory, eta_scale, use_alpha, mu, read,
           activation, initial_state, output_final_state, cu_seqlens, backend):
    """Check every argument (SPEC §8) and return (op inputs by flat name, config, params)."""
    checks.check_tensor("x", x, (None,) * 4, names="B, T, H, D")
    B, T, H, D = x.shape
    device = x.device
    checks.check_tensor("q", q, (B, T, H, D), names="B, T, H, D", device=device)
    _check_options(memory, chunk_size_other, chunk_size_memory, eta_scale, use_alpha, mu, read, activation)
    params = _check_memories("params", params, memory, H, D, device)
    N = B if cu_seqlens is None else checks.check_cu_seqlens(cu_seqlens, B, T, device)
    state = _check_state(initial_state, memory, N, H, D, chunk_size_other, chunk_size_memory, mu, device)
    inputs = {n: None for n in INPUTS}
    inputs.update(x=x, q=q, cu_seqlens=cu_seqlens)
    for m, w in params.items():
        for i, t in enumerate(w):
            inputs[flat_name("P", m, i)] = t
    inputs.update(state)
    cfg = dict(memory=memory, chunk_size_other=chunk_size_other, chunk_size_memory=chunk_size_memory,
               eta_scale=float(eta_scale), use_alpha=use_alpha, mu=None if mu is None else float(mu),
               read=read, activation=activation, output_final_state=bool(output_final_state))
    cfg["backend"] = select_backend("self_modifying_titans", backend, BACKENDS, device, inputs, cfg)
    return inputs, cfg, params


def self_modifying_titans(x: torch.Tensor, q: torch.Tensor, params: Params, *, memory: str = "mlp",
                          chunk_size_other: int = 16, chunk_size_memory: int = 64,
                          eta_scale: float = 1e-3, use_alpha: bool = True, mu: Optional[float] = None,
                          read: str = "chunk", activation: str = "gelu",
                          initial_state: StateLike = None, output_final_state: bool = False,
                          cu_seqlens: Optional[torch.Tensor] = None, backend: str = "auto"):
    """The fused HOPE sequence-mixing core (SPEC §5): five self-modifying memories per head.

    x, q [B,T,H,D] (after the layer's convolution and static projections). ``params``: the
    meta-learned initial weights, a dict with keys "k", "v", "eta", "alpha", "mem":
    memory="mlp": tuples (w1 [H,O,D], w2 [H,D,D], w_skip) with M(x) = W_skip x + W1 φ(W2 x),
    w_skip None (identity) for k, v, mem and [H,1,D] for eta, alpha; memory="linear": 1-tuples
    (w [H,O,D],), M(x) = W x. O = D for k, v, mem; O = 1 for eta, alpha.

    Per token, from the chunk-start states of its group (group A = k, v, eta, alpha on the grid of
    ``chunk_size_other``; group B = mem on the grid of ``chunk_size_memory``; one must divide the
    other): k_t = l2norm(M_k(x_t)), v_t = M_v(x_t), q̂_t = l2norm(q_t),
    η_t = eta_scale·softplus(M_η(x_t)), α_t = sigmoid(M_α(x_t)) (1 if not ``use_alpha``),
    o_t = M_mem(q̂_t) (read="chunk": M_mem at its chunk start; "before": M_mem,t−1). Every memory
    learns in context with the mlp_memory / linear_memory rule: key k_t, self-generated target
    M_□,s(v_t), rate η_t, retention α_t, DGD β = η_t, optional momentum ``mu`` (a float in
    [0, 1)); W_skip of M_η, M_α is updated like W2.

    ``initial_state``: None (every sequence starts from ``params``), a
    :class:`SelfModifyingTitansState` from an earlier call (resumes mid-chunk), or a dict like
    ``params`` with per-sequence weights [N,H,...] (at a chunk boundary, zero momenta).
    ``cu_seqlens`` ([N+1], B == 1) packs sequences. Returns (o [B,T,H,D] in x's dtype,
    final_state: SelfModifyingTitansState or None). ``backend``: "auto", "reference", "torch".
    """
    inputs, cfg, params = _build(x, q, params, memory, chunk_size_other, chunk_size_memory, eta_scale,
                                 use_alpha, mu, read, activation, initial_state, output_final_state,
                                 cu_seqlens, backend)
    out = OP(cfg, **inputs)
    if not output_final_state:
        return out["o"], None
    flat = {"pos_other": out["pos_other"], "pos_memory": out["pos_memory"]}
    for kind in FLAT_KINDS:
        for m in MEMORIES:
            for i in range(len(SLOTS[memory])):
                present = params[m][i] is not None and (kind != "S" or mu is not None)
                flat[flat_name(kind, m, i)] = out[flat_name(kind, m, i)] if present else None
    return out["o"], SelfModifyingTitansState.from_flat(
        flat, memory=memory, chunk_size_other=chunk_size_other, chunk_size_memory=chunk_size_memory,
        momentum=mu is not None)


STEP_INPUTS = ("x", "q")
STEP_BACKENDS = {"torch": Backend(step_impl.forward)}
STEP_OP = StepSpec("self_modifying_titans_step", STEP_INPUTS, FLAT_STATE, step_impl.fake, STEP_BACKENDS)


def self_modifying_titans_step(x: torch.Tensor, q: torch.Tensor, *, state: SelfModifyingTitansState,
                               eta_scale: float = 1e-3, use_alpha: bool = True,
                               mu: Optional[float] = None, read: str = "chunk",
                               activation: str = "gelu", backend: str = "auto") -> torch.Tensor:
    """One decode token per sequence, updating ``state`` in place (SPEC §6).

    x, q [N,H,D]; ``state`` a :class:`SelfModifyingTitansState` (its memory kind and chunk sizes
    are used; momenta are required iff ``mu`` is given). The other options must be those of the
    call that produced the state. Equal to ``self_modifying_titans`` over the same token with
    ``initial_state=state``. Vectorised over sequences and heads (no Python work per sequence).
    Returns o [N,H,D] in x's dtype.
    """
    if not isinstance(state, SelfModifyingTitansState):
        raise ValueError(f"state must be a SelfModifyingTitansState, got {type(state).__name__}")
    memory = state.memory
    _check_options(memory, state.chunk_size_other, state.chunk_size_memory, eta_scale, use_alpha, mu,
                   read, activation)
    w0 = state.weights["k"][0] if isinstance(state.weights, Mapping) and "k" in state.weights else None
    if not isinstance(w0, torch.Tensor) or w0.dim() != 4:
        raise ValueError("state.weights['k'][0] must be a [N, H, O, D] tensor")
    N, H, _, D = w0.shape
    device = w0.device
    checks.check_tensor("x", x, (N, H, D), names="N, H, D", device=device)
    checks.check_tensor("q", q, (N, H, D), names="N, H, D", device=device)
    _check_memories("state.weights", state.weights, memory, H, D, device, (N,))
    _check_memories("state.chunk_start", state.chunk_start, memory, H, D, device, (N,))
    if (mu is None) != (state.momentum is None):
        raise ValueError("mu and state.momentum must be given together (momentum needs its state)")
    if state.momentum is not None:
        _check_memories("state.momentum", state.momentum, memory, H, D, device, (N,))
    for name in ("position_other", "position_memory"):
        checks.check_tensor(f"state.{name}", getattr(state, name), (N,), names="N",
                            dtypes=(torch.int64,), device=device)
    cfg = dict(memory=memory, chunk_size_other=state.chunk_size_other,
               chunk_size_memory=state.chunk_size_memory, eta_scale=float(eta_scale),
               use_alpha=use_alpha, mu=None if mu is None else float(mu), read=read,
               activation=activation)
    inputs = dict(x=x, q=q)
    cfg["backend"] = select_backend("self_modifying_titans_step", backend, STEP_BACKENDS, device, inputs, cfg)
    tensors = {n: (t if t is not None else w0.new_empty(0)) for n, t in state.tensors().items()}
    return STEP_OP(cfg, tensors, **inputs)


__all__ = ["self_modifying_titans", "self_modifying_titans_step", "SelfModifyingTitansState"]
