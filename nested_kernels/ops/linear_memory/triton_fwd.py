"""Triton forward kernels of ``linear_memory`` (SPEC §2) by the chunk algebra of
DESIGN_chunk_algebra.md §1–§3, split the way a chunked delta rule is split: everything that does
not depend on the memory state runs tile-parallel, only n×K·K×V products stay sequential.

In a tile with start states (M0, S0), R (the DGD predictions r_t) and W (the frozen steps w_t) are
affine in (M0, S0), so the tile-end state and the outputs are too:

    X = Xw M0 + Xz S0 + xu,   Y = Yw M0 + yu,   M_n = γ_n M0 + ν_n S0 + Kᵀ X,   S_n = m_n S0 + Kᵀ Y
    O = Qw M0 + Qz S0 + ou

with n×K factors (Xw, Xz, Yw, Qw, Qz) and n×V offsets (xu, yu, ou) that depend only on the tile's
q, k, v and gates (X: the rows Γ[n,j](−β_j r_j) + Φ[n,j] w_j of DESIGN §3, Y: D[n,j] w_j).

Three kernels:

* ``_prep_kernel`` — grid (tiles, H), all tiles in parallel: gate matrices, (I + A)⁻¹ by block
  doubling, and the factors, column block by column block (every factor is separable over the
  columns of K, every offset over the columns of V). Per-token rows [B·T, H, K or V]; the
  tile-end scalars (γ_n, ν_n, m_n) per tile. Optionally stores (I + A)⁻¹ for the backward.
* ``_state_fwd_kernel`` — grid (V/BV, N·H): walks the tiles of a sequence with a K×BV column slice
  of (M, S) in registers; per tile X, Y (two or four n×K·K×BV products) and the update (one or two
  Kᵀ products). Stores the tile-start states [tiles, H, K, V] and the final states.
* ``_out_kernel`` — grid (tiles, H, V/BV), all tiles in parallel: O = Qw M0 + Qz S0 + ou from the
  stored tile-start states.

Tiles. Tile i of a sequence of length L that starts at chunk position p spans tokens
[max(0, iC − p), min(L, (i+1)C − p)); tile 0 with p > 0 is the rest of a chunk begun by an
earlier call: its errors, self targets and "chunk" read use the state's M_chunk F, an input, so
there the F-terms go into the offsets (Ww = 0, W = −η(KF − target(F)) is constant). Rows past the
end of a tile are padded with zeros (k, q, v, η, log α, β) and μ = 1, which leaves every valid
row unchanged; the tile-end scalars read the row of the last valid token.

Interpreter notes (TRITON_INTERPRET=1): every load is upcast to float32 at once; loops over
tiles are ``while`` loops (the interpreter cannot take ``range`` over a runtime scalar with
numpy 2); no libdevice.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import at, mm, mm_solve, row_of, seq_bounds, tile_gates, unit_lower_inverse


# ------------------------------------------------------------------------------------------
# tile helpers (also used by triton_bwd.py)
# ------------------------------------------------------------------------------------------
@triton.jit
def _tile_rows(tile_seq, tile_idx, cu, pos, i_g, T, BT: tl.constexpr, IS_VARLEN: tl.constexpr,
               HAS_POS: tl.constexpr):
    """Global tile i_g: (sequence, its first flat row, tile start s, end e, resumed). Unused
    entries of the tile table get e = s (no rows) and resumed = False."""
    i_n = tl.load(tile_seq + i_g)
    valid = i_n >= 0
    i_n = tl.maximum(i_n, 0)
    i_t = tl.load(tile_idx + i_g)
    row0, L, p = seq_bounds(cu, pos, i_n, T, IS_VARLEN, HAS_POS)
    s = tl.maximum(i_t * BT - p, 0)
    e = tl.where(valid, tl.minimum((i_t + 1) * BT - p, L), s)
    resumed = valid & (i_t == 0) & (p > 0)
    return i_n, row0, s, e, resumed


@triton.jit
def _tile_frame(tile_seq, tile_idx, cu, pos, T, H, BT: tl.constexpr, IS_VARLEN: tl.constexpr,
                HAS_POS: tl.constexpr):
    """The frame of a tile-parallel program (grid (tiles, H)): its tile and head, ``_tile_rows``,
    and over the tile's BT slots rt the row mask mt, the flat rows grow (row·H + head), the
    lower / strict triangles and the last row sel."""
    i_g = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, row0, s, e, resumed = _tile_rows(tile_seq, tile_idx, cu, pos, i_g, T, BT, IS_VARLEN, HAS_POS)
    rt = tl.arange(0, BT)
    tok = s + rt
    mt = tok < e
    grow = (row0 + tok).to(tl.int64) * H + i_h
    lower = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    sel = rt == (e - s - 1)
    return i_g, i_h, i_n, s, e, resumed, rt, mt, grow, lower, strict, sel


@triton.jit
def _load_rows(ptr, grow, cols, mt, WIDTH: tl.constexpr):
    """Rows ``grow`` (flat row·H + head), columns ``cols`` of a [B·T, H, WIDTH] tensor, as float32."""
    return tl.load(ptr + grow[:, None] * WIDTH + cols[None, :], mask=mt[:, None], other=0.0).to(tl.float32)


@triton.jit
def _store_rows(ptr, grow, cols, mt, x, WIDTH: tl.constexpr):
    tl.store(ptr + grow[:, None] * WIDTH + cols[None, :], x.to(ptr.dtype.element_ty), mask=mt[:, None])


# self targets with chunk_size 1 (DESIGN §4): the unknowns (r_t, s_t) ordered by time, rows 2t and 2t + 1
@triton.jit
def rows2(a, b):
    """[2n, W] from two [n, W] blocks, interleaved by token: row 2t = a[t], row 2t + 1 = b[t]."""
    return tl.reshape(tl.permute(tl.join(a, b), (0, 2, 1)), [2 * a.shape[0], a.shape[1]])


@triton.jit
def unrows2(x):
    """(even rows, odd rows) of a [2n, W] block: the inverse of ``rows2``."""
    return tl.split(tl.permute(tl.reshape(x, [x.shape[0] // 2, 2, x.shape[1]]), (0, 2, 1)))


@triton.jit
def uncols2(x):
    """(even columns, odd columns) of an [m, 2n] block."""
    return tl.split(tl.reshape(x, [x.shape[0], x.shape[1] // 2, 2]))


@triton.jit
def rep2(x):
    """A length-n vector with every entry twice (the rows of ``rows2``)."""
    return tl.reshape(tl.join(x, x), [2 * x.shape[0]])


@triton.jit
def self_exact_system(KK, VK, c0, c1, strict):
    """The strictly lower 2n×2n matrix of a self-target exact tile: the coefficient of unknown
    (j, b) in equation (t, a) is (z_{t,a}ᵀ k_j)·c_b[t, j] for j < t, z_{t,0} = k_t, z_{t,1} = v_t
    (KK[t, j] = k_tᵀk_j, VK[t, j] = v_tᵀk_j; c_0 multiplies r_j, c_1 multiplies s_j)."""
    a0 = tl.where(strict, c0, 0.0)
    a1 = tl.where(strict, c1, 0.0)
    return rows2(tl.reshape(tl.join(KK * a0, KK * a1), [KK.shape[0], 2 * KK.shape[1]]),
                 tl.reshape(tl.join(VK * a0, VK * a1), [KK.shape[0], 2 * KK.shape[1]]))


@triton.jit
def ainv2_ptrs(ainv, grow, mt, BT: tl.constexpr):
    """Pointers [2BT, 2BT] and row mask of the stored 2n×2n (I + A)⁻¹ of a self-target exact tile:
    [B·T, H, 2, 2BT] float32, the two rows (r, s) of each token under its flat row."""
    r2 = tl.arange(0, 2 * BT)
    ptrs = ainv + rep2(grow)[:, None] * (4 * BT) + (r2 % 2)[:, None] * (2 * BT) + r2[None, :]
    return ptrs, rep2(mt.to(tl.int32)) != 0


# ------------------------------------------------------------------------------------------
# tile-parallel preparation: (I + A)⁻¹ and the factors of every tile
# ------------------------------------------------------------------------------------------
@triton.jit
def _prep_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos,
                 ainv, xw, xz, yw, yz, qw, qz, xu, yu, ou, tsc,
                 T, H, scale,
                 K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                 LOG2BT: tl.constexpr, HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr,
                 HAS_MU: tl.constexpr, EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr,
                 HAS_POS: tl.constexpr, IS_VARLEN: tl.constexpr, HAS_OFF: tl.constexpr,
                 HAS_OU: tl.constexpr, STORE_AINV: tl.constexpr, PLAIN_X: tl.constexpr,
                 PLAIN_A: tl.constexpr, MATRIX: tl.constexpr, PREC: tl.constexpr):
    """Factors of one tile (see the module docstring). PLAIN_X (``plain_x_rows``: external
    targets, no β, μ, resumed chunk or chunk_size 1): Xw = −diag(c) K and xu = diag(c) V with
    c = Φ[n]·η, which the walks form from k, v, η and log α, so xw and xu are not stored.
    PLAIN_A (a PLAIN_X tile whose walk writes the outputs): instead of Qw and ou only the tile's
    A = QKᵀ⊙Φ_m [BT, BT] (scale in Q; none for the "chunk" read) goes to ``qw``
    ([tiles, H, BT·BT]): O = diag(a) Q M0 + A diag(η)(V − K M0) (``_plain_a_step``).
    MATRIX (external targets with β, not resumed, not EXACT): the same factors from n×n
    matrices formed once (``_matrix_factors``). With Ww = −diag(η)(K − [self] V) the step
    coefficient of M0 (0 in a resumed tile) and uw its offset (η v external; in a resumed tile the
    whole W at F):  R-coefficient Wr = (I + A)⁻¹(diag(γ_prev) K + P Ww), Zr = (I + A)⁻¹ diag(ν_prev) K,
    ur = (I + A)⁻¹ P uw with P = strict(KKᵀ) ⊙ Φ_prev;  Xw = diag(−β Γ[n]) Wr + diag(Φ[n]) Ww,
    Xz = diag(−β Γ[n]) Zr, Yw = diag(D[n]) Ww;  Qw = diag(a) Q + (QKᵀ⊙Γ_m) diag(−β) Wr + (QKᵀ⊙Φ_m) Ww,
    Qz = diag(b) Q + (QKᵀ⊙Γ_m) diag(−β) Zr (masked products of the read mode, a = γ or γ_prev,
    b = ν or ν_prev); the offsets follow the same formulas with (Ww, diag(γ_prev) K) → (uw, 0).

    EXACT (chunk_size 1; DESIGN §4), external targets: the errors are taken at M_{t−1}, so
    W = −diag(η)(R − V) and A gains strict(KKᵀ) ⊙ Φ_prev·diag(η); R = (I + A)⁻¹(diag(γ_prev) K M0 +
    diag(ν_prev) K S0 + P diag(η) V), i.e. Wr = (I + A)⁻¹ diag(γ_prev) K, Ww = −diag(η) Wr, and W
    now depends on S0 too: Wz = −diag(η) Zr (Xz gains diag(Φ[n]) Wz, Qz gains (QKᵀ⊙Φ_m) Wz and
    Yz = diag(D[n]) Wz is a new factor); ur = (I + A)⁻¹ P diag(η) V, uw = diag(η)(V − ur); the rest
    of the formulas are unchanged. Self targets (EXACT and SELF_TARGET): s_t = M_{t−1}ᵀv_t is a
    second unknown; (I + A)⁻¹ is that of the 2n×2n system of ``self_exact_system`` (rows 2t, 2t + 1:
    r_t, s_t; stored as [B·T, H, 2, 2BT]), its right-hand side diag(γ_prev) Z M0 + diag(ν_prev) Z S0
    with Z the rows k_1, v_1, k_2, v_2, …, so Wr, Ws (Zr, Zs) are its even and odd rows and
    Ww = −diag(η)(Wr − Ws), Wz = −diag(η)(Zr − Zs); no offsets (no constant term)."""
    i_g, i_h, i_n, s, e, resumed, rt, mt, grow, lower, strict, sel = _tile_frame(tile_seq, tile_idx, cu, pos, T, H,
                                                                                BT, IS_VARLEN, HAS_POS)
    rk = tl.arange(0, K)
    empty = (e - s - 1 < 0).to(tl.float32)

    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, mu_ptr, grow, mt, rt, BT, HAS_ALPHA, HAS_MU,
                                                                PREC)
    if HAS_MU:
        dn = row_of(D, sel)
    phin = row_of(Phi, sel)

    # tile-end scalars γ_n, ν_n, m_n (1, 0, 1 for an empty tile)
    ts = tsc + (i_g.to(tl.int64) * H + i_h) * 4
    sv = e > s
    tl.store(ts, at(g, sel) + empty, mask=sv)
    if HAS_MU:
        tl.store(ts + 1, at(nu, sel), mask=sv)
        tl.store(ts + 2, at(m, sel) + empty, mask=sv)

    kx = _load_rows(k, grow, rk, mt, K)
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
    # the masked read products and P before the solve: q, k and the gate matrices are not held through it
    if READ != 2:
        qx = _load_rows(q, grow, rk, mt, K) * scale
        QK = mm(qx, tl.trans(kx), PREC)
        if READ == 0:   # the read's gates: the tile's own (after) or the previous position's (before)
            QKm = tl.where(lower, QK, 0.0)
            a, Hm, Gm, nm = g, Phi, G, nu
        else:
            QKm = tl.where(strict, QK, 0.0)
            a, Hm, Gm, nm = gp, Phip, Gp, nup
        QH = QKm * Hm
        if HAS_BETA:
            QG = QKm * Gm * (-bt)[None, :]
        if HAS_MU:
            b = nm
    if HAS_BETA or EXACT:
        KK = mm(kx, tl.trans(kx), PREC)
        if HAS_BETA:
            Ac = Gp * bt[None, :]
            if EXACT:
                Ac += Phip * et[None, :]
            cb = -bt * row_of(G, sel)
        else:
            Ac = Phip * et[None, :]
        P = tl.where(strict, KK * Phip, 0.0)
        if SELF_TARGET and EXACT:   # the 2n×2n system in (r_1, s_1, r_2, s_2, …)
            VK = mm(_load_rows(v, grow, rk, mt, K), tl.trans(kx), PREC)
            Ai = unit_lower_inverse(self_exact_system(KK, VK, Ac, -Phip * et[None, :], strict),
                                    tl.arange(0, 2 * BT), LOG2BT + 1, PREC)
            if STORE_AINV:
                ap, am = ainv2_ptrs(ainv, grow, mt, BT)
                tl.store(ap, Ai, mask=am[:, None])
        else:
            Ai = unit_lower_inverse(tl.where(strict, KK * Ac, 0.0), rt, LOG2BT, PREC)
            if STORE_AINV:
                _store_rows(ainv, grow, rt, mt, Ai, BT)

    if MATRIX:
        if not HAS_MU:   # placeholders for what this tile has not
            dn = phin
            b = gp
        if READ == 2:
            a = gp
            b = gp
            QH = P
            QG = P
        _matrix_factors(q, k, v, grow, mt, et, gp, nup, cb, phin, dn, a, b, Ai, P, QH, QG, xw, xz, yw, qw, qz,
                        xu, yu, ou, scale, K, V, BC, HAS_MU, HAS_OFF, HAS_OU, READ, PREC)
    else:
        if PLAIN_A:
            if READ != 2:
                tl.store(tile_square(qw, i_g, i_h, H, rt, BT), QH.to(qw.dtype.element_ty))
        else:   # coefficients of M0 (columns of K)
            for c in tl.static_range(K // BC):
                rc = c * BC + tl.arange(0, BC)
                kc = _load_rows(k, grow, rc, mt, K)
                if EXACT:
                    if SELF_TARGET:     # R's and S's coefficients, W = −diag(η)(R − S)
                        wr, ws = unrows2(mm(Ai, rep2(gp)[:, None] * rows2(kc, _load_rows(v, grow, rc, mt, K)), PREC))
                        ww = -et[:, None] * (wr - ws)
                    else:
                        wr = mm(Ai, gp[:, None] * kc, PREC)
                        ww = -et[:, None] * wr
                else:
                    if SELF_TARGET:
                        ww = -et[:, None] * (kc - _load_rows(v, grow, rc, mt, K))
                    else:
                        ww = -et[:, None] * kc
                    if HAS_POS:
                        ww = tl.where(resumed, 0.0, ww)
                    if HAS_BETA:
                        wr = mm(Ai, gp[:, None] * kc + mm(P, ww, PREC), PREC)
                if HAS_BETA:
                    _store_rows(xw, grow, rc, mt, cb[:, None] * wr + phin[:, None] * ww, K)
                elif not PLAIN_X:
                    _store_rows(xw, grow, rc, mt, phin[:, None] * ww, K)
                if HAS_MU:
                    _store_rows(yw, grow, rc, mt, dn[:, None] * ww, K)
                qc = _load_rows(q, grow, rc, mt, K) * scale
                if READ == 2:
                    if HAS_POS:
                        qc = tl.where(resumed, 0.0, qc)
                    _store_rows(qw, grow, rc, mt, qc, K)
                else:
                    qo = a[:, None] * qc + mm(QH, ww, PREC)
                    if HAS_BETA:
                        qo += mm(QG, wr, PREC)
                    _store_rows(qw, grow, rc, mt, qo, K)

        # coefficients of S0 (columns of K; W depends on S0 only with EXACT)
        if HAS_MU:
            for c in tl.static_range(K // BC):
                rc = c * BC + tl.arange(0, BC)
                kc = _load_rows(k, grow, rc, mt, K)
                if SELF_TARGET and EXACT:
                    zr, zs = unrows2(mm(Ai, rep2(nup)[:, None] * rows2(kc, _load_rows(v, grow, rc, mt, K)), PREC))
                    wz = -et[:, None] * (zr - zs)
                elif HAS_BETA or EXACT:
                    zr = mm(Ai, nup[:, None] * kc, PREC)
                if EXACT:
                    if not SELF_TARGET:
                        wz = -et[:, None] * zr
                    xzc = phin[:, None] * wz
                    if HAS_BETA:
                        xzc += cb[:, None] * zr
                    _store_rows(xz, grow, rc, mt, xzc, K)
                    _store_rows(yz, grow, rc, mt, dn[:, None] * wz, K)
                elif HAS_BETA:
                    _store_rows(xz, grow, rc, mt, cb[:, None] * zr, K)
                if READ != 2:
                    qo = b[:, None] * _load_rows(q, grow, rc, mt, K) * scale
                    if HAS_BETA:
                        qo += mm(QG, zr, PREC)
                    if EXACT:
                        qo += mm(QH, wz, PREC)
                    _store_rows(qz, grow, rc, mt, qo, K)

        # offsets (columns of V)
        if HAS_OFF:
            for c in tl.static_range(V // BC):
                rc = c * BC + tl.arange(0, BC)
                if SELF_TARGET:
                    uw = tl.zeros([BT, BC], dtype=tl.float32)
                else:
                    uw = et[:, None] * _load_rows(v, grow, rc, mt, V)
                oc = tl.zeros([BT, BC], dtype=tl.float32)
                if HAS_POS:
                    if resumed:   # W at the chunk-start memory F = M_chunk0, an input
                        F = tl.load(mc0 + (i_n.to(tl.int64) * H + i_h) * K * V + rk[:, None] * V + rc[None, :]).to(tl.float32)
                        if SELF_TARGET:
                            tg = mm(_load_rows(v, grow, rk, mt, K), F, PREC)
                        else:
                            tg = _load_rows(v, grow, rc, mt, V)
                        uw = -et[:, None] * (mm(kx, F, PREC) - tg)
                        if READ == 2:
                            oc = mm(_load_rows(q, grow, rk, mt, K) * scale, F, PREC)
                if HAS_BETA or EXACT:
                    ur = mm(Ai, mm(P, uw, PREC), PREC)
                    if EXACT:
                        uw -= et[:, None] * ur
                if HAS_BETA:
                    _store_rows(xu, grow, rc, mt, cb[:, None] * ur + phin[:, None] * uw, V)
                elif not PLAIN_X:
                    _store_rows(xu, grow, rc, mt, phin[:, None] * uw, V)
                if HAS_MU:
                    _store_rows(yu, grow, rc, mt, dn[:, None] * uw, V)
                if HAS_OU:
                    if READ != 2:
                        oc = mm(QH, uw, PREC)
                        if HAS_BETA:
                            oc += mm(QG, ur, PREC)
                    _store_rows(ou, grow, rc, mt, oc, V)


@triton.jit
def _matrix_factors(q, k, v, grow, mt, et, gp, nup, cb, phin, dn, a, b, Ai, P, QH, QG, xw, xz, yw, qw, qz,
                    xu, yu, ou, scale, K: tl.constexpr, V: tl.constexpr, BC: tl.constexpr, HAS_MU: tl.constexpr,
                    HAS_OFF: tl.constexpr, HAS_OU: tl.constexpr, READ: tl.constexpr, PREC: tl.constexpr):
    """``_prep_kernel``'s factors of a tile with external targets and β, not resumed, not EXACT
    (MATRIX): with Ww = −diag(η) K every factor is an n×n matrix times columns of K or V, formed
    once (``mm_solve``) so that each column block takes one product per factor:
    Wr = (I + A)⁻¹(diag(γ_prev) K + P Ww) = Mk K with Mk = Ai diag(γ_prev) − (Ai P) diag(η),
    Xw = diag(−β Γ[n]) Mk K − diag(Φ[n] η) K, Qw = diag(a) Q + Nk K with QGA = (QKᵀ⊙Γ_m) diag(−β) Ai,
    Uq = QKᵀ⊙Φ_m + QGA P, Nk = QGA diag(γ_prev) − Uq diag(η); Xz = diag(−β Γ[n]) Ai diag(ν_prev) K,
    Qz = diag(b) Q + QGA diag(ν_prev) K; offsets (uw = diag(η) V): xu = diag(−β Γ[n]) (Ai P) uw +
    diag(Φ[n]) uw, yu = diag(D[n]) uw, ou = Uq uw. Four n×n matrices live at most (Ai, Ai P, QGA,
    Uq), against Ai, P and the two masked products of the column-block form."""
    if READ != 2:
        QGA = mm_solve(QG, Ai, PREC)
    if HAS_MU:   # coefficients of S0: Zr = Ai diag(ν_prev) K
        for c in tl.static_range(K // BC):
            rc = c * BC + tl.arange(0, BC)
            kn = nup[:, None] * _load_rows(k, grow, rc, mt, K)
            _store_rows(xz, grow, rc, mt, cb[:, None] * mm(Ai, kn, PREC), K)
            if READ != 2:
                _store_rows(qz, grow, rc, mt, b[:, None] * _load_rows(q, grow, rc, mt, K) * scale
                            + mm(QGA, kn, PREC), K)
    AP = mm_solve(Ai, P, PREC)
    if READ != 2:
        Uq = QH + mm_solve(QGA, P, PREC)
    if HAS_OFF:
        for c in tl.static_range(V // BC):
            rc = c * BC + tl.arange(0, BC)
            uw = et[:, None] * _load_rows(v, grow, rc, mt, V)
            _store_rows(xu, grow, rc, mt, cb[:, None] * mm(AP, uw, PREC) + phin[:, None] * uw, V)
            if HAS_MU:
                _store_rows(yu, grow, rc, mt, dn[:, None] * uw, V)
            if HAS_OU:
                _store_rows(ou, grow, rc, mt, mm(Uq, uw, PREC), V)
    Mk = Ai * gp[None, :] - AP * et[None, :]
    if READ != 2:
        Nk = QGA * gp[None, :] - Uq * et[None, :]
    for c in tl.static_range(K // BC):
        rc = c * BC + tl.arange(0, BC)
        kc = _load_rows(k, grow, rc, mt, K)
        _store_rows(xw, grow, rc, mt, cb[:, None] * mm(Mk, kc, PREC) - (phin * et)[:, None] * kc, K)
        if HAS_MU:
            _store_rows(yw, grow, rc, mt, -(dn * et)[:, None] * kc, K)
        qc = _load_rows(q, grow, rc, mt, K) * scale
        if READ == 2:
            _store_rows(qw, grow, rc, mt, qc, K)
        else:
            _store_rows(qw, grow, rc, mt, a[:, None] * qc + mm(Nk, kc, PREC), K)


@triton.jit
def plain_rows(eta, la_ptr, grow, mt, HAS_ALPHA: tl.constexpr, READ: tl.constexpr):
    """(η, Φ[n], a) of a plain tile's rows (0 past its end): X = diag(η·Φ[n])(V − K M0) is the
    tile's frozen-step matrix, with Φ[n]_t = Π_{l=t+1..n} α_l the decay from token t to the tile's
    last valid token n, as _prep_kernel forms it (exp of a difference of the same cumulative sums);
    a the decay of M0 in the read of ``READ`` (γ_t "after", γ_{t−1} "before", 1 "chunk")."""
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    phin = et * 0.0 + 1.0
    a = phin
    if HAS_ALPHA:
        la = tl.load(la_ptr + grow, mask=mt, other=0.0).to(tl.float32)
        cs = tl.cumsum(la, 0)
        n = tl.sum(mt.to(tl.int32), 0) - 1
        phin = tl.exp(at(cs, tl.arange(0, cs.shape[0]) == n) - cs)
        if READ == 0:
            a = tl.exp(cs)
        elif READ == 1:
            a = tl.exp(cs - la)
    return et, phin, a


@triton.jit
def plain_x_rows(eta, la_ptr, grow, mt, HAS_ALPHA: tl.constexpr):
    """c = η·Φ[n] of ``plain_rows``: X = diag(c)(V − K M0)."""
    et, phin, _ = plain_rows(eta, la_ptr, grow, mt, HAS_ALPHA, 2)
    return et * phin


@triton.jit
def tile_square(ptr, g, i_h, H, rt, BT: tl.constexpr):
    """Pointers to tile g's BT×BT matrix of head i_h in a [tiles, H, BT·BT] tensor (PLAIN_A's A)."""
    return ptr + (g.to(tl.int64) * H + i_h) * BT * BT + rt[:, None] * BT + rt[None, :]


# ------------------------------------------------------------------------------------------
# sequential state recurrence
# ------------------------------------------------------------------------------------------
@triton.jit
def _walk_rows(row0, s, e, i_h, i_v, H, K: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr):
    """(rt, rk, rv, mt, grow) of a walk's tile of rows [s, e): token, K and V-block column indices,
    the valid rows, the flat rows (row·H + head)."""
    rt = tl.arange(0, BT)
    rv = i_v * BV + tl.arange(0, BV)
    mt = s + rt < e
    return rt, tl.arange(0, K), rv, mt, (row0 + s + rt).to(tl.int64) * H + i_h


@triton.jit
def _state_step(M, S, k, xw, xz, yw, yz, xu, yu, v, eta, la_ptr, ts, row0, s, e, i_h, i_v, H,
                K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr, EXACT: tl.constexpr, HAS_OFF: tl.constexpr,
                HAS_ALPHA: tl.constexpr, PLAIN_X: tl.constexpr, PREC: tl.constexpr):
    """(M_n, S_n) of one tile from its start states (column slices K×BV) and its factors."""
    rt, rk, rv, mt, grow = _walk_rows(row0, s, e, i_h, i_v, H, K, BT, BV)
    kx = _load_rows(k, grow, rk, mt, K)
    if PLAIN_X:
        c = plain_x_rows(eta, la_ptr, grow, mt, HAS_ALPHA)
        X = c[:, None] * (_load_rows(v, grow, rv, mt, V) - mm(kx, M, PREC))
    else:
        X = mm(_load_rows(xw, grow, rk, mt, K), M, PREC)
        if HAS_OFF:
            X += _load_rows(xu, grow, rv, mt, V)
    M_new = tl.load(ts) * M
    if HAS_MU:
        if HAS_BETA or EXACT:
            X += mm(_load_rows(xz, grow, rk, mt, K), S, PREC)
        Y = mm(_load_rows(yw, grow, rk, mt, K), M, PREC)
        if EXACT:
            Y += mm(_load_rows(yz, grow, rk, mt, K), S, PREC)
        if HAS_OFF:
            Y += _load_rows(yu, grow, rv, mt, V)
        M_new += tl.load(ts + 1) * S
        S_new = tl.load(ts + 2) * S + mm(tl.trans(kx), Y, PREC)
    else:
        S_new = S
    M_new += mm(tl.trans(kx), X, PREC)
    return M_new, S_new


@triton.jit
def _plain_a_step(M, q, k, v, amat, eta, la_ptr, ts, o, d_rows, row0, s, e, g, i_h, i_v, H, scale,
                  K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                  HAS_ALPHA: tl.constexpr, READ: tl.constexpr, SAVE_D: tl.constexpr, PREC: tl.constexpr):
    """A PLAIN_A tile (column slice K×BV of its start state M0): with D = V − K M0 it writes
    O = diag(a)·scale·Q M0 + A diag(η) D (A from _prep_kernel, none for the "chunk" read) and, with
    SAVE_D, D's rows into ``d_rows`` ([B·T, H, V], for ``_plain_d_kernel``); returns
    M_n = γ_n M0 + Kᵀ diag(η·Φ[n]) D (η, Φ[n], a: ``plain_rows``)."""
    rt, rk, rv, mt, grow = _walk_rows(row0, s, e, i_h, i_v, H, K, BT, BV)
    kx = _load_rows(k, grow, rk, mt, K)
    D = _load_rows(v, grow, rv, mt, V) - mm(kx, M, PREC)
    if SAVE_D:
        _store_rows(d_rows, grow, rv, mt, D, V)
    et, phin, a = plain_rows(eta, la_ptr, grow, mt, HAS_ALPHA, READ)
    W = et[:, None] * D
    out = (a * scale)[:, None] * mm(_load_rows(q, grow, rk, mt, K), M, PREC)
    if READ != 2:
        out += mm(tl.load(tile_square(amat, g, i_h, H, rt, BT)).to(tl.float32), W, PREC)
    _store_rows(o, grow, rv, mt, out, V)
    return tl.load(ts) * M + mm(tl.trans(kx), phin[:, None] * W, PREC)


@triton.jit
def _state_visit(M, S, i, nt, p, pf, L, tb, st, rk, rv, q, k, xw, xz, yw, yz, xu, yu, v, eta, la_ptr, tsc,
                 mc_out, saved_m, saved_s, qw, qz, ou, o, d_rows, row0, i_h, i_v, H, scale,
                 K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                 HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr, EXACT: tl.constexpr, HAS_OFF: tl.constexpr,
                 HAS_ALPHA: tl.constexpr, PLAIN_X: tl.constexpr, PLAIN_A: tl.constexpr,
                 OUTPUT_FINAL: tl.constexpr, SAVE_STATES: tl.constexpr, FUSE_OUT: tl.constexpr,
                 READ: tl.constexpr, HAS_OU: tl.constexpr, SAVE_D: tl.constexpr, PREC: tl.constexpr):
    """Tile i of the sequence walk: stores its start states (and the final M_chunk when it starts
    the last, partial chunk) and, with FUSE_OUT, its outputs from them (PLAIN_A: by
    ``_plain_a_step``, whose A is in ``qw``); returns its end states."""
    g = tb + i
    if SAVE_STATES:
        sv = (g * H + i_h) * K * V + rk[:, None] * V + rv[None, :]
        tl.store(saved_m + sv, M.to(saved_m.dtype.element_ty))
        if HAS_MU:
            tl.store(saved_s + sv, S.to(saved_s.dtype.element_ty))
    if OUTPUT_FINAL:
        if (i == nt - 1) & (pf != 0) & ((i > 0) | (p == 0)):   # start of the last, partial chunk
            tl.store(mc_out + st, M)
    s = tl.maximum(i * BT - p, 0)
    e = tl.minimum((i + 1) * BT - p, L)
    ts = tsc + (g * H + i_h) * 4
    if PLAIN_A:
        M_new = _plain_a_step(M, q, k, v, qw, eta, la_ptr, ts, o, d_rows, row0, s, e, g, i_h, i_v, H, scale,
                              K, V, BT, BV, HAS_ALPHA, READ, SAVE_D, PREC)
        S_new = S
    else:
        if FUSE_OUT:
            _tile_out(qw, qz, ou, o, M, S, row0, s, e, i_h, rk, rv, H, K, V, BT, HAS_MU, READ, HAS_OU, PREC)
        M_new, S_new = _state_step(M, S, k, xw, xz, yw, yz, xu, yu, v, eta, la_ptr, ts, row0, s, e, i_h, i_v, H,
                                   K, V, BT, BV, HAS_BETA, HAS_MU, EXACT, HAS_OFF, HAS_ALPHA, PLAIN_X, PREC)
    return M_new, S_new


@triton.jit
def _state_fwd_kernel(q, k, xw, xz, yw, yz, xu, yu, v, eta, la_ptr, tsc, m0, s0, mc0, pos, cu, tile_base,
                      m_out, s_out, mc_out, saved_m, saved_s, qw, qz, ou, o, d_rows,
                      T, H, scale,
                      K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                      HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr, EXACT: tl.constexpr, HAS_OFF: tl.constexpr,
                      HAS_ALPHA: tl.constexpr, PLAIN_X: tl.constexpr, PLAIN_A: tl.constexpr,
                      HAS_M0: tl.constexpr, HAS_S0: tl.constexpr, HAS_POS: tl.constexpr,
                      IS_VARLEN: tl.constexpr, OUTPUT_FINAL: tl.constexpr,
                      SAVE_STATES: tl.constexpr, FUSE_OUT: tl.constexpr, READ: tl.constexpr,
                      HAS_OU: tl.constexpr, SAVE_D: tl.constexpr, PREC: tl.constexpr, STAGES: tl.constexpr):
    """The sequential walk over the tiles of sequence i_n, head i_h, columns i_v·BV… of V; with
    FUSE_OUT it also writes each tile's outputs (``_out_kernel``'s work) from the start states it
    holds (and with SAVE_D, PLAIN_A tiles' rows V − K M0: ``_plain_a_step``)."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    row0, L, p = seq_bounds(cu, pos, i_n, T, IS_VARLEN, HAS_POS)
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
    if EXACT:   # every token ends a chunk: the final M_chunk is M_L
        pf = pf * 0
    tb = tl.load(tile_base + i_n).to(tl.int64)
    if HAS_POS:
        if OUTPUT_FINAL:
            if (p > 0) & (p + L < BT):    # the call ends inside the chunk it resumed
                tl.store(mc_out + st, tl.load(mc0 + st))
    if STAGES == 0:     # the interpreter's loop (it cannot take range over a loaded bound)
        i = i_n * 0
        while i < nt:
            M, S = _state_visit(M, S, i, nt, p, pf, L, tb, st, rk, rv, q, k, xw, xz, yw, yz, xu, yu, v, eta,
                                la_ptr, tsc, mc_out, saved_m, saved_s, qw, qz, ou, o, d_rows, row0, i_h, i_v, H, scale, K,
                                V, BT, BV, HAS_BETA, HAS_MU, EXACT, HAS_OFF, HAS_ALPHA, PLAIN_X, PLAIN_A,
                                OUTPUT_FINAL, SAVE_STATES, FUSE_OUT, READ, HAS_OU, SAVE_D, PREC)
            i += 1
    else:               # a for loop, software-pipelined: the next tiles' rows load during this one
        for i in tl.range(0, nt, num_stages=STAGES):
            M, S = _state_visit(M, S, i, nt, p, pf, L, tb, st, rk, rv, q, k, xw, xz, yw, yz, xu, yu, v, eta,
                                la_ptr, tsc, mc_out, saved_m, saved_s, qw, qz, ou, o, d_rows, row0, i_h, i_v, H, scale, K,
                                V, BT, BV, HAS_BETA, HAS_MU, EXACT, HAS_OFF, HAS_ALPHA, PLAIN_X, PLAIN_A,
                                OUTPUT_FINAL, SAVE_STATES, FUSE_OUT, READ, HAS_OU, SAVE_D, PREC)
    if OUTPUT_FINAL:
        tl.store(m_out + st, M)
        if HAS_MU:
            tl.store(s_out + st, S)
        if pf == 0:
            tl.store(mc_out + st, M)


# ------------------------------------------------------------------------------------------
# tile-parallel outputs
# ------------------------------------------------------------------------------------------
@triton.jit
def _out_kernel(qw, qz, ou, saved_m, saved_s, o, tile_seq, tile_idx, cu, pos, T, H,
                K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                HAS_MU: tl.constexpr, READ: tl.constexpr, HAS_OU: tl.constexpr,
                HAS_POS: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    i_g = tl.program_id(0)
    i_h = tl.program_id(1)
    i_v = tl.program_id(2)
    i_n, row0, s, e, resumed = _tile_rows(tile_seq, tile_idx, cu, pos, i_g, T, BT, IS_VARLEN, HAS_POS)
    rk = tl.arange(0, K)
    rv = i_v * BV + tl.arange(0, BV)
    sv = (i_g.to(tl.int64) * H + i_h) * K * V + rk[:, None] * V + rv[None, :]
    M = tl.load(saved_m + sv).to(tl.float32)
    S = M
    if HAS_MU:
        if READ != 2:
            S = tl.load(saved_s + sv).to(tl.float32)
    _tile_out(qw, qz, ou, o, M, S, row0, s, e, i_h, rk, rv, H, K, V, BT, HAS_MU, READ, HAS_OU, PREC)


@triton.jit
def _tile_out(qw, qz, ou, o, M, S, row0, s, e, i_h, rk, rv, H, K: tl.constexpr, V: tl.constexpr,
              BT: tl.constexpr, HAS_MU: tl.constexpr, READ: tl.constexpr, HAS_OU: tl.constexpr,
              PREC: tl.constexpr):
    """O = Qw M0 + Qz S0 + ou of the tile's rows [s, e) on the columns rv, from its start states
    M0, S0 (K×BV, float32)."""
    rt = tl.arange(0, BT)
    mt = s + rt < e
    grow = (row0 + s + rt).to(tl.int64) * H + i_h
    out = mm(_load_rows(qw, grow, rk, mt, K), M, PREC)
    if HAS_MU:
        if READ != 2:
            out += mm(_load_rows(qz, grow, rk, mt, K), S, PREC)
    if HAS_OU:
        out += _load_rows(ou, grow, rv, mt, V)
    _store_rows(o, grow, rv, mt, out, V)
