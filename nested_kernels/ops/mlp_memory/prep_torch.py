"""The prep rows of the ``triton`` backend (``triton_prep`` module docstring) by batched torch ops
over all tiles at once (the default since 2026-12-06e; NESTED_KERNELS_MLP_TRITON_PREP_ROWS=triton
runs ``_prep_kernel`` instead).

Everything the prep kernel forms per tile — the gate matrices Γ, Φ, D and vectors γ, ν, m, KKᵀ,
(I + A_β)⁻¹, QKᵀ — is state-independent, so it is a handful of batched products, cumulative
sums and one batched triangular solve over [tiles, H, C, C] (the torch backend's gate
quantities, ``chunk.tile_gates``), written into the kernels' per-token row layout through the tile table
(``tile_batch``: padding slots into a spare row; no device sync). float32 products.
"""
from __future__ import annotations

import torch

from ...core.chunk_algebra import masks
from .chunk import tile_gates
from .tile_batch import at_rows, padded, put_rows, tf32, tile_rows

# pv columns (triton_prep.PV_*): γ, γ_prev, ν, ν_prev, m, and the last valid row of Φ, Γ, D
_PV = ("g", "gp", "nu", "nup", "m", "PhiL", "GL", "DL")


def prep_rows(a, pr: dict) -> None:
    """Fill the prep rows ``pr`` (float32 [B·T, H, ·] buffers, ``triton_backend._prep_shapes``)
    for the tiles of ``a`` (``triton_backend._Args``)."""
    rows, valid, _ = tile_rows(a)
    C, R = a.C, a.B * a.T
    take = lambda x, fill: at_rows(padded(x, R, a.H, fill), rows)          # [tiles, H, C, d]  # noqa: E731
    strict = masks(C, a.device)[0][1:, 1:]
    tiles = (rows.shape[0], a.H)
    # log α = 0 rather than None when absent: batched gate matrices (exp(0) = 1 exactly)
    la = take(a.la, 0.0)[..., 0] if a.la is not None else torch.zeros(*tiles, C, device=a.device)
    mu = take(a.mu, 1.0)[..., 0] if a.mom else None
    rho = valid[:, None, :].expand(*tiles, C).float() if a.mom else None     # ρ: 1 on every valid row
    last = (valid.sum(-1) - 1).clamp(min=0)[:, None, None, None].expand(*tiles, 1, C)   # the tile's last row
    row_at = lambda M: M.gather(-2, last)[..., 0, :]                        # noqa: E731
    with tf32(False):
        Gc, Gp, g, gp, Phi, Phip, nu, nup, Dm = tile_gates(la, mu, rho, C, a.device, torch.float32)
        v = dict(g=g, gp=gp, PhiL=row_at(Phi), GL=row_at(Gc))
        if a.mom:
            v.update(nu=nu, nup=nup, m=Dm[..., 1:, 0], DL=row_at(Dm[..., 1:, 1:]))
        out = dict(pv=torch.stack([v.get(n, torch.zeros_like(g)) for n in _PV], -1))
        k = take(a.k, 0.0)
        if "Ai" in pr:
            KK = k @ k.mT
            A = torch.where(strict, KK * Gp * take(a.beta, 0.0)[..., 0][..., None, :], 0.0)
            eye = torch.eye(C, device=a.device).expand_as(A)
            out["Ai"] = torch.linalg.solve_triangular(eye + A, eye, upper=False, unitriangular=True)
            out["pk"] = torch.where(strict, KK * Phip, 0.0)
        if "qp" in pr:
            QK = (take(a.q, 0.0) * a.scale) @ k.mT
            after = a.flags["READ"] == 0
            Pm, Gm = (Phi, Gc) if after else (Phip, Gp)
            out.update(qp=QK * Pm, pm=Pm)
            if "qg" in pr:
                out["qg"] = QK * Gm
    for n, x in out.items():
        dest = torch.empty(R + 1, *pr[n].shape[1:], dtype=torch.float32, device=a.device)
        put_rows(dest, rows, x)
        pr[n].copy_(dest[:R])
