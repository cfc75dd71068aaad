"""Chunked implementations of ``fast_mlp``: the ``torch`` backend and the ``cuda`` backend's forward.

Per chunk, every token uses the chunk-start weights W_c, so the chunk's outputs, its errors g and
the backward of g through the MLP (``mlp.grad_factors``) are batched matrix products over all of
the chunk's tokens; only the loop over chunks runs in Python. The end-of-chunk update
W_{c+1} = retention·W_c − Σ_t η_t left_t right_tᵀ is one batched product in the ``torch``
backend and one launch of the CUDA kernel ``outer_update`` (per weight matrix) in the ``cuda``
backend. A call that starts mid-chunk (a state with position p > 0 and a pending update U)
first processes a piece of C − p tokens whose update adds U; a trailing incomplete piece only
accumulates its sum into the returned pending update.

Batching. Sequences with the same (length, start position) have their chunk boundaries at the
same offsets and are processed as one batch: per-sequence weights [G, out, in] go through
batched matmuls (bmm). Without ``cu_seqlens`` and with a common position that is all B rows at
once; packed sequences of equal length are gathered into one batch. Shared initial weights stay
[out, in] (broadcast) until a sequence's first update.

With ``weight_dtype`` set, every update's result (and the per-sequence copy of the shared initial
weights) is rounded to it (``inputs.round_weight``) and held in the compute dtype during the call;
the final state stores it in that dtype.

Differentiable by autograd (the ``torch`` backend's gradients come from the generic custom-op
machinery recomputing this forward; the ``cuda`` backend uses the same, see ``api.py``).
Autograd keeps one set of weights per chunk, never per token.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import mlp as mlp_math
from .inputs import no_sequences, pack_outputs, prepare, round_weight

Tensor = torch.Tensor


def torch_update(w: Tensor, u: Optional[Tensor], left: Tensor, right: Tensor, eta: Tensor,
                 retention: float) -> Tensor:
    """retention·W − U − Σ_t η_t left_t right_tᵀ (W [out,in] shared or [G,out,in])."""
    new = retention * w - mlp_math.eta_weighted_sum(left, right, eta)
    return new if u is None else new - u


def cuda_update(w: Tensor, u: Optional[Tensor], left: Tensor, right: Tensor, eta: Tensor,
                retention: float) -> Tensor:
    """The same update by the CUDA kernel ``outer_update`` (float32, no autograd)."""
    from .cuda import outer_update  # the compiled extension is only needed here

    G = left.shape[0]
    out = outer_update(w.expand(G, *w.shape[-2:]), left, right, eta, float(retention))
    return out if u is None else out - u


def run_sequences(W: list, U: Optional[list], X: Tensor, E: Tensor, S: Tensor, pos: int, cfg: dict,
                  mode: str, update: Callable):
    """Process G aligned sequences: tokens X [G,L,D], eta E [G,L], target/teach S [G,L,D],
    weights W (each [out,in] or [G,out,in]), pending update U (list or None: zero), ``pos``
    tokens of the current chunk already done. Returns (Y [G,L,D], W, U, position)."""
    C, mlp, residual, retention = cfg["chunk_size"], cfg["mlp"], cfg["residual"], cfg["retention"]
    need_pending = cfg["output_final_state"]
    L = X.shape[1]
    ys, t = [], 0
    while t < L:
        n = min(L - t, C - pos)
        xs, es = X[:, t:t + n], E[:, t:t + n]
        out, cache = mlp_math.forward(W, xs, mlp)
        y = xs + out if residual else out
        ys.append(y)
        completes = pos + n == C
        if completes or need_pending:
            g = y - S[:, t:t + n] if mode == "target" else S[:, t:t + n]
            factors = mlp_math.grad_factors(W, xs, cache, g, mlp)
            if completes:
                W = [round_weight(update(w, None if U is None else u, left, right, es, retention), cfg)
                     for w, u, (left, right) in zip(W, U or [None] * len(W), factors)]
                U = None
            else:
                sums = [mlp_math.eta_weighted_sum(left, right, es) for left, right in factors]
                U = sums if U is None else [u + s for u, s in zip(U, sums)]
        pos = 0 if completes else pos + n
        t += n
    Y = torch.cat(ys, dim=1) if ys else X.new_zeros(X.shape)
    return Y, W, U, pos


def _reorder(parts: list, order: list, count: int) -> Tensor:
    """Concatenate per-group tensors (rows in ``order``) and put row ``order[j]`` at index it names."""
    cat = torch.cat(parts) if len(parts) > 1 else parts[0]
    if order == list(range(count)):
        return cat
    inverse = torch.empty(count, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(count)
    return cat[inverse.to(cat.device)]


@dataclass
class Group:
    """Sequences ``segs`` with the same (length L, start position ``pos``): their chunk boundaries
    are at the same offsets, so they run as one batch of G = len(segs) rows. ``sel`` indexes
    their rows (None: all B rows of an unpacked batch, in order)."""
    segs: list
    L: int
    pos: int
    sel: Optional[Tensor]
    packed: bool

    @property
    def index(self) -> list:
        return [s.index for s in self.segs]

    def tokens(self, t: Tensor) -> Tensor:
        """Per-token tensor [B, T, ...] -> this group's rows [G, L, ...]."""
        if self.packed:
            return torch.stack([t[0, s.start:s.end] for s in self.segs])
        return t if self.sel is None else t[self.sel]

    def states(self, ts: Optional[list]) -> Optional[list]:
        """Per-sequence tensors [N, ...] (a list, or None) -> this group's rows [G, ...]."""
        return None if ts is None else [t if self.sel is None else t[self.sel] for t in ts]


