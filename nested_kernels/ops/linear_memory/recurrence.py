"""One token of the linear-memory rule of SPEC §2, batched over any leading dimensions.

Shared by the token-loop reference and the torch decode step, so both follow SPEC line by line.
"""
from __future__ import annotations

from typing import Optional

import torch


def matvec(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mᵀx for M [..., K, V], x [..., K] -> [..., V]."""
    return torch.einsum("...kv,...k->...v", M, x)


def token_step(M, S, M_chunk, q, k, v, eta, alpha, beta, mu: Optional[torch.Tensor], *,
               target: str, read: str, scale: float):
    """Apply token t to state (M_{t-1}, S_{t-1}) with chunk-start state M_chunk = M_s.

    M, M_chunk [..., K, V]; S [..., K, V] or None; q, k [..., K]; v [..., V] (or [..., K] for
    target "self"); eta, alpha, beta [...] (alpha = exp(log_alpha), 1 and 0 when absent); mu [...]
    or None. Returns (o_t [..., V], M_t, S_t).
    """
    tgt = v if target == "external" else matvec(M_chunk, v)
    e = matvec(M_chunk, k) - tgt
    grad = k.unsqueeze(-1) * e.unsqueeze(-2)                       # G_t = k_t e_tᵀ
    step = -eta[..., None, None] * grad
    S_new = step if mu is None else mu[..., None, None] * S + step
    kM = torch.einsum("...k,...kv->...v", k, M)                    # k_tᵀ M_{t-1}
    M_new = alpha[..., None, None] * M - beta[..., None, None] * k.unsqueeze(-1) * kM.unsqueeze(-2) + S_new
    read_from = {"after": M_new, "before": M, "chunk": M_chunk}[read]
    return matvec(read_from, scale * q), M_new, S_new
