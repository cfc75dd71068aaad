"""Triton forward kernel of ``mlp_memory`` (SPEC §3) by the chunk algebra of DESIGN_chunk_algebra §5.

``_fwd_kernel`` — grid (N·H,): one program per (sequence, head) walks the tiles of its sequence in
order. The weights (W1 [V,F], W2 [F,K], momenta S1, S2) do not fit one program's registers at
realistic sizes, so they live in float32 state buffers in global memory (L2-resident: they are
touched once or twice per tile) and every tile runs two passes over F blocks of BF hidden units
(W1 columns / W2 rows):

* pass 1 — the only quantity that sums over F before anything else can go on: the prediction at
  the chunk-start weights, P = φ(K W2_sᵀ) W1_sᵀ [+ K] (and the self target φ(V W2_sᵀ) W1_sᵀ [+ V]),
  hence the frozen errors E and w1 = −η ⊙ E [BT, V], held in registers;
* pass 2 — everything else is separable over F: per block, Z = K W2_sᵀ, A = φ(Z),
  d = (E W1_s) ⊙ φ'(Z), w2 = −η ⊙ d; the DGD solve R = (I + A_β)⁻¹ RHS (the n×n inverse is formed
  once per tile); the read h = W2_t q_t (masked products), B = φ(h); the block's share of the
  output (B W1ᵀ, B S1ᵀ; B Aᵀ is summed over blocks into an n×n matrix, applied to w1 at the end);
  the block's tile-end update, written back in place.

With ``SAVE`` the kernel also stores what the backward needs and cannot cheaply recompute: the
tile-start states (one per tile, never per token), E [B·T, H, V], and the rows of the tile's
(I + A_β)⁻¹ and of B Aᵀ [B·T, H, BT].

With ``PREP`` (NESTED_KERNELS_MLP_TRITON_PREP=1) the state-independent quantities of every tile
(gate vectors, (I + A_β)⁻¹, strict(KKᵀ) ⊙ Φ_prev, the masked QKᵀ products) are read from the rows
written by the tile-parallel ``_prep_kernel`` (triton_prep.py) instead of being formed here, and
``SAVE`` does not store (I + A_β)⁻¹ (the prep rows hold it).

Tiles, padding, resumed chunks: as in the linear_memory kernels — tile i of a sequence starting at
chunk position p spans tokens [max(0, iC − p), min(L, (i+1)C − p)); tile 0 with p > 0 finishes a
chunk begun earlier, with the state's chunk-start weights (``USE_G``).
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import act, act_grad, mm, seq_bounds, tile_gates, unit_lower_inverse
from .triton_common import exchange, off_w1, off_w2
from .triton_prep import gate_end, prep_end, prep_tile


@triton.jit
def frozen_errors(kx, vx, g1, g2, fs, rv, rk, rf, xch, ctr, n_done, j,
                  K: tl.constexpr, V: tl.constexpr, F: tl.constexpr, BF: tl.constexpr,
                  FS: tl.constexpr, NS: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr,
                  SELF_TARGET: tl.constexpr, PREC: tl.constexpr):
    """E = M_s(K) − target [BT, V] at the chunk-start weights (g1 = W1_s, g2 = W2_s pointers);
    target = V (external) or M_s(V) (self). Each program sums its F slice [fs, fs + FS); the
    slices' partial sums are exchanged (``exchange``)."""
    P = tl.zeros([kx.shape[0], V], dtype=tl.float32)
    for fb in range(0, FS, BF):
        f0 = fs + fb
        W1b = tl.load(g1 + off_w1(rv, f0, rf, F))
        W2b = tl.load(g2 + off_w2(rf, f0, rk, K))
        A = act(mm(kx, tl.trans(W2b), PREC), ACT)
        P += mm(A, tl.trans(W1b), PREC)
        if SELF_TARGET:
            Av = act(mm(vx, tl.trans(W2b), PREC), ACT)
            P -= mm(Av, tl.trans(W1b), PREC)
    E = exchange(P, xch, ctr, n_done, j, tl.arange(0, kx.shape[0]), rv, NS, kx.shape[0], V)
    if RESIDUAL:
        E += kx
    if SELF_TARGET:
        if RESIDUAL:
            E -= vx
    else:
        E -= vx
    return E


