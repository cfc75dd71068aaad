"""Triton kernel of ``linear_memory_step`` (SPEC §2, §6): one decode token, state in place.

Grid (V/BV, N·H): each program owns a K×BV column slice of M (and S, M_chunk) of one sequence and
head; every formula of the rule is separable over the columns of V (for target "self", M_sᵀv too),
so programs never talk to each other, except to advance ``position`` (``finish_position``).

Per program, with p the sequence's position in its chunk and M_s = (p == 0 ? M : M_chunk):
    e = M_sᵀk − target            (target = v, or M_sᵀv)
    S' = μ S − η k eᵀ             (−η k eᵀ without μ)
    M' = α M − β k (kᵀM) + S'
    o  = R ᵀ(scale·q),  R = M', M or M_s for read after / before / chunk
M_chunk is read only inside a chunk (p > 0) and written only at chunk boundaries: M' when the token
completes the chunk, M when it starts one (p == 0; a no-op for states that keep M_chunk == M at
boundaries, written anyway so that any state behaves like the torch step).
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import finish_position


@triton.jit
def _lm_step_kernel(q_ptr, k_ptr, v_ptr, eta_ptr, la_ptr, beta_ptr, mu_ptr,
                    M_ptr, S_ptr, Mc_ptr, pos_ptr, cnt_ptr, o_ptr,
                    sqn, sqh, skn, skh, svn, svh, sen, seh, san, sah, sbn, sbh, smn, smh,
                    H, C, scale,
                    K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                    HAS_ALPHA: tl.constexpr, HAS_BETA: tl.constexpr, HAS_MU: tl.constexpr,
                    SELF_TARGET: tl.constexpr, READ: tl.constexpr):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    rk = tl.arange(0, BK)
    rv = i_v * BV + tl.arange(0, BV)
    mk = rk < K
    mv = rv < V
    m2 = mk[:, None] & mv[None, :]
    offs = i_nh.to(tl.int64) * (K * V) + rk[:, None] * V + rv[None, :]

    p = tl.load(pos_ptr + i_n)
    mid = p > 0
    M = tl.load(M_ptr + offs, mask=m2, other=0.0)
    Ms = tl.where(mid, tl.load(Mc_ptr + offs, mask=m2 & mid, other=0.0), M)

    k = tl.load(k_ptr + i_n * skn + i_h * skh + rk, mask=mk, other=0.0).to(tl.float32)
    q = tl.load(q_ptr + i_n * sqn + i_h * sqh + rk, mask=mk, other=0.0).to(tl.float32) * scale
    eta = tl.load(eta_ptr + i_n * sen + i_h * seh).to(tl.float32)
    if SELF_TARGET:
        v = tl.load(v_ptr + i_n * svn + i_h * svh + rk, mask=mk, other=0.0).to(tl.float32)
        target = tl.sum(Ms * v[:, None], 0)
    else:
        target = tl.load(v_ptr + i_n * svn + i_h * svh + rv, mask=mv, other=0.0).to(tl.float32)
    e = tl.sum(Ms * k[:, None], 0) - target
    S_new = -eta * (k[:, None] * e[None, :])
    if HAS_MU:
        mu = tl.load(mu_ptr + i_n * smn + i_h * smh).to(tl.float32)
        S_new += mu * tl.load(S_ptr + offs, mask=m2, other=0.0)
        tl.store(S_ptr + offs, S_new, mask=m2)
    if HAS_ALPHA:
        M_new = tl.exp(tl.load(la_ptr + i_n * san + i_h * sah).to(tl.float32)) * M + S_new
    else:
        M_new = M + S_new
    if HAS_BETA:
        beta = tl.load(beta_ptr + i_n * sbn + i_h * sbh).to(tl.float32)
        kM = tl.sum(k[:, None] * M, 0)
        M_new -= beta * (k[:, None] * kM[None, :])
    tl.store(M_ptr + offs, M_new, mask=m2)

    if READ == 0:
        o = tl.sum(M_new * q[:, None], 0)
    elif READ == 1:
        o = tl.sum(M * q[:, None], 0)
    else:
        o = tl.sum(Ms * q[:, None], 0)
    tl.store(o_ptr + i_nh.to(tl.int64) * V + rv, o.to(o_ptr.dtype.element_ty), mask=mv)

    p_new = (p + 1) % C
    at_end = p_new == 0
    tl.store(Mc_ptr + offs, tl.where(at_end, M_new, M), mask=m2 & (at_end | (p == 0)))
    finish_position(pos_ptr, cnt_ptr, i_n, p_new, H * tl.num_programs(0))