def groups(p, packed: bool) -> list:
    """The aligned groups of a prepared call (see ``Group``), in order of first appearance."""
    by_key = defaultdict(list)
    for seg in p.segments:
        by_key[(seg.end - seg.start, p.position[seg.index])].append(seg)
    B = p.x.shape[0]
    out = []
    for (L, pos), segs in by_key.items():
        idx = [s.index for s in segs]
        sel = None if idx == list(range(B)) and not packed else torch.tensor(idx, device=p.x.device)
        out.append(Group(segs, L, pos, sel, packed))
    return out


def forward(inputs, cfg, update: Callable = torch_update, run: Optional[Callable] = None,
            token_dtype: Optional[torch.dtype] = None, weight_dtype: Optional[torch.dtype] = None,
            keep_exact: bool = False):
    """The op's outputs. ``run`` (default: ``run_sequences`` with ``update``) processes one group,
    with ``run_sequences``' signature; ``token_dtype``, ``weight_dtype`` and ``keep_exact`` are
    passed to ``prepare``."""
    p = prepare(inputs, cfg, token_dtype, weight_dtype, keep_exact)
    B, T, D = p.x.shape
    if not p.segments:
        return pack_outputs(inputs, p.x.new_zeros(0, T, D), cfg, *no_sequences(p))
    packed = inputs["cu_seqlens"] is not None
    if run is None:
        run = lambda *args: run_sequences(*args, update)  # noqa: E731

    y_parts, order, whole = {}, [], None
    final_w, final_u, final_pos = [[] for _ in range(p.num_weights)], [[] for _ in range(p.num_weights)], []
    for grp in groups(p, packed):
        G = len(grp.segs)
        X, E, S = grp.tokens(p.x), grp.tokens(p.eta), grp.tokens(p.signal)
        W = grp.states(p.weights) if p.weights is not None else list(p.shared)
        U = grp.states(p.pending)
        Y, W, U, pos_end = run(W, U, X, E, S, grp.pos, cfg, p.mode)
        if grp.sel is None and not packed:
            whole = Y                                # every row in one batch, in order
        for j, seg in enumerate(grp.segs):
            y_parts[seg.index] = Y[j]
        order += grp.index
        final_pos += [pos_end] * G
        if not cfg["output_final_state"]:      # (a kernel run may not return its final masters)
            continue
        for i, w in enumerate(W):
            w = w.expand(G, *w.shape[-2:])
            final_w[i].append(w)
            final_u[i].append(torch.zeros_like(w) if U is None else U[i])

    ys = [y_parts[n] for n in range(len(p.segments))]
    y = whole if whole is not None else torch.cat(ys).unsqueeze(0) if packed else torch.stack(ys)
    if not cfg["output_final_state"]:
        return pack_outputs(inputs, y, cfg)
    N = len(p.segments)
    weights = [_reorder(parts, order, N) for parts in final_w]
    pending = [_reorder(parts, order, N) for parts in final_u]
    position = [0] * N
    for n, q in zip(order, final_pos):
        position[n] = q
    return pack_outputs(inputs, y, cfg, weights, pending, position)


def cuda_forward(inputs, cfg):
    """The ``cuda`` backend's forward: the chunked computation above with every end-of-chunk
    weight update done by the CUDA kernel ``outer_update``."""
    return forward(inputs, cfg, update=cuda_update)
