"""The prep rows of the ``triton`` backend (``triton_prep`` module docstring) by batched torch ops
over all tiles at once (the default since 2026-12-06e; NESTED_KERNELS_MLP_TRITON_PREP_ROWS=triton
runs ``_prep_kernel`` instead).

Everything the prep kernel forms per tile — the gate matrices Γ, Φ, D and vectors γ, ν, m, KKᵀ,
(I + A_β)⁻¹, QKᵀ — is state-independent, so it is a handful of batched products, cumulative
sums and one batched triangular solve over [tiles, H, C, C] (the torch backend's formulas:
``core.chunk_algebra``), written into the kernels' per-token row layout through the tile table
(``tile_batch``: padding slots into a spare row; no device sync). float32 products.
"""
from __future__ import annotations

import torch

from ...core.chunk_algebra import decay, masks, momentum
from .tile_batch import at_rows, padded, put_rows, tf32, tile_rows

# pv columns (triton_prep.PV_*): γ, γ_prev, ν, ν_prev, m, and the last valid row of Φ, Γ, D
_PV = ("g", "gp", "nu", "nup", "m", "PhiL", "GL", "DL")


def prep_rows(a, pr: dict) -> None:
    """Fill the prep rows ``pr`` (float32 [B·T, H, ·] buffers, ``triton_backend._prep_shapes``)
    for the tiles of ``a`` (``triton_backend._Args``)."""
    rows, valid, _ = tile_rows(a)
    C, R = a.C, a.B * a.T
    take = lambda x, fill: at_rows(padded(x, R, a.H, fill), rows)          # [tiles, H, C, d]  # noqa: E731
    strict, lower = masks(C, a.device)
    la = take(a.la, 0.0)[..., 0] if a.la is not None else None
    G = decay(la, strict, lower, torch.float32).expand(rows.shape[0], a.H, C + 1, C + 1)
    Gc, Gp = G[..., 1:, 1:], G[..., :-1, 1:]
    v = dict(g=G[..., 1:, 0], gp=G[..., :-1, 0])
    last = (valid.sum(-1) - 1).clamp(min=0)[:, None, None, None].expand(-1, a.H, 1, C)   # the tile's last row
    row_at = lambda M: M.gather(-2, last)[..., 0, :]                        # noqa: E731
    with tf32(False):
        if a.mom:
            Dm = momentum(take(a.mu, 1.0)[..., 0], strict, lower)
            D, m = Dm[..., 1:, 1:], Dm[..., 1:, 0]
            Phi, Phip = Gc @ D, Gp @ D
            v.update(nu=(Gc @ m[..., None])[..., 0], nup=(Gp @ m[..., None])[..., 0], m=m, DL=row_at(D))
        else:
            Phi, Phip = Gc, Gp
        v.update(PhiL=row_at(Phi), GL=row_at(Gc))
        out = dict(pv=torch.stack([v.get(n, torch.zeros_like(v["g"])) for n in _PV], -1))
        k = take(a.k, 0.0)
        if "Ai" in pr:
            KK = k @ k.mT
            A = torch.where(strict[1:, 1:], KK * Gp * take(a.beta, 0.0)[..., 0][..., None, :], 0.0)
            eye = torch.eye(C, device=a.device).expand_as(A)
            out["Ai"] = torch.linalg.solve_triangular(eye + A, eye, upper=False, unitriangular=True)
            out["pk"] = torch.where(strict[1:, 1:], KK * Phip, 0.0)
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
