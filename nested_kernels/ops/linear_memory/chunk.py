"""Chunked PyTorch implementation of ``linear_memory`` (the ``torch`` backend).

SPEC §2 computed by the chunk-parallel algebra of DESIGN_chunk_algebra.md §1–§4: inside a tile of
n tokens every quantity is a batched matrix product, an elementwise mask or one unit-lower-
triangular solve; only the loop over tiles runs in Python. Differentiable by autograd (the generic
custom-op machinery recomputes this forward and differentiates it); nothing per token of size K×V
is kept, only one state per tile.

Tiles. With chunk_size C ≥ 2 a tile is (a piece of) one chunk: errors are frozen at the chunk-start
memory ``Me`` = M_s while the recurrence runs from the tile-start states (M0, S0). A chunk longer
than ``MAX_TILE`` is cut into sub-tiles that share its ``Me``; a call resuming mid-chunk starts
with a partial tile whose ``Me`` is the state's ``M_chunk``. With C = 1 (the exact online rule,
e_t taken at M_{t−1}) a tile holds ``EXACT_TILE`` tokens and the errors become unknowns of the
solve (DESIGN §4): external targets give a modified n×n unit-lower system, self targets the 2n×2n
system in (r_1, s_1, r_2, s_2, …).

Batching. Sequences with the same (length, start position) are processed together as one batch,
heads as a second batch dimension: without ``cu_seqlens`` that is all B rows at once; packed
sequences of equal length are gathered into one batch.

Gates: α only enters through segment sums of log α (exp of a masked cumulative sum, never a
ratio of cumulative products); μ through masked running products (μ may be exactly 0).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Optional

import torch

from ...core.chunk_algebra import col, decay, masks, momentum, row, solve
from .inputs import empty_outputs, prepare

EXACT_TILE = 32   # tokens per tile for chunk_size == 1
MAX_TILE = 64     # a longer chunk is processed as sub-tiles of at most this many tokens

Tensor = torch.Tensor


def _tile(q, k, v, eta, log_alpha, beta, mu, M0, S0, Me, *, exact: bool, target: str, read: str):
    """One tile of n tokens, batched over the leading dims ``...``.

    q, k [..., n, K] (q already scaled); v [..., n, V] ([..., n, K] for self targets); eta [..., n];
    log_alpha, beta, mu [..., n] or None (α = 1, β = 0, no momentum); M0, Me [..., K, V] the
    tile-start and chunk-start memories; S0 [..., K, V] (None without momentum). ``exact``: C = 1,
    errors at M_{t−1} (then Me is unused). Returns (o [..., n, V], M_n, S_n or None).
    """
    n = q.shape[-2]
    strict, lower = masks(n, q.device)
    G = decay(log_alpha, strict, lower, q.dtype)
    Gc, Gp = G[..., 1:, 1:], G[..., :-1, 1:]          # Γ[t, j], Γ[t−1, j] (t, j = 1..n)
    gam, gamp = G[..., 1:, 0], G[..., :-1, 0]          # γ_t, γ_{t−1}
    if mu is not None:
        Dm = momentum(mu, strict, lower)
        Dc, m = Dm[..., 1:, 1:], Dm[..., 1:, 0:1]      # D[i, t]; m_i = D[i, 0] as a column
        Pc, Pp = Gc @ Dc, Gp @ Dc                      # Φ[t, j], Φ[t−1, j]
        nu, nup = (Gc @ m)[..., 0], (Gp @ m)[..., 0]   # ν_t, ν_{t−1}
    else:
        Pc, Pp = Gc, Gp

    KK = k @ k.mT                                       # [t, j] = k_tᵀ k_j
    kM0 = k @ M0

    def start_term(x_M0, x: Tensor, g: Tensor, nn_: Optional[Tensor]) -> Tensor:
        """diag(γ) X M0 + diag(ν) X S0 (the share of the tile-start states)."""
        out = col(g) * x_M0
        if S0 is not None:
            out = out + col(nn_) * (x @ S0)
        return out

    Y = None                                            # rows y_j = −β_j r_j (DGD term)
    if not exact:
        kMe = kM0 if Me is M0 else k @ Me
        tgt = v if target == "external" else v @ Me
        W = -col(eta) * (kMe - tgt)                    # w_j = −η_j e_j, frozen errors
        if beta is not None:
            rhs = start_term(kM0, k, gamp, nup if mu is not None else None) + (KK * Pp) @ W
            R = solve(KK * Gp * row(beta), rhs)
            Y = -col(beta) * R
    else:
        Peta = Pp * row(eta)
        coef = Peta if beta is None else Gp * row(beta) + Peta
        rhs_r = start_term(kM0, k, gamp, nup if mu is not None else None)
        if target == "external":
            R = solve(KK * coef, rhs_r + (KK * Peta) @ v)
            W = -col(eta) * (R - v)
        else:                                           # unknowns r_t = M_{t−1}ᵀk_t, s_t = M_{t−1}ᵀv_t
            VK = v @ k.mT                               # [t, j] = v_tᵀ k_j
            Z = torch.stack([torch.stack([KK * coef, -KK * Peta], dim=-1),
                             torch.stack([VK * coef, -VK * Peta], dim=-1)], dim=-3)
            Z = Z.reshape(Z.shape[:-4] + (2 * n, 2 * n))
            rhs_s = start_term(v @ M0, v, gamp, nup if mu is not None else None)
            rhs = torch.stack([rhs_r, rhs_s], dim=-2)
            X = solve(Z, rhs.reshape(rhs.shape[:-3] + (2 * n, rhs.shape[-1])))
            X = X.reshape(X.shape[:-2] + (n, 2, X.shape[-1]))
            R, Sv = X[..., 0, :], X[..., 1, :]
            W = -col(eta) * (R - Sv)
        if beta is not None:
            Y = -col(beta) * R

    # outputs
    if read == "chunk" and not exact:
        o = q @ Me
    else:
        after = read == "after"                         # "chunk" with C = 1 is "before"
        Gm, Pm = (Gc, Pc) if after else (Gp, Pp)
        o = start_term(q @ M0, q, gam if after else gamp,
                       (nu if after else nup) if mu is not None else None)
        QK = q @ k.mT
        if mu is None:
            o = o + (QK * Gm) @ (W if Y is None else W + Y)
        else:
            o = o + (QK * Pm) @ W
            if Y is not None:
                o = o + (QK * Gm) @ Y

    # tile-end states
    Gn, Pn = col(Gc[..., n - 1, :]), col(Pc[..., n - 1, :])   # Γ[n, j], Φ[n, j] as columns
    Xn = Pn * W if Y is None else Pn * W + Gn * Y
    Mn = G[..., n, 0, None, None] * M0 + k.mT @ Xn
    Sn = None
    if mu is not None:
        Mn = Mn + nu[..., n - 1, None, None] * S0
        Sn = Dm[..., n, 0, None, None] * S0 + k.mT @ (col(Dm[..., n, 1:]) * W)
    return o, Mn, Sn


def _run(q, k, v, eta, log_alpha, beta, mu, M, S, M_chunk, pos: int, C: int, *, target, read):
    """The chunk loop for a batch of sequences of equal length L that all start at ``pos``.

    Tensors [G, H, L, *], gates [G, H, L], states [G, H, K, V]. Returns (o [G, H, L, V], M, S,
    M_chunk, position) after the L tokens."""
    L = q.shape[-2]
    outs = []

    def tile(a, b, M, S, Me, exact):
        g = lambda x: None if x is None else x[..., a:b]  # noqa: E731
        return _tile(q[..., a:b, :], k[..., a:b, :], v[..., a:b, :], eta[..., a:b], g(log_alpha),
                     g(beta), g(mu), M, S, Me, exact=exact, target=target, read=read)

    if C == 1:
        for a in range(0, L, EXACT_TILE):
            o, M, S = tile(a, min(L, a + EXACT_TILE), M, S, M, True)
            outs.append(o)
        M_chunk = M
    else:
        Me = M_chunk if pos > 0 else M
        a = 0
        while a < L:
            end = min(L, a + C - pos)
            for t0 in range(a, end, MAX_TILE):
                o, M, S = tile(t0, min(end, t0 + MAX_TILE), M, S, Me, False)
                outs.append(o)
            pos = (pos + end - a) % C
            a = end
            if pos == 0:
                Me = M
        M_chunk = Me
    V = M.shape[-1]
    o = torch.cat(outs, dim=-2) if outs else q.new_zeros(q.shape[:-2] + (0, V))
    return o, M, S, M_chunk, pos


def forward(inputs, cfg):
    p = prepare(inputs, cfg)
    B, T, H, K = p.q.shape
    target, read, C = cfg["target"], cfg["read"], cfg["chunk_size"]
    V = p.M.shape[-1]
    dt = p.q.dtype
    cu = inputs["cu_seqlens"]
    log_alpha = None if inputs["log_alpha"] is None else inputs["log_alpha"].to(dt)
    beta = None if inputs["beta"] is None else p.beta
    q = p.q * cfg["scale"]
    tensors = dict(q=q, k=p.k, v=p.v, eta=p.eta, log_alpha=log_alpha, beta=beta, mu=p.mu)

    groups = defaultdict(list)                         # (length, start position) -> segments
    for seg in p.segments:
        groups[(seg.end - seg.start, p.position[seg.index])].append(seg)

    o_parts, finals, order = {}, [], []
    whole = None
    for (L, pos), segs in groups.items():
        is_whole = cu is None and len(segs) == B      # every row: take the tensors as they are
        if is_whole:
            take = lambda x: x  # noqa: E731
        else:
            take = lambda x: torch.stack([x[s.row, s.start:s.end] for s in segs])  # noqa: E731
        g = {n: None if x is None else take(x).transpose(1, 2) for n, x in tensors.items()}
        idx = torch.tensor([s.index for s in segs], device=q.device)
        M, Mc = p.M[idx], p.M_chunk[idx]
        S = None if p.S is None else p.S[idx]
        o, M, S, Mc, pos_end = _run(g["q"], g["k"], g["v"], g["eta"], g["log_alpha"], g["beta"],
                                    g["mu"], M, S, Mc, pos, C, target=target, read=read)
        o = o.transpose(1, 2)                          # [G, L, H, V]
        if is_whole:
            whole = o
        else:
            for i, s in enumerate(segs):
                o_parts[s.index] = o[i]
        finals.append((M, S, Mc, pos_end))
        order.extend(s.index for s in segs)

    if whole is not None:
        o = whole
    elif not p.segments:                               # B == 0
        o = q.new_zeros(B, T, H, V)
    elif cu is not None:
        o = torch.cat([o_parts[n] for n in range(len(p.segments))], dim=0)[None]
    else:
        o = torch.stack([o_parts[b] for b in range(B)])
    o = o.to(inputs["q"].dtype)
    if not cfg["output_final_state"]:
        return (o,) + empty_outputs(inputs["q"], V)

    if not finals:
        return o, p.M.clone(), (p.S.clone() if p.S is not None else p.M.new_empty(0)), p.M.clone(), \
            torch.zeros(0, dtype=torch.int64, device=q.device)
    inv = torch.argsort(torch.tensor(order, device=q.device))   # group order -> sequence order
    M = torch.cat([f[0] for f in finals])[inv]
    S = torch.cat([f[1] for f in finals])[inv] if p.S is not None else M.new_empty(0)
    M_chunk = torch.cat([f[2] for f in finals])[inv]
    pos_list = [f[3] for f, segs in zip(finals, groups.values()) for _ in segs]
    position = torch.tensor(pos_list, dtype=torch.int64, device=q.device)[inv]
    return o, M, S, M_chunk, position
