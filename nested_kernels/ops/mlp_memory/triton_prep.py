"""Tile-parallel preparation for the sequential ``mlp_memory`` kernels, used with
NESTED_KERNELS_MLP_TRITON_PREP=1: everything of a tile that does not depend on the memory state,
computed once for all tiles before the chunk walk instead of by every (F-slice) program of every
tile.

``_prep_kernel`` — grid (tiles, H) over the tile table (``tile_seq``, ``tile_idx``, as in the
linear_memory prep kernel). Per tile: the gate matrices (``tile_gates``), KKᵀ, (I + A_β)⁻¹ by
block doubling and QKᵀ, stored as float32 per-token rows of the tile (never per-token K×V):

* ``pv`` [B·T, H, 8]: per token t γ_t, γ_prev,t, ν_t, ν_prev,t, m_t and the entries t of the last
  rows of Φ, Γ, D (the coefficients of the tile-end update; columns ``PV_*``);
* ``ai`` [B·T, H, BT]: the rows of (I + A_β)⁻¹ (with β; the kernels' ``sv_ai``);
* ``pk`` [B·T, H, BT]: the rows of strict(KKᵀ) ⊙ Φ_prev (with β);
* ``qp``, ``pm`` [B·T, H, BT]: the rows of QKᵀ ⊙ Φ_m and of Φ_m (reads after / before: Φ_m is Φ
  or Φ_prev);
* ``qg`` [B·T, H, BT]: the rows of QKᵀ ⊙ Γ_m (with β and μ; without μ Φ = Γ and ``qp`` serves).

Rows past the end of a tile are not stored; ``prep_tile`` / ``prep_end`` load them as 0, which
leaves every valid row unchanged (padded tokens have zero k, q, η and β).
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import at, mm, row_of, tile_gates, unit_lower_inverse
from ..linear_memory.triton_fwd import _load_rows, _store_rows, _tile_rows
from .triton_backend import PREP_PV_COLS

PV_G = tl.constexpr(0)
PV_GP = tl.constexpr(1)
PV_NU = tl.constexpr(2)
PV_NUP = tl.constexpr(3)
PV_M = tl.constexpr(4)
PV_PHIL = tl.constexpr(5)
PV_GL = tl.constexpr(6)
PV_DL = tl.constexpr(7)
NPV = tl.constexpr(PREP_PV_COLS)


@triton.jit
def _vec(pv, grow, mt, COL: tl.constexpr):
    """Column COL of ``pv`` for the rows ``grow`` [BT] (0 past the tile)."""
    return tl.load(pv + grow * NPV + COL, mask=mt, other=0.0)


@triton.jit
def prep_tile(pv, ai, pk, qp, qg, pm, grow, mt, rt, BT: tl.constexpr, HAS_BETA: tl.constexpr,
              HAS_MU: tl.constexpr, READ: tl.constexpr):
    """(γ_prev, ν_prev [BT]; (I + A_β)⁻¹, strict(KKᵀ) ⊙ Φ_prev, QKᵀ ⊙ Φ_m, QKᵀ ⊙ Γ_m, Φ_m
    [BT, BT]; γ_m, ν_m [BT]) of one tile, m the read's row (t after, t − 1 before); zeros where
    the configuration has none."""
    zv = tl.zeros([BT], dtype=tl.float32)
    zm = tl.zeros([BT, BT], dtype=tl.float32)
    gp, nup, Ai, Pk, QP, QG, Pm, gm, nm = zv, zv, zm, zm, zm, zm, zm, zv, zv
    if HAS_BETA:
        gp = _vec(pv, grow, mt, PV_GP)
        Ai = _load_rows(ai, grow, rt, mt, BT)
        Pk = _load_rows(pk, grow, rt, mt, BT)
        if HAS_MU:
            nup = _vec(pv, grow, mt, PV_NUP)
    if READ != 2:
        QP = _load_rows(qp, grow, rt, mt, BT)
        Pm = _load_rows(pm, grow, rt, mt, BT)
        QG = QP
        if HAS_BETA:
            if HAS_MU:
                QG = _load_rows(qg, grow, rt, mt, BT)
        if READ == 0:
            gm = _vec(pv, grow, mt, PV_G)
            if HAS_MU:
                nm = _vec(pv, grow, mt, PV_NU)
        else:
            gm = _vec(pv, grow, mt, PV_GP)
            if HAS_MU:
                nm = _vec(pv, grow, mt, PV_NUP)
    return gp, nup, Ai, Pk, QP, QG, Pm, gm, nm


@triton.jit
def prep_end(pv, grow, mt, sel, empty, HAS_MU: tl.constexpr):
    """The tile-end coefficients γ_n, Φ[n], Γ[n], ν_n, m_n, D[n] (n the tile's last row ``sel``;
    γ_n = m_n = 1 for an empty tile; ν_n, m_n, D[n] are 0 without μ)."""
    gL = at(_vec(pv, grow, mt, PV_G), sel) + empty
    PhiL = _vec(pv, grow, mt, PV_PHIL)
    GL = _vec(pv, grow, mt, PV_GL)
    nuL = gL * 0.0
    mL = nuL
    DL = PhiL * 0.0
    if HAS_MU:
        nuL = at(_vec(pv, grow, mt, PV_NU), sel)
        mL = at(_vec(pv, grow, mt, PV_M), sel) + empty
        DL = _vec(pv, grow, mt, PV_DL)
    return gL, PhiL, GL, nuL, mL, DL


@triton.jit
def gate_end(g, Phi, G, nu, m, D, sel, empty):
    """``prep_end``'s coefficients from the tile's gate matrices (``tile_gates``; without μ its
    placeholders give ν_n = 0, m_n = 1 for an empty tile and D[n] = Γ[n], all unused then)."""
    return at(g, sel) + empty, row_of(Phi, sel), row_of(G, sel), at(nu, sel), at(m, sel) + empty, row_of(D, sel)


@triton.jit
def _prep_kernel(q, k, la_ptr, beta_ptr, mu_ptr, tile_seq, tile_idx, cu, pos,
                 pv, ai, pk, qp, qg, pm, T, H, scale,
                 K: tl.constexpr, BT: tl.constexpr, LOG2BT: tl.constexpr,
                 HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                 READ: tl.constexpr, HAS_POS: tl.constexpr, IS_VARLEN: tl.constexpr,
                 PREC: tl.constexpr, GPREC: tl.constexpr):
    """Program (global tile, head): the rows of the module docstring for one tile. PREC: operand
    precision of KKᵀ and QKᵀ, GPREC: of the gate products and (I + A_β)⁻¹ (as in the sequential
    kernels)."""
    i_g = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, row0, s, e, resumed = _tile_rows(tile_seq, tile_idx, cu, pos, i_g, T, BT, IS_VARLEN, HAS_POS)
    rt = tl.arange(0, BT)
    rk = tl.arange(0, K)
    mt = s + rt < e
    grow = (row0 + s + rt).to(tl.int64) * H + i_h
    strict = rt[:, None] > rt[None, :]
    sel = rt == (e - s - 1)

    G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup = tile_gates(la_ptr, mu_ptr, grow, mt, rt, BT,
                                                                HAS_ALPHA, HAS_MU, GPREC)
    tl.store(pv + grow * NPV + PV_G, g, mask=mt)
    tl.store(pv + grow * NPV + PV_GP, gp, mask=mt)
    tl.store(pv + grow * NPV + PV_PHIL, row_of(Phi, sel), mask=mt)
    tl.store(pv + grow * NPV + PV_GL, row_of(G, sel), mask=mt)
    if HAS_MU:
        tl.store(pv + grow * NPV + PV_NU, nu, mask=mt)
        tl.store(pv + grow * NPV + PV_NUP, nup, mask=mt)
        tl.store(pv + grow * NPV + PV_M, m, mask=mt)
        tl.store(pv + grow * NPV + PV_DL, row_of(D, sel), mask=mt)
    kx = _load_rows(k, grow, rk, mt, K)
    if HAS_BETA:
        bt = tl.load(beta_ptr + grow, mask=mt, other=0.0).to(tl.float32)
        KK = mm(kx, tl.trans(kx), PREC)
        Ai = unit_lower_inverse(tl.where(strict, KK * Gp * bt[None, :], 0.0), rt, LOG2BT, GPREC)
        _store_rows(ai, grow, rt, mt, Ai, BT)
        _store_rows(pk, grow, rt, mt, tl.where(strict, KK * Phip, 0.0), BT)
    if READ != 2:
        QK = mm(_load_rows(q, grow, rk, mt, K) * scale, tl.trans(kx), PREC)
        if READ == 0:
            Gm = G
            Pm = Phi
        else:
            Gm = Gp
            Pm = Phip
        _store_rows(qp, grow, rt, mt, QK * Pm, BT)
        _store_rows(pm, grow, rt, mt, Pm, BT)
        if HAS_BETA:
            if HAS_MU:
                _store_rows(qg, grow, rt, mt, QK * Gm, BT)
