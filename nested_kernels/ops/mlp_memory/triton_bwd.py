"""Triton backward kernel of ``mlp_memory``: the adjoint of the tile algebra of triton_fwd.py.

``_bwd_kernel`` — grid (N·H,): one program per (sequence, head) walks the tiles of its sequence
backwards, carrying the adjoints of the weights (dW1, dW2, dS1, dS2) in float32 buffers in global
memory, updated in place per F block like the forward's states. Per tile it reloads the
checkpoints written by the forward with ``SAVE`` (tile-start weights, frozen errors E, the rows of
(I + A_β)⁻¹ and of B Aᵀ) and makes two passes over the F blocks:

* pass B — recomputes the block's forward quantities (Z, A, d, w2, RHS, R, U, h, B) and applies
  the adjoints of the tile-end update, the read and the DGD solve, all separable over F; it adds
  the block's share to what sums over F: the adjoint of the frozen errors dE (through w1 = −ηE
  and through d = (E W1_s) ⊙ φ'), the token gradients dq, dk, dv, the gate adjoints and four n×n
  matrices (dRHS Rᵀ, dRHS w2ᵀ, dh w2ᵀ, dh Uᵀ); it writes the tile-start adjoints of its block
  and stashes its partial dA and the φ'' term of dZ;
* pass C — with dE complete: dA += dE W1_s, dZ, and the chunk-start weights' adjoints
  (dZᵀK, dEᵀA, and the self target's), added to the tile-start adjoints (or, in a resumed tile,
  to the adjoint of the state's chunk-start copy).

Then the n×n adjoints give dk, dq, dβ and, through the gate matrices, d log α and dμ.

With ``PREP`` pass B reads the gate vectors, (I + A_β)⁻¹ and the masked KKᵀ / QKᵀ products from
the rows of ``_prep_kernel`` (triton_prep.py), and the tail re-forms the gate matrices, KKᵀ and
QKᵀ it needs, so that none of them is live across the F loops.

``PART`` (constexpr) splits that work into walks with smaller live sets (the launcher's
NESTED_KERNELS_MLP_TRITON_BWD_SPLIT): 0 does everything in one walk; 1 (CHAIN) only what the
carried weight adjoints need, storing each tile's tile-end adjoints (sa*, one per tile, like the
checkpoints) and dE per token (sv_de); 2 (TOKENS) the token and gate gradients of each tile from
those (dE is known: no accumulation and no exchange of it); 3 (DQ_READ) read chunk's dq, which needs only dO and
the chunk-start weights. Every accumulation is guarded by the part that needs it.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import act, act_grad, act_grad2, gate_grads, mm, seq_bounds, sum2, tile_gates
from .triton_common import exchange, off_w1, off_w2
from .triton_prep import gate_end, prep_end, prep_tile


@triton.jit
def _bwd_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, do,
              c1, c2, cs1, cs2, g1, g2, gd1, gd2, dw1, dw2, ds1, ds2, dc1, dc2, stash,
              ad1, ad2, ads1, ads2, sv_de, sv_e, sv_ba, sv_ai, pv, pk, qp, qg, pm, dq, dk, dv, deta, dla, dbeta, dmu,
              xch, ctr, n_done, j, row0, s, e, i_h, H, scale, add_c,
              K: tl.constexpr, V: tl.constexpr, F: tl.constexpr, BF: tl.constexpr,
              FS: tl.constexpr, NS: tl.constexpr, BT: tl.constexpr, ACT: tl.constexpr,
              RESIDUAL: tl.constexpr, HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr,
              HAS_MU: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr,
              USE_G: tl.constexpr, HAS_DC: tl.constexpr, PREC: tl.constexpr, GPREC: tl.constexpr,
              PREP: tl.constexpr, PART: tl.constexpr):
    """Adjoint of one tile [s, e). c1, c2, cs1, cs2: tile-start checkpoints; g1, g2: chunk-start
    weights; gd1, gd2: where their adjoints go; dw1 … ds2: carried adjoints (tile-end in,
    tile-start out); dc1, dc2: adjoint of the final chunk-start weights, added to the tile-start
    adjoints when ``add_c``; stash: [2, BT, F] scratch of this (sequence, head). F slice j
    = [j·FS, (j+1)·FS): the token and gate gradients (dq … dmu, this slice's partial buffers) are
    this slice's share; terms that do not sum over F are added by slice 0; the adjoint of the
    frozen errors is exchanged between the slices (xch, ctr, n_done: ``exchange``). sv_ai: the
    rows of (I + A_β)⁻¹ (the forward's SAVE, or with PREP the prep kernel's); pv … pm: the other
    prep rows (PREP). PART: 0 everything; with the split backward 1 the weight adjoints only
    (CHAIN), 2 the token and gate gradients only (TOKENS), 3 read chunk's dq only (DQ_READ)."""
    CHAIN: tl.constexpr = (PART == 0) or (PART == 1)
    TOKENS: tl.constexpr = (PART == 0) or (PART == 2)
    DQ_READ: tl.constexpr = (PART == 0) or (PART == 3)
    rt = tl.arange(0, BT)
    rk = tl.arange(0, K)
    rv = tl.arange(0, V)
    rf = tl.arange(0, BF)
    tok = s + rt
    mt = tok < e
    grow = (row0 + tok).to(tl.int64) * H + i_h
    strict = rt[:, None] > rt[None, :]
    sel = rt == (e - s - 1)
    empty = (e - s - 1 < 0).to(tl.float32)

    kx = tl.load(k + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    qx = tl.load(q + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32) * scale
    if SELF_TARGET:
        vx = tl.load(v + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    dO = tl.load(do + grow[:, None] * V + rv[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    E = tl.load(sv_e + grow[:, None] * V + rv[None, :], mask=mt[:, None], other=0.0)
    w1v = -et[:, None] * E
    if PREP:
        gp, nup, Ai, Pk, QP, QG, Pm, gm, nm = prep_tile(pv, sv_ai, pk, qp, qg, pm, grow, mt, rt, BT,
                                                        HAS_BETA, HAS_MU, READ)
        zv = tl.zeros([BT], dtype=tl.float32)
        zm = tl.zeros([BT, BT], dtype=tl.float32)
    else:
        G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, mu_ptr, grow, mt, rt, BT,
                                                                    HAS_ALPHA, HAS_MU, GPREC)
        zv = g * 0.0
        zm = G * 0.0
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
        if not PREP:
            KK = mm(kx, tl.trans(kx), PREC)
            Ai = tl.load(sv_ai + grow[:, None] * BT + rt[None, :], mask=mt[:, None], other=0.0)
            Pk = tl.where(strict, KK * Phip, 0.0)
        Mr = zm
        Mrhs = zm
    if READ != 2:
        if not PREP:
            QK = mm(qx, tl.trans(kx), PREC)
            if READ == 0:
                Gm = G
                Pm = Phi
                gm = g
                nm = nu
            else:
                Gm = Gp
                Pm = Phip
                gm = gp
                nm = nup
            QG = QK * Gm
            QP = QK * Pm
        # B Aᵀ summed over the F slices: slice 0 takes it whole (its uses are linear in it)
        BA = tl.load(sv_ba + grow[:, None] * BT + rt[None, :], mask=mt[:, None] & (j == 0), other=0.0)
        dOw = mm(dO, tl.trans(w1v), PREC)
        dBA = dOw * Pm
        if PREP:
            dPmBA = dOw * BA     # so that neither dOw nor BA is live across the F loops
        dw1_acc = mm(tl.trans(BA * Pm), dO, PREC)
        Mw = zm
        Mu = zm
    else:
        dw1_acc = tl.zeros([BT, V], dtype=tl.float32)
    dEq = tl.zeros([BT, V], dtype=tl.float32)
    dK = tl.zeros([BT, K], dtype=tl.float32)
    if RESIDUAL:
        dQ = dO * (j == 0).to(tl.float32)
    else:
        dQ = tl.zeros([BT, K], dtype=tl.float32)
    if SELF_TARGET:
        dV = tl.zeros([BT, K], dtype=tl.float32)
    dgm_v = zv
    dnm_v = zv
    dgp_r = zv
    dnup_r = zv
    dPhiL = zv
    dGL = zv
    dDL = zv
    dbt_v = zv
    deta_v = zv
    dgL = tl.sum(zv, 0)
    dnuL = dgL
    dmL = dgL

    if PREP:
        gL, PhiL, GL, nuL, mL, DL = prep_end(pv, grow, mt, sel, empty, HAS_MU)
    else:
        gL, PhiL, GL, nuL, mL, DL = gate_end(g, Phi, G, nu, m, D, sel, empty)
    st_a = stash + rt[:, None] * F
    st_z = stash + BT * F + rt[:, None] * F

    # ---------------- pass B: everything separable over F ----------------
    fs = j * FS
    for fb in range(0, FS, BF):
        f0 = fs + fb
        o1 = off_w1(rv, f0, rf, F)
        o2 = off_w2(rf, f0, rk, K)
        W1b = tl.load(c1 + o1)
        W2b = tl.load(c2 + o2)
        if USE_G:
            W1g = tl.load(g1 + o1)
            W2g = tl.load(g2 + o2)
        else:
            W1g = W1b
            W2g = W2b
        dW1e = tl.load(dw1 + o1)
        dW2e = tl.load(dw2 + o2)
        if PART == 1:
            tl.store(ad1 + o1, dW1e)
            tl.store(ad2 + o2, dW2e)
        if HAS_MU:
            S1b = tl.load(cs1 + o1)
            S2b = tl.load(cs2 + o2)
            dS1e = tl.load(ds1 + o1)
            dS2e = tl.load(ds2 + o2)
            if PART == 1:
                tl.store(ads1 + o1, dS1e)
                tl.store(ads2 + o2, dS2e)
        # recompute the block
        Z = mm(kx, tl.trans(W2g), PREC)
        A = act(Z, ACT)
        Ap = act_grad(Z, ACT)
        Q1 = mm(E, W1g, PREC)
        Dd = Q1 * Ap
        w2v = -et[:, None] * Dd
        X = PhiL[:, None] * w2v
        if HAS_BETA:
            if USE_G:
                KW = mm(kx, tl.trans(W2b), PREC)
            else:
                KW = Z
            RHS = gp[:, None] * KW + mm(Pk, w2v, PREC)
            if HAS_MU:
                KS = mm(kx, tl.trans(S2b), PREC)
                RHS += nup[:, None] * KS
            R = mm(Ai, RHS, PREC)
            U = -bt[:, None] * R
            X += GL[:, None] * U

        # tile-end update: W2' = γW2 + νS2 + XᵀK, W1' = γW1 + νS1 + (Φ_n w1)ᵀA, S1', S2'
        dX = mm(kx, tl.trans(dW2e), PREC)
        T1 = mm(A, tl.trans(dW1e), PREC)
        if PART == 2:     # dE is known (PART 1 stored it): only η's share of dw1 is needed
            deta_v += -tl.sum(PhiL[:, None] * T1 * E, 1)
        elif CHAIN:
            dw1_acc += PhiL[:, None] * T1
        if TOKENS:
            dK += mm(X, dW2e, PREC)
            dPhiL += tl.sum(w1v * T1, 1) + tl.sum(w2v * dX, 1)
            dgL += sum2(W1b * dW1e) + sum2(W2b * dW2e)
        dA = mm(PhiL[:, None] * w1v, dW1e, PREC)
        dw2v = PhiL[:, None] * dX
        if HAS_BETA:
            dU = GL[:, None] * dX
            if TOKENS:
                dGL += tl.sum(U * dX, 1)
        dW1s = gL * dW1e
        dW2s = gL * dW2e
        if HAS_MU:
            dS1s = mL * dS1e + nuL * dW1e
            dS2s = mL * dS2e + nuL * dW2e
            T2 = mm(A, tl.trans(dS1e), PREC)
            if PART == 2:
                deta_v += -tl.sum(DL[:, None] * T2 * E, 1)
            elif CHAIN:
                dw1_acc += DL[:, None] * T2
            dA += mm(DL[:, None] * w1v, dS1e, PREC)
            Y = mm(kx, tl.trans(dS2e), PREC)
            dw2v += DL[:, None] * Y
            if TOKENS:
                dnuL += sum2(S1b * dW1e) + sum2(S2b * dW2e)
                dmL += sum2(S1b * dS1e) + sum2(S2b * dS2e)
                dDL += tl.sum(w1v * T2, 1) + tl.sum(w2v * Y, 1)
                dK += mm(DL[:, None] * w2v, dS2e, PREC)

        # read
        if READ == 2:
            if PART != 2:
                Zq = mm(qx, tl.trans(W2g), PREC)
                dZq = mm(dO, W1g, PREC) * act_grad(Zq, ACT)
                if CHAIN:
                    dW1g = mm(tl.trans(dO), act(Zq, ACT), PREC)
                    dW2g = mm(tl.trans(dZq), qx, PREC)
                if DQ_READ:
                    dQ += mm(dZq, W2g, PREC)
        else:
            qW = mm(qx, tl.trans(W2b), PREC)
            Hq = gm[:, None] * qW + mm(QP, w2v, PREC)
            if HAS_BETA:
                Hq += mm(QG, U, PREC)
            if HAS_MU:
                qS = mm(qx, tl.trans(S2b), PREC)
                Hq += nm[:, None] * qS
            Bq = act(Hq, ACT)
            dOW = mm(dO, W1b, PREC)
            dBq = gm[:, None] * dOW + mm(dBA, A, PREC)
            if CHAIN:
                dW1s += mm(tl.trans(gm[:, None] * dO), Bq, PREC)
            if HAS_MU:
                dOS = mm(dO, S1b, PREC)
                dBq += nm[:, None] * dOS
                if TOKENS:
                    dnm_v += tl.sum(dOS * Bq, 1)
                if CHAIN:
                    dS1s += mm(tl.trans(nm[:, None] * dO), Bq, PREC)
            dA += mm(tl.trans(dBA), Bq, PREC)
            dHq = dBq * act_grad(Hq, ACT)
            if CHAIN:
                dW2s += mm(tl.trans(gm[:, None] * dHq), qx, PREC)
            if TOKENS:
                dgm_v += tl.sum(dOW * Bq, 1) + tl.sum(dHq * qW, 1)
                dQ += gm[:, None] * mm(dHq, W2b, PREC)
                Mw += mm(dHq, tl.trans(w2v), PREC)
            if HAS_MU:
                if CHAIN:
                    dS2s += mm(tl.trans(nm[:, None] * dHq), qx, PREC)
                if TOKENS:
                    dQ += nm[:, None] * mm(dHq, S2b, PREC)
                    dnm_v += tl.sum(dHq * qS, 1)
            dw2v += mm(tl.trans(QP), dHq, PREC)
            if HAS_BETA:
                if TOKENS:
                    Mu += mm(dHq, tl.trans(U), PREC)
                dU += mm(tl.trans(QG), dHq, PREC)

        # DGD solve: U = −βR, R = (I + A_β)⁻¹ RHS, RHS = γ_prev K W2ᵀ + ν_prev K S2ᵀ + P w2
        if HAS_BETA:
            dR = -bt[:, None] * dU
            dRHS = mm(tl.trans(Ai), dR, PREC)
            dw2v += mm(tl.trans(Pk), dRHS, PREC)
            gdR = gp[:, None] * dRHS
            if TOKENS:
                dbt_v += -tl.sum(R * dU, 1)
                Mr += mm(dRHS, tl.trans(R), PREC)
                Mrhs += mm(dRHS, tl.trans(w2v), PREC)
                dgp_r += tl.sum(dRHS * KW, 1)
                dK += mm(gdR, W2b, PREC)
            if CHAIN:
                dW2s += mm(tl.trans(gdR), kx, PREC)
            if HAS_MU:
                ndR = nup[:, None] * dRHS
                if TOKENS:
                    dnup_r += tl.sum(dRHS * KS, 1)
                    dK += mm(ndR, S2b, PREC)
                if CHAIN:
                    dS2s += mm(tl.trans(ndR), kx, PREC)

        # w2 = −η d, d = (E W1_s) ⊙ φ'(Z): the parts that do not need dE
        if TOKENS:
            deta_v += -tl.sum(dw2v * Dd, 1)
        dDd = -et[:, None] * dw2v
        dQ1 = dDd * Ap
        if CHAIN:
            dEq += mm(dQ1, tl.trans(W1g), PREC)
            dW1gl = mm(tl.trans(E), dQ1, PREC)
            if READ == 2:
                dW1gl += dW1g
        if PART != 3:
            tl.store(st_a + (f0 + rf)[None, :], dA)
            tl.store(st_z + (f0 + rf)[None, :], dDd * Q1 * act_grad2(Z, ACT))
        if CHAIN:
            if USE_G:
                tl.store(gd1 + o1, tl.load(gd1 + o1) + dW1gl)
                if READ == 2:
                    tl.store(gd2 + o2, tl.load(gd2 + o2) + dW2g)
            else:
                dW1s += dW1gl
                if READ == 2:
                    dW2s += dW2g
            tl.store(dw1 + o1, dW1s)
            tl.store(dw2 + o2, dW2s)
            if HAS_MU:
                tl.store(ds1 + o1, dS1s)
                tl.store(ds2 + o2, dS2s)
    tl.debug_barrier()

    if PART != 3:     # PART 3: the read's dq only (read chunk), no dE
        # ---------------- frozen errors: E = M_s(K) − target ----------------
        if PART == 2:
            dE = tl.load(sv_de + grow[:, None] * V + rv[None, :], mask=mt[:, None], other=0.0)
        else:
            dE = exchange(-et[:, None] * dw1_acc + dEq, xch, ctr, n_done, j, rt, rv, NS, BT, V)
            if PART == 1:
                tl.store(sv_de + grow[:, None] * V + rv[None, :], dE, mask=mt[:, None] & (j == 0))
        once = (j == 0).to(tl.float32)
        if TOKENS:
            deta_v += -tl.sum(dw1_acc * E, 1)
            if RESIDUAL:
                dK += once * dE
            if SELF_TARGET:
                if RESIDUAL:
                    dV -= once * dE
            else:
                tl.store(dv + grow[:, None] * V + rv[None, :], -once * dE, mask=mt[:, None])

        # ---------------- pass C: the chunk-start weights' share of dE ----------------
        for fb in range(0, FS, BF):
            f0 = fs + fb
            o1 = off_w1(rv, f0, rf, F)
            o2 = off_w2(rf, f0, rk, K)
            W1g = tl.load(g1 + o1)
            W2g = tl.load(g2 + o2)
            Z = mm(kx, tl.trans(W2g), PREC)
            A = act(Z, ACT)
            dA = tl.load(st_a + (f0 + rf)[None, :]) + mm(dE, W1g, PREC)
            dZ = tl.load(st_z + (f0 + rf)[None, :]) + dA * act_grad(Z, ACT)
            if TOKENS:
                dK += mm(dZ, W2g, PREC)
            dW2g = mm(tl.trans(dZ), kx, PREC)
            dW1g = mm(tl.trans(dE), A, PREC)
            if SELF_TARGET:
                Zv = mm(vx, tl.trans(W2g), PREC)
                dW1g -= mm(tl.trans(dE), act(Zv, ACT), PREC)
                dZv = -mm(dE, W1g, PREC) * act_grad(Zv, ACT)
                dW2g += mm(tl.trans(dZv), vx, PREC)
                if TOKENS:
                    dV += mm(dZv, W2g, PREC)
            if CHAIN:
                n1 = tl.load(gd1 + o1) + dW1g
                n2 = tl.load(gd2 + o2) + dW2g
                if HAS_DC:
                    n1 += tl.load(dc1 + o1, mask=(rv[:, None] >= 0) & add_c, other=0.0)
                    n2 += tl.load(dc2 + o2, mask=(rf[:, None] >= 0) & add_c, other=0.0)
                tl.store(gd1 + o1, n1)
                tl.store(gd2 + o2, n2)
        tl.debug_barrier()

    # ---------------- n×n adjoints: solve, masked products, gates ----------------
    if PART == 3:
        tl.store(dq + grow[:, None] * K + rk[None, :], dQ * scale, mask=mt[:, None])
    elif TOKENS:
        if PREP:
            G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, mu_ptr, grow, mt, rt, BT,
                                                                        HAS_ALPHA, HAS_MU, GPREC)
            if HAS_BETA:
                KK = mm(kx, tl.trans(kx), PREC)
            if READ != 2:
                QK = mm(qx, tl.trans(kx), PREC)
                if READ == 0:
                    Gm = G
                else:
                    Gm = Gp
        dG = zm
        dGp = zm
        dPhi = zm
        dPhip = zm
        dD = zm
        dg = zv
        dgp = dgp_r
        dnu = zv
        dnup = dnup_r
        dm = zv
        if HAS_BETA:
            dAm = tl.where(strict, -Mr, 0.0)
            dKK = dAm * Gp * bt[None, :] + tl.where(strict, Mrhs * Phip, 0.0)
            dGp += dAm * KK * bt[None, :]
            dbt_v += tl.sum(dAm * KK * Gp, 0)
            dPhip += tl.where(strict, Mrhs * KK, 0.0)
            dK += mm(dKK + tl.trans(dKK), kx, PREC)
            tl.store(dbeta + grow, dbt_v, mask=mt)
        if READ != 2:
            dQK = Mw * Pm
            if PREP:
                dPm = Mw * QK + dPmBA
            else:
                dPm = Mw * QK + dOw * BA
            if HAS_BETA:
                dQK += Mu * Gm
                dGm = Mu * QK
            else:
                dGm = zm
            dQ += mm(dQK, kx, PREC)
            dK += mm(tl.trans(dQK), qx, PREC)
            if READ == 0:
                dG += dGm
                dPhi += dPm
                dg += dgm_v
                dnu += dnm_v
            else:
                dGp += dGm
                dPhip += dPm
                dgp += dgm_v
                dnup += dnm_v
        dPhi += tl.where(sel[:, None], dPhiL[None, :], 0.0)
        dG += tl.where(sel[:, None], dGL[None, :], 0.0)
        dD += tl.where(sel[:, None], dDL[None, :], 0.0)
        dg += tl.where(sel, dgL, 0.0)
        dnu += tl.where(sel, dnuL, 0.0)
        dm += tl.where(sel, dmL, 0.0)
        dla_v, dmu_v = gate_grads(G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip, dg, dgp, dnu, dnup,
                                  dm, dD, rt[:, None] >= rt[None, :], rt[:, None] > rt[None, :], HAS_ALPHA,
                                  HAS_MU, GPREC)
        if HAS_ALPHA:
            tl.store(dla + grow, dla_v, mask=mt)
        if HAS_MU:
            tl.store(dmu + grow, dmu_v, mask=mt)
        tl.store(deta + grow, deta_v, mask=mt)
        if (PART == 0) or (READ != 2):      # with the split, read chunk's dq is PART 3's
            tl.store(dq + grow[:, None] * K + rk[None, :], dQ * scale, mask=mt[:, None])
        tl.store(dk + grow[:, None] * K + rk[None, :], dK, mask=mt[:, None])
        if SELF_TARGET:
            tl.store(dv + grow[:, None] * K + rk[None, :], dV, mask=mt[:, None])


@triton.jit
def _bwd_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, wc1, wc2, pos, cu, tile_base,
                sv1, sv2, svs1, svs2, sv_de, sv_e, sv_ba, sv_ai, do, dc1, dc2,
                dw1, dw2, ds1, ds2, dwc1, dwc2, stash, sa1, sa2, sas1, sas2, xch, ctr,
                dq, dk, dv, deta, dla, dbeta, dmu,
                T, R, H, scale, pv, pk, qp, qg, pm,
                K: tl.constexpr, V: tl.constexpr, F: tl.constexpr, BF: tl.constexpr, NS: tl.constexpr,
                BT: tl.constexpr, LOG2BT: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr,
                HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
                IS_VARLEN: tl.constexpr, HAS_DC: tl.constexpr, PREC: tl.constexpr,
                GPREC: tl.constexpr, PREP: tl.constexpr, PART: tl.constexpr):
    """Grid (N·H, NS), F slices as in the forward. dw1, dw2, ds1, ds2 [N,H,·,·]: the adjoints of
    the final states on entry (plus the final chunk-start adjoint where the call ends on a chunk
    boundary), of the start states on exit. dwc1, dwc2: adjoints of the resumed chunk-start
    weights (accumulated). dc1, dc2: the final chunk-start adjoint, added here to the start
    adjoint of the last tile when the call ends inside a chunk that it began (HAS_DC). sv*: the
    forward's checkpoints (sv_ba: B Aᵀ summed over the slices, taken by slice 0). sv_ai, pv … pm:
    as in the forward. dq … dmu: [NS,
    R = B·T, H, ·] partial sums over the slices (the launcher adds them). xch, ctr: as in the
    forward (fresh counters)."""
    i_nh = tl.program_id(0)
    j = tl.program_id(1)
    FS: tl.constexpr = F // NS
    i_n = i_nh // H
    i_h = i_nh % H
    row0, L, p = seq_bounds(cu, pos, i_n, T, IS_VARLEN, HAS_POS)
    b1 = i_nh.to(tl.int64) * V * F
    b2 = i_nh.to(tl.int64) * F * K
    nt = ((L + p + BT - 1) // BT) * (L > 0).to(tl.int32)
    pf = (p + L) % BT
    tb = tl.load(tile_base + i_n).to(tl.int64)
    st = stash + i_nh.to(tl.int64) * 2 * BT * F
    xch += i_nh.to(tl.int64) * 2 * NS * BT * V
    ctr += i_nh
    jr = j.to(tl.int64) * R * H
    dq += jr * K
    dk += jr * K
    if SELF_TARGET:
        dv += jr * K
    else:
        dv += jr * V
    deta += jr
    dla += jr
    dbeta += jr
    dmu += jr
    if HAS_POS:
        i0 = ((p > 0) & (L > 0)).to(tl.int32)
    else:
        i0 = 0
    i = nt - 1
    while i >= i0:
        s = i * BT - p
        t1 = ((tb + i) * H + i_h) * V * F
        t2 = ((tb + i) * H + i_h) * F * K
        if PART == 2:     # this tile's tile-end adjoints, as the chain (PART 1) stored them
            e1, e2, es1, es2 = sa1 + t1, sa2 + t2, sas1 + t1, sas2 + t2
        else:
            e1, e2, es1, es2 = dw1 + b1, dw2 + b2, ds1 + b1, ds2 + b2
        _bwd_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, do,
                  sv1 + t1, sv2 + t2, svs1 + t1, svs2 + t2, sv1 + t1, sv2 + t2, e1, e2,
                  e1, e2, es1, es2, dc1 + b1, dc2 + b2, st, sa1 + t1, sa2 + t2, sas1 + t1, sas2 + t2,
                  sv_de, sv_e, sv_ba, sv_ai, pv, pk, qp, qg, pm, dq, dk, dv, deta, dla, dbeta, dmu,
                  xch, ctr, nt - 1 - i, j, row0, s, tl.minimum(L, s + BT), i_h, H, scale,
                  (i == nt - 1) & (pf != 0),
                  K, V, F, BF, FS, NS, BT, ACT, RESIDUAL, HAS_ALPHA, HAS_BETA, HAS_MU, SELF_TARGET,
                  READ, False, HAS_DC, PREC, GPREC, PREP, PART)
        i -= 1
    if HAS_POS:
        if (p > 0) & (L > 0):
            t1 = (tb * H + i_h) * V * F
            t2 = (tb * H + i_h) * F * K
            if PART == 2:
                e1, e2, es1, es2 = sa1 + t1, sa2 + t2, sas1 + t1, sas2 + t2
            else:
                e1, e2, es1, es2 = dw1 + b1, dw2 + b2, ds1 + b1, ds2 + b2
            _bwd_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, do,
                      sv1 + t1, sv2 + t2, svs1 + t1, svs2 + t2, wc1 + b1, wc2 + b2, dwc1 + b1, dwc2 + b2,
                      e1, e2, es1, es2, dc1 + b1, dc2 + b2, st, sa1 + t1, sa2 + t2, sas1 + t1, sas2 + t2,
                      sv_de, sv_e, sv_ba, sv_ai, pv, pk, qp, qg, pm, dq, dk, dv, deta, dla, dbeta, dmu,
                      xch, ctr, nt - 1, j, row0, 0, tl.minimum(L, BT - p), i_h, H, scale, i_n < 0,
                      K, V, F, BF, FS, NS, BT, ACT, RESIDUAL, HAS_ALPHA, HAS_BETA, HAS_MU, SELF_TARGET,
                      READ, True, HAS_DC, PREC, GPREC, PREP, PART)
