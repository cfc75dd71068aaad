"""Triton device functions shared by the forward and backward kernels of ``mlp_memory``.

The adjoints of the gate matrices of one tile (DESIGN_chunk_algebra §1), the offsets of one F
block of the weights and the exchange of partial sums between the F-slice programs. The gate
matrices, (I + A)⁻¹, φ, φ', φ'' and the precision-aware product ``mm`` are in
``nested_kernels/core/triton_helpers.py`` (shared with ``linear_memory`` and ``fast_mlp``).

Conventions: a tile holds BT token rows (rt = arange(BT)); padded rows have log α = 0, β = η = 0,
μ = 1 and zero inputs, which leaves every valid row unchanged. Everything is float32.
"""
from __future__ import annotations

import triton
import triton.language as tl


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
