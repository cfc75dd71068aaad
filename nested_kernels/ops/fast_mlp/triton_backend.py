"""The ``triton`` backend of ``fast_mlp``: per-chunk weights in the input dtype on tensor cores,
a fused Triton update, and a hand-written backward (design, memory and cost: docs/fast_mlp.md).

What runs where, per chunk piece of n tokens of G aligned sequences (``chunk.groups``):
* the token products (x W₁ᵀ, a W₂ᵀ, g W₂ and, backward, their adjoints) are cuBLAS GEMMs
  (``torch.matmul``/``baddbmm``) in the input dtype (bf16/fp16; float32 inputs: float32) with
  float32 accumulation — Triton does not beat cuBLAS on plain GEMMs;
* the elementwise pieces (φ, φ', φ'', the swiglu gate, y, g, η-scaling, the η gradient's row
  sums) are fused Triton kernels (``triton_kernels._act/_out/_d/_b1/_b2/_b3_kernel``);
* the end-of-chunk update W ← retention·W − U − Σ_t η_t left_t right_tᵀ is one Triton GEMM per
  weight matrix (``_outer_kernel``) whose epilogue reads the master W once and writes the new
  master and its compute-dtype copy (used by the next chunk's products); with
  ``weight_dtype=torch.bfloat16`` the master is bfloat16 (rounded once, in the epilogue) and for
  bfloat16 inputs it is its own copy: one bf16 weight array per sequence instead of fp32 + bf16; the backward
  uses the same kernel to accumulate the weight adjoints (retention·Ŵ + Σ direct terms).
For swiglu the gate and up weights are stacked into one [2F, D] first layer (one GEMM for both).

Backward (``backward``): it needs, per piece, the compute-dtype weight copies and the
activations (z, a, e, g), and walks the pieces in reverse carrying the float32 weight adjoints
across chunks. When gradients will be taken and all of them fit the budget
(NESTED_KERNELS_FAST_MLP_BWD_BYTES, default a third of the free GPU memory), the forward writes
them into one flat residual output of the op (``residuals``, ``keeps_residuals``) and the backward
reads them back without running the forward again. Otherwise the backward re-runs the chunk
loop; when a group's copies and activations exceed the budget, its first pass keeps only
checkpoints every k pieces and each segment of k pieces is re-run from its checkpoint just
before its reverse walk.

The dual form (``dual.py``: no per-chunk weights, products against the earlier tokens;
docs/fast_mlp.md §1) runs instead where ``dual.chosen`` says so, with this module's elementwise
kernels, update GEMM and group loop.

Supported: every option of SPEC §4 (gelu/silu/swiglu, residual, retention, target/teach, η
tensor or number, cu_seqlens, initial weights, pending-update states, final states), any D, F and
chunk size; float32/bfloat16/float16 inputs; ``weight_dtype`` None/float32/bfloat16. float64 runs
on the torch/reference backends.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch

from ...core.alloc import new_empty, residual_budget
from ...core.backends import Backend, will_differentiate
from ...core.custom_op import _unaliased
from ...core.env import getenv
from ...core.fast_launch import launch
from ...core.sequences import num_sequences
from ...core.triton_launch import env_flag, float64_unsupported, interpreting as _interpreting
from . import chunk
from .inputs import prepare, state_dtype

_ACT = {"gelu": 0, "silu": 1, "swiglu": 2}
_MODE = {"target": 1, "teach": 2}
BUDGET_ENV = "NESTED_KERNELS_FAST_MLP_BWD_BYTES"
SUM_CUBLAS_ENV = "NESTED_KERNELS_FAST_MLP_SUM_CUBLAS"   # "0": sum_g updates on the Triton kernel only


def unsupported(inputs, cfg) -> Optional[str]:
    return float64_unsupported(inputs)


def _unit(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``t`` with a unit last stride (kernels index rows by stride, columns densely)."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _st(t: torch.Tensor) -> tuple:
    """(batch stride, row stride) of a [G, n, W] tensor, or (0, row stride) of a shared [n, W]."""
    return (0, t.stride(0)) if t.dim() == 2 else (t.stride(0), t.stride(1))


def _st2(t: torch.Tensor) -> tuple:
    """(batch stride, token stride) of a per-token scalar [G, n] (η and its gradient)."""
    return t.stride(0), t.stride(1)


class _Consts:
    """Per-call constants: options, dtypes (cd: product dtype, wd: master weights — float32, or
    bfloat16 with ``weight_dtype``), widths."""

    def __init__(self, cfg: dict, x: torch.Tensor, F: int):
        self.mlp, self.act = cfg["mlp"], _ACT[cfg["mlp"]]
        self.C, self.residual, self.retention = cfg["chunk_size"], cfg["residual"], cfg["retention"]
        self.final = cfg["output_final_state"]
        self.cd = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.float32
        self.wd = state_dtype(x, cfg)
        self.D, self.F = x.shape[-1], F
        self.F1 = 2 * F if self.mlp == "swiglu" else F
        self.prec = "ieee" if self.cd == torch.float32 else "tf32"
        self.interp = _interpreting()
        self.BR, self.BC = (64, 64) if self.interp else (16, 256)

    # -- launch helpers ---------------------------------------------------------------------
    def ew(self, kernel, n: int, width: int, G: int, *args, **meta):
        """Launch an elementwise kernel over [G, n, width]."""
        if n == 0 or G == 0:
            return
        grid = (triton_cdiv(n, self.BR), triton_cdiv(width, self.BC), G)
        launch(kernel, grid, *args, BR=self.BR, BC=self.BC, **meta)

    def outer(self, L1, R1, *, L2=None, R2=None, W=None, U=None, alpha=0.0, beta=1.0,
              out_dtype=torch.float32, copy: bool = False, store: bool = True, into=None,
              sum_g: bool = False):
        """(out, copy): out = α·W + β·(Σ_t L1_tᵀ R1_t [+ Σ_t L2_tᵀ R2_t]) − U per sequence
        ([G, P, Q], W may be a shared [P, Q]); ``copy`` in the compute dtype (None unless asked;
        ``out`` itself when the dtypes agree), written into ``into`` [G, P, Q] when given.
        ``store=False`` (with ``copy``): out is not written (None) unless it is the copy.
        ``sum_g`` (float32 out, no U, no copy): out [P, Q] is the sum of the G sequences' results."""
        from .triton_kernels import _outer_kernel
        assert not (sum_g and (copy or U is not None)), "sum_g takes no copy and no U"
        G, n, P = L1.shape
        Q = R1.shape[-1]
        if sum_g and env_flag(SUM_CUBLAS_ENV, True) and _flat_products(L1, R1, L2, R2):
            return _sum_on_cublas(L1, R1, L2, R2, W, alpha, beta), None
        BP, BQ, BK, warps, stages, tma = _outer_config(n, self.interp)
        tma = tma if U is None and L1.element_size() == 2 else 0
        store = store or not copy or self.cd == out_dtype
        cp = None
        if copy:
            cp = into if into is not None else new_empty(G, P, Q, dtype=self.cd, device=L1.device)
        out = cp if copy and self.cd == out_dtype else \
            new_empty(1 if sum_g else G, P, Q, dtype=out_dtype, device=L1.device) if store else None
        out_ = out if store else cp
        if G == 0 or P == 0 or Q == 0:
            return (out.zero_()[0] if sum_g else out), cp
        L2_, R2_ = (L2, R2) if L2 is not None else (L1, R1)
        W_, U_ = (W if W is not None else out_), (U if U is not None else out_)
        cp_ = cp if cp is not None and cp is not out else out_
        tiles = triton_cdiv(P, BP) * triton_cdiv(Q, BQ)
        grid = (tiles, 1 if sum_g else G)
        has_copy = cp is not None and cp is not out
        ptr_stores = tma == 2       # the results by plain stores, not tensor-map stores
        results = (None, None) if ptr_stores else (out_, cp if has_copy else None)
        desc = _descriptors((L1, R1, L2, R2, W, *results), (BK, BP), (BK, BQ), (BP, BQ)) if tma else None
        if desc is not None:
            from .triton_kernels import _outer_tma_kernel
            if ptr_stores:
                desc[5:] = out_, cp_
            launch(_outer_tma_kernel, grid,
                *desc, n, float(alpha), float(beta), P, Q, *_st(out_), *_st(cp_),
                HAS_2=L2 is not None, HAS_W=W is not None, W_SHARED=W_.dim() == 2, STORE_OUT=store,
                STORE_COPY=has_copy, ROUND=out_dtype == torch.bfloat16, SUM_G=sum_g, PTR_STORES=ptr_stores,
                INTERP=self.interp, BP=BP, BQ=BQ, BK=BK, num_warps=warps, num_stages=stages)
            return (out[0] if sum_g else out), cp
        if sum_g:                   # no descriptor kernel here: per sequence, then summed
            out = self.outer(L1, R1, L2=L2, R2=R2, W=W, alpha=alpha, beta=beta)[0]
            return out.sum(0), None
        launch(_outer_kernel, grid,
            L1, R1, L2_, R2_, W_, U_, out_, cp_, n, P, Q, *_st(L1), *_st(R1), *_st(L2_), *_st(R2_),
            *_st(W_), *_st(U_), *_st(out_), *_st(cp_), float(alpha), float(beta),
            HAS_2=L2 is not None, HAS_W=W is not None, HAS_U=U is not None, STORE_OUT=store,
            STORE_COPY=cp is not None and cp is not out, ROUND=out_dtype == torch.bfloat16,
            INTERP=self.interp, PREC=self.prec,
            BP=BP, BQ=BQ, BK=BK, num_warps=warps, num_stages=stages)
        return out, cp