@triton.jit
def _fwd_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, o,
              w1, w2, s1, s2, g1, g2, c1, c2, sv1, sv2, svs1, svs2, sv_e, sv_ba, sv_ai,
              pv, pk, qp, qg, pm, xch, ctr, n_done, j, row0, s, e, i_h, H, scale, store_chunk,
              K: tl.constexpr, V: tl.constexpr, F: tl.constexpr, BF: tl.constexpr,
              FS: tl.constexpr, NS: tl.constexpr,
              BT: tl.constexpr, LOG2BT: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr,
              HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
              SELF_TARGET: tl.constexpr, READ: tl.constexpr, USE_G: tl.constexpr,
              OUTPUT_FINAL: tl.constexpr, SAVE: tl.constexpr, STORE_O: tl.constexpr,
              PREC: tl.constexpr, GPREC: tl.constexpr, PREP: tl.constexpr):
    """One tile [s, e), F slice j = [j·FS, (j+1)·FS) of the hidden units: updates the slice of the
    state buffers (w1, w2, s1, s2) in place, writes the slice's share of o (o, sv_ba: this
    slice's partial buffers). g1, g2: chunk-start weights (the state buffers unless USE_G);
    c1, c2: final chunk-start outputs (written when ``store_chunk``); sv*: this tile's checkpoint
    slots (with SAVE); sv_ai, pv … pm: the prep rows (PREP, ``triton_prep``); xch, ctr, n_done: the
    exchange of the frozen errors (``exchange``)."""
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
    if SELF_TARGET:
        vx = tl.load(v + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    else:
        vx = tl.load(v + grow[:, None] * V + rv[None, :], mask=mt[:, None], other=0.0).to(tl.float32)
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    if PREP:
        gp, nup, Ai, Pk, QP, QG, Pm, gm, nm = prep_tile(pv, sv_ai, pk, qp, qg, pm, grow, mt, rt, BT,
                                                        HAS_BETA, HAS_MU, READ)
    else:
        G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, mu_ptr, grow, mt, rt, BT,
                                                                    HAS_ALPHA, HAS_MU, GPREC)
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
        if not PREP:
            KK = mm(kx, tl.trans(kx), PREC)
            Ai = unit_lower_inverse(tl.where(strict, KK * Gp * bt[None, :], 0.0), rt, LOG2BT, GPREC)
            Pk = tl.where(strict, KK * Phip, 0.0)
    if READ == 2:
        if STORE_O:
            qx = tl.load(q + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32) * scale
    else:
        qx = tl.load(q + grow[:, None] * K + rk[None, :], mask=mt[:, None], other=0.0).to(tl.float32) * scale
        if not PREP:
            QK = mm(qx, tl.trans(kx), PREC)
            if READ == 0:
                QG = QK * G
                QP = QK * Phi
                gm = g
                nm = nu
                Pm = Phi
            else:
                QG = QK * Gp
                QP = QK * Phip
                gm = gp
                nm = nup
                Pm = Phip
        BA = tl.zeros([BT, BT], dtype=tl.float32)
    if STORE_O:
        if RESIDUAL:
            out = qx * (j == 0).to(tl.float32)
        else:
            out = tl.zeros([BT, V], dtype=tl.float32)

    # pass 1: frozen errors at the chunk-start weights
    fs = j * FS
    E = frozen_errors(kx, vx, g1, g2, fs, rv, rk, rf, xch, ctr, n_done, j, K, V, F, BF, FS, NS, ACT,
                      RESIDUAL, SELF_TARGET, PREC)
    w1v = -et[:, None] * E
    tl.debug_barrier()

    if PREP:
        gL, PhiL, GL, nuL, mL, DL = prep_end(pv, grow, mt, sel, empty, HAS_MU)
    else:
        gL, PhiL, GL, nuL, mL, DL = gate_end(g, Phi, G, nu, m, D, sel, empty)
    # pass 2: per F block of the slice
    for fb in range(0, FS, BF):
        f0 = fs + fb
        o1 = off_w1(rv, f0, rf, F)
        o2 = off_w2(rf, f0, rk, K)
        W1b = tl.load(w1 + o1)
        W2b = tl.load(w2 + o2)
        if USE_G:
            W1g = tl.load(g1 + o1)
            W2g = tl.load(g2 + o2)
        else:
            W1g = W1b
            W2g = W2b
        if HAS_MU:
            S1b = tl.load(s1 + o1)
            S2b = tl.load(s2 + o2)
        if SAVE:
            tl.store(sv1 + o1, W1b)
            tl.store(sv2 + o2, W2b)
            if HAS_MU:
                tl.store(svs1 + o1, S1b)
                tl.store(svs2 + o2, S2b)
        if OUTPUT_FINAL:
            tl.store(c1 + o1, W1b, mask=(rv[:, None] >= 0) & store_chunk)
            tl.store(c2 + o2, W2b, mask=(rf[:, None] >= 0) & store_chunk)
        Z = mm(kx, tl.trans(W2g), PREC)
        A = act(Z, ACT)
        w2v = -et[:, None] * mm(E, W1g, PREC) * act_grad(Z, ACT)
        X = PhiL[:, None] * w2v
        if HAS_BETA:
            if USE_G:
                RHS = gp[:, None] * mm(kx, tl.trans(W2b), PREC)
            else:
                RHS = gp[:, None] * Z
            if HAS_MU:
                RHS += nup[:, None] * mm(kx, tl.trans(S2b), PREC)
            RHS += mm(Pk, w2v, PREC)
            U = -bt[:, None] * mm(Ai, RHS, PREC)
            X += GL[:, None] * U
        if READ == 2:
            if STORE_O:
                Aq = act(mm(qx, tl.trans(W2g), PREC), ACT)
                out += mm(Aq, tl.trans(W1g), PREC)
        else:     # h = W2_t q_t by masked products, B = φ(h); B Aᵀ is also needed by the backward
            Hq = gm[:, None] * mm(qx, tl.trans(W2b), PREC)
            Hq += mm(QP, w2v, PREC)
            if HAS_BETA:
                Hq += mm(QG, U, PREC)
            if HAS_MU:
                Hq += nm[:, None] * mm(qx, tl.trans(S2b), PREC)
            Bq = act(Hq, ACT)
            BA += mm(Bq, tl.trans(A), PREC)
            if STORE_O:
                out += gm[:, None] * mm(Bq, tl.trans(W1b), PREC)
                if HAS_MU:
                    out += nm[:, None] * mm(Bq, tl.trans(S1b), PREC)
        # tile-end state of this block
        W2n = gL * W2b + mm(tl.trans(X), kx, PREC)
        W1n = gL * W1b + mm(tl.trans(PhiL[:, None] * w1v), A, PREC)
        if HAS_MU:
            W1n += nuL * S1b
            W2n += nuL * S2b
            tl.store(s1 + o1, mL * S1b + mm(tl.trans(DL[:, None] * w1v), A, PREC))
            tl.store(s2 + o2, mL * S2b + mm(tl.trans(DL[:, None] * w2v), kx, PREC))
        tl.store(w1 + o1, W1n)
        tl.store(w2 + o2, W2n)

    if STORE_O:
        if READ != 2:
            out += mm(BA * Pm, w1v, PREC)
        tl.store(o + grow[:, None] * V + rv[None, :], out.to(o.dtype.element_ty), mask=mt[:, None])
    if SAVE:
        mine = mt & (j == 0)
        tl.store(sv_e + grow[:, None] * V + rv[None, :], E, mask=mine[:, None])
        if HAS_BETA:
            if not PREP:
                tl.store(sv_ai + grow[:, None] * BT + rt[None, :], Ai, mask=mine[:, None])
        if READ != 2:
            tl.store(sv_ba + grow[:, None] * BT + rt[None, :], BA, mask=mt[:, None])
    tl.debug_barrier()


