"""Shared pieces of the chunk-parallel algebra (DESIGN_chunk_algebra §1–§2) for the PyTorch paths.

Per tile of n tokens (index 0 of the "full" matrices is the tile start): the decay matrix Γ, the
momentum matrix D, the unit-lower-triangular solve, and the broadcasting helpers that scale rows
or columns by per-token scalars. Used by the chunked ``linear_memory``, ``mlp_memory`` and
``self_modifying_titans`` implementations.
"""
from __future__ import annotations

from typing import Optional

import torch

Tensor = torch.Tensor


def masks(n: int, device) -> tuple[Tensor, Tensor]:
    """(strict, lower) boolean (n+1)×(n+1) masks: [τ, t] is τ > t, resp. τ ≥ t."""
    idx = torch.arange(n + 1, device=device)
    return idx[:, None] > idx[None, :], idx[:, None] >= idx[None, :]


def decay(log_alpha: Optional[Tensor], strict: Tensor, lower: Tensor, dtype) -> Tensor:
    """Γ_full [..., n+1, n+1]: [τ, t] = Π_{l=t+1..τ} α_l for τ ≥ t (index 0 = tile start), else 0.

    exp of the segment sum Σ_{l=t+1..τ} log α_l, formed as a masked cumulative sum so each entry
    only adds its own terms."""
    if log_alpha is None:
        return lower.to(dtype)
    lap = torch.cat([log_alpha.new_zeros(log_alpha.shape[:-1] + (1,)), log_alpha], dim=-1)
    seg = torch.where(strict, lap[..., :, None], 0.0).cumsum(dim=-2)
    return seg.masked_fill(~lower, float("-inf")).exp()


def momentum(mu: Tensor, strict: Tensor, lower: Tensor) -> Tensor:
    """D_full [..., n+1, n+1]: [i, t] = Π_{l=t+1..i} μ_l for i ≥ t, else 0 (running products,
    exact for μ = 0)."""
    mup = torch.cat([mu.new_ones(mu.shape[:-1] + (1,)), mu], dim=-1)
    prod = torch.where(strict, mup[..., :, None], 1.0).cumprod(dim=-2)
    return torch.where(lower, prod, 0.0)


def col(x: Tensor) -> Tensor:
    """Per-token scalars [..., n] as a column [..., n, 1] (scales rows)."""
    return x[..., :, None]


def row(x: Tensor) -> Tensor:
    """Per-token scalars [..., n] as a row [..., 1, n] (scales the columns of an n×n matrix)."""
    return x[..., None, :]


def scal(x: Tensor) -> Tensor:
    """Per-matrix scalars [...] as [..., 1, 1] (scales a whole matrix)."""
    return x[..., None, None]


def solve(A: Tensor, rhs: Tensor) -> Tensor:
    """(I + A)⁻¹ rhs for strictly lower-triangular A (its diagonal and upper part are ignored)."""
    return torch.linalg.solve_triangular(A, rhs, upper=False, unitriangular=True)
