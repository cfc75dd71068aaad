"""Triton kernels of ``fast_mlp_step`` (SPEC §4, §6): one token per sequence against its own fast
weights, the token's gradient added to the pending update, the update applied at chunk end.

Three launches, because the step holds three reductions that each need the complete result of
the previous one (a single kernel would need a grid-wide barrier):
  1. ``_fm_hidden_kernel``  grid (F/BF, N):  z = W_in x  (swiglu: u = W_gate x, v = W_up x), and
                             the new position (program 0 of each sequence; nothing else reads it
                             before kernel 3)
  2. ``_fm_out_kernel``     grid (D/BD, N):  y = [x +] W_out h,  h = φ(z) (swiglu: silu(u) ⊙ v);
                             g = y − target (or teach)
  3. ``_fm_update_kernel``  grid (F/BF, N):  per column block of W_out: e = W_outᵀ g while
                             U_out += η g hᵀ; then per row block of W_in: U_in += η d xᵀ with
                             d = e ⊙ φ'(z) (swiglu: U_gate with e ⊙ v ⊙ silu'(u), U_up with e ⊙ silu(u)).
                             When the token completes its chunk (new position 0):
                             W ← retention·W − U', U ← 0 instead.
z / (u, v) [n_hidden, N, F] and g [N, D] pass between the kernels in float32 scratch. Weights are
read once per step except W_out (kernels 2 and 3) and W_in (only at chunk end), so a step moves
7 weight-sized arrays (the floor is 6: read W_in, W_out, read and write U_in, U_out).
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import act, act_grad, cast


@triton.jit
def _fm_hidden_kernel(x_ptr, sxn, w0_ptr, w1_ptr, hid_ptr, pos_ptr, N, C,
                      D: tl.constexpr, F: tl.constexpr, BD: tl.constexpr, BF: tl.constexpr,
                      SWIGLU: tl.constexpr):
    i_f = tl.program_id(0)
    i_n = tl.program_id(1)
    rf = i_f * BF + tl.arange(0, BF)
    mf = rf < F
    base = i_n.to(tl.int64) * (F * D)
    acc0 = tl.zeros([BF], dtype=tl.float32)
    acc1 = tl.zeros([BF], dtype=tl.float32)
    for d0 in range(0, D, BD):
        rd = d0 + tl.arange(0, BD)
        md = rd < D
        x = tl.load(x_ptr + i_n * sxn + rd, mask=md, other=0.0).to(tl.float32)
        offs = base + rf[:, None] * D + rd[None, :]
        m = mf[:, None] & md[None, :]
        acc0 += tl.sum(tl.load(w0_ptr + offs, mask=m, other=0.0).to(tl.float32) * x[None, :], 1)
        if SWIGLU:
            acc1 += tl.sum(tl.load(w1_ptr + offs, mask=m, other=0.0).to(tl.float32) * x[None, :], 1)
    tl.store(hid_ptr + i_n * F + rf, acc0, mask=mf)
    if SWIGLU:
        tl.store(hid_ptr + (N + i_n) * F + rf, acc1, mask=mf)
    if i_f == 0:
        p1 = tl.load(pos_ptr + i_n) + 1
        tl.store(pos_ptr + i_n, tl.where(p1 == C, 0, p1))


@triton.jit
def _hidden(hid_ptr, i_n, N, rf, mf, F: tl.constexpr, ACT: tl.constexpr, SWIGLU: tl.constexpr):
    """(pre-activation z or u, h = φ(z) or silu(u) ⊙ v, v) of a block of hidden units."""
    z = tl.load(hid_ptr + i_n * F + rf, mask=mf, other=0.0)
    if SWIGLU:
        v = tl.load(hid_ptr + (N + i_n) * F + rf, mask=mf, other=0.0)
        h = act(z, 1) * v
    else:
        v = z
        h = act(z, ACT)
    return z, h, v


@triton.jit
def _fm_out_kernel(x_ptr, sxn, sig_ptr, ssn, wout_ptr, hid_ptr, y_ptr, g_ptr, N,
                   D: tl.constexpr, F: tl.constexpr, BD: tl.constexpr, BF: tl.constexpr,
                   ACT: tl.constexpr, SWIGLU: tl.constexpr, RESIDUAL: tl.constexpr, TEACH: tl.constexpr):
    i_d = tl.program_id(0)
    i_n = tl.program_id(1)
    rd = i_d * BD + tl.arange(0, BD)
    md = rd < D
    base = i_n.to(tl.int64) * (D * F)
    y = tl.zeros([BD], dtype=tl.float32)
    for f0 in range(0, F, BF):
        rf = f0 + tl.arange(0, BF)
        mf = rf < F
        _, h, _ = _hidden(hid_ptr, i_n, N, rf, mf, F, ACT, SWIGLU)
        w = tl.load(wout_ptr + base + rd[:, None] * F + rf[None, :], mask=md[:, None] & mf[None, :],
                    other=0.0).to(tl.float32)
        y += tl.sum(w * h[None, :], 1)
    if RESIDUAL:
        y += tl.load(x_ptr + i_n * sxn + rd, mask=md, other=0.0).to(tl.float32)
    tl.store(y_ptr + i_n * D + rd, y.to(y_ptr.dtype.element_ty), mask=md)
    sig = tl.load(sig_ptr + i_n * ssn + rd, mask=md, other=0.0).to(tl.float32)
    if TEACH:
        g = sig
    else:
        g = y - sig
    tl.store(g_ptr + i_n * D + rd, g, mask=md)


@triton.jit
def _accumulate(w_ptr, u_ptr, offs, m, w, u_new, done, retention, INTERP: tl.constexpr):
    """U ← U' inside a chunk; W ← retention·W − U', U ← 0 when the chunk completes (W rounded once
    to its storage dtype: float32 or bfloat16)."""
    tl.store(w_ptr + offs, cast(retention * w - u_new, w_ptr.dtype.element_ty, INTERP), mask=m & done)
    tl.store(u_ptr + offs, tl.where(done, 0.0, u_new), mask=m)


@triton.jit
def _fm_update_kernel(x_ptr, sxn, eta_ptr, sen, eta_value, w0_ptr, w1_ptr, w2_ptr, u0_ptr, u1_ptr, u2_ptr,
                      hid_ptr, g_ptr, pos_ptr, N, retention,
                      D: tl.constexpr, F: tl.constexpr, BD: tl.constexpr, BF: tl.constexpr,
                      ACT: tl.constexpr, SWIGLU: tl.constexpr, ETA_SCALAR: tl.constexpr, INTERP: tl.constexpr):
    i_f = tl.program_id(0)
    i_n = tl.program_id(1)
    rf = i_f * BF + tl.arange(0, BF)
    mf = rf < F
    base = i_n.to(tl.int64) * (D * F)
    done = tl.load(pos_ptr + i_n) == 0            # kernel 1 already advanced the position
    if ETA_SCALAR:
        eta = eta_value
    else:
        eta = tl.load(eta_ptr + i_n * sen).to(tl.float32)
    z, h, v = _hidden(hid_ptr, i_n, N, rf, mf, F, ACT, SWIGLU)
    if SWIGLU:
        wout_ptr = w2_ptr
        uout_ptr = u2_ptr
    else:
        wout_ptr = w1_ptr
        uout_ptr = u1_ptr

    # columns f of W_out [D, F]: e = W_outᵀ g, U_out += η g hᵀ
    e = tl.zeros([BF], dtype=tl.float32)
    for d0 in range(0, D, BD):
        rd = d0 + tl.arange(0, BD)
        md = rd < D
        offs = base + rd[:, None] * F + rf[None, :]
        m = md[:, None] & mf[None, :]
        g = tl.load(g_ptr + i_n * D + rd, mask=md, other=0.0)
        w = tl.load(wout_ptr + offs, mask=m, other=0.0).to(tl.float32)
        e += tl.sum(w * g[:, None], 0)
        u_new = tl.load(uout_ptr + offs, mask=m, other=0.0) + (eta * g)[:, None] * h[None, :]
        _accumulate(wout_ptr, uout_ptr, offs, m, w, u_new, done, retention, INTERP)

    # rows f of W_in (W_gate, W_up) [F, D]: U += η d xᵀ
    if SWIGLU:
        d0v = e * v * act_grad(z, 1)
        d1v = e * act(z, 1)
    else:
        d0v = e * act_grad(z, ACT)
        d1v = d0v
    for d0 in range(0, D, BD):
        rd = d0 + tl.arange(0, BD)
        md = rd < D
        offs = base + rf[:, None] * D + rd[None, :]
        m = mf[:, None] & md[None, :]
        x = tl.load(x_ptr + i_n * sxn + rd, mask=md, other=0.0).to(tl.float32)
        w = tl.load(w0_ptr + offs, mask=m & done, other=0.0).to(tl.float32)
        u_new = tl.load(u0_ptr + offs, mask=m, other=0.0) + (eta * d0v)[:, None] * x[None, :]
        _accumulate(w0_ptr, u0_ptr, offs, m, w, u_new, done, retention, INTERP)
        if SWIGLU:
            w = tl.load(w1_ptr + offs, mask=m & done, other=0.0).to(tl.float32)
            u_new = tl.load(u1_ptr + offs, mask=m, other=0.0) + (eta * d1v)[:, None] * x[None, :]
            _accumulate(w1_ptr, u1_ptr, offs, m, w, u_new, done, retention, INTERP)
