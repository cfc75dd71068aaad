"""Triton token-gradient kernels of ``linear_memory`` for plain tiles: no β, no μ, chunk_size > 1,
no resumed chunk (η and optionally log α). There a tile's steps W = −η E need no solve, so the
gradients split like a chunked delta rule's, into two tile-parallel kernels with small live sets
instead of ``_grad_kernel``'s one program per (tile, head) walking every V block:

* ``_plain_dv_kernel`` — grid (V/BV, tiles, H): per V block the errors E = K M0 − target, the
  steps W, their adjoint

      dW = Φ[n] ⊙ (K dMe) + (QKᵀ ⊙ Φ_m)ᵀ dO,   dE = −η dW   (Φ_m: Φ or Φ_prev masked by the read)

  dv = −dE (external targets), and the per-row partial sums over the block: dη = −Σ E ⊙ dW and,
  with log α, Σ W ⊙ (K dMe) (row n of dΦ), Σ dO ⊙ (Q M0) (the read's dγ) and Σ M0 ⊙ dMe (dγ_n,
  in the last token's row). W and dE go to a scratch buffer for the second kernel.
* ``_plain_dqk_kernel`` — grid (K/BK, tiles, H): per K block, with Z = dO Wᵀ (n×n, all of V),

      dQ = (a ⊙ dO) M0ᵀ + (Z ⊙ Φ_m) K,   dK = (Φ[n] ⊙ W) dMeᵀ + dE M0ᵀ + (Z ⊙ Φ_m)ᵀ Q

  (the "chunk" read: dQ = dO M0ᵀ; self targets: dE M0ᵀ also gives dv = −dE M0ᵀ). The program of
  the first K block sums the partials into dη and, with log α, turns the gate adjoints into
  d log α (``gate_grads``).

The tile-start states M0 and the tile-end adjoints dMe come from the forward and
``_state_bwd_kernel`` as for ``_grad_kernel``.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import gate_grads, mm, row_of, tile_gates
from .triton_fwd import _load_rows, _store_rows, _tile_rows


@triton.jit
def _plain_rows(tile_seq, tile_idx, cu, T, H, BT: tl.constexpr, IS_VARLEN: tl.constexpr):
    """Rows of this program's tile (program_id 1) and head (program_id 2): (arange(BT), valid mask,
    flat row·H + head per token, last-token one-hot, index of the tile's [K, V] state)."""
    i_g = tl.program_id(1)
    i_h = tl.program_id(2)
    i_n, row0, s, e, resumed = _tile_rows(tile_seq, tile_idx, cu, cu, i_g, T, BT, IS_VARLEN, False)
    rt = tl.arange(0, BT)
    mt = s + rt < e
    grow = (row0 + s + rt).to(tl.int64) * H + i_h
    sel = rt == (e - s - 1)
    return rt, mt, grow, sel, (i_g.to(tl.int64) * H + i_h)


@triton.jit
def _k_block(tile_seq, tile_idx, cu, T, H, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr,
             BK: tl.constexpr, IS_VARLEN: tl.constexpr):
    """A K-block program's frame (K block program_id 0): (its index, ``_plain_rows``' rows, valid
    mask, flat rows and last-token one-hot, every K column, the block's K columns, every V column,
    the offsets of the block's [BK, V] rows in the tile's [K, V] state)."""
    i_k = tl.program_id(0)
    rt, mt, grow, sel, tile = _plain_rows(tile_seq, tile_idx, cu, T, H, BT, IS_VARLEN)
    rkb = i_k * BK + tl.arange(0, BK)
    rv = tl.arange(0, V)
    return i_k, rt, mt, grow, sel, tl.arange(0, K), rkb, rv, tile * K * V + rkb[:, None] * V + rv[None, :]


@triton.jit
def _by_read(after, before, READ: tl.constexpr):
    """``after`` for the "after" read, ``before`` for "before" (Φ or Φ_prev, γ or γ_prev)."""
    if READ == 0:
        x = after
    else:
        x = before
    return x


