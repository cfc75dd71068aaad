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
* ``_grad_kernel`` — grid (tiles, H), all tiles in parallel: from the stored tile-start states
  (M0, S0), the stored tile-end adjoints and dO it recomputes the tile's intermediates (errors E,
  steps W, right-hand side, R, U = −βR, with the stored (I + A)⁻¹) one V block at a time and
  applies their adjoints in reverse order:

      tile-end states → outputs → U, R (the solve's adjoint: dRHS = (I + A)⁻ᵀ dR, dA = −dRHS Rᵀ)
      → RHS, A, P → W, E, targets → gate matrices (Γ, Φ, D, ν, m) → d log α (reverse cumulative
      sum), dμ (zero-safe: ∂D[i,t]/∂μ_l = D[i,l]·D[l−1,t]).

  The n×n adjoints are accumulated over the V blocks as four products (dO Wᵀ, dO Uᵀ, dRHS Rᵀ,
  dRHS Wᵀ) and applied once per tile; dq, dk, dv and the gate gradients are written directly
  (no per-V-block partial sums). A resumed first tile also sends the gradient of its chunk-start
  memory F = M_chunk0 there, block by block.
* ``_grad_nn_kernel`` then ``_grad_dk_kernel`` — the same work split in two (the default for bf16
  inputs with β or μ, NESTED_KERNELS_LM_TRITON_GRAD_SPLIT; never with float32 operands): both walk the V blocks; the
  first keeps only the n×n accumulators and writes the gate gradients, dη and the QKᵀ/KKᵀ shares
  of dq, dk, the second only dK, dQ (added to those shares), dv and dM_chunk0. Each has about half
  the live set, at the price of the per-block chain computed twice. One body (``_grad_tile``)
  serves all three kernels, its after-loop n×n algebra in ``_nn_adjoints`` and
  ``_store_gate_grads``.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import gate_grads, mm, row_of, seq_bounds, sum2, tile_gates
from .triton_fwd import _load_rows, _store_rows, _tile_frame, ainv2_ptrs, plain_rows, plain_x_rows, rows2, tile_square, \
    uncols2, unrows2


# ------------------------------------------------------------------------------------------
# sequential: adjoints of the states
# ------------------------------------------------------------------------------------------
@triton.jit
def _adjoint_visit(dM, dS, dFc, i, p, L, tb, st, rt, rk, rv, q, k, xw, xz, yw, yz, qw, qz, eta, la_ptr, tsc, do,
                   adj_m, adj_s, dw, row0, i_h, H, scale,
                   K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, HAS_BETA: tl.constexpr,
                   HAS_MU: tl.constexpr, EXACT: tl.constexpr, READ: tl.constexpr, HAS_ALPHA: tl.constexpr,
                   PLAIN_X: tl.constexpr, PLAIN_A: tl.constexpr, STORE_DW: tl.constexpr, PREC: tl.constexpr):
    """Tile i of the backward walk: stores the adjoints of its end states, returns those of its
    start states (dM, dS) and the pending gradient of the final M_chunk (dFc). PLAIN_A (A in
    ``qw``; triton_fwd._plain_a_step): with the steps' adjoint dW = diag(Φ[n]) K dM + Aᵀ dO,
    dM0 = γ_n dM − Kᵀ diag(η) dW + scale·Qᵀ diag(a) dO; with STORE_DW, dW's rows go to ``dw``
    ([B·T, H, V], for ``_plain_d_kernel``)."""
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
    dX = mm(kx, dM, PREC)
    if PLAIN_A:
        et, phin, a = plain_rows(eta, la_ptr, grow, mt, HAS_ALPHA, READ)
        dW = phin[:, None] * dX
        if READ != 2:
            dW += mm(tl.trans(tl.load(tile_square(qw, g, i_h, H, rt, BT)).to(tl.float32)), dO, PREC)
        if STORE_DW:
            _store_rows(dw, grow, rv, mt, dW, V)
        dM0 = tl.load(ts) * dM - mm(tl.trans(kx), et[:, None] * dW, PREC) + \
            mm(tl.trans(_load_rows(q, grow, rk, mt, K)), (a * scale)[:, None] * dO, PREC)
    else:
        if PLAIN_X:     # Xw = −diag(c) K (triton_fwd.plain_x_rows)
            dM0 = tl.load(ts) * dM - mm(tl.trans(kx), plain_x_rows(eta, la_ptr, grow, mt, HAS_ALPHA)[:, None] * dX,
                                        PREC)
        else:
            dM0 = tl.load(ts) * dM + mm(tl.trans(_load_rows(xw, grow, rk, mt, K)), dX, PREC)
        dM0 += mm(tl.trans(_load_rows(qw, grow, rk, mt, K)), dO, PREC)
    if HAS_MU:
        dY = mm(kx, dS, PREC)
        dM0 += mm(tl.trans(_load_rows(yw, grow, rk, mt, K)), dY, PREC)
        dS0 = tl.load(ts + 1) * dM + tl.load(ts + 2) * dS
        if HAS_BETA or EXACT:
            dS0 += mm(tl.trans(_load_rows(xz, grow, rk, mt, K)), dX, PREC)
        if EXACT:
            dS0 += mm(tl.trans(_load_rows(yz, grow, rk, mt, K)), dY, PREC)
        if READ != 2:
            dS0 += mm(tl.trans(_load_rows(qz, grow, rk, mt, K)), dO, PREC)
        dS = dS0
    # the start of the last tile is the final M_chunk unless that tile resumed a chunk
    take = ((i > 0) | (p == 0)).to(tl.float32)
    dM = dM0 + take * dFc
    dFc = (1.0 - take) * dFc
    return dM, dS, dFc


@triton.jit
def _state_bwd_kernel(q, k, xw, xz, yw, yz, qw, qz, eta, la_ptr, tsc, do, pos, cu, tile_base, dm_fin, ds_fin,
                      dmc_fin, adj_m, adj_s, dm0, ds0, dmc0, dw,
                      T, H, scale,
                      K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                      HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr, EXACT: tl.constexpr, READ: tl.constexpr,
                      HAS_ALPHA: tl.constexpr, PLAIN_X: tl.constexpr, PLAIN_A: tl.constexpr,
                      HAS_POS: tl.constexpr, IS_VARLEN: tl.constexpr, HAS_DMF: tl.constexpr,
                      HAS_DSF: tl.constexpr, HAS_DMCF: tl.constexpr, STORE_DW: tl.constexpr, PREC: tl.constexpr,
                      STAGES: tl.constexpr):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    row0, L, p = seq_bounds(cu, pos, i_n, T, IS_VARLEN, HAS_POS)
    rt = tl.arange(0, BT)
    rk = tl.arange(0, K)
    rv = i_v * BV + tl.arange(0, BV)
    st = i_nh.to(tl.int64) * K * V + rk[:, None] * V + rv[None, :]
    nt = ((L + p + BT - 1) // BT) * (L > 0).to(tl.int32)
    pf = (p + L) % BT
    if EXACT:   # every token ends a chunk: the final M_chunk is M_L
        pf = pf * 0
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

    if STAGES == 0:     # the interpreter's loop (it cannot take range over a loaded bound)
        i = nt - 1
        while i >= 0:
            dM, dS, dFc = _adjoint_visit(dM, dS, dFc, i, p, L, tb, st, rt, rk, rv, q, k, xw, xz, yw, yz, qw, qz,
                                         eta, la_ptr, tsc, do, adj_m, adj_s, dw, row0, i_h, H, scale, K, V, BT,
                                         HAS_BETA, HAS_MU, EXACT, READ, HAS_ALPHA, PLAIN_X, PLAIN_A, STORE_DW, PREC)
            i -= 1
    else:               # a for loop, software-pipelined: the previous tiles' rows load during this one
        for j in tl.range(0, nt, num_stages=STAGES):
            dM, dS, dFc = _adjoint_visit(dM, dS, dFc, nt - 1 - j, p, L, tb, st, rt, rk, rv, q, k, xw, xz, yw,
                                         yz, qw, qz, eta, la_ptr, tsc, do, adj_m, adj_s, dw, row0, i_h, H, scale, K,
                                         V, BT, HAS_BETA, HAS_MU, EXACT, READ, HAS_ALPHA, PLAIN_X, PLAIN_A, STORE_DW,
                                         PREC)
    tl.store(dm0 + st, dM)
    if HAS_MU:
        tl.store(ds0 + st, dS)
    if HAS_POS:
        tl.store(dmc0 + st, dFc)


# ------------------------------------------------------------------------------------------
# tile-parallel: token gradients
# ------------------------------------------------------------------------------------------
@triton.jit
def _grad_block(q, k, v, do, mc0, saved_m, saved_s, adj_m, adj_s, rows, c, grow, rk, mt, sbase, fbase, resumed,
                scale, et, gp, nup, fL, gLr, bt, P, Ai,
                K: tl.constexpr, V: tl.constexpr, BV: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
                PREC: tl.constexpr, ROWS: tl.constexpr, DK: tl.constexpr):
    """Loads and recomputed forward chain of V block ``c`` of a tile (the per-block part that every
    gradient kernel shares). Returns kx, vx, qx [BT, K]; rv [BV] (columns), sv [K, BV] (state
    offsets); M0, dMe, S0, dSe, F [K, BV]; dO, KM = K M0, KS = K S0, E, W, Wp (what P multiplies),
    vb (EXACT: the V block; self targets: the unknowns s_t), R, U, X [BT, BV]; self targets with
    EXACT: VM = V M0, VS = V S0 [BT, BV] and the solution R2 [2BT, BV] (rows r_t, s_t) — placeholders
    where absent (unused). ROWS (no resumed tile): every product with a state comes from the rows
    of ``_grad_rows_kernel`` (``_state_product``) and no keys, queries or values are loaded
    (placeholders of other shapes in their place), nor the states unless ``DK`` needs them."""
    if ROWS:
        rv = c * BV + tl.arange(0, BV)
        sv = rk[:, None] * V + rv[None, :]
        dO = _load_rows(do, grow, rv, mt, V)
        kx = dO
        vx = dO
        qx = dO
        M0 = dO
        dMe = dO
        if DK:
            M0 = tl.load(saved_m + sbase + sv).to(tl.float32)
            dMe = tl.load(adj_m + sbase + sv).to(tl.float32)
    else:
        # keys, queries, values reloaded per block (L2 hits) instead of held in registers
        kx = _load_rows(k, grow, rk, mt, K)
        vx = kx
        qx = kx
        if SELF_TARGET:
            vx = _load_rows(v, grow, rk, mt, K)
        if READ != 2 or HAS_POS:
            qx = _load_rows(q, grow, rk, mt, K) * scale
        rv = c * BV + tl.arange(0, BV)
        sv = rk[:, None] * V + rv[None, :]
        M0 = tl.load(saved_m + sbase + sv).to(tl.float32)
        dMe = tl.load(adj_m + sbase + sv).to(tl.float32)
        dO = _load_rows(do, grow, rv, mt, V)
    KM = _state_product(rows, 0, grow, rv, mt, kx, M0, V, HAS_MU, EXACT, SELF_TARGET, PREC, ROWS)
    F = M0
    E = KM
    vb = KM
    VM = KM
    VS = KM
    R2 = KM
    if EXACT:
        if SELF_TARGET:
            VM = _state_product(rows, 4, grow, rv, mt, vx, M0, V, HAS_MU, EXACT, SELF_TARGET, PREC, ROWS)
            Wp = KM
        else:
            vb = _load_rows(v, grow, rv, mt, V)
            Wp = et[:, None] * vb       # what P multiplies in the RHS
    else:
        if HAS_POS:
            F = tl.where(resumed, tl.load(mc0 + fbase + sv, mask=resumed, other=0.0).to(tl.float32), M0)
            KF = mm(kx, F, PREC)
        else:
            KF = KM
        if SELF_TARGET:
            if HAS_POS:
                E = KF - mm(vx, F, PREC)
            else:
                E = KF - _state_product(rows, 4, grow, rv, mt, vx, F, V, HAS_MU, EXACT, SELF_TARGET, PREC, ROWS)
        else:
            E = KF - _load_rows(v, grow, rv, mt, V)
        W = -et[:, None] * E
        Wp = W
    S0 = M0
    dSe = dMe
    KS = KM
    if HAS_MU and (DK or not ROWS):
        S0 = tl.load(saved_s + sbase + sv).to(tl.float32)
        dSe = tl.load(adj_s + sbase + sv).to(tl.float32)
    R = KM
    if SELF_TARGET and EXACT:   # (r_t, s_t) from the 2n×2n system: RHS rows γ_prev z M0 + ν_prev z S0
        RHS = gp[:, None] * KM
        RHSv = gp[:, None] * VM
        if HAS_MU:
            KS = _state_product(rows, 2, grow, rv, mt, kx, S0, V, HAS_MU, EXACT, SELF_TARGET, PREC, ROWS)
            VS = _state_product(rows, 5, grow, rv, mt, vx, S0, V, HAS_MU, EXACT, SELF_TARGET, PREC, ROWS)
            RHS += nup[:, None] * KS
            RHSv += nup[:, None] * VS
        R2 = mm(Ai, rows2(RHS, RHSv), PREC)
        R, vb = unrows2(R2)
        W = -et[:, None] * (R - vb)
    elif HAS_BETA or EXACT:
        RHS = gp[:, None] * KM + mm(P, Wp, PREC)
        if HAS_MU:
            KS = _state_product(rows, 2, grow, rv, mt, kx, S0, V, HAS_MU, EXACT, SELF_TARGET, PREC, ROWS)
            RHS += nup[:, None] * KS
        R = mm(Ai, RHS, PREC)
        if EXACT:
            W = -et[:, None] * (R - vb)
    X = fL[:, None] * W
    U = KM
    if HAS_BETA:
        U = -bt[:, None] * R
        X += gLr[:, None] * U
    return kx, vx, qx, rv, sv, M0, dMe, S0, dSe, F, dO, KM, KS, E, W, Wp, vb, R, U, X, VM, VS, R2


@triton.constexpr_function
def row_slots(has_mu, exact, self_target):
    """Slots of the rows buffer of ``_grad_rows_kernel`` ([B·T, H, slots, V] float32): 0 KM, 1 dX,
    then with μ 2 KS, 3 dY, then with self targets VM, then with self targets, EXACT and μ VS."""
    return 2 + 2 * bool(has_mu) + bool(self_target) + bool(self_target and exact and has_mu)


@triton.constexpr_function
def _slot(kind, has_mu):
    """Slot of ``kind`` (the numbering with μ: 0 KM, 1 dX, 2 KS, 3 dY, 4 VM, 5 VS) in the rows buffer."""
    return kind if has_mu or kind < 2 else kind - 2


@triton.jit
def _rows_of(rows, KIND: tl.constexpr, V: tl.constexpr, HAS_MU: tl.constexpr):
    """Where the rows of kind ``KIND`` (``_slot``) start in the rows buffer: the one layout that
    ``_grad_rows_kernel`` writes and ``_state_product`` reads."""
    return rows + _slot(KIND, HAS_MU) * V


@triton.jit
def _state_product(rows, KIND: tl.constexpr, grow, rv, mt, x, M, V: tl.constexpr, HAS_MU: tl.constexpr,
                   EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, PREC: tl.constexpr, ROWS: tl.constexpr):
    """x M [BT, BV] (keys or values times a state or its adjoint), or with ROWS its row of kind
    ``KIND`` (``_slot``) stored by ``_grad_rows_kernel``."""
    if ROWS:
        NR: tl.constexpr = row_slots(HAS_MU, EXACT, SELF_TARGET)
        return _load_rows(_rows_of(rows, KIND, V, HAS_MU), grow, rv, mt, NR * V)
    else:
        return mm(x, M, PREC)


@triton.constexpr_function
def _nn_slots(self_exact, epilogue):
    """Slots of the n×n hand-off buffer: 2 (dQK, dKS), 3 with self targets and EXACT (+ dVK); 5 with
    the epilogue kernel (the four accumulators Z2, Z1, ZA, ZP, then a slot of row vectors, which the
    epilogue kernel overwrites with dQK, dKS for ``_grad_dk_kernel``)."""
    return 5 if epilogue else (3 if self_exact else 2)


@triton.jit
def _store_nn_shares(nb, dQK, dKS, dVK, BT: tl.constexpr, HAS_BETA: tl.constexpr, EXACT: tl.constexpr,
                     SELF_TARGET: tl.constexpr, READ: tl.constexpr):
    """The n×n shares of dq, dk (and dv) for ``_grad_dk_kernel``, into the tile's hand-off slots ``nb``."""
    if READ != 2:
        tl.store(nb, dQK)
    if HAS_BETA or EXACT:
        tl.store(nb + BT * BT, dKS)
    if SELF_TARGET and EXACT:
        tl.store(nb + 2 * BT * BT, dVK)


@triton.jit
def _nn_vectors(nn_buf, i_g, i_h, H, rt, BT: tl.constexpr, SLOTS: tl.constexpr):
    """Pointers [BT] to row 0 of the epilogue's fifth hand-off slot (``_nn_slots``) of tile i_g, head
    i_h; row j (+ j·BT) holds, in order, r_phi, r_g, r_d, da, db, dbt, dgp_s, dnup_s, deta_v, and row
    9 the tile-end sums Σ M0 ⊙ dMe, Σ S0 ⊙ dMe, Σ S0 ⊙ dSe in its first three entries."""
    return nn_buf + ((i_g.to(tl.int64) * H + i_h) * SLOTS + 4) * BT * BT + rt


@triton.jit
def _nn_tile(nn_buf, i_g, i_h, H, rt, BT: tl.constexpr, SLOTS: tl.constexpr):
    """Pointers [BT, BT] to tile i_g, head i_h of the n×n hand-off buffer [tiles, H, SLOTS, BT, BT]
    (slot 0 dQK, slot + BT·BT dKS, slot + 2·BT·BT d(VKᵀ) for self targets with EXACT)."""
    return nn_buf + (i_g.to(tl.int64) * H + i_h) * SLOTS * BT * BT + rt[:, None] * BT + rt[None, :]


@triton.jit
def _add_read_shares(dg, dPhi, dG, dnu, da, dHm, dGm, db, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr):
    """The read's shares of the gate adjoints, into the tile's own accumulators (read after) or the
    previous position's (read before / chunk): dg += da, dΦ += dHm [, dG += dGm] [, dν += db]."""
    dg += da
    dPhi += dHm
    if HAS_BETA:
        dG += dGm
    if HAS_MU:
        dnu += db
    return dg, dPhi, dG, dnu


@triton.jit
def _nn_adjoints(q, k, v, la_ptr, beta_ptr, mu_ptr, deta, dbeta, grow, mt, rt, rk, sel, lower, strict, scale, et,
                 Z2, Z1, ZA, ZP, r_phi, r_g, r_d, da, db, dbt, dgp_s, dnup_s, deta_v, dg, dnu, dm,
                 K: tl.constexpr, BT: tl.constexpr, HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr,
                 HAS_MU: tl.constexpr, EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr,
                 PREC: tl.constexpr):
    """The n×n adjoints of a tile, once after its V blocks, from the four products Z2 = dO Wᵀ,
    Z1 = dO Uᵀ, ZA = dRHS Rᵀ, ZP = dRHS Wpᵀ and the row sums (dg, dnu, dm: the tile-end scalars on
    the last row, 0 elsewhere). Stores dη and dβ. The gate matrices, keys and queries are reloaded
    and recomputed here rather than kept live across the loop (registers). Returns the gate
    matrices and their adjoints (for ``_store_gate_grads``), dQK (QKᵀ's adjoint, masked), dKS
    (KKᵀ's, symmetrised), dVK (self targets with EXACT: the adjoint of VK[t, j] = v_tᵀk_j) and the
    keys and queries (scaled) — placeholders where absent.

    Self targets with EXACT: ZA = dRHS Xᵀ is 2n×2n (X the rows r_t, s_t), dA = −ZA on the system of
    ``triton_fwd.self_exact_system``; its four n×n blocks (r or s equation × r or s unknown) give
    dKK, dVK and the adjoints of c_0 = Γ_prev β + Φ_prev η and c_1 = −Φ_prev η; no P term."""
    G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, mu_ptr, grow, mt, rt, BT, HAS_ALPHA,
                                                                  HAS_MU, PREC)
    kx = _load_rows(k, grow, rk, mt, K)
    qx = kx
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
    if READ != 2:
        qx = _load_rows(q, grow, rk, mt, K) * scale
        if READ == 0:
            QKm = tl.where(lower, mm(qx, tl.trans(kx), PREC), 0.0)
        else:
            QKm = tl.where(strict, mm(qx, tl.trans(kx), PREC), 0.0)
    dG = tl.where(sel[:, None], r_g[None, :], 0.0)
    dGp = tl.zeros([BT, BT], dtype=tl.float32)
    dPhi = tl.where(sel[:, None], r_phi[None, :], 0.0)
    dPhip = tl.zeros([BT, BT], dtype=tl.float32)
    dgp = dgp_s
    dnup = dnup_s
    dD = tl.where(sel[:, None], r_d[None, :], 0.0)
    dQK = dGp
    dKS = dGp
    dVK = dGp
    if READ != 2:
        if READ == 0:
            Hm = Phi
            Gm = G
        else:
            Hm = Phip
            Gm = Gp
        dQK = Z2 * Hm
        dHm = Z2 * QKm
        dGm = dHm           # read only with β
        if HAS_BETA:
            dQK += Z1 * Gm
            dGm = Z1 * QKm
        if READ == 0:
            dQK = tl.where(lower, dQK, 0.0)
            dg, dPhi, dG, dnu = _add_read_shares(dg, dPhi, dG, dnu, da, dHm, dGm, db, HAS_BETA, HAS_MU)
        else:
            dQK = tl.where(strict, dQK, 0.0)
            dgp, dPhip, dGp, dnup = _add_read_shares(dgp, dPhip, dGp, dnup, da, dHm, dGm, db, HAS_BETA, HAS_MU)
    if SELF_TARGET and EXACT:
        KK = mm(kx, tl.trans(kx), PREC)
        VK = mm(_load_rows(v, grow, rk, mt, K), tl.trans(kx), PREC)
        dAr, dAs = unrows2(-ZA)     # the r_t and s_t equations
        dAk0, dAk1 = uncols2(dAr)   # their r_j and s_j unknowns
        dAv0, dAv1 = uncols2(dAs)
        c1 = -Phip * et[None, :]
        c0 = -c1
        if HAS_BETA:
            c0 += Gp * bt[None, :]
        dKK = tl.where(strict, dAk0 * c0 + dAk1 * c1, 0.0)
        dVK = tl.where(strict, dAv0 * c0 + dAv1 * c1, 0.0)
        dc0 = tl.where(strict, dAk0 * KK + dAv0 * VK, 0.0)
        dc01 = dc0 - tl.where(strict, dAk1 * KK + dAv1 * VK, 0.0)     # dc_0 − dc_1: Φ_prev η's share
        if HAS_BETA:
            dGp += dc0 * bt[None, :]
            dbt += tl.sum(dc0 * Gp, 0)
            tl.store(dbeta + grow, dbt, mask=mt)
        dPhip += dc01 * et[None, :]
        deta_v += tl.sum(dc01 * Phip, 0)
        dKS = dKK + tl.trans(dKK)
    elif HAS_BETA or EXACT:
        KK = mm(kx, tl.trans(kx), PREC)
        dA = tl.where(strict, -ZA, 0.0)
        dKK = tl.where(strict, ZP * Phip, 0.0)
        if HAS_BETA:
            dKK += dA * Gp * bt[None, :]
            dGp += dA * KK * bt[None, :]
            dbt += tl.sum(dA * KK * Gp, 0)
            tl.store(dbeta + grow, dbt, mask=mt)
        if EXACT:   # A's term strict(KKᵀ) ⊙ Φ_prev diag(η)
            dKK += dA * Phip * et[None, :]
            dPhip += dA * KK * et[None, :]
            deta_v += tl.sum(dA * KK * Phip, 0)
        dPhip += tl.where(strict, ZP * KK, 0.0)
        dKS = dKK + tl.trans(dKK)
    tl.store(deta + grow, deta_v, mask=mt)
    if not HAS_MU:      # gate_grads reads these only with momentum
        dnu = dg
        dnup = dg
        dm = dg
        dD = dG
    return G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip, dg, dgp, dnu, dnup, dm, dD, dQK, dKS, dVK, kx, qx


@triton.jit
def _vk_shares(v, grow, rk, mt, kx, dVK, dV, dK, K: tl.constexpr, PREC: tl.constexpr):
    """VK = V Kᵀ's adjoint dVK (self targets with EXACT) into dv and dk."""
    dV += mm(dVK, kx, PREC)
    dK += mm(tl.trans(dVK), _load_rows(v, grow, rk, mt, K), PREC)
    return dV, dK


@triton.jit
def _store_gate_grads(dla, dmu, grow, mt, lower, strict, G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip,
                      dg, dgp, dnu, dnup, dm, dD, HAS_ALPHA: tl.constexpr, HAS_MU: tl.constexpr,
                      PREC: tl.constexpr):
    """Gate matrices' adjoints → d log α, dμ (``gate_grads``), stored."""
    dla_v, dmu_v = gate_grads(G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip, dg, dgp, dnu, dnup, dm, dD,
                              lower, strict, HAS_ALPHA, HAS_MU, PREC)
    if HAS_MU:
        tl.store(dmu + grow, dmu_v, mask=mt)
    if HAS_ALPHA:
        tl.store(dla + grow, dla_v, mask=mt)


@triton.jit
def _grad_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos, ainv,
               saved_m, saved_s, adj_m, adj_s, do,
               dq, dk, dv, deta, dla, dbeta, dmu, dmc0, nn_buf, rows, rsum, tsum,
               T, H, scale,
               K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
               HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
               EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
               IS_VARLEN: tl.constexpr, PREC: tl.constexpr, NN: tl.constexpr, DK: tl.constexpr,
               ROWS: tl.constexpr, EPI: tl.constexpr):
    """Gradients of the tokens of one tile given its start states (M0, S0), the adjoints of its end
    states (dMe, dSe) and dO. F is the chunk-start memory of the errors, self targets and "chunk"
    reads: M0, or M_chunk0 in a resumed tile (then dF → dM_chunk0).

    One program per (tile, head) walks the V blocks: every quantity of width V (errors E, steps W,
    RHS, R, U and their adjoints) lives one BV block at a time (``_grad_block``). Two sets of
    accumulators ride on that walk:

    * NN: the n×n adjoints, accumulated across the blocks as four products only — Z2 = dO Wᵀ,
      Z1 = dO Uᵀ (outputs), ZA = dRHS Rᵀ (the solve: dA = −ZA), ZP = dRHS Wᵀ (P) — and the row
      sums; turned once, after the loop, into the gradients of QKᵀ, KKᵀ and the gate matrices: dη,
      d log α, dβ, dμ and the QKᵀ/KKᵀ shares of dq, dk.
    * DK: dK, dQ from the per-block products with the states and their adjoints, dv, and a
      resumed tile's dM_chunk0.

    ``_grad_kernel`` runs both (NN and DK); ``_grad_nn_kernel`` then ``_grad_dk_kernel`` run one
    each, so each keeps only its own accumulators live and both redo the per-block chain; the DK
    kernel adds its dq, dk to the n×n shares stored by the NN kernel.

    EXACT (chunk_size 1, external targets): RHS = γ_prev K M0 + ν_prev K S0 + P (ηV), R = (I + A)⁻¹
    RHS, W = −η(R − V) with A = strict(KKᵀ) ⊙ (Γ_prev β + Φ_prev η): dR gains −η dW, ZP = dRHS (ηV)ᵀ,
    Pᵀ dRHS goes to v and η instead of W, and dA also feeds Φ_prev and η. Self targets with EXACT
    (the 2n×2n system in (r_t, s_t), ``triton_fwd.self_exact_system``): W = −η(R − S), so the solve's
    adjoint takes the rows (dR, η dW) and the stored 2n×2n (I + A)⁻¹; the s-rows of dRHS go to v
    (through V M0, V S0), ZA is 2n×2n and the n×n part also yields d(VKᵀ) (slot 2 of the hand-off
    buffer in the split); no P term, no errors E."""
    i_g, i_h, i_n, s, e, resumed, rt, mt, grow, lower, strict, sel = _tile_frame(tile_seq, tile_idx, cu, pos, T, H,
                                                                                BT, IS_VARLEN, HAS_POS)
    rk = tl.arange(0, K)
    sbase = (i_g.to(tl.int64) * H + i_h) * K * V
    fbase = (i_n.to(tl.int64) * H + i_h) * K * V
    SLOTS: tl.constexpr = _nn_slots(SELF_TARGET and EXACT, EPI)      # n×n hand-off slots (the split)

    # ---------------- per-tile constants (placeholders where absent) ----------------
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, mu_ptr, grow, mt, rt, BT, HAS_ALPHA, HAS_MU,
                                                                  PREC)
    fL = row_of(Phi, sel)
    kx = _load_rows(k, grow, rk, mt, K)
    bt = et
    gLr = fL
    P = G
    Ai = G
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
        gLr = row_of(G, sel)
    if HAS_BETA or EXACT:
        P = tl.where(strict, mm(kx, tl.trans(kx), PREC) * Phip, 0.0)
        if SELF_TARGET and EXACT:
            ap, am = ainv2_ptrs(ainv, grow, mt, BT)
            Ai = tl.load(ap, mask=am[:, None], other=0.0)
        else:
            Ai = tl.load(ainv + grow[:, None] * BT + rt[None, :], mask=mt[:, None], other=0.0)
    if HAS_MU:
        dLr = row_of(D, sel)
    if READ == 2:
        if HAS_POS:
            qx = _load_rows(q, grow, rk, mt, K) * scale
    else:
        qx = _load_rows(q, grow, rk, mt, K) * scale
        QK = mm(qx, tl.trans(kx), PREC)
        if READ == 0:
            QKm = tl.where(lower, QK, 0.0)
            a = g
            b = nu
            QHm = QKm * Phi
            QGm = QKm * G
        else:
            QKm = tl.where(strict, QK, 0.0)
            a = gp
            b = nup
            QHm = QKm * Phip
            QGm = QKm * Gp

    # ---------------- accumulators over the V blocks ----------------
    if DK:
        dK = tl.zeros([BT, K], dtype=tl.float32)
        dQ = tl.zeros([BT, K], dtype=tl.float32)
        if SELF_TARGET:     # dE Fᵀ; with EXACT: v's gradient
            dEF = tl.zeros([BT, K], dtype=tl.float32)
    if NN:
        z = tl.zeros([BT], dtype=tl.float32)
        deta_v = z
        r_phi = z            # Σ_v W ⊙ dX: row n of dΦ
        r_g = z              # Σ_v U ⊙ dX: row n of dΓ
        r_d = z              # Σ_v W ⊙ dY: row n of dD
        da = z
        db = z
        dbt = z
        dgp_s = z
        dnup_s = z
        dg_n = tl.sum(z, 0)  # Σ M0 ⊙ dMe, Σ S0 ⊙ dMe, Σ S0 ⊙ dSe
        dnu_n = dg_n
        dm_n = dg_n
        Z2 = tl.zeros([BT, BT], dtype=tl.float32)     # placeholders where absent (unused)
        Z1 = Z2
        ZA = Z2
        ZP = Z2
        if READ != 2:
            if HAS_BETA:
                Z1 = tl.zeros([BT, BT], dtype=tl.float32)
        if SELF_TARGET and EXACT:
            ZA = tl.zeros([2 * BT, 2 * BT], dtype=tl.float32)
        elif HAS_BETA or EXACT:
            ZA = tl.zeros([BT, BT], dtype=tl.float32)
            ZP = tl.zeros([BT, BT], dtype=tl.float32)

    for c in tl.range(V // BV, num_stages=1):   # no multi-buffered loads: shared memory is the limit
        kb, vxb, qb, rv, sv, M0, dMe, S0, dSe, F, dO, KM, KS, E, W, Wp, vb, R, U, X, VM, VS, R2 = \
            _grad_block(q, k, v, do, mc0, saved_m, saved_s, adj_m, adj_s, rows, c, grow, rk, mt, sbase, fbase,
                        resumed, scale, et, gp, nup, fL, gLr, bt, P, Ai, K, V, BV, HAS_BETA, HAS_MU, EXACT,
                        SELF_TARGET, READ, HAS_POS, PREC, ROWS, DK)
        if not ROWS:    # (ROWS: placeholders of another shape, which must not replace the tile's kx, qx)
            kx = kb
            vx = vxb
            qx = qb

        # tile-end states: M_n = γ_n M0 + ν_n S0 + Kᵀ X,  S_n = m_n S0 + Kᵀ(D[n,·]⊙W)
        if DK:
            dK += mm(X, tl.trans(dMe), PREC)
        dX = _state_product(rows, 1, grow, rv, mt, kx, dMe, V, HAS_MU, EXACT, SELF_TARGET, PREC, ROWS)
        dW = fL[:, None] * dX
        if NN:
            r_phi += tl.sum(W * dX, 1)
            if not ROWS:
                dg_n += sum2(M0 * dMe)
        if HAS_BETA:
            dU = gLr[:, None] * dX
            if NN:
                r_g += tl.sum(U * dX, 1)
        if HAS_MU:
            if NN and not ROWS:
                dnu_n += sum2(S0 * dMe)
                dm_n += sum2(S0 * dSe)
            if DK:
                dK += mm(dLr[:, None] * W, tl.trans(dSe), PREC)
            dY = _state_product(rows, 3, grow, rv, mt, kx, dSe, V, HAS_MU, EXACT, SELF_TARGET, PREC, ROWS)
            dW += dLr[:, None] * dY
            if NN:
                r_d += tl.sum(W * dY, 1)

        # outputs
        if READ == 2:
            if DK:
                dQ += mm(dO, tl.trans(F), PREC)
                if HAS_POS:
                    dF = mm(tl.trans(qx), dO, PREC)
        else:
            if DK:
                dQ += mm(a[:, None] * dO, tl.trans(M0), PREC)
            if NN and not ROWS:
                da += tl.sum(dO * mm(qx, M0, PREC), 1)
            if HAS_MU:
                if DK:
                    dQ += mm(b[:, None] * dO, tl.trans(S0), PREC)
                if NN and not ROWS:
                    db += tl.sum(dO * mm(qx, S0, PREC), 1)
            dW += mm(tl.trans(QHm), dO, PREC)
            if NN:
                Z2 += mm(dO, tl.trans(W), PREC)
            if HAS_BETA:
                dU += mm(tl.trans(QGm), dO, PREC)
                if NN:
                    Z1 += mm(dO, tl.trans(U), PREC)
            if HAS_POS and DK:
                dF = tl.zeros([K, BV], dtype=tl.float32)

        # U = −βR, (EXACT: W = −η(R − V)), R = (I + A)⁻¹ RHS, RHS = γ_prev K M0 + ν_prev K S0 + P Wp
        if HAS_BETA or EXACT:
            if HAS_BETA:
                dR = -bt[:, None] * dU
                if NN:
                    dbt -= tl.sum(R * dU, 1)
                if EXACT:
                    dR -= et[:, None] * dW
            else:
                dR = -et[:, None] * dW
            if EXACT and NN:
                deta_v -= tl.sum((R - vb) * dW, 1)
            if SELF_TARGET and EXACT:   # the 2n×2n solve; S enters W = −η(R − S): dS = η dW
                dRHS2 = mm(tl.trans(Ai), rows2(dR, et[:, None] * dW), PREC)
                if NN:
                    ZA += mm(dRHS2, tl.trans(R2), PREC)
                dRHS, dRHSv = unrows2(dRHS2)    # the k and v rows of the RHS
                if NN:
                    dgp_s += tl.sum(dRHSv * VM, 1)
                    if HAS_MU:
                        dnup_s += tl.sum(dRHSv * VS, 1)
                if DK:
                    dEF += mm(gp[:, None] * dRHSv, tl.trans(M0), PREC)
                    if HAS_MU:
                        dEF += mm(nup[:, None] * dRHSv, tl.trans(S0), PREC)
            else:
                dRHS = mm(tl.trans(Ai), dR, PREC)
                if NN:
                    ZA += mm(dRHS, tl.trans(R), PREC)
                    ZP += mm(dRHS, tl.trans(Wp), PREC)
            if NN:
                dgp_s += tl.sum(dRHS * KM, 1)
            if DK:
                dK += mm(gp[:, None] * dRHS, tl.trans(M0), PREC)
            if HAS_MU:
                if NN:
                    dnup_s += tl.sum(dRHS * KS, 1)
                if DK:
                    dK += mm(nup[:, None] * dRHS, tl.trans(S0), PREC)
            if not (SELF_TARGET and EXACT):     # the P Wp term (none for self targets with EXACT)
                dWp = mm(tl.trans(P), dRHS, PREC)
                if EXACT:   # Wp = ηV; V also enters W = −η(R − V)
                    if NN:
                        deta_v += tl.sum(vb * dWp, 1)
                    if DK:
                        tl.store(dv + grow[:, None] * V + rv[None, :], et[:, None] * (dW + dWp), mask=mt[:, None])
                else:
                    dW += dWp

        # W = −η E, E = K F − target
        if not EXACT:
            dE = -et[:, None] * dW
            if NN:
                deta_v -= tl.sum(E * dW, 1)
            if DK:
                if SELF_TARGET:
                    dEF += mm(dE, tl.trans(F), PREC)
                else:
                    dK += mm(dE, tl.trans(F), PREC)
                    tl.store(dv + grow[:, None] * V + rv[None, :], -dE, mask=mt[:, None])
                if HAS_POS:
                    if SELF_TARGET:
                        dF += mm(tl.trans(kx - vx), dE, PREC)
                    else:
                        dF += mm(tl.trans(kx), dE, PREC)
                    if resumed:
                        tl.store(dmc0 + fbase + sv, tl.load(dmc0 + fbase + sv) + dF)

    if DK:
        if SELF_TARGET and not EXACT:
            dK += dEF
            tl.store(dv + grow[:, None] * K + rk[None, :], -dEF, mask=mt[:, None])

    if ROWS and NN:    # the state-side sums of _grad_rows_kernel
        ts = tsum + (i_g.to(tl.int64) * H + i_h) * 4
        dg_n = tl.load(ts)
        dnu_n = tl.load(ts + 1)
        dm_n = tl.load(ts + 2)
        if READ != 2:
            da = tl.load(rsum + grow * 2, mask=mt, other=0.0)
            db = tl.load(rsum + grow * 2 + 1, mask=mt, other=0.0)

    if NN and EPI:  # the accumulators to _grad_epilogue_kernel, which does the after-loop algebra
        nb = _nn_tile(nn_buf, i_g, i_h, H, rt, BT, SLOTS)
        tl.store(nb, Z2)
        tl.store(nb + BT * BT, Z1)
        tl.store(nb + 2 * BT * BT, ZA)
        tl.store(nb + 3 * BT * BT, ZP)
        vb = _nn_vectors(nn_buf, i_g, i_h, H, rt, BT, SLOTS)
        tl.store(vb, r_phi)
        tl.store(vb + BT, r_g)
        tl.store(vb + 2 * BT, r_d)
        tl.store(vb + 3 * BT, da)
        tl.store(vb + 4 * BT, db)
        tl.store(vb + 5 * BT, dbt)
        tl.store(vb + 6 * BT, dgp_s)
        tl.store(vb + 7 * BT, dnup_s)
        tl.store(vb + 8 * BT, deta_v)
        tl.store(vb + 9 * BT, tl.where(rt == 0, dg_n, tl.where(rt == 1, dnu_n, dm_n)), mask=rt < 3)
    if NN and not EPI:
        G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip, dg, dgp, dnu, dnup, dm, dD, dQK, dKS, dVK, kx, qx = \
            _nn_adjoints(q, k, v, la_ptr, beta_ptr, mu_ptr, deta, dbeta, grow, mt, rt, rk, sel, lower, strict, scale,
                         et, Z2, Z1, ZA, ZP, r_phi, r_g, r_d, da, db, dbt, dgp_s, dnup_s, deta_v,
                         tl.where(sel, dg_n, 0.0), tl.where(sel, dnu_n, 0.0), tl.where(sel, dm_n, 0.0),
                         K, BT, HAS_ALPHA, HAS_BETA, HAS_MU, EXACT, SELF_TARGET, READ, PREC)
        if DK:      # the fused kernel: the n×n shares of dq, dk at once
            if READ != 2:
                dQ += mm(dQK, kx, PREC)
                dK += mm(tl.trans(dQK), qx, PREC)
            if HAS_BETA or EXACT:
                dK += mm(dKS, kx, PREC)
            if SELF_TARGET and EXACT:
                dEF, dK = _vk_shares(v, grow, rk, mt, kx, dVK, dEF, dK, K, PREC)
        else:       # _grad_nn_kernel: handed to _grad_dk_kernel (keeps kx, qx, dQ, dK out of this kernel)
            _store_nn_shares(_nn_tile(nn_buf, i_g, i_h, H, rt, BT, SLOTS), dQK, dKS, dVK, BT, HAS_BETA, EXACT,
                             SELF_TARGET, READ)
        _store_gate_grads(dla, dmu, grow, mt, lower, strict, G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip,
                          dg, dgp, dnu, dnup, dm, dD, HAS_ALPHA, HAS_MU, PREC)

    if DK:
        if not NN:  # _grad_dk_kernel: the n×n shares _grad_nn_kernel left in nn_buf
            nb = _nn_tile(nn_buf, i_g, i_h, H, rt, BT, SLOTS)
            kx = _load_rows(k, grow, rk, mt, K)
            if READ != 2:
                dQK = tl.load(nb)
                dQ += mm(dQK, kx, PREC)
                dK += mm(tl.trans(dQK), _load_rows(q, grow, rk, mt, K) * scale, PREC)
            if HAS_BETA or EXACT:
                dK += mm(tl.load(nb + BT * BT), kx, PREC)
            if SELF_TARGET and EXACT:
                dEF, dK = _vk_shares(v, grow, rk, mt, kx, tl.load(nb + 2 * BT * BT), dEF, dK, K, PREC)
        tl.store(dq + grow[:, None] * K + rk[None, :], dQ * scale, mask=mt[:, None])
        tl.store(dk + grow[:, None] * K + rk[None, :], dK, mask=mt[:, None])
        if SELF_TARGET and EXACT:
            tl.store(dv + grow[:, None] * K + rk[None, :], dEF, mask=mt[:, None])


@triton.jit
def _grad_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos, ainv,
                 saved_m, saved_s, adj_m, adj_s, do,
                 dq, dk, dv, deta, dla, dbeta, dmu, dmc0, nn_buf, rows, rsum, tsum,
                 T, H, scale,
                 K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                 HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                 EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
                 IS_VARLEN: tl.constexpr, PREC: tl.constexpr, ROWS: tl.constexpr, EPI: tl.constexpr):
    """Grid (tiles, H): every token gradient of a tile in one kernel (``_grad_tile``, NN and DK)."""
    _grad_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos, ainv,
               saved_m, saved_s, adj_m, adj_s, do, dq, dk, dv, deta, dla, dbeta, dmu, dmc0, nn_buf, rows, rsum,
               tsum, T, H, scale, K, V, BT, BV, HAS_ALPHA, HAS_BETA, HAS_MU, EXACT, SELF_TARGET, READ, HAS_POS,
               IS_VARLEN, PREC, True, True, False, False)


