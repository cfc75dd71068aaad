"""Triton device functions shared by the forward and backward kernels of ``mlp_memory``.

Gate matrices of one tile (DESIGN_chunk_algebra §1), their adjoints, the unit-lower-triangular
inverse (DESIGN §2), row selection, the activation φ with φ' and φ'' (φ'' enters the backward
through d = (W1ᵀe) ⊙ φ'(z)), and the offsets of one F block of the weights.

Conventions: a tile holds BT token rows (rt = arange(BT)); padded rows have log α = 0, β = η = 0,
μ = 1 and zero inputs, which leaves every valid row unchanged. Everything is float32.
"""
from __future__ import annotations

import triton
import triton.language as tl

_INV_SQRT2 = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def act(z, ACT: tl.constexpr):
    """φ(z): exact (erf) GELU for ACT = 0, SiLU for ACT = 1."""
    if ACT == 0:
        return 0.5 * z * (1.0 + tl.erf(z * _INV_SQRT2))
    else:
        return z * tl.sigmoid(z)


@triton.jit
def act_grad(z, ACT: tl.constexpr):
    """φ'(z)."""
    if ACT == 0:
        return 0.5 * (1.0 + tl.erf(z * _INV_SQRT2)) + z * tl.exp(-0.5 * z * z) * _INV_SQRT_2PI
    else:
        s = tl.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))


@triton.jit
def act_grad2(z, ACT: tl.constexpr):
    """φ''(z): GELU'' = pdf(z)(2 − z²); SiLU'' = σ(1 − σ)(2 + z(1 − 2σ))."""
    if ACT == 0:
        return tl.exp(-0.5 * z * z) * _INV_SQRT_2PI * (2.0 - z * z)
    else:
        s = tl.sigmoid(z)
        return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))


@triton.jit
def seq_bounds(cu, pos, i_n, T, IS_VARLEN: tl.constexpr, HAS_POS: tl.constexpr):
    """(first flat row, length, start position inside its chunk) of sequence i_n."""
    if IS_VARLEN:
        bos = tl.load(cu + i_n).to(tl.int64)
        row0 = bos
        L = (tl.load(cu + i_n + 1).to(tl.int64) - bos).to(tl.int32)
    else:
        row0 = i_n.to(tl.int64) * T
        L = i_n * 0 + T
    if HAS_POS:
        p = tl.load(pos + i_n).to(tl.int32)
    else:
        p = i_n * 0
    return row0, L, p


@triton.jit
def decay(la, rt, HAS_ALPHA: tl.constexpr):
    """Γ[τ,t] = Π_{l=t+1..τ} α_l (τ ≥ t), Γ_prev[t,j] = Γ[t−1,j] (j < t), γ_t, γ_{t−1}."""
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
def momentum(mu, rt):
    """D[i,t] = Π_{l=t+1..i} μ_l (i ≥ t), D_prev[l,t] = D[l−1,t] (t < l), m_t = Π_{l≤t} μ_l and
    m_{t−1}; exact for μ = 0 and μ < 0 (log|μ| summed over nonzero factors, zeros and signs
    counted)."""
    lower = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    zi = (mu == 0.0).to(tl.int32)
    ni = (mu < 0.0).to(tl.int32)
    lm = tl.where(zi == 1, 0.0, tl.log(tl.where(zi == 1, 1.0, tl.abs(mu))))
    cl = tl.cumsum(lm, 0)
    zc = tl.cumsum(zi, 0)
    nc = tl.cumsum(ni, 0)
    clp = cl - lm
    zcp = zc - zi
    ncp = nc - ni
    sg = 1.0 - 2.0 * ((nc[:, None] - nc[None, :]) % 2).to(tl.float32)
    D = tl.where(lower & (zc[:, None] == zc[None, :]), sg * tl.exp(tl.where(lower, cl[:, None] - cl[None, :], 0.0)), 0.0)
    sgp = 1.0 - 2.0 * ((ncp[:, None] - nc[None, :]) % 2).to(tl.float32)
    Dp = tl.where(strict & (zcp[:, None] == zc[None, :]),
                  sgp * tl.exp(tl.where(strict, clp[:, None] - cl[None, :], 0.0)), 0.0)
    m = tl.where(zc == 0, (1.0 - 2.0 * (nc % 2).to(tl.float32)) * tl.exp(cl), 0.0)
    mp = tl.where(zcp == 0, (1.0 - 2.0 * (ncp % 2).to(tl.float32)) * tl.exp(clp), 0.0)
    return D, Dp, m, mp


@triton.jit
def row_of(X, sel):
    """Row ``sel`` (one-hot over rows) of the square matrix X, as a vector over columns."""
    return tl.sum(tl.where(sel[:, None], X, 0.0), 0)


@triton.jit
def at(x, sel):
    """x[sel] for a one-hot ``sel`` (0 when nothing is selected)."""
    return tl.sum(tl.where(sel, x, 0.0), 0)


@triton.jit
def sum2(X):
    return tl.sum(tl.sum(X, 1), 0)