@triton.jit
def _read_tri(X, rt, READ: tl.constexpr):
    """X where the read sees token j from token t — t ≥ j ("after"), t > j ("before") — else 0."""
    if READ == 0:
        y = tl.where(rt[:, None] >= rt[None, :], X, 0.0)
    else:
        y = tl.where(rt[:, None] > rt[None, :], X, 0.0)
    return y


@triton.jit
def _read_mask(qx, kx, Phi, Phip, rt, READ: tl.constexpr, PREC: tl.constexpr):
    """(QKᵀ masked by the read, the same times its gate Φ_m): "after" keeps t ≥ j with Φ, "before"
    t > j with Φ_prev."""
    QKm = _read_tri(mm(qx, tl.trans(kx), PREC), rt, READ)
    return QKm, QKm * _by_read(Phi, Phip, READ)


@triton.jit
def _plain_dla(G, Gp, g, gp, D, Dp, m, mp, Z, QKm, r_phi, da, dg_n, de, sel, rt, BT: tl.constexpr,
               READ: tl.constexpr, PREC: tl.constexpr):
    """d log α of a tile from its gate adjoints: row n of dΦ (``r_phi`` = Σ W ⊙ K dMe), the read's
    Z ⊙ QKᵀ, dγ of the read (``da`` = Σ dO ⊙ Q M0) and dγ_n (``dg_n`` = Σ M0 ⊙ dMe). dγ_prev starts
    as ``de`` (the rows' dη) times 0, as _plain_dqk_kernel formed it before this helper: the same
    sm_90 instructions (compare_ptx_triton.py)."""
    lower = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    zero = tl.zeros([BT, BT], dtype=tl.float32)
    dPhi = tl.where(sel[:, None], r_phi[None, :], 0.0)
    dPhip = zero
    dg = tl.where(sel, dg_n, 0.0)
    dgp = de * 0.0
    if READ == 0:
        dPhi += Z * QKm
        dg += da
    elif READ == 1:
        dPhip += Z * QKm
        dgp += da
    dla_v, dmu_v = gate_grads(G, Gp, g, gp, D, Dp, m, mp, zero, zero, dPhi, dPhip, dg, dgp, dg, dgp, dg,
                              zero, lower, strict, True, False, PREC)
    return dla_v


@triton.jit
def _plain_dv_kernel(q, k, v, eta, la_ptr, tile_seq, tile_idx, cu, saved_m, adj_m, do,
                     dv, wde, part, T, H, n_rows, scale,
                     K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
                     HAS_ALPHA: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr,
                     NP: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    """dv (external targets), W and dE ([B·T, H, 2, V] ``wde``) and the row partials
    ([V/BV, B·T·H = n_rows, NP] ``part``: dη, and with log α Σ W⊙dX, Σ dO⊙QM0, Σ M0⊙dMe) of one
    V block."""
    i_v = tl.program_id(0)
    rt, mt, grow, sel, tile = _plain_rows(tile_seq, tile_idx, cu, T, H, BT, IS_VARLEN)
    rk = tl.arange(0, K)
    rv = i_v * BV + tl.arange(0, BV)
    sv = tile * K * V + rk[:, None] * V + rv[None, :]
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, la_ptr, grow, mt, rt, BT, HAS_ALPHA,
                                                                  False, PREC)
    kx = _load_rows(k, grow, rk, mt, K)
    M0 = tl.load(saved_m + sv).to(tl.float32)
    dMe = tl.load(adj_m + sv).to(tl.float32)
    if SELF_TARGET:
        E = mm(kx - _load_rows(v, grow, rk, mt, K), M0, PREC)
    else:
        E = mm(kx, M0, PREC) - _load_rows(v, grow, rv, mt, V)
    W = -et[:, None] * E
    dX = mm(kx, dMe, PREC)
    dW = row_of(Phi, sel)[:, None] * dX
    if READ != 2:
        dO = _load_rows(do, grow, rv, mt, V)
        qx = _load_rows(q, grow, rk, mt, K) * scale
        QKm, Hm = _read_mask(qx, kx, Phi, Phip, rt, READ, PREC)
        dW += mm(tl.trans(Hm), dO, PREC)
    dE = -et[:, None] * dW
    if not SELF_TARGET:
        _store_rows(dv, grow, rv, mt, -dE, V)
    _store_rows(wde, grow * 2, rv, mt, W, V)
    _store_rows(wde, grow * 2 + 1, rv, mt, dE, V)
    pp = part + (i_v * n_rows + grow) * NP
    tl.store(pp, -tl.sum(E * dW, 1), mask=mt)
    if HAS_ALPHA:
        tl.store(pp + 1, tl.sum(W * dX, 1), mask=mt)
        if READ != 2:
            tl.store(pp + 2, tl.sum(dO * mm(qx, M0, PREC), 1), mask=mt)
        dg_n = tl.sum(tl.sum(M0 * dMe, 1), 0)
        tl.store(pp + 3, tl.where(sel, dg_n, 0.0), mask=mt)


