"""Triton forward kernels of ``linear_memory`` (SPEC §2) by the chunk algebra of
DESIGN_chunk_algebra.md §1–§3.

Two kernels:

* ``_ainv_kernel`` — grid (tiles, H), all tiles in parallel: A = strict(KKᵀ) ⊙ Γ_prev · diag(β)
  and (I + A)⁻¹ by recursive block doubling (block sizes 1, 2, 4, …, BT: each level is two BT×BT
  products), stored per token row: ainv [B·T, H, BT], row t of its tile's inverse. Only with β.
* ``_fwd_kernel`` — grid (V/BV, N·H): each program owns a K×BV column slice of M (and of S) in
  registers and walks the tiles of its sequence in order. Every formula of the algebra is
  separable over the columns of V (for target "self", M_sᵀv_t too), so no program talks to
  another. Per tile it recomputes the gate masks (γ, Γ, D, ν, Φ) from cumulative sums, forms the
  frozen errors, the right-hand side, R = (I + A)⁻¹ RHS, the outputs by masked products and the
  tile-end states by Kᵀ products. Optionally it stores the tile-start states (M, S) for the
  backward (O(T/C·K·V)).

Tiles. Tile i of a sequence of length L that starts at chunk position p spans tokens
[max(0, iC − p), min(L, (i+1)C − p)); tile 0 with p > 0 is the rest of a chunk begun by an
earlier call: its errors and its "chunk" read use the state's M_chunk (``USE_F``), all others use
the tile-start memory. Rows past the end of a tile are padded with zeros (k, q, v, η, log α, β)
and μ = 1, which leaves every valid row unchanged; the tile-end state reads the row of the last
valid token.

Interpreter notes (TRITON_INTERPRET=1): every load is upcast to float32 at once; loops over
tiles are ``while`` loops (the interpreter cannot take ``range`` over a runtime scalar with
numpy 2); no libdevice.
"""
from __future__ import annotations

import triton
import triton.language as tl


# ------------------------------------------------------------------------------------------
# shared helpers (also used by triton_bwd.py)
# ------------------------------------------------------------------------------------------
@triton.jit
def _seq_bounds(cu, pos, i_n, T, IS_VARLEN: tl.constexpr, HAS_POS: tl.constexpr):
    """(first flat row, length, start position) of sequence i_n."""
    if IS_VARLEN:
        bos = tl.load(cu + i_n).to(tl.int64)
        eos = tl.load(cu + i_n + 1).to(tl.int64)
        row0 = bos
        L = (eos - bos).to(tl.int32)
    else:
        row0 = i_n.to(tl.int64) * T
        L = i_n * 0 + T
    if HAS_POS:
        p = tl.load(pos + i_n).to(tl.int32)
    else:
        p = i_n * 0
    return row0, L, p


@triton.jit
def _decay(la, rt, HAS_ALPHA: tl.constexpr):
    """Γ [τ,t] = Π_{l=t+1..τ} α_l (τ ≥ t), Γ_prev [t,j] = Γ[t−1,j] (j < t), γ_t, γ_{t−1}."""
    lower = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    if HAS_ALPHA:
        c = tl.cumsum(la, 0)
        cp = c - la
        G = tl.where(lower, tl.exp(tl.where(lower, c[:, None] - c[None, :], 0.0)), 0.0)
        Gp = tl.where(strict, tl.exp(tl.where(strict, cp[:, None] - c[None, :], 0.0)), 0.0)
        g = tl.exp(c)
        gp = tl.exp(cp)
    else:
        G = tl.where(lower, 1.0, 0.0)
        Gp = tl.where(strict, 1.0, 0.0)
        g = la * 0.0 + 1.0
        gp = g
    return G, Gp, g, gp


