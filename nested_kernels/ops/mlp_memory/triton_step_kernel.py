"""Triton kernel of ``mlp_memory_step`` (SPEC §3, §6): one decode token, state in place.

Grid (N·H,): one program per sequence and head walks the hidden dimension F in blocks of BF
twice (W2 [F,K] by rows, W1 [V,F] by columns), with the chunk-start weights
W_s = (p == 0 ? W : W_chunk):
  pass 1  z = W2_s k, a = φ(z), pred = [k +] W1_s a and, for target "self", M_s(v)  → e = pred − target
  pass 2  (e known) d = (W1_sᵀe) ⊙ φ'(z) with z recomputed, then per block
          S1' = μ S1 − η e aᵀ,  S2' = μ S2 − η d kᵀ       (−η G without μ)
          W1' = α W1 + S1',     W2' = α W2 − β (W2 k) kᵀ + S2'
          and the read o = [q̃ +] W1_r φ(W2_r q̃), q̃ = scale·q, accumulated over the blocks
          (W_r = W', W or W_s for read after / before / chunk).
Pass 2 reads W_s again (from L2: one head's weights are 2·V·F·4 bytes). The chunk-start copies are
read only inside a chunk (p > 0) and written only at chunk boundaries, as in the linear step.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import act, act_grad, finish_position


@triton.jit
def _mm_step_kernel(q_ptr, k_ptr, v_ptr, eta_ptr, la_ptr, beta_ptr, mu_ptr,
                    W1_ptr, W2_ptr, S1_ptr, S2_ptr, W1c_ptr, W2c_ptr, pos_ptr, cnt_ptr, o_ptr,
                    sqn, sqh, skn, skh, svn, svh, sen, seh, san, sah, sbn, sbh, smn, smh,
                    H, C, scale,
                    K: tl.constexpr, V: tl.constexpr, F: tl.constexpr,
                    BK: tl.constexpr, BV: tl.constexpr, BF: tl.constexpr, ACT: tl.constexpr,
                    RESIDUAL: tl.constexpr, HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr,
                    HAS_MU: tl.constexpr, SELF_TARGET: tl.constexpr, READ: tl.constexpr):
    i_nh = tl.program_id(0)
    i_n = i_nh // H
    i_h = i_nh % H
    rk = tl.arange(0, BK)
    rv = tl.arange(0, BV)
    mk = rk < K
    mv = rv < V
    base1 = i_nh.to(tl.int64) * (V * F)        # W1 [V, F]
    base2 = i_nh.to(tl.int64) * (F * K)        # W2 [F, K]

    p = tl.load(pos_ptr + i_n)
    mid = p > 0
    k = tl.load(k_ptr + i_n * skn + i_h * skh + rk, mask=mk, other=0.0).to(tl.float32)
    q = tl.load(q_ptr + i_n * sqn + i_h * sqh + rk, mask=mk, other=0.0).to(tl.float32) * scale
    eta = tl.load(eta_ptr + i_n * sen + i_h * seh).to(tl.float32)
    alpha = 1.0
    if HAS_ALPHA:
        alpha = tl.exp(tl.load(la_ptr + i_n * san + i_h * sah).to(tl.float32))
    if SELF_TARGET:
        vs = tl.load(v_ptr + i_n * svn + i_h * svh + rk, mask=mk, other=0.0).to(tl.float32)
        target = tl.zeros([BV], dtype=tl.float32)
    else:
        target = tl.load(v_ptr + i_n * svn + i_h * svh + rv, mask=mv, other=0.0).to(tl.float32)

    # pass 1: prediction (and self-generated target) at the chunk-start weights
    pred = tl.zeros([BV], dtype=tl.float32)
    for f0 in range(0, F, BF):
        rf = f0 + tl.arange(0, BF)
        mf = rf < F
        o2 = base2 + rf[:, None] * K + rk[None, :]
        m2 = mf[:, None] & mk[None, :]
        o1 = base1 + rv[:, None] * F + rf[None, :]
        m1 = mv[:, None] & mf[None, :]
        W2s = tl.where(mid, tl.load(W2c_ptr + o2, mask=m2 & mid, other=0.0),
                       tl.load(W2_ptr + o2, mask=m2 & (p == 0), other=0.0))
        W1s = tl.where(mid, tl.load(W1c_ptr + o1, mask=m1 & mid, other=0.0),
                       tl.load(W1_ptr + o1, mask=m1 & (p == 0), other=0.0))
        a = act(tl.sum(W2s * k[None, :], 1), ACT)
        pred += tl.sum(W1s * a[None, :], 1)
        if SELF_TARGET:
            target += tl.sum(W1s * act(tl.sum(W2s * vs[None, :], 1), ACT)[None, :], 1)
    if RESIDUAL:
        pred += tl.load(k_ptr + i_n * skn + i_h * skh + rv, mask=mv, other=0.0).to(tl.float32)
        if SELF_TARGET:
            target += tl.load(v_ptr + i_n * svn + i_h * svh + rv, mask=mv, other=0.0).to(tl.float32)
    e = pred - target                              # 0 in the padding lanes

    # pass 2: gradients, state update and the read, block by block
    if HAS_MU:
        mu = tl.load(mu_ptr + i_n * smn + i_h * smh).to(tl.float32)
    if HAS_BETA:
        beta = tl.load(beta_ptr + i_n * sbn + i_h * sbh).to(tl.float32)
    p_new = (p + 1) % C
    at_end = p_new == 0
    write_chunk = at_end | (p == 0)
    o = tl.zeros([BV], dtype=tl.float32)
    for f0 in range(0, F, BF):
        rf = f0 + tl.arange(0, BF)
        mf = rf < F
        o2 = base2 + rf[:, None] * K + rk[None, :]
        m2 = mf[:, None] & mk[None, :]
        o1 = base1 + rv[:, None] * F + rf[None, :]
        m1 = mv[:, None] & mf[None, :]
        W2 = tl.load(W2_ptr + o2, mask=m2, other=0.0)
        W1 = tl.load(W1_ptr + o1, mask=m1, other=0.0)
        W2s = tl.where(mid, tl.load(W2c_ptr + o2, mask=m2 & mid, other=0.0), W2)
        W1s = tl.where(mid, tl.load(W1c_ptr + o1, mask=m1 & mid, other=0.0), W1)
        z = tl.sum(W2s * k[None, :], 1)
        a = act(z, ACT)
        d = tl.sum(W1s * e[:, None], 0) * act_grad(z, ACT)
        S1 = -eta * (e[:, None] * a[None, :])
        S2 = -eta * (d[:, None] * k[None, :])
        if HAS_MU:
            S1 += mu * tl.load(S1_ptr + o1, mask=m1, other=0.0)
            S2 += mu * tl.load(S2_ptr + o2, mask=m2, other=0.0)
            tl.store(S1_ptr + o1, S1, mask=m1)
            tl.store(S2_ptr + o2, S2, mask=m2)
        W1n = alpha * W1 + S1
        W2n = alpha * W2 + S2
        if HAS_BETA:
            W2n -= beta * (tl.sum(W2 * k[None, :], 1)[:, None] * k[None, :])
        tl.store(W1_ptr + o1, W1n, mask=m1)
        tl.store(W2_ptr + o2, W2n, mask=m2)
        tl.store(W1c_ptr + o1, tl.where(at_end, W1n, W1), mask=m1 & write_chunk)
        tl.store(W2c_ptr + o2, tl.where(at_end, W2n, W2), mask=m2 & write_chunk)
        if READ == 0:
            o += tl.sum(W1n * act(tl.sum(W2n * q[None, :], 1), ACT)[None, :], 1)
        elif READ == 1:
            o += tl.sum(W1 * act(tl.sum(W2 * q[None, :], 1), ACT)[None, :], 1)
        else:
            o += tl.sum(W1s * act(tl.sum(W2s * q[None, :], 1), ACT)[None, :], 1)
    if RESIDUAL:
        o += tl.load(q_ptr + i_n * sqn + i_h * sqh + rv, mask=mv, other=0.0).to(tl.float32) * scale
    tl.store(o_ptr + i_nh.to(tl.int64) * V + rv, o.to(o_ptr.dtype.element_ty), mask=mv)
    finish_position(pos_ptr, cnt_ptr, i_n, p_new, H)