def _flat_products(*ts) -> bool:
    """Whether the [G, n, W] token operands (None: absent) are 16-bit CUDA tensors whose G·n rows
    are one [G·n, W] matrix each (rows evenly strided across the sequences): then a sum over the
    sequences of their products is one cuBLAS GEMM over all G·n tokens."""
    return all(t is None or (t.is_cuda and t.element_size() == 2 and t.stride(-1) == 1
                             and t.stride(0) == t.shape[1] * t.stride(1)) for t in ts)


def _sum_on_cublas(L1, R1, L2, R2, W, alpha: float, beta: float) -> torch.Tensor:
    """``_Consts.outer``'s ``sum_g`` result Σ_g (α·W_g + β·(L1_gᵀR1_g [+ L2_gᵀR2_g])) [P, Q] in
    float32 by cuBLAS: the products as GEMMs over all G·n tokens with float32 output (the Triton
    kernel loops over the sequences inside each tile: the static MLP's weight gradient at a
    sequence's only piece, e.g. a CMS level with chunk_size ≥ T)."""
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731  (a view: ``_flat_products``)
    G, P, Q = L1.shape[0], L1.shape[-1], R1.shape[-1]
    if W is None:       # beta 0: addmm ignores the (uninitialised) addend
        out = torch.empty(P, Q, dtype=torch.float32, device=L1.device)
    else:
        out = alpha * (W.float() * G if W.dim() == 2 else W.float().sum(0))
    out = torch.addmm(out, flat(L1).mT, flat(R1), beta=0.0 if W is None else 1.0, alpha=beta,
                      out_dtype=torch.float32)
    if L2 is not None:
        out = torch.addmm(out, flat(L2).mT, flat(R2), beta=1.0, alpha=beta, out_dtype=torch.float32)
    return out


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


