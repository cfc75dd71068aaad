"""Triton kernels of the ``triton`` backend of ``fast_mlp`` (launchers: ``triton_backend.py``).

Token tensors are [G, n, W] (G aligned sequences, n tokens of one chunk piece, W columns) with a
unit last stride and strides (s_g, s_t) passed per tensor; elementwise kernels run on a grid
(row blocks, column blocks, G). ACT: 0 gelu (exact erf), 1 silu, 2 swiglu — for swiglu the
first-layer tensors hold [gate | up] side by side (2F columns, the up half at column offset F).

* ``_act_kernel``      a = φ(z)  (swiglu: h = silu(u) ⊙ v)
* ``_out_kernel``      y = [x +] o;  g = y − target (or teach);  η g
* ``_d_kernel``        η d = η (e ⊙ φ'(z))  (swiglu: [η e v silu'(u) | η e silu(u)])
* ``_b1_kernel``       backward through d: ê, sgn·η·d, η̂ += sgn Σ d ⊙ P1
* ``_b2_kernel``       backward through g: ŷ_tot, the signal's gradient, sgn·η·g, η̂ += sgn Σ g ⊙ P2
* ``_b3_kernel``       backward through φ: ẑ from â and the d-path term
* ``_outer_kernel``    the fused update: out = α·W + β·(Σ_t L1_t R1_tᵀ [+ Σ_t L2_t R2_tᵀ]) − U, a
                       GEMM over the tokens (fp32 accumulation on tensor cores) whose epilogue
                       writes the new master weights (float32 or bfloat16) and their
                       compute-dtype copy in one pass.
* ``_outer_tma_kernel`` the same without U on tensor descriptors (TMA loads and stores on sm_90;
                       PTR_STORES: the results by plain stores), for 16-bit operands.
The interpreter (TRITON_INTERPRET=1) mis-handles bfloat16 arithmetic and runtime loop bounds
with this numpy: INTERP switches to fp32 upcasts and a while loop.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ...core.triton_helpers import act, act_grad, act_grad2, cast


@triton.jit
def _offs(g, rows, cols, sg, st):
    return g.to(tl.int64) * sg + rows[:, None].to(tl.int64) * st + cols[None, :]


@triton.jit
def _tile(n, W, BR: tl.constexpr, BC: tl.constexpr):
    """(g, rows, cols, mask) of this program's tile of a [G, n, W] tensor."""
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    cols = tl.program_id(1) * BC + tl.arange(0, BC)
    return tl.program_id(2), rows, cols, (rows < n)[:, None] & (cols < W)[None, :]


@triton.jit
def _eta_rows(ETA, g, rows, n, seg, set_):
    return tl.load(ETA + g.to(tl.int64) * seg + rows * set_, mask=rows < n, other=0.0).to(tl.float32)


