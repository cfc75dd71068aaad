"""Triton backward kernel of ``linear_memory``: the adjoint of the tile algebra of triton_fwd.py.

``_bwd_kernel`` — grid (V/BV, N·H), like the forward: each program owns a K×BV column slice of
the adjoints (dM, dS) and walks the tiles of its sequence backwards. Per tile it reloads the
tile-start states (M_s, S_s) stored by the forward kernel (``SAVE_STATES``; one state per tile,
never per token) and the tile's (I + A)⁻¹ rows, recomputes the tile's intermediates (errors E,
steps W, right-hand side, R, U = −βR) and applies their adjoints in reverse order:

    tile-end states → outputs → U, R (the solve's adjoint: dRHS = (I + A)⁻ᵀ dR, dA = −dRHS Rᵀ)
    → RHS, A, P → W, E, targets → gate matrices (Γ, Φ, D, ν, m) → d log α (reverse cumulative
    sum), dμ (zero-safe: ∂D[i,t]/∂μ_l = D[i,l]·D[l−1,t]).

Quantities that sum over the columns of V (dq, dk, dv for self targets, and the gates) are
written as per-V-block partial sums [V/BV, B·T, H, ·] that the launcher adds; the adjoints of the
states and dv for external targets are column-owned and written directly.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_fwd import _at, _decay, _momentum, _row_of, _seq_bounds


@triton.jit
def _sum2(X):
    return tl.sum(tl.sum(X, 1), 0)


@triton.jit
def _bwd_tile(M0, S0, dMe, dSe, q, k, v, eta, la_ptr, beta_ptr, mu_ptr, ainv, do, f_ptr,
              dq, dk, dv, deta, dla, dbeta, dmu,
              row0, s, e, i_h, i_v, H, NRH, scale,
              K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
              HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
              SELF_TARGET: tl.constexpr, READ: tl.constexpr, USE_F: tl.constexpr,
              PREC: tl.constexpr):
    """Adjoint of one tile [s, e). Given the adjoints of the tile-end states (dMe, dSe), writes the
    token gradients of the tile and returns the adjoints of the tile-start states (dM0, dS0) and
    of the resumed chunk-start memory dF (only with USE_F; otherwise dF is folded into dM0)."""
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

    # ---------------- recompute the tile ----------------
    kx = tl.load(k + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    qx = tl.load(q + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32) * scale
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    dO = tl.load(do + grow[:, None] * V + rv[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    if HAS_ALPHA:
        la = tl.load(la_ptr + grow, mask=mt, other=0.0).to(tl.float32)
    else:
        la = tl.zeros([BT], dtype=tl.float32)
    G, Gp, g, gp = _decay(la, rt, HAS_ALPHA)
    if HAS_MU:
        mu = tl.load(mu_ptr + grow, mask=mt, other=1.0).to(tl.float32)
        D, Dp, m, mp = _momentum(mu, rt)
        Phi = tl.dot(G, D, input_precision=PREC)
        Phip = tl.dot(Gp, D, input_precision=PREC)
        nu = tl.sum(G * m[None, :], 1)
        nup = tl.sum(Gp * m[None, :], 1)
    else:
        Phi = G
        Phip = Gp

    KM = tl.dot(kx, M0, input_precision=PREC)
    if USE_F:
        F = tl.load(f_ptr + rk[:, None] * V + rv[None, :]).to(tl.float32)
        KF = tl.dot(kx, F, input_precision=PREC)
    else:
        F = M0
        KF = KM
    if SELF_TARGET:
        vx = tl.load(v + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
        Tg = tl.dot(vx, F, input_precision=PREC)
    else:
        Tg = tl.load(v + grow[:, None] * V + rv[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    E = KF - Tg
    W = -et[:, None] * E
    if HAS_MU:
        KS = tl.dot(kx, S0, input_precision=PREC)
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
        KK = tl.dot(kx, tl.trans(kx), input_precision=PREC)
        P = tl.where(strict, KK * Phip, 0.0)
        RHS = gp[:, None] * KM + tl.dot(P, W, input_precision=PREC)
        if HAS_MU:
            RHS += nup[:, None] * KS
        Ai = tl.load(ainv + grow[:, None] * BT + rt[None, :], mask=mt[:, None], other=0.0)
        R = tl.dot(Ai, RHS, input_precision=PREC)
        U = -bt[:, None] * R

    # ---------------- adjoints ----------------
    dK = tl.zeros([BT, K], dtype=tl.float32)
    dQ = tl.zeros([BT, K], dtype=tl.float32)
    dF = tl.zeros([K, BV], dtype=tl.float32)
    dG = tl.zeros([BT, BT], dtype=tl.float32)
    dGp = tl.zeros([BT, BT], dtype=tl.float32)
    dPhi = tl.zeros([BT, BT], dtype=tl.float32)
    dPhip = tl.zeros([BT, BT], dtype=tl.float32)
    dg = tl.zeros([BT], dtype=tl.float32)
    dgp = tl.zeros([BT], dtype=tl.float32)
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
    dK += tl.dot(X, tl.trans(dMe), input_precision=PREC)
    dX = tl.dot(kx, dMe, input_precision=PREC)
    dW = fL[:, None] * dX
    dPhi += tl.where(sel[:, None], tl.sum(W * dX, 1)[None, :], 0.0)
    if HAS_BETA:
        dU = gLr[:, None] * dX
        dG += tl.where(sel[:, None], tl.sum(U * dX, 1)[None, :], 0.0)
    dg += tl.where(sel, _sum2(M0 * dMe), 0.0)
    dM0 = _at(g, sel) * dMe
    if HAS_MU:
        dS0 = _at(m, sel) * dSe + _at(nu, sel) * dMe
        dnu += tl.where(sel, _sum2(S0 * dMe), 0.0)
        dm += tl.where(sel, _sum2(S0 * dSe), 0.0)
        dLr = _row_of(D, sel)
        dK += tl.dot(dLr[:, None] * W, tl.trans(dSe), input_precision=PREC)
        dY = tl.dot(kx, dSe, input_precision=PREC)
        dW += dLr[:, None] * dY
        dD += tl.where(sel[:, None], tl.sum(W * dY, 1)[None, :], 0.0)
    else:
        dS0 = dSe

    # outputs
    if READ == 2:
        dQ += tl.dot(dO, tl.trans(F), input_precision=PREC)
        dF += tl.dot(tl.trans(qx), dO, input_precision=PREC)
    else:
        QK = tl.dot(qx, tl.trans(kx), input_precision=PREC)
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
        ado = a[:, None] * dO
        dM0 += tl.dot(tl.trans(qx), ado, input_precision=PREC)
        dQ += tl.dot(ado, tl.trans(M0), input_precision=PREC)
        da = tl.sum(dO * tl.dot(qx, M0, input_precision=PREC), 1)
        dW += tl.dot(tl.trans(QKm * Hm), dO, input_precision=PREC)
        dZ2 = tl.dot(dO, tl.trans(W), input_precision=PREC)
        dQK = dZ2 * Hm
        dHm = dZ2 * QKm
        if HAS_BETA:
            dU += tl.dot(tl.trans(QKm * Gm), dO, input_precision=PREC)
            dZ1 = tl.dot(dO, tl.trans(U), input_precision=PREC)
            dQK += dZ1 * Gm
            dGm = dZ1 * QKm
        if HAS_MU:
            if READ == 0:
                b = nu
            else:
                b = nup
            bdo = b[:, None] * dO
            dS0 += tl.dot(tl.trans(qx), bdo, input_precision=PREC)
            dQ += tl.dot(bdo, tl.trans(S0), input_precision=PREC)
            db = tl.sum(dO * tl.dot(qx, S0, input_precision=PREC), 1)
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
        dQ += tl.dot(dQK, kx, input_precision=PREC)
        dK += tl.dot(tl.trans(dQK), qx, input_precision=PREC)

    # U = −βR, R = (I + A)⁻¹ RHS, A = strict(KKᵀ) ⊙ Γ_prev · diag(β), RHS = γ_prev KM0 + ν_prev KS0 + P W
    if HAS_BETA:
        dR = -bt[:, None] * dU
        dbt = -tl.sum(R * dU, 1)
        dRHS = tl.dot(tl.trans(Ai), dR, input_precision=PREC)
        dA = tl.where(strict, -tl.dot(dRHS, tl.trans(R), input_precision=PREC), 0.0)
        dKK = dA * Gp * bt[None, :]
        dGp += dA * KK * bt[None, :]
        dbt += tl.sum(dA * KK * Gp, 0)
        dKM = gp[:, None] * dRHS
        dgp += tl.sum(dRHS * KM, 1)
        dP = tl.dot(dRHS, tl.trans(W), input_precision=PREC)
        dW += tl.dot(tl.trans(P), dRHS, input_precision=PREC)
        dK += tl.dot(dKM, tl.trans(M0), input_precision=PREC)
        dM0 += tl.dot(tl.trans(kx), dKM, input_precision=PREC)
        if HAS_MU:
            dKS = nup[:, None] * dRHS
            dnup += tl.sum(dRHS * KS, 1)
            dK += tl.dot(dKS, tl.trans(S0), input_precision=PREC)
            dS0 += tl.dot(tl.trans(kx), dKS, input_precision=PREC)
        dKK += tl.where(strict, dP * Phip, 0.0)
        dPhip += tl.where(strict, dP * KK, 0.0)
        dK += tl.dot(dKK + tl.trans(dKK), kx, input_precision=PREC)
        tl.store(dbeta + pg + grow, dbt, mask=mt)

    # W = −η E, E = K F − target
    dE = -et[:, None] * dW
    tl.store(deta + pg + grow, -tl.sum(E * dW, 1), mask=mt)
    dK += tl.dot(dE, tl.trans(F), input_precision=PREC)
    dF += tl.dot(tl.trans(kx), dE, input_precision=PREC)
    if SELF_TARGET:
        dvx = -tl.dot(dE, tl.trans(F), input_precision=PREC)
        dF -= tl.dot(tl.trans(vx), dE, input_precision=PREC)
        tl.store(dv + pk + grow[:, None] * K + rk[None, :], dvx, mask=mt[:, None])
    else:
        tl.store(dv + grow[:, None] * V + rv[None, :], -dE, mask=mt[:, None])

    # gate matrices -> log α, μ
    if HAS_MU:
        dPhi = tl.where(lower, dPhi, 0.0)
        dPhip = tl.where(strict, dPhip, 0.0)
        dG += tl.dot(dPhi, tl.trans(D), input_precision=PREC) + dnu[:, None] * m[None, :]
        dGp += tl.dot(dPhip, tl.trans(D), input_precision=PREC) + dnup[:, None] * m[None, :]
        dD += tl.dot(tl.trans(G), dPhi, input_precision=PREC) + tl.dot(tl.trans(Gp), dPhip, input_precision=PREC)
        dm += tl.sum(G * dnu[:, None], 0) + tl.sum(Gp * dnup[:, None], 0)
        dD = tl.where(lower, dD, 0.0)
        dmu_v = tl.sum(tl.dot(tl.trans(D), dD, input_precision=PREC) * Dp, 1) + mp * tl.sum(D * dm[:, None], 0)
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
    if not USE_F:
        dM0 += dF
    return dM0, dS0, dF


@triton.jit
def _bwd_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, pos, cu, ainv, tile_base,
                saved_m, saved_s, do, dm_fin, ds_fin, dmc_fin,
                dq, dk, dv, deta, dla, dbeta, dmu, dm0, ds0, dmc0,
                T, H, NRH, scale,
                K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
                IS_VARLEN: tl.constexpr, HAS_DMF: tl.constexpr, HAS_DSF: tl.constexpr,
                HAS_DMCF: tl.constexpr, STORE_DM0: tl.constexpr, PREC: tl.constexpr):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    row0, L, p = _seq_bounds(cu, pos, i_n, T, IS_VARLEN, HAS_POS)
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
    else:
        dS = tl.zeros([16, 16], dtype=tl.float32)   # placeholder: no momentum state
    at_boundary = (pf == 0).to(tl.float32)
    dM += at_boundary * dMc            # final M_chunk is M_L at a chunk boundary ...
    dFc = (1.0 - at_boundary) * dMc    # ... else the start memory of the last (partial) chunk

    if HAS_POS:
        i0 = ((p > 0) & (L > 0)).to(tl.int32)
    else:
        i0 = 0
    i = nt - 1
    while i >= i0:
        sv = ((tb + i) * H + i_h) * K * V + rk[:, None] * V + rv[None, :]
        M0 = tl.load(saved_m + sv)
        if HAS_MU:
            S0 = tl.load(saved_s + sv)
        else:
            S0 = dS
        s = i * BT - p
        dM0, dS0, dF = _bwd_tile(M0, S0, dM, dS, q, k, v, eta, la_ptr, beta_ptr, mu_ptr, ainv, do, mc0,
                                 dq, dk, dv, deta, dla, dbeta, dmu,
                                 row0, s, tl.minimum(L, s + BT), i_h, i_v, H, NRH, scale,
                                 K, V, BT, BV, HAS_ALPHA, HAS_BETA, HAS_MU, SELF_TARGET, READ,
                                 False, PREC)
        dM = dM0 + dFc
        dFc = dFc * 0.0
        dS = dS0
        i -= 1
    if HAS_POS:
        if (p > 0) & (L > 0):
            sv = (tb * H + i_h) * K * V + rk[:, None] * V + rv[None, :]
            M0 = tl.load(saved_m + sv)
            if HAS_MU:
                S0 = tl.load(saved_s + sv)
            else:
                S0 = dS
            dM0, dS0, dF = _bwd_tile(M0, S0, dM, dS, q, k, v, eta, la_ptr, beta_ptr, mu_ptr, ainv, do,
                                     mc0 + i_nh.to(tl.int64) * K * V, dq, dk, dv, deta, dla, dbeta, dmu,
                                     row0, 0, tl.minimum(L, BT - p), i_h, i_v, H, NRH, scale,
                                     K, V, BT, BV, HAS_ALPHA, HAS_BETA, HAS_MU, SELF_TARGET, READ,
                                     True, PREC)
            dM = dM0
            dS = dS0
            dFc += dF
        tl.store(dmc0 + st, dFc)
    if STORE_DM0:
        tl.store(dm0 + st, dM)
    if HAS_MU:
        tl.store(ds0 + st, dS)