@triton.jit
def _grad_nn_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos, ainv,
                    saved_m, saved_s, adj_m, adj_s, do,
                    dq, dk, dv, deta, dla, dbeta, dmu, dmc0, nn_buf, rows, rsum, tsum,
                    T, H, scale,
                    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                    HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                    EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
                    IS_VARLEN: tl.constexpr, PREC: tl.constexpr, ROWS: tl.constexpr,
                    EPI: tl.constexpr):
    """Grid (tiles, H), first of the split: the n×n adjoints → dη, d log α, dβ, dμ and the QKᵀ/KKᵀ
    shares of dq, dk (stored) (``_grad_tile``, NN only)."""
    _grad_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos, ainv,
               saved_m, saved_s, adj_m, adj_s, do, dq, dk, dv, deta, dla, dbeta, dmu, dmc0, nn_buf, rows, rsum,
               tsum, T, H, scale, K, V, BT, BV, HAS_ALPHA, HAS_BETA, HAS_MU, EXACT, SELF_TARGET, READ, HAS_POS,
               IS_VARLEN, PREC, True, False, ROWS, EPI)


@triton.jit
def _grad_dk_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos, ainv,
                    saved_m, saved_s, adj_m, adj_s, do,
                    dq, dk, dv, deta, dla, dbeta, dmu, dmc0, nn_buf, rows, rsum, tsum,
                    T, H, scale,
                    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                    HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                    EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr, HAS_POS: tl.constexpr,
                    IS_VARLEN: tl.constexpr, PREC: tl.constexpr, ROWS: tl.constexpr,
                    EPI: tl.constexpr):
    """Grid (tiles, H), after ``_grad_nn_kernel``: dK, dQ from the states and their adjoints (added
    to dq, dk), dv, a resumed tile's dM_chunk0 (``_grad_tile``, DK only)."""
    _grad_tile(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, mc0, tile_seq, tile_idx, cu, pos, ainv,
               saved_m, saved_s, adj_m, adj_s, do, dq, dk, dv, deta, dla, dbeta, dmu, dmc0, nn_buf, rows, rsum,
               tsum, T, H, scale, K, V, BT, BV, HAS_ALPHA, HAS_BETA, HAS_MU, EXACT, SELF_TARGET, READ, HAS_POS,
               IS_VARLEN, PREC, False, True, ROWS, EPI)