@triton.jit
def _act_kernel(Z, A, n, F, szg, szt, sag, sat, ACT: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
    g, rows, cols, m = _tile(n, F, BR, BC)
    oz = _offs(g, rows, cols, szg, szt)
    z = tl.load(Z + oz, mask=m, other=0.0).to(tl.float32)
    if ACT == 2:
        v = tl.load(Z + oz + F, mask=m, other=0.0).to(tl.float32)
        a = act(z, 1) * v
    else:
        a = act(z, ACT)
    tl.store(A + _offs(g, rows, cols, sag, sat), a.to(A.dtype.element_ty), mask=m)


@triton.jit
def _out_kernel(X, O, S, ETA, Y, GO, EG, n, D, sxg, sxt, sog, sot, ssg, sst, seg, set_, syg, syt, sgg, sgt,
                RESIDUAL: tl.constexpr, MODE: tl.constexpr, STORE_Y: tl.constexpr,
                BR: tl.constexpr, BC: tl.constexpr):
    """MODE 0: y only; 1: g = y − S (target); 2: g = S (teach). GO, EG share strides."""
    g, rows, cols, m = _tile(n, D, BR, BC)
    y = tl.load(O + _offs(g, rows, cols, sog, sot), mask=m, other=0.0).to(tl.float32)
    if RESIDUAL:
        y += tl.load(X + _offs(g, rows, cols, sxg, sxt), mask=m, other=0.0).to(tl.float32)
    if STORE_Y:
        tl.store(Y + _offs(g, rows, cols, syg, syt), y.to(Y.dtype.element_ty), mask=m)
    if MODE != 0:
        s = tl.load(S + _offs(g, rows, cols, ssg, sst), mask=m, other=0.0).to(tl.float32)
        gv = y - s if MODE == 1 else s
        eta = _eta_rows(ETA, g, rows, n, seg, set_)
        og = _offs(g, rows, cols, sgg, sgt)
        tl.store(GO + og, gv.to(GO.dtype.element_ty), mask=m)
        tl.store(EG + og, (eta[:, None] * gv).to(EG.dtype.element_ty), mask=m)


@triton.jit
def _d_kernel(E, Z, ETA, DO, n, F, seg_, set_, szg, szt, setag, setat, sdg, sdt,
              ACT: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
    g, rows, cols, m = _tile(n, F, BR, BC)
    e = tl.load(E + _offs(g, rows, cols, seg_, set_), mask=m, other=0.0).to(tl.float32)
    eta = _eta_rows(ETA, g, rows, n, setag, setat)[:, None]
    oz = _offs(g, rows, cols, szg, szt)
    od = _offs(g, rows, cols, sdg, sdt)
    z = tl.load(Z + oz, mask=m, other=0.0).to(tl.float32)
    if ACT == 2:
        v = tl.load(Z + oz + F, mask=m, other=0.0).to(tl.float32)
        tl.store(DO + od, (eta * e * v * act_grad(z, 1)).to(DO.dtype.element_ty), mask=m)
        tl.store(DO + od + F, (eta * e * act(z, 1)).to(DO.dtype.element_ty), mask=m)
    else:
        tl.store(DO + od, (eta * e * act_grad(z, ACT)).to(DO.dtype.element_ty), mask=m)


@triton.jit
def _b1_kernel(E, Z, P1, ETA, EH, ED, DETA, sgn, n, F, seg_, set_, szg, szt, spg, spt, setag, setat,
               sedg, sedt, sdg, sdt, ACT: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
    """d̂ = sgn·η·P1 (P1 = X Mᵀ of the first layer); ê = ∂⟨d̂, d⟩/∂e; ED = sgn·η·d (the left
    factor of x̂ += ED·M); η̂ += sgn Σ_cols d ⊙ P1. Z, P1, ED have the first layer's columns;
    EH, E share strides (seg_, set_)."""
    g, rows, cols, m = _tile(n, F, BR, BC)
    oe = _offs(g, rows, cols, seg_, set_)
    oz = _offs(g, rows, cols, szg, szt)
    op = _offs(g, rows, cols, spg, spt)
    od = _offs(g, rows, cols, sedg, sedt)
    e = tl.load(E + oe, mask=m, other=0.0).to(tl.float32)
    eta = _eta_rows(ETA, g, rows, n, setag, setat)[:, None]
    z = tl.load(Z + oz, mask=m, other=0.0).to(tl.float32)
    p = tl.load(P1 + op, mask=m, other=0.0).to(tl.float32)
    if ACT == 2:
        v = tl.load(Z + oz + F, mask=m, other=0.0).to(tl.float32)
        pu = tl.load(P1 + op + F, mask=m, other=0.0).to(tl.float32)
        s, ds = act(z, 1), act_grad(z, 1)
        d_g, d_u = e * v * ds, e * s
        eh = sgn * eta * (p * v * ds + pu * s)
        tl.store(ED + od, (sgn * eta * d_g).to(ED.dtype.element_ty), mask=m)
        tl.store(ED + od + F, (sgn * eta * d_u).to(ED.dtype.element_ty), mask=m)
        part = tl.sum(d_g * p + d_u * pu, 1)
    else:
        dz = act_grad(z, ACT)
        d = e * dz
        eh = sgn * eta * p * dz
        tl.store(ED + od, (sgn * eta * d).to(ED.dtype.element_ty), mask=m)
        part = tl.sum(d * p, 1)
    tl.store(EH + oe, eh.to(EH.dtype.element_ty), mask=m)
    tl.atomic_add(DETA + g.to(tl.int64) * sdg + rows * sdt, sgn * part, mask=rows < n)


@triton.jit
def _b2_kernel(GY, Q, P2, GO, ETA, YT, SH, EGS, DETA, sgn, n, D, sgyg, sgyt, sqg, sqt, spg, spt, sgg, sgt,
               setag, setat, syg, syt, ssg, sst, sdg, sdt, MODE: tl.constexpr, HAS_GY: tl.constexpr,
               BR: tl.constexpr, BC: tl.constexpr):
    """ĝ = sgn·η·P2 + Q (P2 = a M₂ᵀ, Q = ê W₂ᵀ); target: ŷ_tot = ŷ + ĝ, Ŝ = −ĝ; teach: ŷ_tot = ŷ,
    Ŝ = ĝ. EGS = sgn·η·g; η̂ += sgn Σ_cols g ⊙ P2. Q and EGS share strides (sqg, sqt); P2, GO, YT
    and SH have their own."""
    g, rows, cols, m = _tile(n, D, BR, BC)
    oq = _offs(g, rows, cols, sqg, sqt)
    og = _offs(g, rows, cols, sgg, sgt)
    eta = _eta_rows(ETA, g, rows, n, setag, setat)[:, None]
    p = tl.load(P2 + _offs(g, rows, cols, spg, spt), mask=m, other=0.0).to(tl.float32)
    gv = tl.load(GO + og, mask=m, other=0.0).to(tl.float32)
    gh = sgn * eta * p + tl.load(Q + oq, mask=m, other=0.0).to(tl.float32)
    yt = tl.zeros_like(gh)
    if HAS_GY:
        yt = tl.load(GY + _offs(g, rows, cols, sgyg, sgyt), mask=m, other=0.0).to(tl.float32)
    if MODE == 1:
        yt += gh
        gh = -gh
    tl.store(YT + _offs(g, rows, cols, syg, syt), yt.to(YT.dtype.element_ty), mask=m)
    tl.store(SH + _offs(g, rows, cols, ssg, sst), gh.to(SH.dtype.element_ty), mask=m)
    tl.store(EGS + oq, (sgn * eta * gv).to(EGS.dtype.element_ty), mask=m)
    tl.atomic_add(DETA + g.to(tl.int64) * sdg + rows * sdt, sgn * tl.sum(gv * p, 1), mask=rows < n)


@triton.jit
def _b3_kernel(Z, E, P1, ETA, AH, ZH, sgn, n, F, szg, szt, seg_, set_, spg, spt, setag, setat,
               sag, sat, ACT: tl.constexpr, HAS_M: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr):
    """ẑ (first-layer columns, strides of Z) from â = AH and, with an update path (HAS_M), the
    term of d = e ⊙ φ'(z) with d̂ = sgn·η·P1."""
    g, rows, cols, m = _tile(n, F, BR, BC)
    oz = _offs(g, rows, cols, szg, szt)
    z = tl.load(Z + oz, mask=m, other=0.0).to(tl.float32)
    ah = tl.load(AH + _offs(g, rows, cols, sag, sat), mask=m, other=0.0).to(tl.float32)
    if HAS_M:
        eta = _eta_rows(ETA, g, rows, n, setag, setat)[:, None]
        op = _offs(g, rows, cols, spg, spt)
        e = tl.load(E + _offs(g, rows, cols, seg_, set_), mask=m, other=0.0).to(tl.float32)
        dh = sgn * eta * tl.load(P1 + op, mask=m, other=0.0).to(tl.float32)
    if ACT == 2:
        v = tl.load(Z + oz + F, mask=m, other=0.0).to(tl.float32)
        s, ds = act(z, 1), act_grad(z, 1)
        uh = ah * v * ds
        vh = ah * s
        if HAS_M:
            dhu = sgn * eta * tl.load(P1 + op + F, mask=m, other=0.0).to(tl.float32)
            uh += dh * e * v * act_grad2(z, 1) + dhu * e * ds
            vh += dh * e * ds
        tl.store(ZH + oz, uh.to(ZH.dtype.element_ty), mask=m)
        tl.store(ZH + oz + F, vh.to(ZH.dtype.element_ty), mask=m)
    else:
        zh = ah * act_grad(z, ACT)
        if HAS_M:
            zh += dh * e * act_grad2(z, ACT)
        tl.store(ZH + oz, zh.to(ZH.dtype.element_ty), mask=m)


@triton.jit
def _accum(acc, L, R, g, rp, rq, n, P, Q, slg, slt, srg, srt,
           INTERP: tl.constexpr, PREC: tl.constexpr, BK: tl.constexpr):
    """acc += Σ_{t<n} L[g,t,rp]ᵀ R[g,t,rq] in BK-token steps."""
    lbase = L + g.to(tl.int64) * slg + rp[None, :]
    rbase = R + g.to(tl.int64) * srg + rq[None, :]
    mp = (rp < P)[None, :]
    mq = (rq < Q)[None, :]
    if INTERP:
        k0 = 0
        while k0 < n:
            t = k0 + tl.arange(0, BK)
            mt = (t < n)[:, None]
            lt = tl.load(lbase + t[:, None].to(tl.int64) * slt, mask=mt & mp, other=0.0).to(tl.float32)
            rt = tl.load(rbase + t[:, None].to(tl.int64) * srt, mask=mt & mq, other=0.0).to(tl.float32)
            acc += tl.dot(tl.trans(lt), rt)
            k0 += BK
    else:
        for k0 in range(0, n, BK):
            t = k0 + tl.arange(0, BK)
            mt = (t < n)[:, None]
            lt = tl.load(lbase + t[:, None].to(tl.int64) * slt, mask=mt & mp, other=0.0)
            rt = tl.load(rbase + t[:, None].to(tl.int64) * srt, mask=mt & mq, other=0.0)
            acc = tl.dot(tl.trans(lt), rt, acc, input_precision=PREC)
    return acc


@triton.jit
def _outer_kernel(L1, R1, L2, R2, W, U, OUT, COPY, n, P, Q,
                  sl1g, sl1t, sr1g, sr1t, sl2g, sl2t, sr2g, sr2t, swg, swp, sug, sup, sog, sop, scg, scp,
                  alpha, beta, HAS_2: tl.constexpr, HAS_W: tl.constexpr, HAS_U: tl.constexpr,
                  STORE_OUT: tl.constexpr, STORE_COPY: tl.constexpr, ROUND: tl.constexpr, INTERP: tl.constexpr,
                  PREC: tl.constexpr, BP: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr):
    """OUT = α·W + β·(L1ᵀR1 [+ L2ᵀR2]) − U per sequence g (program axis 1), summing over the n
    tokens; W may be shared (swg = 0). COPY: the same in the compute dtype. ROUND (bfloat16
    masters, ``weight_dtype``): the float32 result is first rounded to bfloat16 (nearest even), so
    OUT and COPY hold the same value."""
    nq = tl.cdiv(Q, BQ)
    pid = tl.program_id(0)
    g = tl.program_id(1)
    rp = (pid // nq) * BP + tl.arange(0, BP)
    rq = (pid % nq) * BQ + tl.arange(0, BQ)
    acc = tl.zeros((BP, BQ), dtype=tl.float32)
    acc = _accum(acc, L1, R1, g, rp, rq, n, P, Q, sl1g, sl1t, sr1g, sr1t, INTERP, PREC, BK)
    if HAS_2:
        acc = _accum(acc, L2, R2, g, rp, rq, n, P, Q, sl2g, sl2t, sr2g, sr2t, INTERP, PREC, BK)
    res = beta * acc
    m = (rp < P)[:, None] & (rq < Q)[None, :]
    if HAS_W:
        res += alpha * tl.load(W + _offs(g, rp, rq, swg, swp), mask=m, other=0.0).to(tl.float32)
    if HAS_U:
        res -= tl.load(U + _offs(g, rp, rq, sug, sup), mask=m, other=0.0).to(tl.float32)
    if ROUND:
        res = cast(res, tl.bfloat16, INTERP).to(tl.float32)
    if STORE_OUT:
        tl.store(OUT + _offs(g, rp, rq, sog, sop), cast(res, OUT.dtype.element_ty, INTERP), mask=m)
    if STORE_COPY:
        tl.store(COPY + _offs(g, rp, rq, scg, scp), cast(res, COPY.dtype.element_ty, INTERP), mask=m)


@triton.jit
def _accum_tma(acc, L, R, g, p0, q0, n, INTERP: tl.constexpr, BP: tl.constexpr, BQ: tl.constexpr,
               BK: tl.constexpr):
    """acc += Σ_{t<n} L[g, t, p0:p0+BP]ᵀ R[g, t, q0:q0+BQ] (tensor descriptors) in BK-token steps."""
    if INTERP:
        k0 = 0
        while k0 < n:
            lt = L.load([g, k0, p0]).reshape(BK, BP).to(tl.float32)
            rt = R.load([g, k0, q0]).reshape(BK, BQ).to(tl.float32)
            acc += tl.dot(tl.trans(lt), rt)
            k0 += BK
    else:
        for k0 in range(0, n, BK):
            lt = L.load([g, k0, p0]).reshape(BK, BP)
            rt = R.load([g, k0, q0]).reshape(BK, BQ)
            acc = tl.dot(tl.trans(lt), rt, acc)
    return acc


@triton.jit
def _w_tile(W, g, p0, q0, W_SHARED: tl.constexpr, BP: tl.constexpr, BQ: tl.constexpr):
    """W's [BP, BQ] tile at (p0, q0) of sequence g (W_SHARED: the one [P, Q]) in float32."""
    if W_SHARED:
        w = W.load([p0, q0]).to(tl.float32)
    else:
        w = W.load([g, p0, q0]).reshape(BP, BQ).to(tl.float32)
    return w


@triton.jit
def _outer_tma_kernel(L1, R1, L2, R2, W, OUT, COPY, n, alpha, beta, P, Q, sog, sop, scg, scp,
                      HAS_2: tl.constexpr, HAS_W: tl.constexpr, W_SHARED: tl.constexpr,
                      STORE_OUT: tl.constexpr, STORE_COPY: tl.constexpr, ROUND: tl.constexpr,
                      SUM_G: tl.constexpr, PTR_STORES: tl.constexpr, INTERP: tl.constexpr,
                      BP: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr):
    """``_outer_kernel`` without U, on tensor descriptors: L1, R1, L2, R2 [G, n, P|Q] with blocks
    [1, BK, BP|BQ]; W [P, Q] (W_SHARED) or [G, P, Q], OUT and COPY [G, P, Q], blocks [(1,) BP, BQ].
    Tokens past n, rows past P and columns past Q are the descriptors' zero padding on loads and
    clipping on stores. PTR_STORES: OUT and COPY are pointers instead (strides (sog, sop), (scg,
    scp), sizes P, Q), written by plain stores — no wait for a tensor-map store to leave shared
    memory before the next store or the program's end. Grid: (tiles of one sequence, G), as
    ``_outer_kernel``; SUM_G: grid (tiles, 1), OUT [1, P, Q] = the sum over the G sequences (the
    products of all G·n tokens)."""
    nq = tl.cdiv(Q, BQ)
    p0 = (tl.program_id(0) // nq) * BP
    q0 = (tl.program_id(0) % nq) * BQ
    acc = tl.zeros((BP, BQ), dtype=tl.float32)
    if SUM_G:
        w = tl.zeros((BP, BQ), dtype=tl.float32)
        g = 0
        while g < L1.shape[0]:
            acc = _accum_tma(acc, L1, R1, g, p0, q0, n, INTERP, BP, BQ, BK)
            if HAS_2:
                acc = _accum_tma(acc, L2, R2, g, p0, q0, n, INTERP, BP, BQ, BK)
            if HAS_W:
                w += _w_tile(W, g, p0, q0, W_SHARED, BP, BQ)
            g += 1
        g = 0
    else:
        g = tl.program_id(1)
        acc = _accum_tma(acc, L1, R1, g, p0, q0, n, INTERP, BP, BQ, BK)
        if HAS_2:
            acc = _accum_tma(acc, L2, R2, g, p0, q0, n, INTERP, BP, BQ, BK)
        if HAS_W:
            w = _w_tile(W, g, p0, q0, W_SHARED, BP, BQ)
    res = beta * acc
    if HAS_W:
        res += alpha * w
    if ROUND:
        res = cast(res, tl.bfloat16, INTERP).to(tl.float32)
    if PTR_STORES:
        rp, rq = p0 + tl.arange(0, BP), q0 + tl.arange(0, BQ)
        m = (rp < P)[:, None] & (rq < Q)[None, :]
        gp = tl.program_id(1)       # g, as a tensor (SUM_G: 0, the grid's one row of programs)
        if STORE_OUT:
            tl.store(OUT + _offs(gp, rp, rq, sog, sop), cast(res, OUT.dtype.element_ty, INTERP), mask=m)
        if STORE_COPY:
            tl.store(COPY + _offs(gp, rp, rq, scg, scp), cast(res, COPY.dtype.element_ty, INTERP), mask=m)
    else:
        if STORE_OUT:
            OUT.store([g, p0, q0], cast(res, OUT.dtype, INTERP).reshape(1, BP, BQ))
        if STORE_COPY:
            COPY.store([g, p0, q0], cast(res, COPY.dtype, INTERP).reshape(1, BP, BQ))