@triton.jit
def unit_lower_inverse(A, rt, LOG2BT: tl.constexpr, PREC: tl.constexpr):
    """(I + A)⁻¹ for strictly lower-triangular A [BT, BT] by block doubling: with B_s the inverse
    of the block-diagonal part in blocks of s, B_2s = B_s − B_s L B_s, L = the lower-left s×s
    block of every 2s block of A."""
    Bm = tl.where(rt[:, None] == rt[None, :], 1.0, 0.0)
    for lvl in tl.static_range(LOG2BT):
        s = 1 << lvl
        br = rt // s
        sel = ((br % 2) == 1)[:, None] & (br[None, :] == (br - 1)[:, None])
        Lo = tl.where(sel, A, 0.0)
        Bm = Bm - tl.dot(tl.dot(Bm, Lo, input_precision=PREC), Bm, input_precision=PREC)
    return Bm


@triton.jit
def gate_grads(G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip, dg, dgp, dnu, dnup, dm, dD, rt,
               HAS_ALPHA: tl.constexpr, HAS_MU: tl.constexpr, PREC: tl.constexpr):
    """(d log α, dμ) per row from the adjoints of the tile's gate quantities.

    Φ = Γ D, Φ_prev = Γ_prev D, ν = Γ m, ν_prev = Γ_prev m (with momentum; else Φ = Γ and the
    D-side inputs are ignored). dμ is zero-safe: ∂D[i,t]/∂μ_l = D[i,l] D[l−1,t]. Γ depends on the
    cumulative sum c of log α: ∂Γ[τ,t]/∂c = Γ (δ_τ − δ_t), so d log α is a reverse cumsum."""
    lower = rt[:, None] >= rt[None, :]
    strict = rt[:, None] > rt[None, :]
    dmu_v = g * 0.0
    if HAS_MU:
        dPhi = tl.where(lower, dPhi, 0.0)
        dPhip = tl.where(strict, dPhip, 0.0)
        dG += tl.dot(dPhi, tl.trans(D), input_precision=PREC) + dnu[:, None] * m[None, :]
        dGp += tl.dot(dPhip, tl.trans(D), input_precision=PREC) + dnup[:, None] * m[None, :]
        dD += tl.dot(tl.trans(G), dPhi, input_precision=PREC) + tl.dot(tl.trans(Gp), dPhip, input_precision=PREC)
        dm += tl.sum(G * dnu[:, None], 0) + tl.sum(Gp * dnup[:, None], 0)
        dD = tl.where(lower, dD, 0.0)
        dmu_v = tl.sum(tl.dot(tl.trans(D), dD, input_precision=PREC) * Dp, 1) + mp * tl.sum(D * dm[:, None], 0)
    else:
        dG += dPhi
        dGp += dPhip
    dla_v = g * 0.0
    if HAS_ALPHA:
        gG = tl.where(lower, dG * G, 0.0)
        gGp = tl.where(strict, dGp * Gp, 0.0)
        rGp = tl.sum(gGp, 1)
        dc = tl.sum(gG, 1) - tl.sum(gG, 0) + rGp - tl.sum(gGp, 0) + dg * g + dgp * gp
        dla_v = tl.sum(dc, 0) - tl.cumsum(dc, 0) + dc - rGp - dgp * gp
    return dla_v, dmu_v


@triton.jit
def off_w1(rv, f0, rf, F: tl.constexpr):
    """Offsets of the block W1[:, f0:f0+BF] of a [V, F] matrix."""
    return rv[:, None] * F + (f0 + rf)[None, :]


@triton.jit
def off_w2(rf, f0, rk, K: tl.constexpr):
    """Offsets of the block W2[f0:f0+BF, :] of an [F, K] matrix."""
    return (f0 + rf)[:, None] * K + rk[None, :]


@triton.jit
def mm(a, b, PREC: tl.constexpr):
    """a @ b with float32 accumulation: operands rounded to bfloat16 / float16 for PREC "bf16" /
    "fp16" (16-bit inputs), else tl.dot's input precision ("tf32", "tf32x3", "ieee"). "bf16_emu":
    the same rounding with a float32 product (the interpreter's bfloat16 dot is wrong)."""
    if PREC == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    elif PREC == "bf16_emu":
        return tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32), input_precision="ieee")
    elif PREC == "fp16":
        return tl.dot(a.to(tl.float16), b.to(tl.float16))
    else:
        return tl.dot(a, b, input_precision=PREC)


@triton.jit
def exchange(P, xch, ctr, n_done, j, rt, rv, NS: tl.constexpr, BT: tl.constexpr, V: tl.constexpr):
    """Σ over the NS F-slice programs of one (sequence, head) of their partial [BT, V] matrices P.

    Program j stores P in slot (n_done % 2) of xch [2, NS, BT, V], arrives at the counter ``ctr``
    (release) and waits (acquire) until all NS programs have arrived n_done + 1 times, then sums
    the slot (loads bypass L1). Two slots suffice: a program can only overwrite a slot after every
    program has passed the next exchange, i.e. finished reading it. Spinning is sound because the
    launcher makes NS > 1 launches cooperative (all programs co-resident, or the launch fails)."""
    if NS == 1:
        return P
    else:
        slot = xch + (n_done % 2) * NS * BT * V
        tile = rt[:, None] * V + rv[None, :]
        tl.store(slot + j * BT * V + tile, P)
        tl.debug_barrier()
        tl.atomic_add(ctr, 1, sem="release", scope="gpu")
        want = NS * (n_done + 1)
        seen = tl.atomic_add(ctr, 0, sem="acquire", scope="gpu")
        while seen < want:
            seen = tl.atomic_add(ctr, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()
        tot = tl.load(slot + tile, cache_modifier=".cg")
        for jj in tl.static_range(1, NS):
            tot += tl.load(slot + jj * BT * V + tile, cache_modifier=".cg")
        return tot
