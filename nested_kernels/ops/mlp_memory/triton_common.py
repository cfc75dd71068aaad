"""Triton device functions shared by the forward and backward kernels of ``mlp_memory``.

The offsets of one F block of the weights and the exchange of partial sums between the F-slice
programs. The gate matrices and their adjoints, (I + A)⁻¹, φ, φ', φ'' and the precision-aware
product ``mm`` are in ``nested_kernels/core/triton_helpers.py`` (shared with ``linear_memory`` and
``fast_mlp``).

Conventions: a tile holds BT token rows (rt = arange(BT)); padded rows have log α = 0, β = η = 0,
μ = 1 and zero inputs, which leaves every valid row unchanged. Everything is float32.
"""
from __future__ import annotations

import triton
import triton.language as tl


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
