"""The dual (attention-like) form of ``fast_mlp`` for small chunks: no per-chunk weights.

Materialised weights cost a read and a write of every fast weight per chunk; at C = 64 that
traffic, not the matrix units, sets the time (docs/fast_mlp.md §1, §4). Since every update is a
sum of rank-one terms, the chunk-c weights of a sequence are (r = retention, j < c the earlier
chunks of the same sequence, W₀ its initial weights, first layer stacked as in the triton backend)

    W1_c = r^c W1₀ − Σ_j r^(c−1−j) Dhⱼᵀ Xⱼ,      Dh = η ⊙ d   (d = ∂⟨g, MLP⟩/∂z)
    W2_c = r^c W2₀ − Σ_j r^(c−1−j) Ghⱼᵀ Aⱼ,      Gh = η ⊙ g

so the products every token needs are W₀'s products plus products against earlier tokens:

    Z_c = r^c X_c W1₀ᵀ − Σ_j Γ_cj (X_c Xⱼᵀ) Dhⱼ,   A_c = act(Z_c)
    O_c = r^c A_c W2₀ᵀ − Σ_j Γ_cj (A_c Aⱼᵀ) Ghⱼ,   Y_c = [X_c +] O_c,  G_c = Y_c − target | teach
    E_c = r^c G_c W2₀  − Σ_j Γ_cj (G_c Ghⱼᵀ) Aⱼ,   Dh_c = η ⊙ d(Z_c, E_c)

with Γ_cj = r^(c−1−j). The [T, T] Gram matrices SX = X Xᵀ, SA = A Aᵀ, SG = G Ghᵀ (their blocks
below the chunk diagonal, scaled by Γ) are kept for the backward, which walks the chunks in
reverse: the adjoints of chunk c's Dh, Gh and A (as earlier tokens of later chunks) are products
of the same Grams with the later chunks' adjoints Ẑ, Ô, Ê, G, and the later chunks' own terms use
two more Grams (Ê Aᵀ, Ô Ghᵀ) built as the walk goes. The walks go in blocks of chunks
(``_blocks``, ≈ √(L·C) tokens): what needs only tokens of other blocks (the forward's Gram SX
against earlier Dh; the backward's later adjoints against the precomputed or already built
Grams) is one product per block, the rest per chunk. What feeds nothing back into the walk is
computed outside it as products over all tokens: the final state's adjoint terms before it
(``_final_terms``), the input gradient X̂ (with the Gram Ẑ Dhᵀ, ``_input_grad``) and the weight
gradients after it. The products are cuBLAS GEMMs in the input dtype (bmm with strided views,
float32 accumulation) on token tensors stored token-major (``_tokens``: a product with shared
weights is one GEMM over all sequences' rows); from a block on (``_layer2_from``, opt-in) the
second layer's weights are materialised per block; the elementwise parts are the triton
backend's kernels (``_act``, ``_out``, ``_d``, ``_b1``–``_b3``), so the local algebra is shared
with the materialised form. Arithmetic grows as T² per sequence (docs/fast_mlp.md §1 says when
this form is chosen). The walks issue ≈ 25 launches per chunk; on CUDA they are replayed as CUDA
graphs (``_graphed``; NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=0 runs them eagerly).

Supported: gelu/silu/swiglu, residual, retention, target/teach, η tensor or number, cu_seqlens,
per-sequence initial weights, final states; not a state that resumes mid-chunk (position > 0 or
a pending update) nor ``weight_dtype=torch.bfloat16`` (each chunk's weights rounded to bf16 has
no dual form): those run materialised.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ...core.alloc import new_empty
from ...core.env import getenv
from ...core.graphs import GraphCache
from ...core.triton_launch import env_flag
from .triton_backend import _Consts, _Saved, _copies, _stack, _st, _st2, _unit, _unstack

FORM_ENV = "NESTED_KERNELS_FAST_MLP_FORM"
# "auto" takes the dual form for CUDA inputs with chunk sizes up to AUTO_MAX_CHUNK and sequences
# up to AUTO_MAX_TOKENS long (T² Grams and work): H100, B4 T4096 D2048 bf16 (docs/gpu_runs/
# 2026-12-06b_call2), fwd+bwd dual / materialised at C 64 / 128 / 256 = 0.81 / 0.81 / 0.87 (gelu),
# 0.80 / 0.72 / 0.88 (swiglu); at C 512 and 1024 the dual form was not faster. Longer sequences
# are untimed (the T² terms grow). NESTED_KERNELS_FAST_MLP_FORM=dual forces it.
AUTO_MAX_CHUNK = 256
AUTO_MAX_TOKENS = 4096


def supported(inputs, cfg) -> Optional[str]:
    """Why the dual form cannot run these inputs (None: it can)."""
    if inputs["position0"] is not None or inputs["s_u0"] is not None:
        return "a state that resumes mid-chunk (pending update) runs materialised"
    if cfg.get("weight_dtype") == "bfloat16":
        return "weight_dtype=torch.bfloat16 rounds each chunk's weights: materialised only"
    return None


def chosen(inputs, cfg) -> bool:
    """Whether the triton backend runs the dual form (cfg["dual"], decided by the API so that the
    fake and real forwards agree): NESTED_KERNELS_FAST_MLP_FORM = "dual" | "materialized" |
    "auto" (default: CUDA inputs with chunk_size ≤ AUTO_MAX_CHUNK and T ≤ AUTO_MAX_TOKENS)."""
    form = getenv(FORM_ENV) or "auto"
    if form not in ("auto", "dual", "materialized"):
        raise ValueError(f"{FORM_ENV} must be auto, dual or materialized, got {form!r}")
    if form == "materialized" or supported(inputs, cfg) is not None:
        return False
    if form == "dual":
        return True
    x = inputs["x"]
    return x.is_cuda and cfg["chunk_size"] <= AUTO_MAX_CHUNK and x.shape[1] <= AUTO_MAX_TOKENS


GRAPH_ENV = "NESTED_KERNELS_FAST_MLP_DUAL_GRAPH"
_GRAPHS = GraphCache()


def _graphed(X: torch.Tensor) -> bool:
    """Whether the walks run as CUDA graphs (``core.graphs``: a shape's first call eagerly, its
    later ones replayed): CUDA tensors unless NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=0, never while
    the caller itself is being captured into a CUDA graph. Each captured shape keeps its static
    inputs, residuals and scratch on the GPU (≈ 4 GB for the forward and backward at B4 T4096
    D2048 F8192) until ``release_graphs``. H100 2026-12-06c call 1, fwd+bwd eager / graphed: gelu
    C64 73.26 / 52.07 ms, C128 39.92 / 34.21; swiglu C64 68.45 / 47.74, C128 37.94 / 32.75."""
    return X.is_cuda and env_flag(GRAPH_ENV, True) and not torch.cuda.is_current_stream_capturing()


def release_graphs():
    """Free the GPU memory the dual walks' CUDA graphs keep (they are captured again when needed)."""
    _GRAPHS.clear()


