"""Triton backward kernels of ``linear_memory``: the adjoint of the tile algebra of triton_fwd.py,
split like the forward into one sequential kernel that only carries the state adjoints and one
tile-parallel kernel for the token gradients.

* ``_state_bwd_kernel`` — grid (V/BV, N·H): carries K×BV column slices of (dM, dS), the adjoints of
  the tile-end states, backwards over the tiles of a sequence and stores them per tile
  ([tiles, H, K, V]). With the factors of ``_prep_kernel`` (the tile is affine in its start state,
  M_n = γ_n M0 + ν_n S0 + Kᵀ(Xw M0 + Xz S0 + xu), S_n = m_n S0 + Kᵀ(Yw M0 + yu),
  O = Qw M0 + Qz S0 + ou) one step is

      dX = K dM,  dY = K dS
      dM0 = γ_n dM + Xwᵀ dX + Ywᵀ dY + Qwᵀ dO,   dS0 = ν_n dM + m_n dS + Xzᵀ dX + Qzᵀ dO

  (the outputs enter as Q-side products). The last dM0 / dS0 are the gradients of the initial
  states; the final M_chunk's gradient joins M_L (boundary) or the start of the last tile.
* ``_grad_kernel`` — grid (tiles, H, V/BV), all tiles in parallel: from the stored tile-start
  states (M0, S0), the stored tile-end adjoints and dO it recomputes the tile's intermediates
  (errors E, steps W, right-hand side, R, U = −βR, with the stored (I + A)⁻¹) and applies their
  adjoints in reverse order:

      tile-end states → outputs → U, R (the solve's adjoint: dRHS = (I + A)⁻ᵀ dR, dA = −dRHS Rᵀ)
      → RHS, A, P → W, E, targets → gate matrices (Γ, Φ, D, ν, m) → d log α (reverse cumulative
      sum), dμ (zero-safe: ∂D[i,t]/∂μ_l = D[i,l]·D[l−1,t]).

  A resumed first tile also sends the gradient of its chunk-start memory F = M_chunk0 there.

Quantities that sum over the columns of V (dq, dk, dv for self targets, and the gates) are
written as per-V-block partial sums [V/BV, B·T, H, ·] that the launcher adds; dv for external
targets is column-owned and written directly.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_fwd import _decay, _dot, _load_rows, _momentum, _row_of, _seq_bounds, _tile_rows


@triton.jit
def _sum2(X):
    return tl.sum(tl.sum(X, 1), 0)


# ------------------------------------------------------------------------------------------
# sequential: adjoints of the states
# ------------------------------------------------------------------------------------------
@triton.jit
def _state_bwd_kernel(k, xw, xz, yw, qw, qz, tsc, do, pos, cu, tile_base, dm_fin, ds_fin, dmc_fin,
                      adj_m, adj_s, dm0, ds0, dmc0,
                      T, H,
                      K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                      HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr, READ: tl.constexpr,
                      HAS_POS: tl.constexpr, IS_VARLEN: tl.constexpr, HAS_DMF: tl.constexpr,
                      HAS_DSF: tl.constexpr, HAS_DMCF: tl.constexpr, PREC: tl.constexpr):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    row0, L, p = _seq_bounds(cu, pos, i_n, T, IS_VARLEN, HAS_POS)
    rt = tl.arange(0, BT)
    rk = tl.arange(0, K)
    rv = i_v * BV + tl.arange(0, BV)
    st = i_nh.to(tl.int64) * K * V + rk[:, None] * V + rv[None, :]
    nt = ((L + p + BT - 1) // BT) * (L > 0).to(tl.int32)
    pf = (p + L) % BT
    tb = tl.load(tile_base + i_n).to(tl.int64)

    if HAS_DMF:
        dM = tl.load(dm_fin + st).to(tl.float32)
    else:
        dM = tl.zeros([K, BV], dtype=tl.float32)
    if HAS_DMCF:
        dMc = tl.load(dmc_fin + st).to(tl.float32)
    else:
        dMc = tl.zeros([K, BV], dtype=tl.float32)
    if HAS_MU:
        if HAS_DSF:
            dS = tl.load(ds_fin + st).to(tl.float32)
        else:
            dS = tl.zeros([K, BV], dtype=tl.float32)
    at_boundary = (pf == 0).to(tl.float32)
    dM += at_boundary * dMc            # final M_chunk is M_L at a chunk boundary ...
    dFc = (1.0 - at_boundary) * dMc    # ... else the start memory of the last (partial) chunk

    i = nt - 1
    while i >= 0:
        g = tb + i
        sv = (g * H + i_h) * K * V + rk[:, None] * V + rv[None, :]
        tl.store(adj_m + sv, dM.to(adj_m.dtype.element_ty))
        if HAS_MU:
            tl.store(adj_s + sv, dS.to(adj_s.dtype.element_ty))
        s = tl.maximum(i * BT - p, 0)
        mt = s + rt < tl.minimum((i + 1) * BT - p, L)
        grow = (row0 + s + rt).to(tl.int64) * H + i_h
        ts = tsc + (g * H + i_h) * 4
        kx = _load_rows(k, grow, rk, mt, K)
        dO = _load_rows(do, grow, rv, mt, V)
        dX = _dot(kx, dM, PREC)
        dM0 = tl.load(ts) * dM + _dot(tl.trans(_load_rows(xw, grow, rk, mt, K)), dX, PREC)
        dM0 += _dot(tl.trans(_load_rows(qw, grow, rk, mt, K)), dO, PREC)
        if HAS_MU:
            dY = _dot(kx, dS, PREC)
            dM0 += _dot(tl.trans(_load_rows(yw, grow, rk, mt, K)), dY, PREC)
            dS0 = tl.load(ts + 1) * dM + tl.load(ts + 2) * dS
            if HAS_BETA:
                dS0 += _dot(tl.trans(_load_rows(xz, grow, rk, mt, K)), dX, PREC)
            if READ != 2:
                dS0 += _dot(tl.trans(_load_rows(qz, grow, rk, mt, K)), dO, PREC)
            dS = dS0
        # the start of the last tile is the final M_chunk unless that tile resumed a chunk
        take = ((i > 0) | (p == 0)).to(tl.float32)
        dM = dM0 + take * dFc
        dFc = (1.0 - take) * dFc
        i -= 1
    tl.store(dm0 + st, dM)
    if HAS_MU:
        tl.store(ds0 + st, dS)
    if HAS_POS:
        tl.store(dmc0 + st, dFc)


# ------------------------------------------------------------------------------------------
# tile-parallel: token gradients
# ------------------------------------------------------------------------------------------
@triton.jit
def _grad_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos, ainv,
                 saved_m, saved_s, adj_m, adj_s, do,
                 dq, dk, dv, deta, dla, dbeta, dmu, dmc0,
                 T, H, NRH, scale,
                 K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                 HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                 SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
                 IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    """Gradients of the tokens of one tile (one V block) given its start states (M0, S0), the
    adjoints of its end states (dMe, dSe) and dO. F is the chunk-start memory of the errors,
    self targets and "chunk" reads: M0, or M_chunk0 in a resumed tile (then dF → dM_chunk0)."""
    i_g = tl.program_id(0)
    i_h = tl.program_id(1)
    i_v = tl.program_id(2)
    i_n, row0, s, e, resumed = _tile_rows(tile_seq, tile_idx, cu, pos, i_g, T, BT, IS_VARLEN, HAS_POS)
    rt = tl.arange(0, BT)
    rk = tl.arange(0, K)
    rv = i_v * BV + tl.arange(0, BV)
    tok = s + rt
    mt = tok < e
    grow = (row0 + tok).to(tl.int64) * H + i_h
    lower = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    sel = rt == (e - s - 1)
    pg = i_v.to(tl.int64) * NRH            # offset of this V block's partial sums (gates)
    pk = pg * K                             # (per-token K vectors)
    sv = (i_g.to(tl.int64) * H + i_h) * K * V + rk[:, None] * V + rv[None, :]
    st = (i_n.to(tl.int64) * H + i_h) * K * V + rk[:, None] * V + rv[None, :]

    # ---------------- recompute the tile ----------------
    M0 = tl.load(saved_m + sv).to(tl.float32)
    dMe = tl.load(adj_m + sv).to(tl.float32)
    if HAS_MU:
        S0 = tl.load(saved_s + sv).to(tl.float32)
        dSe = tl.load(adj_s + sv).to(tl.float32)
    kx = _load_rows(k, grow, rk, mt, K)
    qx = _load_rows(q, grow, rk, mt, K) * scale
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    dO = _load_rows(do, grow, rv, mt, V)
    if HAS_ALPHA:
        la = tl.load(la_ptr + grow, mask=mt, other=0.0).to(tl.float32)
    else:
        la = tl.zeros([BT], dtype=tl.float32)
    G, Gp, g, gp = _decay(la, rt, HAS_ALPHA)
    if HAS_MU:
        mu = tl.load(mu_ptr + grow, mask=mt, other=1.0).to(tl.float32)
        D, Dp, m, mp = _momentum(mu, rt)
        Phi = _dot(G, D, PREC)
        Phip = _dot(Gp, D, PREC)
        nu = tl.sum(G * m[None, :], 1)
        nup = tl.sum(Gp * m[None, :], 1)
    else:
        Phi = G
        Phip = Gp

    KM = _dot(kx, M0, PREC)
    if HAS_POS:
        F = tl.where(resumed, tl.load(mc0 + st, mask=resumed, other=0.0).to(tl.float32), M0)
        KF = _dot(kx, F, PREC)
    else:
        F = M0
        KF = KM
    if SELF_TARGET:
        vx = _load_rows(v, grow, rk, mt, K)
        Tg = _dot(vx, F, PREC)
    else:
        Tg = _load_rows(v, grow, rv, mt, V)
    E = KF - Tg
    W = -et[:, None] * E
    if HAS_MU:
        KS = _dot(kx, S0, PREC)
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
        KK = _dot(kx, tl.trans(kx), PREC)
        P = tl.where(strict, KK * Phip, 0.0)
        RHS = gp[:, None] * KM + _dot(P, W, PREC)
        if HAS_MU:
            RHS += nup[:, None] * KS
        Ai = tl.load(ainv + grow[:, None] * BT + rt[None, :], mask=mt[:, None], other=0.0)
        R = _dot(Ai, RHS, PREC)
        U = -bt[:, None] * R

    # ---------------- adjoints ----------------
    dK = tl.zeros([BT, K], dtype=tl.float32)
    dQ = tl.zeros([BT, K], dtype=tl.float32)
    dG = tl.zeros([BT, BT], dtype=tl.float32)
    dGp = tl.zeros([BT, BT], dtype=tl.float32)
    dPhi = tl.zeros([BT, BT], dtype=tl.float32)
    dPhip = tl.zeros([BT, BT], dtype=tl.float32)
    dg = tl.zeros([BT], dtype=tl.float32)
    dgp = tl.zeros([BT], dtype=tl.float32)
    if HAS_POS:
        dF = tl.zeros([K, BV], dtype=tl.float32)
    if HAS_MU:
        dnu = tl.zeros([BT], dtype=tl.float32)
        dnup = tl.zeros([BT], dtype=tl.float32)
        dm = tl.zeros([BT], dtype=tl.float32)
        dD = tl.zeros([BT, BT], dtype=tl.float32)

    # tile-end states: M_n = γ_n M0 + ν_n S0 + Kᵀ(Φ[n,·]⊙W + Γ[n,·]⊙U),  S_n = m_n S0 + Kᵀ(D[n,·]⊙W)
    fL = _row_of(Phi, sel)
    X = fL[:, None] * W
    if HAS_BETA:
        gLr = _row_of(G, sel)
        X += gLr[:, None] * U
    dK += _dot(X, tl.trans(dMe), PREC)
    dX = _dot(kx, dMe, PREC)
    dW = fL[:, None] * dX
    dPhi += tl.where(sel[:, None], tl.sum(W * dX, 1)[None, :], 0.0)
    if HAS_BETA:
        dU = gLr[:, None] * dX
        dG += tl.where(sel[:, None], tl.sum(U * dX, 1)[None, :], 0.0)
    dg += tl.where(sel, _sum2(M0 * dMe), 0.0)
    if HAS_MU:
        dnu += tl.where(sel, _sum2(S0 * dMe), 0.0)
        dm += tl.where(sel, _sum2(S0 * dSe), 0.0)
        dLr = _row_of(D, sel)
        dK += _dot(dLr[:, None] * W, tl.trans(dSe), PREC)
        dY = _dot(kx, dSe, PREC)
        dW += dLr[:, None] * dY
        dD += tl.where(sel[:, None], tl.sum(W * dY, 1)[None, :], 0.0)

    # outputs
    if READ == 2:
        dQ += _dot(dO, tl.trans(F), PREC)
        if HAS_POS:
            dF += _dot(tl.trans(qx), dO, PREC)
    else:
        QK = _dot(qx, tl.trans(kx), PREC)
        if READ == 0:
            QKm = tl.where(lower, QK, 0.0)
            a = g
            Gm = G
            Hm = Phi
        else:
            QKm = tl.where(strict, QK, 0.0)
            a = gp
            Gm = Gp
            Hm = Phip
        dQ += _dot(a[:, None] * dO, tl.trans(M0), PREC)
        da = tl.sum(dO * _dot(qx, M0, PREC), 1)
        dW += _dot(tl.trans(QKm * Hm), dO, PREC)
        dZ2 = _dot(dO, tl.trans(W), PREC)
        dQK = dZ2 * Hm
        dHm = dZ2 * QKm
        if HAS_BETA:
            dU += _dot(tl.trans(QKm * Gm), dO, PREC)
            dZ1 = _dot(dO, tl.trans(U), PREC)
            dQK += dZ1 * Gm
            dGm = dZ1 * QKm
        if HAS_MU:
            if READ == 0:
                b = nu
            else:
                b = nup
            dQ += _dot(b[:, None] * dO, tl.trans(S0), PREC)
            db = tl.sum(dO * _dot(qx, S0, PREC), 1)
        if READ == 0:
            dQK = tl.where(lower, dQK, 0.0)
            dg += da
            dPhi += dHm
            if HAS_BETA:
                dG += dGm
            if HAS_MU:
                dnu += db
        else:
            dQK = tl.where(strict, dQK, 0.0)
            dgp += da
            dPhip += dHm
            if HAS_BETA:
                dGp += dGm
            if HAS_MU:
                dnup += db
        dQ += _dot(dQK, kx, PREC)
        dK += _dot(tl.trans(dQK), qx, PREC)

    # U = −βR, R = (I + A)⁻¹ RHS, A = strict(KKᵀ) ⊙ Γ_prev · diag(β), RHS = γ_prev KM0 + ν_prev KS0 + P W
    if HAS_BETA:
        dR = -bt[:, None] * dU
        dbt = -tl.sum(R * dU, 1)
        dRHS = _dot(tl.trans(Ai), dR, PREC)
        dA = tl.where(strict, -_dot(dRHS, tl.trans(R), PREC), 0.0)
        dKK = dA * Gp * bt[None, :]
        dGp += dA * KK * bt[None, :]
        dbt += tl.sum(dA * KK * Gp, 0)
        dgp += tl.sum(dRHS * KM, 1)
        dP = _dot(dRHS, tl.trans(W), PREC)
        dW += _dot(tl.trans(P), dRHS, PREC)
        dK += _dot(gp[:, None] * dRHS, tl.trans(M0), PREC)
        if HAS_MU:
            dnup += tl.sum(dRHS * KS, 1)
            dK += _dot(nup[:, None] * dRHS, tl.trans(S0), PREC)
        dKK += tl.where(strict, dP * Phip, 0.0)
        dPhip += tl.where(strict, dP * KK, 0.0)
        dK += _dot(dKK + tl.trans(dKK), kx, PREC)
        tl.store(dbeta + pg + grow, dbt, mask=mt)

    # W = −η E, E = K F − target
    dE = -et[:, None] * dW
    tl.store(deta + pg + grow, -tl.sum(E * dW, 1), mask=mt)
    dK += _dot(dE, tl.trans(F), PREC)
    if HAS_POS:
        dF += _dot(tl.trans(kx), dE, PREC)
    if SELF_TARGET:
        if HAS_POS:
            dF -= _dot(tl.trans(vx), dE, PREC)
        tl.store(dv + pk + grow[:, None] * K + rk[None, :], -_dot(dE, tl.trans(F), PREC),
                 mask=mt[:, None])
    else:
        tl.store(dv + grow[:, None] * V + rv[None, :], -dE, mask=mt[:, None])
    if HAS_POS:
        if resumed:
            tl.store(dmc0 + st, tl.load(dmc0 + st) + dF)

    # gate matrices -> log α, μ
    if HAS_MU:
        dPhi = tl.where(lower, dPhi, 0.0)
        dPhip = tl.where(strict, dPhip, 0.0)
        dG += _dot(dPhi, tl.trans(D), PREC) + dnu[:, None] * m[None, :]
        dGp += _dot(dPhip, tl.trans(D), PREC) + dnup[:, None] * m[None, :]
        dD += _dot(tl.trans(G), dPhi, PREC) + _dot(tl.trans(Gp), dPhip, PREC)
        dm += tl.sum(G * dnu[:, None], 0) + tl.sum(Gp * dnup[:, None], 0)
        dD = tl.where(lower, dD, 0.0)
        dmu_v = tl.sum(_dot(tl.trans(D), dD, PREC) * Dp, 1) + mp * tl.sum(D * dm[:, None], 0)
        tl.store(dmu + pg + grow, dmu_v, mask=mt)
    else:
        dG += dPhi
        dGp += dPhip
    if HAS_ALPHA:
        gG = tl.where(lower, dG * G, 0.0)
        gGp = tl.where(strict, dGp * Gp, 0.0)
        rGp = tl.sum(gGp, 1)
        dc = tl.sum(gG, 1) - tl.sum(gG, 0) + rGp - tl.sum(gGp, 0) + dg * g + dgp * gp
        dla_v = tl.sum(dc, 0) - tl.cumsum(dc, 0) + dc - rGp - dgp * gp
        tl.store(dla + pg + grow, dla_v, mask=mt)

    tl.store(dq + pk + grow[:, None] * K + rk[None, :], dQ * scale, mask=mt[:, None])
    tl.store(dk + pk + grow[:, None] * K + rk[None, :], dK, mask=mt[:, None])