TMA_MIN_TOKENS = 256    # pieces this long use the descriptor kernel (GPU calls 2026-11-26g 1–3, 10)


def _outer_config(n: int, interp: bool = False) -> tuple:
    """(BP, BQ, BK, warps, stages, tma) of the update GEMM over n tokens; tma 1: the descriptor
    kernel ``_outer_tma_kernel`` where the tensors allow it (n ≥ TMA_MIN_TOKENS by default); tma 2:
    the same kernel writing the master and its copy by plain stores (``PTR_STORES``).
    NESTED_KERNELS_FAST_MLP_OUTER overrides with five or six comma-separated integers (tma
    missing: 0)."""
    env = getenv("NESTED_KERNELS_FAST_MLP_OUTER")
    if env:
        v = tuple(int(x) for x in env.split(","))
        return v + (0,) * (6 - len(v))
    if interp:
        return (32, 32, 16, 4, 1, 0)
    if n >= TMA_MIN_TOKENS:
        return (128, 128, 64, 8, 3, 1)
    return (64, 128, 64 if n >= 64 else 32, 4, 2, 0)      # weight-traffic bound: more programs per SM


def _descriptors(ts, l_block, r_block, w_block) -> Optional[list]:
    """Tensor descriptors of ``_outer_tma_kernel``'s (L1, R1, L2, R2, W, OUT, COPY) with the
    tokens' blocks [1, BK, BP|BQ] and the weights' [(1,) BP, BQ] (None stays None: an argument
    the kernel does not read, one descriptor less to encode at the launch), or None when a
    tensor breaks TMA's rules (unit last stride, 16-byte aligned base and strides, no empty
    dimension)."""
    from triton.tools.tensor_descriptor import TensorDescriptor
    out = []
    for i, t in enumerate(ts):
        if t is None:
            out.append(None)
        elif (t.stride(-1) != 1 or t.data_ptr() % 16 or 0 in t.shape
                or any(s * t.element_size() % 16 for s in t.stride()[:-1])):
            return None
        else:
            block = list((l_block, r_block)[i % 2] if i < 4 else w_block)
            out.append(TensorDescriptor(t, list(t.shape), list(t.stride()), [1] * (t.dim() - 2) + block))
    return out


# -- weights ----------------------------------------------------------------------------------

def _stack(ws, mlp: str):
    """The op's weight list -> (first layer [.., F1, D], second layer [.., D, F]); swiglu stacks
    (w_gate, w_up) into one first layer."""
    if ws is None:
        return None
    if mlp == "swiglu":
        return torch.cat([ws[0], ws[1]], dim=-2), ws[2]
    return ws[0], ws[1]


def _unstack(pair, mlp: str, F: int) -> Optional[list]:
    if pair is None:
        return None
    if mlp == "swiglu":
        return [pair[0][..., :F, :], pair[0][..., F:, :], pair[1]]
    return list(pair)


def _pieces(L: int, pos: int, C: int) -> list:
    """(start, length, completes) of the chunk pieces of L tokens starting at position pos."""
    out, t = [], 0
    while t < L:
        n = min(L - t, C - pos)
        out.append((t, n, pos + n == C))
        pos = 0 if pos + n == C else pos + n
        t += n
    return out