@triton.jit
def _plain_dqk_kernel(q, k, v, eta, la_ptr, tile_seq, tile_idx, cu, saved_m, adj_m, do,
                      dq, dk, dv, deta, dla, wde, part, T, H, n_rows, scale,
                      K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, NV: tl.constexpr,
                      HAS_ALPHA: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr,
                      NP: tl.constexpr, IS_VARLEN: tl.constexpr, PREC: tl.constexpr):
    """dq, dk (and dv of self targets) of one K block; the first K block also dη and d log α."""
    i_k, rt, mt, grow, sel, rk, rkb, rv, sv = _k_block(tile_seq, tile_idx, cu, T, H, K, V, BT, BK, IS_VARLEN)
    G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, la_ptr, grow, mt, rt, BT, HAS_ALPHA,
                                                                  False, PREC)
    M0 = tl.load(saved_m + sv).to(tl.float32)
    W = _load_rows(wde, grow * 2, rv, mt, V)
    dE = _load_rows(wde, grow * 2 + 1, rv, mt, V)
    dMe = tl.load(adj_m + sv).to(tl.float32)
    dK = mm(row_of(Phi, sel)[:, None] * W, tl.trans(dMe), PREC)
    dEF = mm(dE, tl.trans(M0), PREC)
    dK += dEF
    if SELF_TARGET:
        _store_rows(dv, grow, rkb, mt, -dEF, K)
    dO = _load_rows(do, grow, rv, mt, V)
    if READ == 2:
        dQ = mm(dO, tl.trans(M0), PREC)
        Z = tl.zeros([BT, BT], dtype=tl.float32)      # no read share (the "chunk" read)
        QKm = Z
    else:
        kx = _load_rows(k, grow, rk, mt, K)
        qx = _load_rows(q, grow, rk, mt, K) * scale
        QKm, Hm = _read_mask(qx, kx, Phi, Phip, rt, READ, PREC)
        Z = mm(dO, tl.trans(W), PREC)
        dQK = _read_tri(Z * _by_read(Phi, Phip, READ), rt, READ)
        dQ = mm(_by_read(g, gp, READ)[:, None] * dO, tl.trans(M0), PREC)
        dQ += mm(dQK, _load_rows(k, grow, rkb, mt, K), PREC)
        dK += mm(tl.trans(dQK), _load_rows(q, grow, rkb, mt, K) * scale, PREC)
    _store_rows(dq, grow, rkb, mt, dQ * scale, K)
    _store_rows(dk, grow, rkb, mt, dK, K)

    if i_k == 0:
        de = tl.zeros([BT], dtype=tl.float32)
        r_phi = de
        da = de
        dgs = de
        for c in tl.static_range(NV):
            pp = part + (c * n_rows + grow) * NP
            de += tl.load(pp, mask=mt, other=0.0)
            if HAS_ALPHA:
                r_phi += tl.load(pp + 1, mask=mt, other=0.0)
                if READ != 2:
                    da += tl.load(pp + 2, mask=mt, other=0.0)
                dgs += tl.load(pp + 3, mask=mt, other=0.0)
        tl.store(deta + grow, de, mask=mt)
        if HAS_ALPHA:
            tl.store(dla + grow, _plain_dla(G, Gp, g, gp, D, Dp, m, mp, Z, QKm, r_phi, da, tl.sum(dgs, 0), de, sel, rt,
                                            BT, READ, PREC), mask=mt)


