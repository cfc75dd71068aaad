"""The MLP memory of SPEC §3 at one set of weights, and one token of its rule.

Shared by the token-loop reference, the chunked ``torch`` backend (which evaluates the same
formulas for a whole chunk at once, tokens as rows) and the decode step.
Row convention: x [..., n, K] holds n inputs as rows; W2 [..., F, K], W1 [..., V, F] (nn.Linear
orientation), so W2 x for every row is ``x @ W2.mT``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

ACTIVATIONS = ("gelu", "silu")
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU: x Φ(x)."""
    return 0.5 * x * (1.0 + torch.erf(x * _INV_SQRT2))


def gelu_grad(x: torch.Tensor) -> torch.Tensor:
    """d/dx gelu = Φ(x) + x φ_N(x)."""
    return 0.5 * (1.0 + torch.erf(x * _INV_SQRT2)) + x * torch.exp(-0.5 * x * x) * _INV_SQRT_2PI


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def silu_grad(x: torch.Tensor) -> torch.Tensor:
    """d/dx silu = σ(x)(1 + x(1 − σ(x)))."""
    s = torch.sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def act(name: str):
    """(φ, φ') for ``name`` in ACTIVATIONS; φ' is analytic (no autograd inside the inner rule)."""
    return {"gelu": (gelu, gelu_grad), "silu": (silu, silu_grad)}[name]


def mlp_rows(W1: torch.Tensor, W2: torch.Tensor, x: torch.Tensor, *, activation: str,
             residual: bool) -> torch.Tensor:
    """M(x) = [x +] W1 φ(W2 x) for every row of x [..., n, K] -> [..., n, V]."""
    phi, _ = act(activation)
    y = phi(x @ W2.mT) @ W1.mT
    return y + x if residual else y


def gradient_factors(W1: torch.Tensor, W2: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                     target: str, activation: str, residual: bool):
    """Rank-1 factors of the inner gradients at weights (W1, W2) for every row of k [..., n, K].

    v [..., n, V] (external target) or [..., n, K] (target "self": target = M(v) at (W1, W2)).
    Returns (a, e, d): a = φ(z) [..., n, F], e = pred − target [..., n, V],
    d = (W1ᵀe) ⊙ φ'(z) [..., n, F], with z = W2 k; so G1 = e aᵀ and G2 = d kᵀ per row.
    """
    phi, dphi = act(activation)
    z = k @ W2.mT
    a = phi(z)
    pred = a @ W1.mT
    if residual:
        pred = pred + k
    tgt = v if target == "external" else mlp_rows(W1, W2, v, activation=activation, residual=residual)
    e = pred - tgt
    d = (e @ W1) * dphi(z)
    return a, e, d


def token_step(W1, W2, S1, S2, W1c, W2c, q, k, v, eta, alpha, beta, mu: Optional[torch.Tensor], *,
               target: str, read: str, scale: float, activation: str, residual: bool):
    """Apply token t to (W1_{t−1}, W2_{t−1}, S1_{t−1}, S2_{t−1}) with chunk-start weights (W1c, W2c).

    W1, W1c, S1 [..., V, F]; W2, W2c, S2 [..., F, K] (S1, S2 None without momentum); q, k [..., K];
    v [..., V] ([..., K] for target "self"); eta, alpha, beta [...] (alpha = exp(log_alpha); 1
    and 0 when absent); mu [...] or None. Returns (o_t [..., V], W1_t, W2_t, S1_t, S2_t).
    """
    kr = k.unsqueeze(-2)                                            # [..., 1, K]
    a, e, d = gradient_factors(W1c, W2c, kr, v.unsqueeze(-2), target=target, activation=activation,
                               residual=residual)
    G1 = e.mT @ a                                                   # e_t a_tᵀ   [..., V, F]
    G2 = d.mT @ kr                                                  # d_t k_tᵀ   [..., F, K]
    sc = lambda g: g[..., None, None]  # noqa: E731
    S1n, S2n = -sc(eta) * G1, -sc(eta) * G2
    if mu is not None:
        S1n, S2n = sc(mu) * S1 + S1n, sc(mu) * S2 + S2n
    W1n = sc(alpha) * W1 + S1n
    W2n = sc(alpha) * W2 - sc(beta) * (W2 @ kr.mT) @ kr + S2n      # W2(αI − β k kᵀ) + S2
    W1r, W2r = {"after": (W1n, W2n), "before": (W1, W2), "chunk": (W1c, W2c)}[read]
    o = mlp_rows(W1r, W2r, (scale * q).unsqueeze(-2), activation=activation, residual=residual)
    return o.squeeze(-2), W1n, W2n, S1n, S2n