def _update_flags(c: _Consts, pieces: list, k: int) -> tuple[bool, bool]:
    """(update, accumulate) of piece k: apply the end-of-chunk update (skipped for the last
    piece when no final state is asked); accumulate a trailing partial sum into the state."""
    completes = pieces[k][2]
    return (completes and (k < len(pieces) - 1 or c.final)), (not completes and c.final)


# -- residuals --------------------------------------------------------------------------------

def _hidden(inputs) -> int:
    """F: the first weight is w_in / w_gate [F, D] (shared or per sequence)."""
    return (inputs["w0"] if inputs["w0"] is not None else inputs["s_w0"]).shape[-2]


def _numel(c: _Consts, weight_sets: int, tokens: int) -> int:
    """Elements of ``weight_sets`` weight copies (one sequence's [F1, D] and [D, F] each) and of
    the activations z, a, e, g of ``tokens`` tokens: what the backward needs per piece."""
    return weight_sets * c.D * (c.F1 + c.F) + tokens * (c.F1 + 2 * c.F + c.D)


def _residual_numel(inputs, cfg) -> int:
    """Size of the flat residual buffer, from shapes only (the fake path has no data): the
    activations of all B·T tokens and the copies of the weights every piece after a sequence's
    first one starts from. A sequence of L ≥ 1 tokens from position p has ⌊(p + L − 1)/C⌋ of
    them: B·⌊(T − 1)/C⌋ for an unpacked batch from position 0, at most ⌊T/C⌋ for packed
    sequences; a resumed state (p < C) adds at most one per sequence."""
    x = inputs["x"]
    B, T, _ = x.shape
    c = _Consts(cfg, x, _hidden(inputs))
    if cfg.get("dual"):         # Σ L² over the sequences: B·T², at most T² when packed
        from . import dual
        return dual.residual_numel(c, B * T, (B if inputs["cu_seqlens"] is None else 1) * T * T,
                                   B * dual.layer2_count(T, c.C) if _keeps_layer2(inputs, cfg) else 0)
    resumed = inputs["position0"] is not None
    if inputs["cu_seqlens"] is None:
        sets = B * max(0, (T - 1 + (c.C - 1 if resumed else 0)) // c.C)
    else:
        sets = T // c.C + (num_sequences(B, inputs["cu_seqlens"]) if resumed else 0)
    return _numel(c, sets, B * T)


def _keeps_layer2(inputs, cfg) -> bool:
    """Whether the dual form's residuals hold its materialised second-layer weights: unpacked
    batches only (``_residual_numel`` bounds them by B sequences of T tokens); packed ones rebuild
    them in the backward."""
    return bool(cfg.get("dual")) and inputs["cu_seqlens"] is None


def keeps_residuals(inputs, cfg) -> bool:
    """Whether the forward should keep its residuals (cfg["keep_residuals"], set by the API so
    that the fake and the real forward agree): only when a gradient will be taken and their
    bytes fit ``_budget``."""
    x = inputs["x"]
    if not will_differentiate(inputs):
        return False
    return _residual_numel(inputs, cfg) * _Consts(cfg, x, 1).cd.itemsize <= _budget(x.device)


def residuals(inputs, cfg) -> tuple:
    """The forward's residual output, empty in size (OpSpec ``residuals``; the fake path): one
    flat compute-dtype buffer of per-piece weight copies and activations (``_Saved``), with no
    elements unless cfg["keep_residuals"]."""
    x = inputs["x"]
    n = _residual_numel(inputs, cfg) if cfg.get("keep_residuals") else 0
    return (new_empty(n, dtype=_Consts(cfg, x, 1).cd, device=x.device),)


class _Saved:
    """A cursor over the flat residual buffer. Forward and backward walk the groups and their
    pieces in the same order and take, per piece, the views ``piece`` returns."""

    def __init__(self, flat: torch.Tensor, layer2: bool = False):
        self.flat, self.at = flat, 0
        self.layer2 = layer2        # the dual form's second-layer weights are kept (``dual._residuals``)

    def _take(self, *shape):
        n = math.prod(shape)
        self.at += n
        return self.flat[self.at - n:self.at].view(shape)

    def piece(self, c: _Consts, G: int, n: int, has_g: bool, updates: bool):
        """((z [G,n,F1], a [G,n,F], e [G,n,F], g [G,n,D]; e, g None unless ``has_g``), new copies
        ([G,F1,D], [G,D,F]) when the piece's update starts a later piece of this call, else None)."""
        acts = tuple(self._take(G, n, w) if has_g or i < 2 else None
                     for i, w in enumerate((c.F1, c.F, c.F, c.D)))
        return acts, ((self._take(G, c.F1, c.D), self._take(G, c.D, c.F)) if updates else None)


# -- forward ----------------------------------------------------------------------------------

def _fwd_piece(c: _Consts, Wm, Wc, U, X, E, S, Y, *, update: bool, accumulate: bool,
               need_g: bool, mode: int, master: bool = True, keep=None):
    """One piece of n tokens: X, S [G, n, D] (compute dtype), E [G, n] float32, Y [G, n, D] (or
    None). Wm: masters (float32 or bfloat16, ``c.wd``), Wc: compute-dtype copies, U: pending
    update (or None) — pairs
    (first layer, second layer). Returns (Wm, Wc, U, (z, a, e, g)) after the piece; with
    ``master=False`` an update writes only the copies (Wm None: no later update reads it).
    ``keep``: ``_Saved.piece``'s views, which z, a, e, g and the update's copies are written into."""
    from .triton_kernels import _act_kernel, _d_kernel, _out_kernel
    G, n, D = X.shape
    dev = X.device
    W1c, W2c = Wc
    (kz, ka, ke, kg), knew = keep if keep is not None else ((None,) * 4, None)
    z = torch.matmul(X, W1c.mT, out=kz)                               # [G, n, F1]
    a = ka if ka is not None else new_empty(G, n, c.F, dtype=c.cd, device=dev)
    c.ew(_act_kernel, n, c.F, G, z, a, n, c.F, *_st(z), *_st(a), ACT=c.act)
    o = torch.matmul(a, W2c.mT)                                       # [G, n, D]
    g = eg = e = None
    if need_g:
        g = kg if kg is not None else new_empty(G, n, D, dtype=c.cd, device=dev)
        eg = new_empty(G, n, D, dtype=c.cd, device=dev)
    Yp = Y if Y is not None else o
    gp = g if g is not None else o
    c.ew(_out_kernel, n, D, G, X, o, S, E, Yp, gp, eg if eg is not None else o, n, D, *_st(X), *_st(o),
         *_st(S), *_st2(E), *_st(Yp), *_st(gp), RESIDUAL=c.residual, MODE=mode if need_g else 0,
         STORE_Y=Y is not None)
    if need_g:
        e = torch.matmul(g, W2c, out=ke)                              # [G, n, F]
        ed = new_empty(G, n, c.F1, dtype=c.cd, device=dev)
        c.ew(_d_kernel, n, c.F, G, e, z, E, ed, n, c.F, *_st(e), *_st(z), *_st2(E), *_st(ed), ACT=c.act)
        if update:
            U1, U2 = U if U is not None else (None, None)
            into = knew if knew is not None else (None, None)
            upd = dict(alpha=c.retention, beta=-1.0, out_dtype=c.wd, copy=True, store=master)
            W1m, W1c = c.outer(ed, X, W=Wm[0], U=U1, into=into[0], **upd)
            W2m, W2c = c.outer(eg, a, W=Wm[1], U=U2, into=into[1], **upd)
            Wm, Wc, U = (W1m, W2m), (W1c, W2c), None
        elif accumulate:
            U1, U2 = U if U is not None else (None, None)
            U = (c.outer(ed, X, W=U1, alpha=1.0)[0], c.outer(eg, a, W=U2, alpha=1.0)[0])
    return Wm, Wc, U, (z, a, e, g)


def _copies(c: _Consts, W):
    return tuple(w if w.dtype == c.cd else w.to(c.cd) for w in W)


def _run(W, U, X, E, S, pos, cfg, mode, saved: Optional[_Saved] = None):
    """``chunk.run_sequences``' contract for one group (see chunk.forward); with ``saved`` the
    pieces' activations and weight copies go into the residual buffer."""
    G, L, D = X.shape
    c = _Consts(cfg, X, W[-1].shape[-1])
    X, S = _unit(X), _unit(S)
    Wm, U = _stack(W, c.mlp), _stack(U, c.mlp)
    Wc = _copies(c, Wm)
    Y = new_empty(G, L, D, dtype=X.dtype, device=X.device)
    pieces = _pieces(L, pos, c.C)
    K = len(pieces)
    flags = [_update_flags(c, pieces, k) for k in range(K)]
    for k, (t, n, completes) in enumerate(pieces):
        update, accumulate = flags[k]
        later = c.final or any(u or a for u, a in flags[k + 1:])   # a later update reads the master
        keep = saved.piece(c, G, n, update or accumulate, update and k < K - 1) if saved is not None else None
        Wm, Wc, U, _ = _fwd_piece(c, Wm, Wc, U, X[:, t:t + n], E[:, t:t + n], S[:, t:t + n],
                                  Y[:, t:t + n], update=update, accumulate=accumulate,
                                  need_g=update or accumulate, mode=_MODE[mode], master=later, keep=keep)
        pos = 0 if completes else pos + n
    return Y, _unstack(Wm if c.final else None, c.mlp, c.F), _unstack(U, c.mlp, c.F), pos


def forward(inputs, cfg):
    """The op's outputs and the residual buffer (filled when cfg["keep_residuals"])."""
    c = _Consts(cfg, inputs["x"], 1)
    flat = residuals(inputs, cfg)[0]
    saved = _Saved(flat, _keeps_layer2(inputs, cfg)) if flat.numel() else None
    if cfg.get("dual"):
        from .dual import run
    else:
        run = _run
    outs = chunk.forward(inputs, cfg, run=functools.partial(run, saved=saved), token_dtype=c.cd,
                         weight_dtype=c.wd, keep_exact=True)
    if saved is not None:
        flat[saved.at:].zero_()                  # the bound's unused tail: defined contents
    # a final master that no later piece updated is the residual slot it was written into
    return (*_unaliased([flat, *outs], ())[1:], flat)


# -- backward ---------------------------------------------------------------------------------

def _budget(device: torch.device) -> int:
    """Bytes the backward's per-piece weight copies and activations may take (the forward's
    residuals, or the re-run's stash): ``core.alloc.residual_budget`` with
    NESTED_KERNELS_FAST_MLP_BWD_BYTES."""
    return residual_budget(device, BUDGET_ENV)


# torch.compiler.assume_constant_result(_budget) without importing torch._dynamo (6 s) with the
# package: torch.compile calls it once while tracing and keeps the result (fixed residual shapes)
_budget._dynamo_marked_constant = True


def _bwd_piece(c: _Consts, Wc, acts, X, E, gY, dW, dWc, dU, dX, dE, dS, *, completes: bool,
               mode: int, want_copy: bool, sum_g: bool = False):
    """Reverse one piece: gradients of its tokens into dX, dE (accumulated), dS; returns the
    adjoints (dW, dWc) of the piece-start weights (float32, compute-dtype copy if ``want_copy``;
    ``sum_g``: dW summed over the G sequences, [P, Q], no copy).
    dW/dWc: adjoint of the weights after the piece; dU: of the pending update after it."""
    from .triton_kernels import _b1_kernel, _b2_kernel, _b3_kernel
    z, a, e, g = acts
    G, n, D = X.shape
    dev = X.device
    W1c, W2c = Wc
    if completes:       # W' = r·W − U − Σ: the adjoint of Σ is −Ŵ'
        M, sgn = dWc, -1.0
    else:               # U' = U + Σ
        M, sgn = (None if dU is None else _copies(c, dU)), 1.0
    has_m = M is not None and g is not None
    P1 = eh = ed = egs = None
    if has_m:
        P1 = torch.matmul(X, M[0].mT)                                 # [G, n, F1]
        P2 = torch.matmul(a, M[1].mT)                                 # [G, n, D]
        eh = new_empty(G, n, c.F, dtype=c.cd, device=dev)
        ed = new_empty(G, n, c.F1, dtype=c.cd, device=dev)
        c.ew(_b1_kernel, n, c.F, G, e, z, P1, E, eh, ed, dE, sgn, n, c.F, *_st(e), *_st(z), *_st(P1),
             *_st2(E), *_st(ed), *_st2(dE), ACT=c.act)
        Q = torch.matmul(eh, W2c.mT)                                  # [G, n, D]
        yt = new_empty(G, n, D, dtype=c.cd, device=dev)
        egs = new_empty(G, n, D, dtype=c.cd, device=dev)
        gy = gY if gY is not None else Q
        c.ew(_b2_kernel, n, D, G, gy, Q, P2, g, E, yt, dS, egs, dE, sgn, n, D, *_st(gy), *_st(Q), *_st(P2),
             *_st(g), *_st2(E), *_st(yt), *_st(dS), *_st2(dE), MODE=mode, HAS_GY=gY is not None)
    else:
        yt = gY.to(c.cd) if gY is not None else torch.zeros(G, n, D, dtype=c.cd, device=dev)
        dS.zero_()
    ah = torch.matmul(yt, W2c)                                        # [G, n, F]
    if has_m:
        ah.baddbmm_(egs, M[1])
    zh = new_empty(G, n, c.F1, dtype=c.cd, device=dev)
    c.ew(_b3_kernel, n, c.F, G, z, e if has_m else z, P1 if has_m else z, E, ah, zh, sgn, n, c.F,
         *_st(z), *_st(e if has_m else z), *_st(P1 if has_m else z), *_st2(E), *_st(ah),
         ACT=c.act, HAS_M=has_m)
    # x̂ = [ŷ_tot +] ẑ W₁ [+ (η d) M₁], written into dX by the products themselves
    W1b = W1c.expand(G, *W1c.shape[-2:])
    if c.residual:
        torch.baddbmm(yt, zh, W1b, out=dX)
    else:
        torch.bmm(zh, W1b, out=dX)
    if has_m:
        dX.baddbmm_(ed, M[0])
    r = c.retention if completes else 1.0
    dW1 = dW[0] if dW is not None else None
    dW2 = dW[1] if dW is not None else None
    d1, c1 = c.outer(zh, X, W=dW1, alpha=r, copy=want_copy, sum_g=sum_g)
    if has_m:
        d2, c2 = c.outer(g, eh, L2=yt, R2=a, W=dW2, alpha=r, copy=want_copy, sum_g=sum_g)
    else:
        d2, c2 = c.outer(yt, a, W=dW2, alpha=r, copy=want_copy, sum_g=sum_g)
    return (d1, d2), ((c1, c2) if want_copy else None)


def _stored(c: _Consts, saved: _Saved, W0, pieces: list, flags: list, G: int):
    """The forward's residuals of one group as one segment: yields (0, stash), stash the list of
    (compute-dtype weight copies, (z, a, e, g)) per piece (e, g None where the piece has no g)."""
    Wc, stash = _copies(c, W0), []
    for k, (_, n, _) in enumerate(pieces):
        upd, acc = flags[k]
        acts, new = saved.piece(c, G, n, upd or acc, upd and k < len(pieces) - 1)
        stash.append((Wc, acts))
        Wc = new
    yield 0, stash


def _recomputed(c: _Consts, mode: int, W0, U0, args, pieces: list, flags: list, seg: int):
    """The same stashes by re-running the forward (``args(k)``: piece k's X, E, S), ``seg``
    pieces at a time: a first pass keeps (W, U) checkpoints every ``seg`` pieces, then each
    segment, last first, is re-run from its checkpoint. Yields (s, stash)."""
    K = len(pieces)
    starts = list(range(0, K, seg))
    Wm, Wc, U = W0, _copies(c, W0), U0
    ckpt = {}
    for k in range(starts[-1]):                  # first pass: checkpoints at segment starts
        if k in starts:
            ckpt[k] = (Wm, U)
        upd, _ = flags[k]
        Wm, Wc, U, _ = _fwd_piece(c, Wm, Wc, U, *args(k), None, update=upd, accumulate=False,
                                  need_g=upd, mode=mode)
    ckpt[starts[-1]] = (Wm, U)
    for s in reversed(starts):
        Wm, U = ckpt.pop(s)
        Wc = _copies(c, Wm)
        end = min(s + seg, K)
        stash = []
        for k in range(s, end):                  # re-run the segment, keeping copies and activations
            upd, acc = flags[k]
            Wc_k = Wc
            Wm, Wc, U, acts = _fwd_piece(c, Wm, Wc, U, *args(k), None, update=upd and k < end - 1,
                                         accumulate=False, need_g=upd or acc, mode=mode)
            stash.append((Wc_k, acts))
        del Wm, Wc, U
        yield s, stash


def _backward_group(c: _Consts, mode: int, W0, U0, X, E, S, pos, gY, gW, gU, dX, dE, dS,
                    saved: Optional[_Saved], sum_g: bool):
    """Gradients of one group (see ``_bwd_piece``); fills dX, dE, dS [G, L, ...] and returns the
    adjoints (float32 pairs, or None) of the initial weights — summed over the G sequences with
    ``sum_g`` (shared initial weights) — and of the initial pending update.
    ``saved``: the forward's residuals (None: re-run the forward)."""
    G, L, D = X.shape
    pieces = _pieces(L, pos, c.C)
    K = len(pieces)
    dW, dU = gW, gU
    if K == 0:
        return (tuple(w.sum(0) for w in dW) if sum_g and dW is not None else dW), dU
    flags = [_update_flags(c, pieces, k) for k in range(K)]

    def piece_args(k):
        t, n, _ = pieces[k]
        return X[:, t:t + n], E[:, t:t + n], S[:, t:t + n]

    if saved is not None:
        stashes = _stored(c, saved, W0, pieces, flags, G)
    else:
        per_piece, budget = c.cd.itemsize * _numel(c, G, G * min(L, c.C)), _budget(X.device)
        seg = K if K * per_piece <= budget else max(1, budget // per_piece)
        stashes = _recomputed(c, mode, W0, U0, piece_args, pieces, flags, seg)
    dWc = _copies(c, dW) if dW is not None else None
    for s, stash in stashes:
        for k in reversed(range(s, s + len(stash))):
            Wc_k, acts = stash.pop()
            t, n, completes = pieces[k]
            if k == 0 and completes and U0 is not None:   # W_1 = r·W_0 − U_0 − Σ: Û_0 = −Ŵ_1
                dU = None if dW is None else tuple(-w for w in dW)
            Xk, Ek, _ = piece_args(k)
            dW, dWc = _bwd_piece(c, Wc_k, acts, Xk, Ek, None if gY is None else gY[:, t:t + n],
                                 dW, dWc, dU, dX[:, t:t + n], dE[:, t:t + n], dS[:, t:t + n],
                                 completes=completes, mode=mode, want_copy=k > 0, sum_g=sum_g and k == 0)
            del acts, Wc_k
    return dW, dU


def _grad(grads, name):
    g = grads.get(name)
    return None if g is None or g.numel() == 0 else g


def backward(inputs, outputs, grads, cfg):
    x = inputs["x"]
    B, T, D = x.shape
    mlp = cfg["mlp"]
    nw = 3 if mlp == "swiglu" else 2
    F = _hidden(inputs)
    c = _Consts(cfg, x, F)
    p = prepare(inputs, cfg, c.cd, c.wd, keep_exact=True)
    mode = _MODE[p.mode]
    dev = x.device
    packed = inputs["cu_seqlens"] is not None
    gy = _unit(_grad(grads, "y"))
    gW_all = [_grad(grads, f"w{i}") for i in range(nw)] if c.final else [None] * nw
    gU_all = [_grad(grads, f"u{i}") for i in range(nw)] if c.final else [None] * nw
    f32 = torch.float32
    dx = new_empty(B, T, D, dtype=c.cd, device=dev)
    dE = torch.zeros(B, T, dtype=f32, device=dev)
    dS = new_empty(B, T, D, dtype=f32, device=dev)
    shared = p.shared is not None
    d_shared = None
    N = len(p.segments)
    d_sw = [new_empty(N, *w.shape[-2:], dtype=f32, device=dev) for w in (p.weights or [])]
    d_su = [new_empty(N, *u.shape[-2:], dtype=f32, device=dev) for u in (p.pending or [])]
    shapes = [w.shape[-2:] for w in (p.shared or p.weights)]

    def fill(pair, G):
        """Adjoint pair -> per-weight list [G, out, in] (zeros where None)."""
        if pair is None:
            return [torch.zeros(G, *s, dtype=f32, device=dev) for s in shapes]
        return [w.expand(G, *w.shape[-2:]) for w in _unstack(pair, mlp, F)]

    flat = outputs["saved"]
    saved = _Saved(flat, _keeps_layer2(inputs, cfg)) if flat.numel() else None  # None: none kept
    if cfg.get("dual"):
        from .dual import backward_group as group_backward
    else:
        group_backward = _backward_group
    for grp in chunk.groups(p, packed):
        G = len(grp.segs)
        whole = grp.sel is None and not packed
        X, E, S = _unit(grp.tokens(p.x)), grp.tokens(p.eta), _unit(grp.tokens(p.signal))
        gY = None if gy is None else grp.tokens(gy)
        W0 = _stack(grp.states(p.weights) if p.weights is not None else p.shared, mlp)
        U0 = _stack(grp.states(p.pending), mlp)
        pick = lambda ts: None if all(t is None for t in ts) else _stack(  # noqa: E731
            [torch.zeros(G, *s, dtype=f32, device=dev) if t is None else grp.states([t])[0].float()
             for t, s in zip(ts, shapes)], mlp)
        gW, gU = pick(gW_all), pick(gU_all)
        L = grp.L
        if whole:
            gdX, gdE, gdS = dx, dE, dS
        else:
            gdX = new_empty(G, L, D, dtype=c.cd, device=dev)
            gdE = torch.zeros(G, L, dtype=f32, device=dev)
            gdS = new_empty(G, L, D, dtype=f32, device=dev)
        dW0, dU0 = group_backward(c, mode, W0, U0, X, E, S, grp.pos, gY, gW, gU, gdX, gdE, gdS,
                                  saved, sum_g=shared)
        if not whole:
            for j, seg in enumerate(grp.segs):
                r = slice(seg.start, seg.end)
                dx[seg.row, r], dE[seg.row, r], dS[seg.row, r] = gdX[j], gdE[j], gdS[j]
        if shared:      # dW0: already summed over the group's sequences
            sums = [torch.zeros(*s, dtype=f32, device=dev) for s in shapes] if dW0 is None \
                else _unstack(dW0, mlp, F)
            d_shared = sums if d_shared is None else [a + b for a, b in zip(d_shared, sums)]
        else:
            for i, w in enumerate(fill(dW0, G)):
                d_sw[i][grp.index] = w
        if p.pending is not None:
            for i, u in enumerate(fill(dU0, G)):
                d_su[i][grp.index] = u

    out = {"x": dx.to(x.dtype)}
    if inputs["eta"] is not None:
        out["eta"] = dE.to(inputs["eta"].dtype)
    sig = "target" if p.mode == "target" else "teach"
    out[sig] = dS.to(inputs[sig].dtype)
    for i in range(nw):
        if shared:
            w = inputs[f"w{i}"]
            out[f"w{i}"] = (d_shared[i] if d_shared is not None else torch.zeros_like(w, dtype=f32)).to(w.dtype)
        else:
            out[f"s_w{i}"] = d_sw[i].to(inputs[f"s_w{i}"].dtype)
        if p.pending is not None:
            out[f"s_u{i}"] = d_su[i].to(inputs[f"s_u{i}"].dtype)
    return out


BACKEND = Backend(forward, backward, unsupported, residuals)