@triton.jit
def _grad_rows_kernel(q, k, v, tile_seq, tile_idx, cu, saved_m, saved_s, adj_m, adj_s, do, rows, rsum, tsum,
                      T, H, scale,
                      K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                      HAS_MU: tl.constexpr, EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr,
                      IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    """Grid (tiles, H), before ``_grad_nn_kernel`` with ROWS (no resumed tile): every product of a
    tile with its start states (M0, S0) and end-state adjoints (dMe, dSe), so that the n×n kernel
    loads no state and runs no K-deep product. Stores, float32:

    * ``rows`` [B·T, H, slots, V] (``row_slots``): KM = K M0, dX = K dMe [, KS = K S0, dY = K dSe]
      [, VM = V M0 (self targets)] [, VS = V S0 (self targets, EXACT, μ)];
    * ``rsum`` [B·T, H, 2] (reads "after" / "before"): Σ_v dO ⊙ (Q M0) and Σ_v dO ⊙ (Q S0), the
      adjoints of the read's gate rows;
    * ``tsum`` [tiles, H, 4]: Σ M0 ⊙ dMe, Σ S0 ⊙ dMe, Σ S0 ⊙ dSe (the tile-end scalars' adjoints)."""
    i_g, i_h, i_n, s, e, resumed, rt, mt, grow, lower, strict, sel = _tile_frame(tile_seq, tile_idx, cu, cu, T, H,
                                                                                BT, IS_VARLEN, False)
    NR: tl.constexpr = row_slots(HAS_MU, EXACT, SELF_TARGET)
    rk = tl.arange(0, K)
    sbase = (i_g.to(tl.int64) * H + i_h) * K * V
    kx = _load_rows(k, grow, rk, mt, K)
    if SELF_TARGET:
        vx = _load_rows(v, grow, rk, mt, K)
    if READ != 2:
        qx = _load_rows(q, grow, rk, mt, K) * scale
    z = tl.zeros([BT], dtype=tl.float32)
    da = z
    db = z
    s_g = tl.sum(z, 0)
    s_nu = s_g
    s_m = s_g
    for c in tl.range(V // BV, num_stages=1):
        rv = c * BV + tl.arange(0, BV)
        sv = rk[:, None] * V + rv[None, :]
        M0 = tl.load(saved_m + sbase + sv).to(tl.float32)
        dMe = tl.load(adj_m + sbase + sv).to(tl.float32)
        _store_rows(_rows_of(rows, 0, V, HAS_MU), grow, rv, mt, mm(kx, M0, PREC), NR * V)
        _store_rows(_rows_of(rows, 1, V, HAS_MU), grow, rv, mt, mm(kx, dMe, PREC), NR * V)
        s_g += sum2(M0 * dMe)
        if READ != 2:
            dO = _load_rows(do, grow, rv, mt, V)
            da += tl.sum(dO * mm(qx, M0, PREC), 1)
        if SELF_TARGET:
            _store_rows(_rows_of(rows, 4, V, HAS_MU), grow, rv, mt, mm(vx, M0, PREC), NR * V)
        if HAS_MU:
            S0 = tl.load(saved_s + sbase + sv).to(tl.float32)
            dSe = tl.load(adj_s + sbase + sv).to(tl.float32)
            _store_rows(_rows_of(rows, 2, V, HAS_MU), grow, rv, mt, mm(kx, S0, PREC), NR * V)
            _store_rows(_rows_of(rows, 3, V, HAS_MU), grow, rv, mt, mm(kx, dSe, PREC), NR * V)
            s_nu += sum2(S0 * dMe)
            s_m += sum2(S0 * dSe)
            if READ != 2:
                db += tl.sum(dO * mm(qx, S0, PREC), 1)
            if SELF_TARGET and EXACT:
                _store_rows(_rows_of(rows, 5, V, HAS_MU), grow, rv, mt, mm(vx, S0, PREC), NR * V)
    if READ != 2:
        tl.store(rsum + grow * 2, da, mask=mt)
        tl.store(rsum + grow * 2 + 1, db, mask=mt)
    ts = tsum + (i_g.to(tl.int64) * H + i_h) * 4
    tl.store(ts, s_g)
    tl.store(ts + 1, s_nu)
    tl.store(ts + 2, s_m)


@triton.jit
def _grad_epilogue_kernel(q, k, v, eta, la_ptr, beta_ptr, mu_ptr, tile_seq, tile_idx, cu, pos, deta, dla, dbeta, dmu,
                          nn_buf, T, H, scale,
                          K: tl.constexpr, BT: tl.constexpr, HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr,
                          HAS_MU: tl.constexpr, EXACT: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr,
                          HAS_POS: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    """Grid (tiles, H), between ``_grad_nn_kernel`` (EPI: its V-block loop only) and
    ``_grad_dk_kernel``: the after-loop n×n algebra of a tile (``_nn_adjoints``: dη, dβ, the gate
    gradients d log α, dμ) from the accumulators and row sums the first kernel left in the tile's
    hand-off slots (5 of them, ``_nn_slots``), whose first two it then overwrites with the n×n shares
    of dq, dk. A kernel of its own so that neither holds the other's live set (sm_90 probe: the
    after-loop algebra holds about half of the n×n kernel's spills). Not for self targets with
    EXACT (their 2n×2n ZA)."""
    i_g, i_h, i_n, s, e, resumed, rt, mt, grow, lower, strict, sel = _tile_frame(tile_seq, tile_idx, cu, pos, T, H,
                                                                                BT, IS_VARLEN, HAS_POS)
    rk = tl.arange(0, K)
    SLOTS: tl.constexpr = _nn_slots(SELF_TARGET and EXACT, True)
    nb = _nn_tile(nn_buf, i_g, i_h, H, rt, BT, SLOTS)
    Z2 = tl.load(nb)
    Z1 = tl.load(nb + BT * BT)
    ZA = tl.load(nb + 2 * BT * BT)
    ZP = tl.load(nb + 3 * BT * BT)
    vb = _nn_vectors(nn_buf, i_g, i_h, H, rt, BT, SLOTS)
    sc = tl.load(vb + 9 * BT, mask=rt < 3, other=0.0)
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip, dg, dgp, dnu, dnup, dm, dD, dQK, dKS, dVK, kx, qx = \
        _nn_adjoints(q, k, v, la_ptr, beta_ptr, mu_ptr, deta, dbeta, grow, mt, rt, rk, sel, lower, strict, scale,
                     et, Z2, Z1, ZA, ZP, tl.load(vb), tl.load(vb + BT), tl.load(vb + 2 * BT), tl.load(vb + 3 * BT),
                     tl.load(vb + 4 * BT), tl.load(vb + 5 * BT), tl.load(vb + 6 * BT), tl.load(vb + 7 * BT),
                     tl.load(vb + 8 * BT), tl.where(sel, tl.sum(tl.where(rt == 0, sc, 0.0), 0), 0.0),
                     tl.where(sel, tl.sum(tl.where(rt == 1, sc, 0.0), 0), 0.0),
                     tl.where(sel, tl.sum(tl.where(rt == 2, sc, 0.0), 0), 0.0),
                     K, BT, HAS_ALPHA, HAS_BETA, HAS_MU, EXACT, SELF_TARGET, READ, PREC)
    _store_nn_shares(nb, dQK, dKS, dVK, BT, HAS_BETA, EXACT, SELF_TARGET, READ)
    _store_gate_grads(dla, dmu, grow, mt, lower, strict, G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip,
                      dg, dgp, dnu, dnup, dm, dD, HAS_ALPHA, HAS_MU, PREC)
