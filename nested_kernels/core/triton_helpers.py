"""Triton device functions shared by several kernels (imported only by kernel modules, so that
importing the package never imports Triton).

* ``act`` / ``act_grad`` / ``act_grad2`` — φ, φ' and φ'' of the MLP memories: exact (erf) GELU
  (ACT = 0) and SiLU (ACT = 1), in float32.
* ``seq_bounds`` — (first flat row, length, start position inside its chunk) of one sequence.
* ``decay`` / ``momentum`` — the gate matrices of one tile (DESIGN_chunk_algebra §1): Γ, Γ_prev,
  γ, γ_prev from log α and D, D_prev, m, m_prev from μ (rt = arange(BT) indexes the tile's rows).
* ``tile_gates`` — all gate matrices of one tile loaded from its log α / μ rows: decay, momentum
  and their products Φ = Γ D, Φ_prev = Γ_prev D, ν, ν_prev.
* ``gate_grads`` — (d log α, dμ) per row from the adjoints of those gate quantities.
* ``row_of`` / ``at`` / ``sum2`` — row / element selection by a one-hot mask, full sum.
* ``mm`` — a @ b in float32 with the operand precision of a PREC constexpr; ``round_tf32`` —
  float32 rounded to tf32 (to nearest).
* ``cast`` — float32 x in ``dtype``, bfloat16 rounded to nearest even also under the interpreter
  (whose own conversion truncates; the GPU rounds to nearest even).
* ``unit_lower_inverse`` — (I + A)⁻¹ of a strictly lower-triangular tile (DESIGN §2); ``mm_solve``
  the products it takes (never 16-bit operands).
* ``finish_position`` — the end of a fused decode step: the programs of sequence ``i_n`` count
  themselves on ``counters[i_n]`` (acquire/release atomics); the last of ``total`` programs writes
  the new position and zeroes the counter. Every program has read the old position before it
  counts (the kernels call this after a block-wide reduction that consumed it).
"""
from __future__ import annotations

import triton
import triton.language as tl

_INV_SQRT2 = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def act(z, ACT: tl.constexpr):
    if ACT == 0:
        return 0.5 * z * (1.0 + tl.erf(z * _INV_SQRT2))
    else:
        return z * tl.sigmoid(z)


@triton.jit
def act_grad(z, ACT: tl.constexpr):
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
def decay(la, rt, HAS_ALPHA: tl.constexpr):
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
def momentum(mu, rt):
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
def tile_gates(la_ptr, mu_ptr, grow, mt, rt, BT: tl.constexpr, HAS_ALPHA: tl.constexpr,
               HAS_MU: tl.constexpr, PREC: tl.constexpr):
    """Γ, Γ_prev, γ, γ_prev, D, D_prev, m, m_prev, Φ, Φ_prev, ν, ν_prev of one tile whose rows
    ``grow`` (valid where ``mt``) index log α and μ; Φ = Γ D and Φ_prev = Γ_prev D are products of
    precision PREC. Without momentum D..ν_prev are placeholders: D = Γ, Φ = Γ, m = ν = 0."""
    if HAS_ALPHA:
        la = tl.load(la_ptr + grow, mask=mt, other=0.0).to(tl.float32)
    else:
        la = tl.zeros([BT], dtype=tl.float32)
    G, Gp, g, gp = decay(la, rt, HAS_ALPHA)
    if HAS_MU:
        mu = tl.load(mu_ptr + grow, mask=mt, other=1.0).to(tl.float32)
        D, Dp, m, mp = momentum(mu, rt)
        Phi = mm(G, D, PREC)
        Phip = mm(Gp, D, PREC)
        nu = tl.sum(G * m[None, :], 1)
        nup = tl.sum(Gp * m[None, :], 1)
    else:
        D = G
        Dp = Gp
        m = g * 0.0
        mp = m
        Phi = G
        Phip = Gp
        nu = m
        nup = m
    return G, Gp, g, gp, D, Dp, m, mp, Phi, Phip, nu, nup