@triton.jit
def _plain_d_kernel(q, k, v, eta, la_ptr, tile_seq, tile_idx, cu, saved_m, adj_m, do, d_rows, dw,
                    dq, dk, dv, deta, dla, T, H, scale,
                    K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                    HAS_ALPHA: tl.constexpr, READ: tl.constexpr, IS_VARLEN: tl.constexpr,
                    KEEP_D: tl.constexpr, PREC: tl.constexpr):
    """All token gradients of a PLAIN_A tile's K block, from the rows D = V − K M0 (kept by the
    forward walk with KEEP_D, else formed here: BK = K, the program holds all of M0) and the steps'
    adjoint dW the backward walk stored (W = ηD, dE = −η dW): dq, dk as
    ``_plain_dqk_kernel``; the first K block also dv = η dW and dη = Σ D ⊙ dW. With log α each K
    block adds its share of d log α to ``dla`` (zeroed; the gate adjoints are linear in the
    partial sums over K: Σ K ⊙ (W dMeᵀ), Σ Q ⊙ (dO M0ᵀ), Σ M0 ⊙ dMe, and the first block adds the
    read's Z ⊙ QKᵀ)."""
    i_k, rt, mt, grow, sel, rk, rkb, rv, sv = _k_block(tile_seq, tile_idx, cu, T, H, K, V, BT, BK, IS_VARLEN)
    G, Gp, g, gp, Dg, Dgp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, la_ptr, grow, mt, rt, BT, HAS_ALPHA,
                                                                    False, PREC)
    et = tl.load(eta + grow, mask=mt, other=0.0).to(tl.float32)
    M0 = tl.load(saved_m + sv).to(tl.float32)
    if KEEP_D:
        Dr = _load_rows(d_rows, grow, rv, mt, V)
    else:
        Dr = _load_rows(v, grow, rv, mt, V) - mm(_load_rows(k, grow, rk, mt, K), M0, PREC)
    dW = _load_rows(dw, grow, rv, mt, V)
    W = et[:, None] * Dr
    dMe = tl.load(adj_m + sv).to(tl.float32)
    dKa = mm(W, tl.trans(dMe), PREC)
    dK = row_of(Phi, sel)[:, None] * dKa - mm(et[:, None] * dW, tl.trans(M0), PREC)
    dO = _load_rows(do, grow, rv, mt, V)
    P = mm(dO, tl.trans(M0), PREC)
    qb = _load_rows(q, grow, rkb, mt, K) * scale
    if READ == 2:
        dQ = P
        Z = tl.zeros([BT, BT], dtype=tl.float32)      # no read share (the "chunk" read)
        QKm = Z
    else:
        kx = _load_rows(k, grow, rk, mt, K)
        QKm, Hm = _read_mask(_load_rows(q, grow, rk, mt, K) * scale, kx, Phi, Phip, rt, READ, PREC)
        Z = mm(dO, tl.trans(W), PREC)
        dQK = _read_tri(Z * _by_read(Phi, Phip, READ), rt, READ)
        dQ = _by_read(g, gp, READ)[:, None] * P + mm(dQK, _load_rows(k, grow, rkb, mt, K), PREC)
        dK += mm(tl.trans(dQK), qb, PREC)
    _store_rows(dq, grow, rkb, mt, dQ * scale, K)
    _store_rows(dk, grow, rkb, mt, dK, K)
    de = tl.sum(Dr * dW, 1)
    if i_k == 0:
        _store_rows(dv, grow, rv, mt, et[:, None] * dW, V)
        tl.store(deta + grow, de, mask=mt)
    if HAS_ALPHA:
        r_phi = tl.sum(_load_rows(k, grow, rkb, mt, K) * dKa, 1)
        da = tl.sum(qb * P, 1)
        first = (i_k == 0).to(tl.float32)
        tl.atomic_add(dla + grow, _plain_dla(G, Gp, g, gp, Dg, Dgp, m, mp, Z * first, QKm, r_phi, da,
                                             tl.sum(tl.sum(M0 * dMe, 1), 0), de, sel, rt, BT, READ, PREC),
                      mask=mt, sem="relaxed")
