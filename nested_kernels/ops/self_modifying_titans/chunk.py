"""Chunked PyTorch implementation of ``self_modifying_titans`` (the ``torch`` backend).

Group A = {M_k, M_v, M_η, M_α} never reads M_mem, so the op splits in two passes:

1. Group A over its chunk grid (``chunk_size_other``). Per tile of n tokens (a chunk, or a piece
   of one when a call resumes mid-chunk or a chunk is longer than ``MAX_TILE``), batched over
   sequences and heads: the projections k, v, η, α of all tokens from the chunk-start weights as
   matrix products; the rank-1 factors of every inner gradient and self-generated target at the
   chunk-start weights (G = g kᵀ or e aᵀ); then each weight's recurrence over the tile by the
   chunk algebra of DESIGN_chunk_algebra.md §1–§3 (in nn.Linear orientation, W = Mᵀ): every
   weight that DGD acts on (W2 and W_skip of the MLP form, W of the linear form, all fed by the
   key k) of all four memories is concatenated along its output side and advanced by one
   unit-lower-triangular solve in KKᵀ; each W1 (fed by its activations a, no DGD) by masked
   products. Only the loop over tiles runs in Python.
2. Group B = M_mem on the grid of ``chunk_size_memory``: one call of the ``mlp_memory`` /
   ``linear_memory`` chunked torch backend on the whole batch, with key k, input v, query q̂,
   target "self", eta = beta = η, log_alpha = log α, momentum mu, read "chunk"/"before".

Differentiable by autograd (the custom-op machinery recomputes this forward); nothing per token of
size D×D is kept, only states per tile. Sequences with the same (length, group-A start position)
run as one batch in pass 1 (without ``cu_seqlens``: all B rows at once).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Optional

import torch
import torch.nn.functional as F

from ..linear_memory import chunk as linear_chunk
from ...core.chunk_algebra import col, decay, masks, momentum, scal, solve
from .inputs import pack_outputs, prepare
from .memories import GROUP_A, act, act_grad, l2norm

MAX_TILE = 64

Tensor = torch.Tensor


# -- one memory at fixed weights, tokens as rows ---------------------------------------------------
def _rows(w, X: Tensor, kind: str, activation: str):
    """M(x) for the rows of X [..., n, D] at weights w [..., O, I]; also (z, a) of the MLP form."""
    if kind == "linear":
        return X @ w[0].mT, None, None
    w1, w2, skip = w
    z = X @ w2.mT
    a = act(z, activation)
    y = a @ w1.mT + (X if skip is None else X @ skip.mT)
    return y, z, a


def _factors(w, K: Tensor, Vv: Tensor, kind: str, activation: str):
    """Rank-1 factors of the inner gradients at (chunk-start) weights w, self-generated targets:
    returns per weight slot (g, keys) with G_j = g_j keys_jᵀ (None for the identity skip)."""
    target, _, _ = _rows(w, Vv, kind, activation)
    pred, z, a = _rows(w, K, kind, activation)
    e = pred - target
    if kind == "linear":
        return [(e, K)]
    d = (e @ w[0]) * act_grad(z, activation)
    return [(e, a), (d, K), None if w[2] is None else (e, K)]


# -- the recurrence of one weight over a tile --------------------------------------------------
def _advance(W0: Tensor, S0: Optional[Tensor], keys: Tensor, g: Tensor, eta: Tensor,
             log_alpha: Optional[Tensor], dgd: bool, mu: Optional[Tensor]):
    """W_t = W_{t−1}(α_t I − [dgd] η_t k_t k_tᵀ) + S_t,  S_t = μ S_{t−1} − η_t g_t k_tᵀ
    (S_t = −η_t g_t k_tᵀ without momentum) over the n rows of keys [..., n, I], g [..., n, O];
    W0, S0 [..., O, I]; eta, log_alpha, mu [..., n]. Returns (W_n, S_n or None).
    DESIGN §1–§3 with M = Wᵀ: r_t = W_{t−1} k_t, w_j = −η_j g_j."""
    n = keys.shape[-2]
    strict, lower = masks(n, keys.device)
    G = decay(log_alpha, strict, lower, keys.dtype)
    Gc, Gp = G[..., 1:, 1:], G[..., :-1, 1:]          # Γ[t, j], Γ[t−1, j]
    gam, gamp = G[..., 1:, 0], G[..., :-1, 0]          # γ_t, γ_{t−1}
    mom = mu is not None
    if mom:
        Dm = momentum(mu, strict, lower)
        Dc, m = Dm[..., 1:, 1:], Dm[..., 1:, 0:1]
        Pc, Pp = Gc @ Dc, Gp @ Dc                      # Φ[t, j], Φ[t−1, j]
        nu, nup = (Gc @ m)[..., 0], (Gp @ m)[..., 0]   # ν_t, ν_{t−1}
    else:
        Pc, Pp = Gc, Gp
    w = -col(eta) * g                                 # w_j = −η_j g_j
    X = col(Pc[..., n - 1, :]) * w                    # Φ[n, j] w_j
    if dgd:
        KK = keys @ keys.mT
        rhs = col(gamp) * (keys @ W0.mT) + (KK * Pp) @ w
        if mom:
            rhs = rhs + col(nup) * (keys @ S0.mT)
        R = solve(KK * Gp * eta[..., None, :], rhs)  # r_t; β = η
        X = X - col(Gc[..., n - 1, :]) * (col(eta) * R)
    Wn = scal(gam[..., n - 1]) * W0 + X.mT @ keys
    Sn = None
    if mom:
        Wn = Wn + scal(nu[..., n - 1]) * S0
        Sn = scal(Dm[..., n, 0]) * S0 + (col(Dm[..., n, 1:]) * w).mT @ keys
    return Wn, Sn


def _tile_a(W: dict, S: Optional[dict], Wc: dict, X: Tensor, *, kind, activation, eta_scale,
            use_alpha, mu):
    """One group-A tile: projections of X [..., n, D] from the chunk-start weights Wc, then every
    group-A weight advanced over the tile from (W, S). Returns (k, v, eta, log_alpha, W, S)."""
    K = l2norm(_rows(Wc["k"], X, kind, activation)[0])
    Vv = _rows(Wc["v"], X, kind, activation)[0]
    eta = eta_scale * F.softplus(_rows(Wc["eta"], X, kind, activation)[0][..., 0])
    log_alpha = F.logsigmoid(_rows(Wc["alpha"], X, kind, activation)[0][..., 0]) if use_alpha else None
    mu_t = None if mu is None else torch.full_like(eta, mu)
    # DGD-side weights of all memories, concatenated along their output side
    slots = (0,) if kind == "linear" else (1, 2)
    cat_w, cat_s, cat_g, sizes = [], [], [], []
    new_W = {m: list(W[m]) for m in GROUP_A}
    new_S = None if S is None else {m: list(S[m]) for m in GROUP_A}
    for m in GROUP_A:
        fac = _factors(Wc[m], K, Vv, kind, activation)
        for i in slots:
            if fac[i] is None:
                continue
            cat_w.append(W[m][i])
            cat_g.append(fac[i][0])
            if S is not None:
                cat_s.append(S[m][i])
            sizes.append((m, i, W[m][i].shape[-2]))
        if kind == "mlp":                              # W1: keys a, no DGD
            g, a = fac[0]
            new_W[m][0], s1 = _advance(W[m][0], None if S is None else S[m][0], a, g, eta, log_alpha,
                                       False, mu_t)
            if S is not None:
                new_S[m][0] = s1
    Wn, Sn = _advance(torch.cat(cat_w, -2), torch.cat(cat_s, -2) if S is not None else None, K,
                      torch.cat(cat_g, -1), eta, log_alpha, True, mu_t)
    start = 0
    for m, i, o in sizes:
        new_W[m][i] = Wn[..., start:start + o, :]
        if S is not None:
            new_S[m][i] = Sn[..., start:start + o, :]
        start += o
    W = {m: tuple(w) for m, w in new_W.items()}
    S = None if S is None else {m: tuple(s) for m, s in new_S.items()}
    return K, Vv, eta, log_alpha, W, S


def _run_a(X: Tensor, W: dict, S: Optional[dict], C: dict, pos: int, CA: int, **opts):
    """Group A over the L tokens of X [G, H, L, D] that all start at chunk position ``pos``.
    Returns ([G, H, L, *] k, v, eta, log_alpha), and the final W, S, C, position."""
    L = X.shape[-2]
    outs = []
    Wc = C if pos > 0 else W
    a = 0
    while a < L:
        end = min(L, a + CA - pos)
        for t0 in range(a, end, MAX_TILE):
            t1 = min(end, t0 + MAX_TILE)
            *proj, W, S = _tile_a(W, S, Wc, X[..., t0:t1, :], **opts)
            outs.append(proj)
        pos = (pos + end - a) % CA
        a = end
        if pos == 0:
            Wc = W
    cat = lambda i: None if outs[0][i] is None else torch.cat([o[i] for o in outs], dim=2)  # noqa: E731
    proj = tuple(cat(i) for i in range(4)) if outs else None
    return proj, W, S, Wc, pos


def _sel(grp: Optional[dict], idx: Tensor, mems=GROUP_A):
    if grp is None:
        return None
    return {m: tuple(None if w is None else w[idx] for w in grp[m]) for m in mems}


def _cat_states(parts: list, inv: Tensor, mems=GROUP_A):
    if parts[0] is None:
        return None
    n = len(parts[0][mems[0]])
    return {m: tuple(None if parts[0][m][i] is None else torch.cat([p[m][i] for p in parts])[inv]
                     for i in range(n)) for m in mems}


def forward(inputs, cfg):
    p = prepare(inputs, cfg)
    kind, act_name = cfg["memory"], cfg["activation"]
    CA, CB, mu = cfg["chunk_size_other"], cfg["chunk_size_memory"], cfg["mu"]
    B, T, H, D = p.x.shape
    dev = p.x.device
    cu = inputs["cu_seqlens"]
    N = len(p.segments)
    opts = dict(kind=kind, activation=act_name, eta_scale=cfg["eta_scale"], use_alpha=cfg["use_alpha"], mu=mu)

    # -- pass 1: group A ------------------------------------------------------------------------
    groups = defaultdict(list)                         # (length, start position) -> segments
    for seg in p.segments:
        groups[(seg.end - seg.start, p.pos_other[seg.index])].append(seg)
    parts: dict = {}
    whole = None
    finals, order = [], []
    for (L, pos), segs in groups.items():
        is_whole = cu is None and len(segs) == B
        take = (lambda t: t) if is_whole else (lambda t: torch.stack([t[s.row, s.start:s.end] for s in segs]))
        idx = torch.tensor([s.index for s in segs], device=dev)
        X = take(p.x).transpose(1, 2)                  # [G, H, L, D]
        proj, W, S, Cw, pos_end = _run_a(X, _sel(p.W, idx), _sel(p.S, idx), _sel(p.C, idx), pos, CA, **opts)
        if proj is not None:
            proj = tuple(None if t is None else t.transpose(1, 2) for t in proj)   # [G, L, H, *]
            if is_whole:
                whole = proj
            else:
                for i, s in enumerate(segs):
                    parts[s.index] = tuple(None if t is None else t[i] for t in proj)
        finals.append((W, S, Cw, [pos_end] * len(segs)))
        order.extend(s.index for s in segs)

    def assemble(i: int, empty_shape) -> Optional[Tensor]:
        """Projection i of every token back in the [B, T, H, *] layout."""
        if whole is not None:
            return whole[i]
        if i == 3 and not cfg["use_alpha"]:
            return None
        pieces = {n: parts[n][i] if n in parts else p.x.new_zeros((0, H) + empty_shape) for n in range(N)}
        if cu is not None:
            return torch.cat([pieces[n] for n in range(N)], dim=0)[None]
        return torch.stack([pieces[b] for b in range(B)])

    k, v = assemble(0, (D,)), assemble(1, (D,))
    eta, log_alpha = assemble(2, ()), assemble(3, ())

    # -- pass 2: group B = M_mem ----------------------------------------------------------------
    qh = l2norm(p.q)
    mu_t = None if mu is None else torch.full_like(eta, mu)
    Wm, Cm = p.W["mem"], p.C["mem"]
    Sm = None if p.S is None else p.S["mem"]
    pos_m = torch.tensor(p.pos_memory, dtype=torch.int64, device=dev)
    common = dict(q=qh, k=k, v=v, eta=eta, log_alpha=log_alpha, beta=eta, mu=mu_t, position0=pos_m,
                  cu_seqlens=cu)
    cfg_b = dict(chunk_size=CB, target="self", read=cfg["read"], scale=1.0,
                 output_final_state=cfg["output_final_state"])
    if kind == "linear":                               # linear_memory orientation: M = Wᵀ
        tr = lambda t: None if t is None else t.mT  # noqa: E731
        out = linear_chunk.forward(dict(common, m0=tr(Wm[0]), s0=None if Sm is None else tr(Sm[0]),
                                        m_chunk0=tr(Cm[0])), cfg_b)
        o, fin = out[0], out[1:]
        if cfg["output_final_state"]:
            mem_W, mem_S, mem_C, pos_m_end = (fin[0].mT,), (fin[1].mT,) if Sm is not None else None, \
                (fin[2].mT,), fin[3]
    else:
        from ..mlp_memory import chunk as mlp_chunk    # noqa: PLC0415 (imported on use)
        w1, w2 = Wm[0], Wm[1]
        out = mlp_chunk.forward(dict(common, w1=w1[0], w2=w2[0], w1_0=w1, w2_0=w2,
                                     s1_0=None if Sm is None else Sm[0], s2_0=None if Sm is None else Sm[1],
                                     w1_chunk0=Cm[0], w2_chunk0=Cm[1]),
                                dict(cfg_b, activation=act_name, residual=True))
        o, fin = out[0], out[1:]
        if cfg["output_final_state"]:
            mem_W, mem_S, mem_C, pos_m_end = (fin[0], fin[1], None), \
                ((fin[2], fin[3], None) if Sm is not None else None), (fin[4], fin[5], None), fin[6]
    o = o.to(inputs["x"].dtype)
    if not cfg["output_final_state"]:
        return pack_outputs(o, None, None, None, None, None, cfg)

    inv = torch.argsort(torch.tensor(order, device=dev))
    Wf = _cat_states([f[0] for f in finals], inv)
    Sf = _cat_states([f[1] for f in finals], inv)
    Cf = _cat_states([f[2] for f in finals], inv)
    pos_o = torch.tensor([q for f in finals for q in f[3]], dtype=torch.int64, device=dev)[inv]
    Wf["mem"], Cf["mem"] = mem_W, mem_C
    if Sf is not None:
        Sf["mem"] = mem_S
    return pack_outputs(o, Wf, Sf, Cf, pos_o, pos_m_end.clone(), cfg)