@triton.jit
def _momentum(mu, rt):
    """D [i,t] = Π_{l=t+1..i} μ_l (i ≥ t), D_prev [l,t] = D[l−1,t] (t < l), m_t = Π_{l≤t} μ_l,
    m_{t−1}. Exact for μ = 0 and μ < 0: log|μ| is summed over the nonzero factors, zeros and
    negative signs are counted separately."""
    lower = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    z = mu == 0.0
    zi = z.to(tl.int32)
    ni = (mu < 0.0).to(tl.int32)
    lm = tl.where(z, 0.0, tl.log(tl.where(z, 1.0, tl.abs(mu))))
    cl = tl.cumsum(lm, 0)
    zc = tl.cumsum(zi, 0)
    nc = tl.cumsum(ni, 0)
    clp = cl - lm
    zcp = zc - zi
    ncp = nc - ni
    sgn = 1.0 - 2.0 * ((nc[:, None] - nc[None, :]) % 2).to(tl.float32)
    D = tl.where(lower & (zc[:, None] == zc[None, :]),
                 sgn * tl.exp(tl.where(lower, cl[:, None] - cl[None, :], 0.0)), 0.0)
    sgnp = 1.0 - 2.0 * ((ncp[:, None] - nc[None, :]) % 2).to(tl.float32)
    Dp = tl.where(strict & (zcp[:, None] == zc[None, :]),
                  sgnp * tl.exp(tl.where(strict, clp[:, None] - cl[None, :], 0.0)), 0.0)
    m = tl.where(zc == 0, (1.0 - 2.0 * (nc % 2).to(tl.float32)) * tl.exp(cl), 0.0)
    mp = tl.where(zcp == 0, (1.0 - 2.0 * (ncp % 2).to(tl.float32)) * tl.exp(clp), 0.0)
    return D, Dp, m, mp


@triton.jit
def _row_of(X, sel):
    """Row ``sel`` (a one-hot over rows) of the square matrix X, as a vector over columns."""
    return tl.sum(tl.where(sel[:, None], X, 0.0), 0)


@triton.jit
def _at(x, sel):
    """x[sel] for a one-hot ``sel`` (0 when no row is selected)."""
    return tl.sum(tl.where(sel, x, 0.0), 0)


@triton.jit
def _unit_lower_inverse(A, rt, LOG2BT: tl.constexpr, PREC: tl.constexpr):
    """(I + A)⁻¹ for strictly lower-triangular A [BT, BT] by block doubling: with B_s the inverse of
    the block-diagonal part in blocks of s, B_2s = B_s − B_s L_21 B_s where L_21 holds the
    lower-left s×s block of every 2s block."""
    B = tl.where(rt[:, None] == rt[None, :], 1.0, 0.0)
    for lvl in tl.static_range(LOG2BT):
        s = 1 << lvl
        br = rt // s
        sel = ((br % 2) == 1)[:, None] & (br[None, :] == (br - 1)[:, None])
        Lo = tl.where(sel, A, 0.0)
        B = B - tl.dot(tl.dot(B, Lo, input_precision=PREC), B, input_precision=PREC)
    return B