def _key(c: _Consts, phase: str, X: torch.Tensor, mode: int, *flags) -> tuple:
    """What fixes a walk's control flow and shapes: the graph cache's key."""
    return (phase, tuple(X.shape), c.F1, c.F, c.C, c.cd, c.act, c.residual, c.retention, mode, X.device,
            _block_chunks(X.shape[1], c.C), getenv(LAYER2_ENV), *flags)


def residual_numel(c: _Consts, tokens: int, square: int, layer2: int = 0) -> int:
    """Elements of the residuals: Z, A, E, G of ``tokens`` tokens, three Grams of ``square``
    elements (Σ over sequences of L²) and ``layer2`` second-layer weights [D, F] (Σ over sequences
    of ``layer2_count``)."""
    return tokens * (c.F1 + 2 * c.F + c.D) + 3 * square + layer2 * c.D * c.F


def _tokens(G: int, L: int, W: int, alloc: Callable) -> torch.Tensor:
    """A [G, L, W] tensor stored token-major (``alloc(L, G, W)``, transposed): the G sequences'
    rows of a chunk are one contiguous [n·G, W] matrix (``_flat``), so a product with shared
    weights is one GEMM without copies, while each sequence's rows keep a uniform stride (G·W) for
    the batched per-sequence products."""
    return alloc(L, G, W).transpose(0, 1)


def _new(c: _Consts, dev) -> Callable:
    """alloc(*shape): a new compute-dtype tensor on ``dev``."""
    return lambda *shape: new_empty(*shape, dtype=c.cd, device=dev)


def _flat(T: torch.Tensor) -> Optional[torch.Tensor]:
    """The [n·G, W] matrix (rows token-major) of a [G, n, W] view of a ``_tokens`` tensor, or None
    when T is not laid out so (a caller's [G, L, W] tensor)."""
    t = T.transpose(0, 1)
    return t.view(-1, T.shape[-1]) if t.is_contiguous() else None


def _residuals(c: _Consts, saved: Optional[_Saved], G: int, L: int, dev, layer2: bool) -> tuple:
    """(Z, A, E, G, SX, SA, SG, *W2) of one group: views of the residual buffer, or new tensors;
    the token tensors token-major (``_tokens``), the Grams [G, L, L], with ``layer2`` the second
    layer's compute-dtype weights [G, D, F] at the start of each materialised block
    (``_layer2_weights``; none unless NESTED_KERNELS_FAST_MLP_DUAL_LAYER2 asks)."""
    alloc = saved._take if saved is not None else _new(c, dev)
    toks = tuple(_tokens(G, L, w, alloc) for w in (c.F1, c.F, c.F, c.D))
    grams = tuple(alloc(G, L, L) for _ in range(3))
    w2 = tuple(alloc(G, c.D, c.F) for _ in range(layer2_count(L, c.C) if layer2 else 0))
    return toks + grams + w2


def _chunks(L: int, C: int) -> list:
    """(index, start, length) of the chunks of a sequence of L tokens starting at a boundary."""
    return [(k, t, min(C, L - t)) for k, t in enumerate(range(0, L, C))]


BLOCK_ENV = "NESTED_KERNELS_FAST_MLP_DUAL_BLOCK"


