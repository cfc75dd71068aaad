"""The MLP of ``fast_mlp`` and the gradient of ⟨g, MLP_W(x)⟩ with respect to its weights.

The one place where every backend (token-loop reference, chunked torch, CUDA, decode step) gets
the MLP's forward and the backward of an output-gradient g through it (SPEC §4):

* gelu / silu, weights (W_in [F,D], W_out [D,F]):
    z = W_in x,  a = φ(z),  MLP(x) = W_out a
    ∇_{W_out}⟨g, MLP⟩ = g aᵀ          ∇_{W_in}⟨g, MLP⟩ = d xᵀ,  d = (W_outᵀ g) ⊙ φ'(z)
* swiglu, weights (W_gate [F,D], W_up [F,D], W_down [D,F]):
    u = W_gate x,  v = W_up x,  h = silu(u) ⊙ v,  MLP(x) = W_down h
    ∇_{W_down} = g hᵀ,  with e = W_downᵀ g:  ∇_{W_gate} = (e ⊙ v ⊙ silu'(u)) xᵀ,  ∇_{W_up} = (e ⊙ silu(u)) xᵀ

Every weight gradient is a sum of outer products left_t right_tᵀ over tokens, so it is returned
as the factor pair (left [..., n, P], right [..., n, Q]) for a weight [P, Q]: the end-of-chunk
update Σ_t η_t left_t right_tᵀ is one batched matrix product (``eta_weighted_sum``) or one call of
the CUDA ``outer_update`` kernel. All functions broadcast over leading dimensions (weights
[..., P, Q] against tokens [..., n, D]) and are differentiable by autograd (φ' is written out, so
gradients of the update with respect to the weights — second derivatives of the MLP — exist).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

MLPS = ("gelu", "silu", "swiglu")
Tensor = torch.Tensor


def num_weights(mlp: str) -> int:
    """2 for gelu/silu (w_in, w_out), 3 for swiglu (w_gate, w_up, w_down)."""
    return 3 if mlp == "swiglu" else 2


def weight_names(mlp: str) -> tuple[str, ...]:
    return ("w_gate", "w_up", "w_down") if mlp == "swiglu" else ("w_in", "w_out")


def weight_shapes(mlp: str, D: int, F_: int) -> tuple[tuple[int, int], ...]:
    """Shapes [out, in] (torch.nn.Linear orientation) of the weights, in the ``weights`` order."""
    return ((F_, D), (F_, D), (D, F_)) if mlp == "swiglu" else ((F_, D), (D, F_))


def _act(z: Tensor, kind: str) -> Tensor:
    return F.gelu(z) if kind == "gelu" else F.silu(z)


def _act_grad(z: Tensor, kind: str) -> Tensor:
    """φ'(z): exact (erf) gelu: Φ(z) + z·pdf(z); silu: σ(z)(1 + z(1 − σ(z)))."""
    if kind == "gelu":
        cdf = 0.5 * (1.0 + torch.erf(z * (1.0 / math.sqrt(2.0))))
        pdf = torch.exp(-0.5 * z * z) * (1.0 / math.sqrt(2.0 * math.pi))
        return cdf + z * pdf
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _lin(x: Tensor, w: Tensor) -> Tensor:
    """x Wᵀ for tokens x [..., n, in] and weights W [..., out, in] (broadcast) -> [..., n, out]."""
    return torch.matmul(x, w.transpose(-1, -2))


def forward(weights: Sequence[Tensor], x: Tensor, mlp: str) -> tuple[Tensor, tuple]:
    """MLP_W(x) for tokens x [..., n, D]; returns (out [..., n, D], cache for ``grad_factors``)."""
    if mlp == "swiglu":
        w_gate, w_up, w_down = weights
        u, v = _lin(x, w_gate), _lin(x, w_up)
        s = F.silu(u)
        h = s * v
        return _lin(h, w_down), (u, v, s, h)
    w_in, w_out = weights
    z = _lin(x, w_in)
    a = _act(z, mlp)
    return _lin(a, w_out), (z, a)


def grad_factors(weights: Sequence[Tensor], x: Tensor, cache: tuple, g: Tensor,
                 mlp: str) -> list[tuple[Tensor, Tensor]]:
    """Factors of ∇_W ⟨g_t, MLP_W(x_t)⟩ (at the weights ``forward`` used), one pair per weight in
    the ``weights`` order: ∇_{W_i} summed over tokens = Σ_t left_t right_tᵀ."""
    if mlp == "swiglu":
        _, _, w_down = weights
        u, v, s, h = cache
        e = torch.matmul(g, w_down)                     # W_downᵀ g   [..., n, F]
        d_gate = e * v * _act_grad(u, "silu")
        d_up = e * s
        return [(d_gate, x), (d_up, x), (g, h)]
    _, w_out = weights
    z, a = cache
    d = torch.matmul(g, w_out) * _act_grad(z, mlp)     # (W_outᵀ g) ⊙ φ'(z)   [..., n, F]
    return [(d, x), (g, a)]


def eta_weighted_sum(left: Tensor, right: Tensor, eta: Tensor) -> Tensor:
    """Σ_t η_t left_t right_tᵀ for left [..., n, P], right [..., n, Q], eta [..., n] -> [..., P, Q]."""
    return torch.matmul((left * eta[..., None]).transpose(-1, -2), right)
