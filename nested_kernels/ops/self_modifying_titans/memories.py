"""The five memories of ``self_modifying_titans`` (SPEC §5) and the per-token rule, batched over any
leading dimensions. Shared by the token-loop reference, the chunked torch backend (projections and
frozen gradients) and the decode step, so all follow SPEC §5 line by line.

A memory is a tuple of weights in ``nn.Linear`` orientation (out × in), with any leading dims:
* ``memory="mlp"``: ``(w1 [..., O, D], w2 [..., D, D], w_skip [..., O, D] or None)``,
  M(x) = W_skip x + W1 φ(W2 x), where ``w_skip=None`` is the identity (D→D memories);
* ``memory="linear"``: ``(w [..., O, D],)``, M(x) = W x.
O = D for M_k, M_v, M_mem and O = 1 for M_η, M_α.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

MEMORIES = ("k", "v", "eta", "alpha", "mem")
GROUP_A = ("k", "v", "eta", "alpha")          # on the grid of chunk_size_other
SCALAR_MEMORIES = ("eta", "alpha")            # D → 1 (learned skip row in the MLP form)
SLOTS = {"mlp": ("w1", "w2", "w_skip"), "linear": ("w",)}
MAX_SLOTS = 3
# Weights that DGD acts on (input side fed by the key k): W2, W_skip, and the linear W.
# W1 (fed by the hidden activation) only has retention and the gradient step.
DGD_SLOTS = {"mlp": (False, True, True), "linear": (True,)}

Weights = Sequence[Optional[torch.Tensor]]


def act(z: torch.Tensor, name: str) -> torch.Tensor:
    return F.gelu(z) if name == "gelu" else F.silu(z)


def act_grad(z: torch.Tensor, name: str) -> torch.Tensor:
    """φ'(z): exact (erf) GELU or SiLU."""
    if name == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(z * (1.0 / math.sqrt(2.0))))
        pdf = torch.exp(-0.5 * z * z) * (1.0 / math.sqrt(2.0 * math.pi))
        return cdf + z * pdf
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def mv(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """W x for W [..., O, I], x [..., I] -> [..., O]."""
    return torch.einsum("...oi,...i->...o", w, x)


def outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.unsqueeze(-1) * b.unsqueeze(-2)


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """x / max(‖x‖₂, 1e-6) over the last dimension."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-6)


def apply(w: Weights, x: torch.Tensor, kind: str, activation: str) -> torch.Tensor:
    """M(x) for weights ``w`` [..., O, I] and inputs x [..., D]."""
    if kind == "linear":
        return mv(w[0], x)
    w1, w2, skip = w
    y = mv(w1, act(mv(w2, x), activation))
    return y + (x if skip is None else mv(skip, x))


def inner_gradients(w: Weights, key: torch.Tensor, target: torch.Tensor, kind: str,
                    activation: str) -> tuple:
    """∇ of ½‖M(key) − target‖² at weights ``w`` (target a constant), one entry per weight slot
    (None for the identity skip). Returns (gradients, error e)."""
    if kind == "linear":
        e = mv(w[0], key) - target
        return (outer(e, key),), e
    w1, w2, skip = w
    z = mv(w2, key)
    a = act(z, activation)
    e = mv(w1, a) + (key if skip is None else mv(skip, key)) - target
    d = torch.einsum("...of,...o->...f", w1, e) * act_grad(z, activation)
    return (outer(e, a), outer(d, key), None if skip is None else outer(e, key)), e


def token_update(w: Weights, s: Optional[Weights], w_chunk: Weights, k, v, eta, alpha, mu,
                 kind: str, activation: str):
    """One token of the mlp_memory / linear_memory rule with a self-generated target (SPEC §5).

    w, w_chunk: current (W_{t−1}) and chunk-start (W_s) weights; s: momenta or None (no mu);
    k, v [..., D]; eta, alpha [...]; mu a float or None. beta = eta (DGD). Returns (w_t, s_t).
    """
    target = apply(w_chunk, v, kind, activation)                 # v̂_t = M_s(v_t)
    grads, _ = inner_gradients(w_chunk, k, target, kind, activation)
    eta_, alpha_ = eta[..., None, None], alpha[..., None, None]
    new_w, new_s = [], []
    for i, (wi, gi, dgd) in enumerate(zip(w, grads, DGD_SLOTS[kind])):
        if wi is None:
            new_w.append(None)
            new_s.append(None)
            continue
        step = -eta_ * gi
        si = step if s is None else mu * s[i] + step
        wn = alpha_ * wi + si
        if dgd:                                                 # W (α I − β k kᵀ): β = η
            wn = wn - eta_ * outer(mv(wi, k), k)
        new_w.append(wn)
        new_s.append(si)
    return tuple(new_w), (None if s is None else tuple(new_s))


def project(wc: dict, x: torch.Tensor, q: torch.Tensor, *, kind: str, activation: str,
            eta_scale: float, use_alpha: bool):
    """(k, v, q̂, η, α, log α or None) of tokens x, q [..., D] from the chunk-start weights ``wc``
    of group A. η, α [...]."""
    k = l2norm(apply(wc["k"], x, kind, activation))
    v = apply(wc["v"], x, kind, activation)
    qh = l2norm(q)
    eta = eta_scale * F.softplus(apply(wc["eta"], x, kind, activation)[..., 0])
    if use_alpha:
        za = apply(wc["alpha"], x, kind, activation)[..., 0]
        alpha, log_alpha = torch.sigmoid(za), F.logsigmoid(za)
    else:
        alpha, log_alpha = torch.ones_like(eta), None
    return k, v, qh, eta, alpha, log_alpha