# ------------------------------------------------------------------------------------------
# (I + A)⁻¹ per tile
# ------------------------------------------------------------------------------------------
@triton.jit
def _ainv_kernel(k, la_ptr, beta_ptr, ainv, tile_seq, tile_idx, cu, pos, T, H,
                 K: tl.constexpr, BT: tl.constexpr, LOG2BT: tl.constexpr,
                 HAS_ALPHA: tl.constexpr, IS_VARLEN: tl.constexpr, HAS_POS: tl.constexpr,
                 PREC: tl.constexpr):
    i_g = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n = tl.load(tile_seq + i_g)
    valid = i_n >= 0
    i_n = tl.maximum(i_n, 0)
    i_t = tl.load(tile_idx + i_g)
    row0, L, p = _seq_bounds(cu, pos, i_n, T, IS_VARLEN, HAS_POS)
    s = tl.maximum(i_t * BT - p, 0)
    e = tl.minimum((i_t + 1) * BT - p, L)
    rt = tl.arange(0, BT)
    rk = tl.arange(0, K)
    tok = s + rt
    mt = (tok < e) & valid
    grow = (row0 + tok).to(tl.int64) * H + i_h
    kx = tl.load(k + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
    if HAS_ALPHA:
        la = tl.load(la_ptr + grow, mask=mt, other=0.0).to(tl.float32)
    else:
        la = tl.zeros([BT], dtype=tl.float32)
    G, Gp, g, gp = _decay(la, rt, HAS_ALPHA)
    KK = tl.dot(kx, tl.trans(kx), input_precision=PREC)
    A = tl.where(rt[:, None] > rt[None, :], KK * Gp * bt[None, :], 0.0)
    Ai = _unit_lower_inverse(A, rt, LOG2BT, PREC)
    tl.store(ainv + grow[:, None] * BT + rt[None, :], Ai, mask=mt[:, None])


# ------------------------------------------------------------------------------------------
# sequential forward
# ------------------------------------------------------------------------------------------
@triton.jit
def _fwd_tile(M, S, q, k, v, eta, la_ptr, beta_ptr, mu_ptr, ainv, o, f_ptr,
              row0, s, e, i_h, i_v, H, scale,
              K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
              HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
              SELF_TARGET: tl.constexpr, READ: tl.constexpr, USE_F: tl.constexpr,
              STORE_O: tl.constexpr, PREC: tl.constexpr):
    """One tile [s, e) of a sequence: returns the tile-end (M, S) column slices and writes o."""
    rt = tl.arange(0, BT)
    rk = tl.arange(0, K)
    rv = i_v * BV + tl.arange(0, BV)
    tok = s + rt
    mt = tok < e
    grow = (row0 + tok).to(tl.int64) * H + i_h
    lower = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    sel = rt == (e - s - 1)

    kx = tl.load(k + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
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

    # frozen errors at the chunk-start memory (F for a resumed partial chunk, else M)
    KM = tl.dot(kx, M, input_precision=PREC)
    if USE_F:
        F = tl.load(f_ptr + rk[:, None] * V + rv[None, :]).to(tl.float32)
        KF = tl.dot(kx, F, input_precision=PREC)
    else:
        F = M
        KF = KM
    if SELF_TARGET:
        vx = tl.load(v + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
        Tg = tl.dot(vx, F, input_precision=PREC)
    else:
        Tg = tl.load(v + grow[:, None] * V + rv[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    W = -et[:, None] * (KF - Tg)

    # DGD term U = −diag(β) R,  (I + A) R = RHS
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
        KK = tl.dot(kx, tl.trans(kx), input_precision=PREC)
        P = tl.where(strict, KK * Phip, 0.0)
        RHS = gp[:, None] * KM + tl.dot(P, W, input_precision=PREC)
        if HAS_MU:
            KS = tl.dot(kx, S, input_precision=PREC)
            RHS += nup[:, None] * KS
        Ai = tl.load(ainv + grow[:, None] * BT + rt[None, :], mask=mt[:, None], other=0.0)
        R = tl.dot(Ai, RHS, input_precision=PREC)
        U = -bt[:, None] * R

    if STORE_O:
        qx = tl.load(q + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32) * scale
        if READ == 2:
            out = tl.dot(qx, F, input_precision=PREC)
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
            out = a[:, None] * tl.dot(qx, M, input_precision=PREC)
            out += tl.dot(QKm * Hm, W, input_precision=PREC)
            if HAS_BETA:
                out += tl.dot(QKm * Gm, U, input_precision=PREC)
            if HAS_MU:
                if READ == 0:
                    b = nu
                else:
                    b = nup
                out += b[:, None] * tl.dot(qx, S, input_precision=PREC)
        tl.store(o + grow[:, None] * V + rv[None, :], out.to(o.dtype.element_ty), mask=mt[:, None])

    # tile-end states
    gL = _at(g, sel) + (e - s - 1 < 0).to(tl.float32)   # γ_n (1 for an empty tile)
    X = _row_of(Phi, sel)[:, None] * W
    if HAS_BETA:
        X += _row_of(G, sel)[:, None] * U
    M_new = gL * M + tl.dot(tl.trans(kx), X, input_precision=PREC)
    if HAS_MU:
        mL = _at(m, sel) + (e - s - 1 < 0).to(tl.float32)
        M_new += _at(nu, sel) * S
        S_new = mL * S + tl.dot(tl.trans(kx), _row_of(D, sel)[:, None] * W, input_precision=PREC)
    else:
        S_new = S
    return M_new, S_new


@triton.jit
def _fwd_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, m0, s0, mc0, pos, cu, ainv, tile_base,
                o, m_out, s_out, mc_out, saved_m, saved_s,
                T, H, scale,
                K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                SELF_TARGET: tl.constexpr, READ: tl.constexpr,
                HAS_M0: tl.constexpr, HAS_S0: tl.constexpr, HAS_POS: tl.constexpr,
                IS_VARLEN: tl.constexpr, OUTPUT_FINAL: tl.constexpr, SAVE_STATES: tl.constexpr,
                STORE_O: tl.constexpr, PREC: tl.constexpr):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    row0, L, p = _seq_bounds(cu, pos, i_n, T, IS_VARLEN, HAS_POS)
    rk = tl.arange(0, K)
    rv = i_v * BV + tl.arange(0, BV)
    st = i_nh.to(tl.int64) * K * V + rk[:, None] * V + rv[None, :]
    if HAS_M0:
        M = tl.load(m0 + st).to(tl.float32)
    else:
        M = tl.zeros([K, BV], dtype=tl.float32)
    if HAS_S0:
        S = tl.load(s0 + st).to(tl.float32)
    elif HAS_MU:
        S = tl.zeros([K, BV], dtype=tl.float32)
    else:
        S = tl.zeros([16, 16], dtype=tl.float32)   # placeholder: no momentum state
    nt = ((L + p + BT - 1) // BT) * (L > 0).to(tl.int32)
    pf = (p + L) % BT
    if SAVE_STATES:
        tb = tl.load(tile_base + i_n).to(tl.int64)
    else:
        tb = 0
    i = i_n * 0
    if HAS_POS:
        if OUTPUT_FINAL:
            if (p > 0) & (p + L < BT):    # the call ends inside the chunk it resumed
                tl.store(mc_out + st, tl.load(mc0 + st))
        if (p > 0) & (L > 0):             # finish the chunk begun by an earlier call
            if SAVE_STATES:
                sv = (tb * H + i_h) * K * V + rk[:, None] * V + rv[None, :]
                tl.store(saved_m + sv, M)
                if HAS_MU:
                    tl.store(saved_s + sv, S)
            M, S = _fwd_tile(M, S, q, k, v, eta, la_ptr, beta_ptr, mu_ptr, ainv, o, mc0 + i_nh.to(tl.int64) * K * V,
                             row0, 0, tl.minimum(L, BT - p), i_h, i_v, H, scale,
                             K, V, BT, BV, HAS_ALPHA, HAS_BETA, HAS_MU, SELF_TARGET, READ,
                             True, STORE_O, PREC)
            i += 1
    while i < nt:
        s = i * BT - p
        if SAVE_STATES:
            sv = ((tb + i) * H + i_h) * K * V + rk[:, None] * V + rv[None, :]
            tl.store(saved_m + sv, M)
            if HAS_MU:
                tl.store(saved_s + sv, S)
        if OUTPUT_FINAL:
            if (i == nt - 1) & (pf != 0):
                tl.store(mc_out + st, M)
        M, S = _fwd_tile(M, S, q, k, v, eta, la_ptr, beta_ptr, mu_ptr, ainv, o, mc0,
                         row0, s, tl.minimum(L, s + BT), i_h, i_v, H, scale,
                         K, V, BT, BV, HAS_ALPHA, HAS_BETA, HAS_MU, SELF_TARGET, READ,
                         False, STORE_O, PREC)
        i += 1
    if OUTPUT_FINAL:
        tl.store(m_out + st, M)
        if HAS_MU:
            tl.store(s_out + st, S)
        if pf == 0:
            tl.store(mc_out + st, M)