@triton.jit
def gate_grads(G, Gp, g, gp, D, Dp, m, mp, dG, dGp, dPhi, dPhip, dg, dgp, dnu, dnup, dm, dD, lower, strict,
               HAS_ALPHA: tl.constexpr, HAS_MU: tl.constexpr, PREC: tl.constexpr):
    """(d log α, dμ) per row from the adjoints of the tile's gate quantities.

    Φ = Γ D, Φ_prev = Γ_prev D, ν = Γ m, ν_prev = Γ_prev m (with momentum; else Φ = Γ and the
    D-side inputs are ignored: pass any block for dnu, dnup, dm, dD). dμ is zero-safe:
    ∂D[i,t]/∂μ_l = D[i,l] D[l−1,t]. Γ depends on the cumulative sum c of log α:
    ∂Γ[τ,t]/∂c = Γ (δ_τ − δ_t), so d log α is a reverse cumsum.
    ``lower`` / ``strict``: the tile's (strictly) lower-triangular masks."""
    dmu_v = g * 0.0
    if HAS_MU:
        dPhi = tl.where(lower, dPhi, 0.0)
        dPhip = tl.where(strict, dPhip, 0.0)
        dG += mm(dPhi, tl.trans(D), PREC) + dnu[:, None] * m[None, :]
        dGp += mm(dPhip, tl.trans(D), PREC) + dnup[:, None] * m[None, :]
        dD += mm(tl.trans(G), dPhi, PREC) + mm(tl.trans(Gp), dPhip, PREC)
        dm += tl.sum(G * dnu[:, None], 0) + tl.sum(Gp * dnup[:, None], 0)
        dD = tl.where(lower, dD, 0.0)
        dmu_v = tl.sum(mm(tl.trans(D), dD, PREC) * Dp, 1) + mp * tl.sum(D * dm[:, None], 0)
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
def row_of(X, sel):
    """Row ``sel`` (one-hot over rows) of the square matrix X, as a vector over columns."""
    return tl.sum(tl.where(sel[:, None], X, 0.0), 0)


@triton.jit
def at(x, sel):
    """x[sel] for a one-hot ``sel`` (0 when nothing is selected)."""
    return tl.sum(tl.where(sel, x, 0.0), 0)


@triton.jit
def sum2(X):
    """Σ of all entries of a 2-D block."""
    return tl.sum(tl.sum(X, 1), 0)


@triton.jit
def cast(x, dtype: tl.constexpr, INTERP: tl.constexpr):
    if INTERP:
        if dtype == tl.bfloat16:
            b = x.to(tl.uint32, bitcast=True)
            b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
            x = b.to(tl.float32, bitcast=True)
    return x.to(dtype)


@triton.jit
def round_tf32(x):
    """float32 x rounded to tf32 (10 mantissa bits) to nearest, ties away from zero (PTX
    cvt.rna.tf32.f32), by integer arithmetic on the bits (so also under the interpreter)."""
    b = x.to(tl.uint32, bitcast=True)
    return ((b + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def mm(a, b, PREC: tl.constexpr):
    """a @ b with float32 accumulation: operands rounded to bfloat16 / float16 for PREC "bf16" /
    "fp16" (16-bit inputs), else tl.dot's input precision ("tf32", "tf32x3", "ieee"). "tf32r":
    operands rounded to tf32 first (``round_tf32``; plain "tf32" hands the tensor cores float32
    operands, which — our reading of linear_memory's float16 drift, not verified — they truncate).
    "bf16_emu": bf16 rounding with a float32 product (the interpreter's bfloat16 dot is wrong)."""
    if PREC == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    elif PREC == "tf32r":
        return tl.dot(round_tf32(a), round_tf32(b), input_precision="tf32")
    elif PREC == "bf16_emu":
        return tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32), input_precision="ieee")
    elif PREC == "fp16":
        return tl.dot(a.to(tl.float16), b.to(tl.float16))
    else:
        return tl.dot(a, b, input_precision=PREC)


@triton.jit
def unit_lower_inverse(A, rt, LOG2BT: tl.constexpr, PREC: tl.constexpr):
    """(I + A)⁻¹ for strictly lower-triangular A [BT, BT] by block doubling: with B_s the inverse of
    the block-diagonal part in blocks of s, B_2s = B_s − B_s L_21 B_s where L_21 holds the
    lower-left s×s block of every 2s block. Its products never round operands to 16 bits (tf32
    when PREC asks for bf16 / fp16 operands): the levels compound their errors."""
    B = tl.where(rt[:, None] == rt[None, :], 1.0, 0.0)
    for lvl in tl.static_range(LOG2BT):
        s = 1 << lvl
        br = rt // s
        sel = ((br % 2) == 1)[:, None] & (br[None, :] == (br - 1)[:, None])
        Lo = tl.where(sel, A, 0.0)
        B = B - mm_solve(mm_solve(B, Lo, PREC), B, PREC)
    return B


@triton.jit
def mm_solve(a, b, PREC: tl.constexpr):
    """a @ b for the products that form or multiply (I + A)⁻¹ as an n×n matrix: never 16-bit
    operands (tf32 where PREC asks for bf16 / fp16), else ``mm``'s PREC."""
    if PREC == "bf16" or PREC == "fp16":
        return tl.dot(a, b, input_precision="tf32")
    elif PREC == "tf32r":
        return mm(a, b, PREC)
    else:
        return tl.dot(a, b, input_precision=PREC)


@triton.jit
def finish_position(pos_ptr, counters, i_n, p_new, total):
    done = tl.atomic_add(counters + i_n, 1, sem="acq_rel")
    last = done == total - 1
    tl.store(pos_ptr + i_n, p_new, mask=last)
    tl.store(counters + i_n, 0, mask=last)