def _block_chunks(L: int, C: int) -> int:
    """Chunks per block of the walks (``_blocks``): a product against the tokens of other blocks
    reads them once per block, one against the block's own earlier (later) chunks once per chunk;
    ≈ √(L·C) tokens per block (a power of two) balances the two reads (L²/2B + L·B/2C tokens).
    NESTED_KERNELS_FAST_MLP_DUAL_BLOCK (tokens per block) overrides it."""
    env = getenv(BLOCK_ENV)
    if env and not env.isdigit():
        raise ValueError(f"{BLOCK_ENV} must be a number of tokens, got {env!r}")
    tokens = int(env) if env else 1 << round(math.log2(math.sqrt(L * C)))
    return max(1, tokens // C)


def _blocks(L: int, C: int) -> list:
    """(first token, end token, its chunks as ``_chunks`` gives them) of each block."""
    ch, m = _chunks(L, C), _block_chunks(L, C)
    return [(g[0][1], g[-1][1] + g[-1][2], g) for g in (ch[i:i + m] for i in range(0, len(ch), m))]


LAYER2_ENV = "NESTED_KERNELS_FAST_MLP_DUAL_LAYER2"
LAYER2_DEFAULT = "2048"     # tokens before the first block with materialised second-layer weights


def _layer2_from(blocks: list) -> int:
    """Index of the first block from which the second layer's weights are materialised at every
    block start (``_layer2_weights``; len(blocks): never). A chunk of such a block multiplies by
    its sequence's W2_b [D, F] (G·D·F values read per product) instead of W2₀ (shared) and the
    history A, Gh of the earlier blocks (G·b0·(F + D) values); the backward reads the W2_b from the
    residuals (or rebuilds them) and carries their adjoint. NESTED_KERNELS_FAST_MLP_DUAL_LAYER2 =
    the tokens before the first such block (default ``LAYER2_DEFAULT``), or "off". H100, B4 T4096
    D2048 C64 bf16, fwd+bwd ms (check script): 2026-12-06e calls 1 and 6 (the W2_b kept, W2h's
    copy from its update pass) gelu off 42.12 / 42.07, from 2048 40.08 / 40.24; swiglu off 37.69 /
    37.31, from 2048 35.28 / 35.45 (from 819: 42.08 / 36.48, call 1); before those changes
    (2026-12-06d calls 5, 6) it gained nothing forward + backward."""
    env = getenv(LAYER2_ENV) or LAYER2_DEFAULT
    if env == "off":
        return len(blocks)
    if not env.isdigit():
        raise ValueError(f"{LAYER2_ENV} must be a number of tokens or off, got {env!r}")
    return next((i for i, (b0, _, _) in enumerate(blocks) if b0 >= max(1, int(env))), len(blocks))


def layer2_count(L: int, C: int) -> int:
    """Second-layer weight sets a sequence of L tokens materialises (``_layer2_from``)."""
    blocks = _blocks(L, C)
    return len(blocks) - _layer2_from(blocks)


def _layer2_weights(c: _Consts, dec: "_Decay", Gh, A, W2m, blocks: list, first: int):
    """Yield the second layer's weights at the start of blocks first, first + 1, … in the compute
    dtype [G, D, F]: W2_b = r^(k_b − k_a) W2_a − Σ_{a0 ≤ j < b0} r^(k_b − 1 − chunk j) Ghⱼᵀ Aⱼ with
    W2_a the previous block's (float32 masters; the first from W2₀'s master ``W2m`` and every
    earlier token). Gh and A are read up to each block's start only."""
    W, h0, k0 = W2m, 0, 0
    for b0, _, chunks in blocks[first:]:
        kb = chunks[0][0]
        W, copy = c.outer(dec.pow_rows(Gh[:, h0:b0], h0, kb - 1, -1), A[:, h0:b0], W=W,
                          alpha=c.retention ** (kb - k0), beta=-1.0, copy=True)
        yield copy
        h0, k0 = b0, kb


class _Decay:
    """Powers of the retention r per chunk: Γ over the earlier columns of a chunk's Gram rows,
    r^k per token. Nothing to scale when r == 1."""

    def __init__(self, c: _Consts, L: int, dev):
        self.r, self.C = c.retention, c.C
        self.on = self.r != 1.0
        self.block = torch.arange(L, device=dev) // c.C
        self.rows = None          # ``gram``'s factors per chunk [chunks, L], made at its first call

    def _gamma(self, rows: torch.Tensor) -> torch.Tensor:
        """Γ [len(rows), L] float32: r^(row − 1 − chunk of each token) for the row chunks ``rows``,
        exponents clamped at 0 (their factors are read only left of the row's chunk)."""
        return torch.pow(self.r, (rows[:, None] - 1 - self.block[None, :]).clamp_min(0).to(torch.float32))

    def gram(self, S: torch.Tensor, k: int, t: int, h0: int = 0):
        """S [G, n, t − h0] (chunk k's rows against the earlier tokens h0 … t) *= r^(k−1−j): one
        launch per call from a table of every chunk's row of factors, made at the first call."""
        if self.on and t > h0:
            if self.rows is None:
                chunks = torch.arange(len(self.block) // self.C + 1, device=S.device)
                self.rows = self._gamma(chunks).to(S.dtype)
            S.mul_(self.rows[k, h0:t])

    def _factors(self, r0: int, n: int, a: int, s: int, dtype) -> torch.Tensor:
        """r^(a + s·chunk) for the rows r0 … r0+n, [n, 1] in ``dtype``."""
        return torch.pow(self.r, (a + s * self.block[r0:r0 + n]).to(torch.float32)).to(dtype)[:, None]

    def pow_rows(self, T: torch.Tensor, r0: int, a: int, s: int) -> torch.Tensor:
        """T [G, n, W] (rows r0 … r0+n) times r^(a + s·chunk) per row: a scaled copy, or T itself
        when r == 1."""
        return T * self._factors(r0, T.shape[1], a, s, T.dtype) if self.on else T

    def square(self, S: torch.Tensor, r0: int = 0):
        """S [G, n, m] (rows r0 … r0+n, columns 0 … m of an [L, L] Gram) *= Γ below the chunk
        diagonal (what lies above is never read)."""
        if self.on:
            n, m = S.shape[-2:]
            S.mul_(self._gamma(self.block[r0:r0 + n])[:, :m].to(S.dtype))

    def below(self, S: torch.Tensor, r0: int = 0):
        """S [G, n, m] (rows r0 … r0+n, columns 0 … m) *= Γ below the chunk diagonal, 0 on and
        above it."""
        n, m = S.shape[-2:]
        rows = self.block[r0:r0 + n]
        S.mul_(torch.where(rows[:, None] > self.block[None, :m], self._gamma(rows)[:, :m], 0.0).to(S.dtype))

    def to_end(self, T: torch.Tensor, rows: int, nc: int):
        """T [G, L, W] rows < ``rows`` *= r^(nc−1−chunk): their weight in the final state."""
        if self.on:
            T[:, :rows].mul_(self._factors(0, rows, nc - 1, -1, T.dtype))

    def from_start(self, T: torch.Tensor):
        """T [G, L, W] *= r^chunk per row: the initial weights' factor in each chunk's products."""
        if self.on:
            T.mul_(self._factors(0, T.shape[1], 0, 1, T.dtype))


def _wmm(A: torch.Tensor, W: torch.Tensor, out: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """out [G, n, N] = alpha·A [G, n, K] @ W [+ beta·out]: W per sequence [G, K, N] (batched), or
    shared [K, N] — one GEMM over all G·n rows when A and out are token-major (``_flat``), reading W
    once instead of once per sequence (the walks' products with W1₀, W2₀)."""
    a, o = _flat(A), _flat(out)
    scaled = beta != 0.0 or alpha != 1.0
    if W.dim() == 2 and a is not None and o is not None:
        torch.addmm(o, a, W, beta=beta, alpha=alpha, out=o) if scaled else torch.mm(a, W, out=o)
        return out
    if W.dim() == 2:
        W = W.expand(A.shape[0], *W.shape)
    return out.baddbmm_(A, W, beta=beta, alpha=alpha) if scaled else torch.bmm(A, W, out=out)


def _forward(c: _Consts, Wc, W2m, X, E, S, mode: int, res: tuple, Y: Optional[torch.Tensor]):
    """Fill the residuals ``res`` (and Y when given) of one group; returns (Dh, Gh). ``Wc``: the
    initial weights in the compute dtype, ``W2m``: the second layer's master (``_layer2_weights``,
    whose weights go into ``res[7:]`` when it has room for them)."""
    from .triton_kernels import _act_kernel, _d_kernel, _out_kernel
    G, L, D = X.shape
    dev = X.device
    Z, A, Ee, Gs, SX, SA, SG = res[:7]
    keep = res[7:]
    dec = _Decay(c, L, dev)
    _wmm(X, Wc[0].mT, Z)
    dec.from_start(Z)                                        # r^chunk X W1₀ᵀ
    blocks = _blocks(L, c.C)
    for b0, b1, chunks in blocks:   # each block's rows against the tokens before its last chunk:
        e = chunks[-1][1]           # all of SX that is read (below the chunk diagonal)
        if e:
            torch.bmm(X[:, b0:b1], X[:, :e].mT, out=SX[:, b0:b1, :e])
            dec.square(SX[:, b0:b1, :e], b0)
    alloc = _new(c, dev)
    Dh, Gh = _tokens(G, L, c.F1, alloc), _tokens(G, L, D, alloc)
    O = _tokens(G, min(c.C, L), D, alloc)
    first = _layer2_from(blocks)
    W2s = _layer2_weights(c, dec, Gh, A, W2m, blocks, first)
    for bi, (b0, b1, chunks) in enumerate(blocks):
        if b0:       # the block's rows against the earlier blocks' Dh: one product per block
            Z[:, b0:b1].baddbmm_(SX[:, b0:b1, :b0], Dh[:, :b0], alpha=-1.0)
        # the second layer: W2₀ and every earlier token, or from ``first`` on the block's W2_b and
        # the block's earlier tokens (h0 = b0, powers of r from the block's first chunk kb)
        W2, h0, kb = (next(W2s), b0, chunks[0][0]) if bi >= first else (Wc[1], 0, 0)
        if keep and bi >= first:
            keep[bi - first].copy_(W2)
        for k, t, n in chunks:
            R, H, rk = slice(t, t + n), slice(h0, t), c.retention ** (k - kb)
            Zk, Ak, Ek, Gk, Xk, Sk, Etk = Z[:, R], A[:, R], Ee[:, R], Gs[:, R], X[:, R], S[:, R], E[:, R]
            if t > b0:
                Zk.baddbmm_(SX[:, R, b0:t], Dh[:, b0:t], alpha=-1.0)
            c.ew(_act_kernel, n, c.F, G, Zk, Ak, n, c.F, *_st(Zk), *_st(Ak), ACT=c.act)
            o = _wmm(Ak, W2.mT, O[:, :n])
            if t > h0:
                sa = torch.bmm(Ak, A[:, H].mT, out=SA[:, R, H])
                dec.gram(sa, k, t, h0)
                o.baddbmm_(sa, Gh[:, H], beta=rk, alpha=-1.0)
            Yk = Y[:, R] if Y is not None else o
            c.ew(_out_kernel, n, D, G, Xk, o, Sk, Etk, Yk, Gk, Gh[:, R], n, D, *_st(Xk), *_st(o), *_st(Sk),
                 *_st2(Etk), *_st(Yk), *_st(Gk), RESIDUAL=c.residual, MODE=mode, STORE_Y=Y is not None)
            _wmm(Gk, W2, Ek)
            if t > h0:
                sg = torch.bmm(Gk, Gh[:, H].mT, out=SG[:, R, H])
                dec.gram(sg, k, t, h0)
                Ek.baddbmm_(sg, A[:, H], beta=rk, alpha=-1.0)
            c.ew(_d_kernel, n, c.F, G, Ek, Zk, Etk, Dh[:, R], n, c.F, *_st(Ek), *_st(Zk), *_st2(Etk),
                 *_st(Dh[:, R]), ACT=c.act)
    return Dh, Gh


def run(W, U, X, E, S, pos, cfg, mode, saved: Optional[_Saved] = None):
    """``chunk.run_sequences``' contract for one group starting at a chunk boundary (``U`` None,
    ``pos`` 0); with ``saved`` the residuals go into the forward's residual buffer."""
    from .triton_backend import _MODE
    assert pos == 0 and U is None, "the dual form starts at a chunk boundary"
    G, L, D = X.shape
    c = _Consts(cfg, X, W[-1].shape[-1])
    if L == 0:
        return X.new_empty(G, 0, D), (W if c.final else None), None, 0
    X, S = _unit(X), _unit(S)
    Wm = _stack(W, c.mlp)
    Y = new_empty(G, L, D, dtype=X.dtype, device=X.device)
    Wc = _copies(c, Wm)
    keep2 = saved is not None and saved.layer2        # the residuals keep the W2_b (``_residuals``)
    if _graphed(X):
        def walk(X_, E_, S_, W1_, W2_, W2m_):
            r = _residuals(c, None, G, L, X.device, keep2)
            Y_ = new_empty(G, L, D, dtype=X.dtype, device=X.device)
            return (*r, Y_, *_forward(c, (W1_, W2_), W2m_, X_, E_, S_, _MODE[mode], r, Y_))
        outs = _GRAPHS.run(_key(c, "fwd", X, _MODE[mode], Wc[0].dim(), keep2), walk, (X, E, S, *Wc, Wm[1]))
        res, Dh, Gh = outs[:-3], outs[-2], outs[-1]     # the graph's own: valid within this call
        Y.copy_(outs[-3])
        if saved is not None:
            for dst, src in zip(_residuals(c, saved, G, L, X.device, keep2), res):
                dst.copy_(src)
    else:
        res = _residuals(c, saved, G, L, X.device, keep2)
        Dh, Gh = _forward(c, Wc, Wm[1], X, E, S, _MODE[mode], res, Y)
    full = L // c.C * c.C                          # tokens of complete chunks
    pos_end = L - full
    if not c.final:
        return Y, None, None, pos_end
    A = res[1]
    nc = L // c.C
    U_ = None
    if pos_end:      # the trailing partial chunk's sums: the state's pending update
        U_ = (c.outer(Dh[:, full:], X[:, full:])[0], c.outer(Gh[:, full:], A[:, full:])[0])
    dec = _Decay(c, L, X.device)
    dec.to_end(Dh, full, nc)
    dec.to_end(Gh, full, nc)
    r = c.retention ** nc
    Wf = (c.outer(Dh[:, :full], X[:, :full], W=Wm[0], alpha=r, beta=-1.0)[0],
          c.outer(Gh[:, :full], A[:, :full], W=Wm[1], alpha=r, beta=-1.0)[0])
    return Y, _unstack(Wf, c.mlp, c.F), _unstack(U_, c.mlp, c.F), pos_end


def backward_group(c: _Consts, mode: int, W0, U0, X, E, S, pos, gY, gW, gU, dX, dE, dS,
                   saved: Optional[_Saved], sum_g: bool):
    """``triton_backend._backward_group``'s contract in the dual form: fills dX, dE, dS [G, L, ...]
    and returns the float32 adjoints of the initial weights (summed over the G sequences with
    ``sum_g``) and None (no pending update to resume from)."""
    assert pos == 0 and U0 is None, "the dual form starts at a chunk boundary"
    G, L, D = X.shape
    if L == 0:
        return (tuple(w.sum(0) for w in gW) if sum_g and gW is not None else gW), None
    res = None if saved is None else _residuals(c, saved, G, L, X.device, saved.layer2)
    if not _graphed(X):
        return _backward_walk(c, mode, W0, X, E, S, gY, gW, gU, dX, dE, dS, res, sum_g), None
    gU = gU if gU is not None and L % c.C else None

    def walk(W1_, W2_, X_, E_, S_, gY_, gW1_, gW2_, gU1_, gU2_, *res_):
        dX_ = new_empty(G, L, D, dtype=dX.dtype, device=X.device)
        dE_ = torch.zeros(G, L, dtype=dE.dtype, device=X.device)
        dS_ = new_empty(G, L, D, dtype=dS.dtype, device=X.device)
        d = _backward_walk(c, mode, (W1_, W2_), X_, E_, S_, gY_, None if gW1_ is None else (gW1_, gW2_),
                           None if gU1_ is None else (gU1_, gU2_), dX_, dE_, dS_, res_ or None, sum_g)
        return (dX_, dE_, dS_, *d)
    pair = lambda p: (None, None) if p is None else tuple(p)  # noqa: E731
    key = _key(c, "bwd", X, mode, W0[0].dim(), gY is None, gW is None, gU is None, sum_g, len(res or ()))
    outs = _GRAPHS.run(key, walk, (*W0, X, E, S, gY, *pair(gW), *pair(gU), *(res or ())))
    dX.copy_(outs[0])
    dE.add_(outs[1])
    dS.copy_(outs[2])
    return (outs[3].clone(), outs[4].clone()), None     # a later group of the same key replays


def _backward_walk(c: _Consts, mode: int, W0, X, E, S, gY, gW, gU, dX, dE, dS, res, sum_g: bool):
    """The body of ``backward_group`` (L ≥ 1): ``res`` the forward's residuals, or None to run the
    forward again; returns the adjoints of the initial weights (float32 pair)."""
    from .triton_kernels import _b1_kernel, _b2_kernel, _b3_kernel
    G, L, D = X.shape
    dev = X.device
    alloc = _new(c, dev)
    Wc = _copies(c, W0)
    rerun = res is None
    if rerun:
        res = _residuals(c, None, G, L, dev, False)
    Z, A, Ee, Gs, SX, SA, SG = res[:7]
    if rerun:                            # no residuals kept: run the forward again
        Dh, Gh = _forward(c, Wc, W0[1], X, E, S, mode, res, None)
    else:                                # Dh = η ⊙ d and Gh = η ⊙ g from the residuals
        from .triton_kernels import _d_kernel
        Dh, Gh = _tokens(G, L, c.F1, alloc), _tokens(G, L, D, alloc)
        c.ew(_d_kernel, L, c.F, G, Ee, Z, E, Dh, L, c.F, *_st(Ee), *_st(Z), *_st2(E), *_st(Dh), ACT=c.act)
        torch.mul(Gs, E[..., None], out=Gh)
    dec = _Decay(c, L, dev)
    nc, full = L // c.C, L // c.C * c.C
    # final-state adjoints in the compute dtype: Ŵ_final (complete chunks), Û (the partial chunk)
    gWc = _copies(c, gW) if gW is not None else None
    gUc = _copies(c, gU) if gU is not None and full < L else None
    Zh, Oh, Eh = (_tokens(G, L, w, alloc) for w in (c.F1, D, c.F))
    BEA, BOG = (alloc(G, L, L) for _ in range(2))
    n0, nb = min(c.C, L), min(L, _block_chunks(L, c.C) * c.C)
    ED, Q, EGS = (_tokens(G, n0, w, alloc) for w in (c.F1, D, D))
    P1, P2, AF = (_tokens(G, nb, w, alloc) for w in (c.F1, D, c.F))
    fin = _final_terms(c, X, A, Gh, gWc, gUc, dec)
    blocks = _blocks(L, c.C)
    first = _layer2_from(blocks)
    W2b = res[7:] or list(_layer2_weights(c, dec, Gh, A, W0[1], blocks, first))   # kept, or rebuilt
    # W2h: the adjoint of the second layer's weights at the start of block m (the first
    # materialised block after the current one), float32 [G, D, F], and W2hc its compute-dtype
    # copy from the same update pass: what the chunks of blocks ≥ m ask of the earlier tokens' Gh
    # and A (P2 += r^(k_m−1−chunk) A W2hᵀ, AF += r^(..) Gh W2h)
    W2h, W2hc, m = None, None, len(blocks)
    for bi in reversed(range(len(blocks))):
        b0, b1, chunks = blocks[bi]
        # what the later blocks and the final state ask of this block's Dh, Gh, A, one product
        # each per block: P1 = −D̂h, P2 = −Ĝh, AF = −(the later tokens' part of Â); the second
        # layer's through the Grams for the later tokens before block m, through W2h after
        B, Fb, F2 = slice(b0, b1), slice(b1, L), slice(b1, blocks[m][0] if m < len(blocks) else L)
        p1b, p2b, afb = P1[:, :b1 - b0], P2[:, :b1 - b0], AF[:, :b1 - b0]
        if b1 < L:
            torch.bmm(SX[:, Fb, B].mT, Zh[:, Fb], out=p1b)
        else:
            p1b.zero_()
        if F2.start < F2.stop:
            torch.bmm(SA[:, F2, B].mT, Oh[:, F2], out=p2b)
            p2b.baddbmm_(BEA[:, F2, B].mT, Gs[:, F2])
            torch.bmm(SG[:, F2, B].mT, Eh[:, F2], out=afb)
            afb.baddbmm_(BOG[:, F2, B].mT, A[:, F2])
        else:
            p2b.zero_()
            afb.zero_()
        if W2h is not None:
            km = blocks[m][2][0][0]
            p2b.baddbmm_(dec.pow_rows(A[:, B], b0, km - 1, -1), W2hc.mT)
            afb.baddbmm_(dec.pow_rows(Gh[:, B], b0, km - 1, -1), W2hc)
        mat = bi >= first
        W2, h0, kb = (W2b[bi - first], b0, chunks[0][0]) if mat else (Wc[1], 0, 0)
        if fin is not None:
            p1b.add_(fin[0][:, B])
            p2b.add_(fin[1][:, B])
            afb.sub_(fin[2][:, B])
        for k, t, n in reversed(chunks):
            R, H, Nf, rk = slice(t, t + n), slice(h0, t), slice(t + n, b1), c.retention ** (k - kb)
            R0 = slice(t - b0, t - b0 + n)                       # the chunk's rows in the block's
            Zk, Ek, Gk, Etk = Z[:, R], Ee[:, R], Gs[:, R], E[:, R]
            p1, p2 = p1b[:, R0], p2b[:, R0]
            if t + n < b1:          # the block's later chunks
                p1.baddbmm_(SX[:, Nf, R].mT, Zh[:, Nf])
                p2.baddbmm_(SA[:, Nf, R].mT, Oh[:, Nf])
                p2.baddbmm_(BEA[:, Nf, R].mT, Gs[:, Nf])
            # through d = d(Z, E): Ê, and η̂ += Σ D̂h ⊙ d
            Ehk = Eh[:, R]
            c.ew(_b1_kernel, n, c.F, G, Ek, Zk, p1, Etk, Ehk, ED[:, :n], dE[:, R], -1.0, n, c.F, *_st(Ek),
                 *_st(Zk), *_st(p1), *_st2(Etk), *_st(ED[:, :n]), *_st2(dE[:, R]), ACT=c.act)
            # Q: Ê's part of Ĝ = r^k Ê W2₀ᵀ − (Ê Aᵀ ∘ Γ) Gh over earlier tokens
            q = _wmm(Ehk, W2.mT, Q[:, :n])
            if t > h0:
                bea = torch.bmm(Ehk, A[:, H].mT, out=BEA[:, R, H])
                dec.gram(bea, k, t, h0)
                q.baddbmm_(bea, Gh[:, H], beta=rk, alpha=-1.0)
            # Ĝ = η Ĝh + Q; Ô = ŷ [+ Ĝ], the signal's gradient, η̂ += Σ Ĝh ⊙ g
            Ohk = Oh[:, R]
            gy = gY[:, R] if gY is not None else q
            c.ew(_b2_kernel, n, D, G, gy, q, p2, Gk, Etk, Ohk, dS[:, R], EGS[:, :n], dE[:, R], -1.0, n, D,
                 *_st(gy), *_st(q), *_st(p2), *_st(Gk), *_st2(Etk), *_st(Ohk), *_st(dS[:, R]), *_st2(dE[:, R]),
                 MODE=mode, HAS_GY=gY is not None)
            # Â = r^k Ô W2₀ − (Ô Ghᵀ ∘ Γ) A (earlier) − Σ_later (SGᵀ Ê + BOGᵀ A) [− r.. Gh Ŵ2 | + Gh Û2],
            # formed in place of AF's rows (−the later part)
            ah = _wmm(Ohk, W2, afb[:, R0], alpha=rk, beta=-1.0)
            if t > h0:
                bog = torch.bmm(Ohk, Gh[:, H].mT, out=BOG[:, R, H])
                dec.gram(bog, k, t, h0)
                ah.baddbmm_(bog, A[:, H], alpha=-1.0)
            if t + n < b1:
                ah.baddbmm_(SG[:, Nf, R].mT, Eh[:, Nf], alpha=-1.0)
                ah.baddbmm_(BOG[:, Nf, R].mT, A[:, Nf], alpha=-1.0)
            Zhk = Zh[:, R]
            c.ew(_b3_kernel, n, c.F, G, Zk, Ek, p1, Etk, ah, Zhk, -1.0, n, c.F, *_st(Zk), *_st(Ek), *_st(p1),
                 *_st2(Etk), *_st(ah), ACT=c.act, HAS_M=True)
        if mat:      # W2h at this block's start: its chunks' Σ r^(k−kb) (Ôᵀ A + Gᵀ Ê) + r^(k_m−kb) W2h
            km = blocks[m][2][0][0] if m < len(blocks) else 0
            W2h, W2hc = c.outer(dec.pow_rows(Oh[:, B], b0, -kb, 1), A[:, B], L2=Gs[:, B],
                                R2=dec.pow_rows(Eh[:, B], b0, -kb, 1), W=W2h, alpha=c.retention ** (km - kb),
                                copy=True)
            m = bi
    # X̂ needs nothing of the walk but Ẑ and Ô: one set of products over all tokens after it
    _input_grad(c, dX, Zh, Oh, Dh, X, Wc[0], dec, gWc, gUc)
    # Ŵ1₀ = Σ_t r^chunk Ẑᵀ X [+ r^nc Ŵ1_final], Ŵ2₀ = Σ_t r^chunk (Ôᵀ A + Gᵀ Ê) [+ r^nc Ŵ2_final]
    for T_ in (Zh, Oh, Eh):
        dec.from_start(T_)
    rn = c.retention ** nc
    dW1 = None if gW is None else gW[0]
    dW2 = None if gW is None else gW[1]
    d1 = c.outer(Zh, X, W=dW1, alpha=rn, sum_g=sum_g)[0]
    d2 = c.outer(Oh, A, L2=Gs, R2=Eh, W=dW2, alpha=rn, sum_g=sum_g)[0]
    return d1, d2


def _input_grad(c: _Consts, dX, Zh, Oh, Dh, X, W1, dec: _Decay, gWc, gUc):
    """X̂ [G, L, D] into dX after the backward walk: [Ô +] r^chunk Ẑ W1₀ − (B ∘ Γ) X − (B ∘ Γ)ᵀ X
    with B = Ẑ Dhᵀ below the chunk diagonal (each chunk's rows against the earlier tokens' Dh, and
    the later chunks' rows against its own), the final state's −r^(nc−1−chunk) Dh Ŵ1 over the
    complete chunks and the pending update's Dh Û1 over the partial one. B is formed one block of
    rows at a time, only left of the block's last chunk (the rest of B ∘ Γ is zero); Dh is scaled
    in place."""
    G, L, _ = X.shape
    full = L // c.C * c.C
    _wmm(Zh, W1, dX)
    dec.from_start(dX)
    if c.residual:
        dX.add_(Oh)
    blocks = _blocks(L, c.C)
    B = new_empty(G, max(b1 - b0 for b0, b1, _ in blocks), L, dtype=Zh.dtype, device=X.device)
    for b0, b1, chunks in blocks:
        e = chunks[-1][1]
        if e:
            Bb = torch.bmm(Zh[:, b0:b1], Dh[:, :e].mT, out=B[:, :b1 - b0, :e])
            dec.below(Bb, b0)
            dX[:, b0:b1].baddbmm_(Bb, X[:, :e], alpha=-1.0)
            dX[:, :e].baddbmm_(Bb.mT, X[:, b0:b1], alpha=-1.0)
    if gWc is not None and full:
        dec.to_end(Dh, full, L // c.C)
        dX[:, :full].baddbmm_(Dh[:, :full], gWc[0], alpha=-1.0)
    if gUc is not None:
        dX[:, full:].baddbmm_(Dh[:, full:], gUc[0])


def _final_terms(c: _Consts, X, A, Gh, gWc, gUc, dec: _Decay) -> Optional[tuple]:
    """What the final state's adjoint adds to every token's P1, P2 and Â in the backward walk, as
    products over all tokens (each adjoint read once, not once per chunk), or None without one:
    s·X Ŵ1ᵀ [G, L, F1], s·A Ŵ2ᵀ [G, L, D] and −s·Gh Ŵ2 [G, L, F], with s = r^(nc−1−chunk) and Ŵ
    the final weights' adjoint over the complete chunks, s = −1 and Û the pending update's over
    the partial one."""
    if gWc is None and gUc is None:
        return None
    G, L, D = X.shape
    full = L // c.C * c.C
    out = tuple(torch.zeros(G, L, w, dtype=c.cd, device=X.device) for w in (c.F1, D, c.F))
    for R, W, sign in ((slice(0, full), gWc, 1.0), (slice(full, L), gUc, -1.0)):
        if W is None or R.start == R.stop:
            continue
        torch.bmm(X[:, R], W[0].mT, out=out[0][:, R])
        torch.bmm(A[:, R], W[1].mT, out=out[1][:, R])
        torch.bmm(Gh[:, R], W[1], out=out[2][:, R])
        out[2][:, R].neg_()
        if sign != 1.0:
            for t in out:
                t[:, R].mul_(sign)
    for t in out:
        dec.to_end(t, full, L // c.C)
    return out
