"""Chunked PyTorch implementation of ``mlp_memory`` (the ``torch`` backend).

SPEC §3 by the chunk algebra of DESIGN_chunk_algebra.md §5. Per tile of n tokens (a chunk, or a
piece of one), batched over sequences and heads:

* one batched forward/backward of the tile's keys through the chunk-start weights (W1_s, W2_s)
  gives the rank-1 factors of every inner gradient: a_t = φ(W2_s k_t), e_t, d_t
  (G1_t = e_t a_tᵀ, G2_t = d_t k_tᵀ) as matrix products;
* W2 follows the linear-memory algebra transposed (M = W2ᵀ, keys k, inputs w_j = −η_j d_j): DGD on
  its input side is one unit-lower-triangular solve for r_t = W2_{t−1} k_t (DESIGN §2);
* W1 has no key structure: W1_t = γ_t W1_0 + ν_t S1_0 + Σ_j Φ[t,j] (−η_j e_j) a_jᵀ;
* reads "after"/"before" use no per-token weights: h_t = W2_t q_t from masked products of keys
  against the queries, then W1_t φ(h_t) from masked products of the activations a_j against φ(h_t);
  read "chunk" is the MLP at the chunk-start weights.
Only the loop over tiles runs in Python; gradients come from autograd through this forward.

Batching. All N sequences run as one batch (heads a second batch dimension): sequence n's tokens
are placed at absolute chunk positions position[n], position[n]+1, … so that chunk boundaries
coincide for all sequences; the slots before a sequence's first token and after its last are
padding tokens that leave every state unchanged (η = 0, α = 1, β = 0, μ = 1, and a mask ρ = 0
that stops the momentum from being added to the weights: W_t = α_t W_{t−1} + ρ_t S_t).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ...core.chunk_algebra import col, decay, masks, momentum, scal, solve
from .inputs import empty_outputs, prepare
from .recurrence import act, gradient_factors, mlp_rows

MAX_TILE = 64     # a longer chunk is processed as sub-tiles of at most this many tokens

Tensor = torch.Tensor


class TileGates(NamedTuple):
    """A tile's gate quantities (t, j over its n tokens): Γ[t, j], Γ[t−1, j], γ_t, γ_{t−1}, Φ[t, j] =
    Σ_i Γ[t,i] ρ_i D[i,j], Φ[t−1, j], ν_t = Σ_i Γ[t,i] ρ_i m_i, ν_{t−1} and D_full [..., n+1, n+1]
    (index 0 = the tile start); without momentum Φ = Γ and ν, ν_{t−1}, D_full are None."""
    G: Tensor
    Gp: Tensor
    g: Tensor
    gp: Tensor
    P: Tensor
    Pp: Tensor
    nu: Optional[Tensor]
    nup: Optional[Tensor]
    Dm: Optional[Tensor]


def tile_gates(log_alpha: Optional[Tensor], mu: Optional[Tensor], rho: Optional[Tensor], n: int, device,
               dtype) -> TileGates:
    """The ``TileGates`` of a tile from log α, μ and the padding mask ρ [..., n] (log α None: α = 1;
    μ None: no momentum). Without log α the matrices are unbatched [n, n]."""
    strict, lower = masks(n, device)
    G = decay(log_alpha, strict, lower, dtype)
    Gc, Gp = G[..., 1:, 1:], G[..., :-1, 1:]
    gam, gamp = G[..., 1:, 0], G[..., :-1, 0]
    if mu is None:
        return TileGates(Gc, Gp, gam, gamp, Gc, Gp, None, None, None)
    Dm = momentum(mu, strict, lower)
    RD = col(rho) * Dm[..., 1:, 1:]                   # ρ_i D[i, j]
    rm = col(rho * Dm[..., 1:, 0])                    # ρ_i m_i
    return TileGates(Gc, Gp, gam, gamp, Gc @ RD, Gp @ RD, (Gc @ rm)[..., 0], (Gp @ rm)[..., 0], Dm)


def _tile(q, k, v, eta, log_alpha, beta, mu, rho, W1, W2, S1, S2, W1g, W2g, *, target, read,
          activation, residual):
    """One tile of n tokens, batched over the leading dims ``...`` (= N, H).

    q, k [..., n, K] (q already scaled); v [..., n, V or K]; eta [..., n]; log_alpha, beta [..., n]
    or None; mu, rho [..., n] or None (no momentum); (W1, W2, S1, S2) the tile-start states
    (S None without momentum); (W1g, W2g) the chunk-start weights at which gradients are taken.
    Returns (o [..., n, V], W1_n, W2_n, S1_n, S2_n).
    """
    n = q.shape[-2]
    phi, _ = act(activation)
    Gc, Gp, gam, gamp, Pc, Pp, nu, nup, Dm = tile_gates(log_alpha, mu, rho, n, q.device, q.dtype)
    mom = mu is not None

    # gradient factors of the whole tile at the chunk-start weights
    a, e, d = gradient_factors(W1g, W2g, k, v, target=target, activation=activation, residual=residual)
    w1 = -col(eta) * e                                # −η_j e_j  [..., n, V]
    w2 = -col(eta) * d                                # −η_j d_j  [..., n, F]

    def start(x_W: Tensor, x_S, g: Tensor, nn_) -> Tensor:
        """diag(γ) (x W_0ᵀ) + diag(ν) (x S_0ᵀ): the share of the tile-start states."""
        out = col(g) * x_W
        return out + col(nn_) * x_S() if mom else out

    # DGD on W2: r_t = W2_{t−1} k_t from one triangular solve; u_j = −β_j r_j
    u = None
    KK = k @ k.mT
    if beta is not None:
        rhs = start(k @ W2.mT, lambda: k @ S2.mT, gamp, nup if mom else None) + (KK * Pp) @ w2
        u = -col(beta) * solve(KK * Gp * beta[..., None, :], rhs)

    # reads
    if read == "chunk":
        o = mlp_rows(W1g, W2g, q, activation=activation, residual=residual)
    else:
        after = read == "after"
        Gm, Pm, g_, n_ = (Gc, Pc, gam, nu if mom else None) if after else (Gp, Pp, gamp, nup if mom else None)
        QK = q @ k.mT
        h = start(q @ W2.mT, lambda: q @ S2.mT, g_, n_) + (QK * Pm) @ w2       # W2_t q_t
        if u is not None:
            h = h + (QK * Gm) @ u
        b = phi(h)
        o = start(b @ W1.mT, lambda: b @ S1.mT, g_, n_) + ((b @ a.mT) * Pm) @ w1  # W1_t φ(W2_t q_t)
        if residual:
            o = o + q

    # tile-end states
    Gn, Pn = col(Gc[..., n - 1, :]), col(Pc[..., n - 1, :])     # Γ[n, j], Φ[n, j] as columns
    X = Pn * w2 if u is None else Pn * w2 + Gn * u
    W2n = scal(gam[..., n - 1]) * W2 + X.mT @ k
    W1n = scal(gam[..., n - 1]) * W1 + (Pn * w1).mT @ a
    S1n = S2n = None
    if mom:
        W1n = W1n + scal(nu[..., n - 1]) * S1
        W2n = W2n + scal(nu[..., n - 1]) * S2
        Dn, mn = col(Dm[..., n, 1:]), scal(Dm[..., n, 0])
        S1n = mn * S1 + (Dn * w1).mT @ a
        S2n = mn * S2 + (Dn * w2).mT @ k
    return o, W1n, W2n, S1n, S2n


def forward(inputs, cfg):
    p = prepare(inputs, cfg)
    B, T, H, K = p.q.shape
    C = cfg["chunk_size"]
    dev, dt = p.q.device, p.q.dtype
    N = len(p.segments)
    V = p.W1.shape[-2]
    opts = dict(target=cfg["target"], read=cfg["read"], activation=cfg["activation"],
                residual=cfg["residual"])
    mom = p.mu is not None

    lengths = [s.end - s.start for s in p.segments]
    live = [n for n in range(N) if lengths[n] > 0]
    if not live:                                       # nothing to do: empty outputs, same states
        o = p.q.new_zeros(B, T, H, V).to(inputs["q"].dtype)
        if not cfg["output_final_state"]:
            return (o,) + empty_outputs(inputs["q"])
        S1, S2 = (p.S1.clone(), p.S2.clone()) if mom else (p.W1.new_empty(0), p.W1.new_empty(0))
        pos = torch.tensor(p.position, dtype=torch.int64, device=dev)
        return o, p.W1.clone(), p.W2.clone(), S1, S2, p.W1_chunk.clone(), p.W2_chunk.clone(), pos

    # slot layout: sequence n's token i sits at absolute chunk position position[n] + i
    s0 = min(p.position[n] for n in live)
    end_max = max(p.position[n] + lengths[n] for n in live)
    Lp = end_max - s0
    pos_t = torch.tensor(p.position, dtype=torch.int64, device=dev)
    len_t = torch.tensor(lengths, dtype=torch.int64, device=dev)
    base = torch.tensor([s.row * T + s.start for s in p.segments], dtype=torch.int64, device=dev)
    rel = torch.arange(s0, end_max, device=dev)[None, :] - pos_t[:, None]        # [N, Lp]
    valid = (rel >= 0) & (rel < len_t[:, None])
    src = torch.where(valid, base[:, None] + rel, B * T)                          # B*T: the pad row

    def gather(x, fill):
        """[B, T, H, *] -> [N, H, Lp, *] (pad slots get ``fill``)."""
        xf = x.reshape(B * T, *x.shape[2:])
        xf = torch.cat([xf, xf.new_full((1,) + tuple(xf.shape[1:]), fill)])
        return xf[src].transpose(1, 2)

    q, k, v = gather(p.q * cfg["scale"], 0.0), gather(p.k, 0.0), gather(p.v, 0.0)
    eta = gather(p.eta, 0.0)
    log_alpha = gather(p.log_alpha, 0.0) if p.has_alpha else None
    beta = gather(p.beta, 0.0) if p.has_beta else None
    mu = gather(p.mu, 1.0) if mom else None
    rho = valid.to(dt)[:, None, :].expand(N, H, Lp) if mom else None

    W1, W2, S1, S2 = p.W1, p.W2, p.S1, p.S2
    first = scal(pos_t == 0)[..., None]                                           # [N,1,1,1]
    W1g, W2g = torch.where(first, W1, p.W1_chunk), torch.where(first, W2, p.W2_chunk)
    Wg_hist = []                                       # chunk-start weights of each chunk, in order
    outs = []
    a = s0
    while a < end_max:
        if a % C == 0:                                 # a new chunk starts here
            if a > 0 or Wg_hist:
                W1g, W2g = W1, W2
            Wg_hist.append((W1g, W2g))
        elif not Wg_hist:
            Wg_hist.append((W1g, W2g))
        b = min((a // C + 1) * C, a + MAX_TILE, end_max)
        i, j = a - s0, b - s0
        sl = lambda x: None if x is None else x[..., i:j]  # noqa: E731
        o, W1, W2, S1, S2 = _tile(q[..., i:j, :], k[..., i:j, :], v[..., i:j, :], eta[..., i:j],
                                  sl(log_alpha), sl(beta), sl(mu), sl(rho), W1, W2, S1, S2, W1g, W2g,
                                  **opts)
        outs.append(o)
        a = b

    o = torch.cat(outs, dim=-2).transpose(1, 2).reshape(N * Lp, H, V)            # [N*Lp, H, V]
    slot_ids = torch.arange(N * Lp, device=dev).view(N, Lp)
    inv = torch.zeros(B * T, dtype=torch.int64, device=dev)
    inv[src[valid]] = slot_ids[valid]
    o = o[inv].view(B, T, H, V).to(inputs["q"].dtype)
    if not cfg["output_final_state"]:
        return (o,) + empty_outputs(inputs["q"])

    # final chunk-start copies: those of the chunk holding each sequence's last token
    end_pos = pos_t + len_t
    final_pos = end_pos % C
    chunk_idx = ((end_pos - 1).clamp(min=0) // C).clamp(max=len(Wg_hist) - 1)
    first_chunk = s0 // C                              # always 0 (positions are < C)
    seq = torch.arange(N, device=dev)
    W1h = torch.stack([w[0] for w in Wg_hist])[chunk_idx - first_chunk, seq]
    W2h = torch.stack([w[1] for w in Wg_hist])[chunk_idx - first_chunk, seq]
    at_boundary = scal(final_pos == 0)[..., None]
    W1c, W2c = torch.where(at_boundary, W1, W1h), torch.where(at_boundary, W2, W2h)
    if not mom:
        S1, S2 = W1.new_empty(0), W1.new_empty(0)
    return o, W1, W2, S1, S2, W1c, W2c, final_pos