@triton.jit
def _fwd_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, w1, w2, s1, s2, wc1, wc2, pos, cu, tile_base,
                o, c1, c2, sv1, sv2, svs1, svs2, sv_e, sv_ba, sv_ai, xch, ctr,
                T, R, H, scale, pv, pk, qp, qg, pm,
                K: tl.constexpr, V: tl.constexpr, F: tl.constexpr, BF: tl.constexpr, NS: tl.constexpr,
                BT: tl.constexpr, LOG2BT: tl.constexpr, ACT: tl.constexpr, RESIDUAL: tl.constexpr,
                HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
                IS_VARLEN: tl.constexpr, OUTPUT_FINAL: tl.constexpr, SAVE: tl.constexpr,
                STORE_O: tl.constexpr, PREC: tl.constexpr, GPREC: tl.constexpr, PREP: tl.constexpr):
    """Grid (N·H, NS): program (i_nh, j) owns hidden units [j·F/NS, (j+1)·F/NS) of (sequence,
    head) i_nh. w1 [N,H,V,F], w2 [N,H,F,K], s1, s2: state buffers holding the start states,
    updated in place to the final states. wc1, wc2: the resumed chunk-start weights (HAS_POS).
    c1, c2: receive the start weights of the last tile when the call ends inside a chunk that it
    began (the launcher resolves the other cases). sv*: per-tile checkpoints (SAVE). sv_ai (read
    with PREP), pv, pk, qp, qg, pm: the rows of ``_prep_kernel`` (PREP; after the scalars so that
    the parameters of the kernel without PREP stay those of the kernel before it). o, sv_ba:
    [NS, R = B·T, H, ·] partial sums over the slices when NS > 1 (the launcher adds them). xch
    [N·H, 2, NS, BT, V] float32, ctr [N·H] int32 zeros: the exchange of the frozen errors."""
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
    o += j.to(tl.int64) * R * H * V
    sv_ba += j.to(tl.int64) * R * H * BT
    xch += i_nh.to(tl.int64) * 2 * NS * BT * V
    ctr += i_nh
    if SAVE:
        tb = tl.load(tile_base + i_n).to(tl.int64)
    else:
        tb = 0
    i = i_n * 0
    if HAS_POS:
        if (p > 0) & (L > 0):             # finish the chunk begun by an earlier call
            t1 = (tb * H + i_h) * V * F
            t2 = (tb * H + i_h) * F * K
            _fwd_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, o, w1 + b1, w2 + b2, s1 + b1, s2 + b2,
                      wc1 + b1, wc2 + b2, c1 + b1, c2 + b2, sv1 + t1, sv2 + t2, svs1 + t1, svs2 + t2,
                      sv_e, sv_ba, sv_ai, pv, pk, qp, qg, pm, xch, ctr, i, j, row0, 0, tl.minimum(L, BT - p),
                      i_h, H, scale, i_n < 0, K, V, F, BF, FS, NS, BT, LOG2BT, ACT, RESIDUAL, HAS_ALPHA, HAS_BETA,
                      HAS_MU, SELF_TARGET, READ, True, OUTPUT_FINAL, SAVE, STORE_O, PREC, GPREC, PREP)
            i += 1
    while i < nt:
        s = i * BT - p
        t1 = ((tb + i) * H + i_h) * V * F
        t2 = ((tb + i) * H + i_h) * F * K
        _fwd_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, o, w1 + b1, w2 + b2, s1 + b1, s2 + b2,
                  w1 + b1, w2 + b2, c1 + b1, c2 + b2, sv1 + t1, sv2 + t2, svs1 + t1, svs2 + t2,
                  sv_e, sv_ba, sv_ai, pv, pk, qp, qg, pm, xch, ctr, i, j, row0, s, tl.minimum(L, s + BT),
                  i_h, H, scale, (i == nt - 1) & (pf != 0),
                  K, V, F, BF, FS, NS, BT, LOG2BT, ACT, RESIDUAL, HAS_ALPHA, HAS_BETA, HAS_MU,
                  SELF_TARGET, READ, False, OUTPUT_FINAL, SAVE, STORE_O, PREC, GPREC, PREP)
        i += 1
