"""Decode step of ``self_modifying_titans`` in PyTorch: one token for all N sequences at once, in
place. No Python work per sequence or head: chunk-start copies are refreshed with ``torch.where``
on the positions; the token's rule is the one the reference uses (memories.py)."""
from __future__ import annotations

import torch

from .memories import GROUP_A, MEMORIES, SLOTS, apply, project, token_update
from .state import flat_name


def _group(state, kind, memory):
    return {m: tuple(state[flat_name(kind, m, i)] if state[flat_name(kind, m, i)].numel() else None
                     for i in range(len(SLOTS[memory]))) for m in MEMORIES}


def _refresh(C: dict, W: dict, mems, at_start: torch.Tensor) -> None:
    """C := W where the sequence is at a chunk start (in place)."""
    for m in mems:
        for c, w in zip(C[m], W[m]):
            if c is not None:
                c.copy_(torch.where(at_start.view(-1, *([1] * (c.dim() - 1))), w, c))


def forward(inputs, state, cfg):
    kind, act = cfg["memory"], cfg["activation"]
    W, C = _group(state, "W", kind), _group(state, "C", kind)
    S = _group(state, "S", kind) if cfg["mu"] is not None else None
    pos_o, pos_m = state["pos_other"], state["pos_memory"]
    dt = W["k"][0].dtype
    x, q = inputs["x"].to(dt), inputs["q"].to(dt)
    _refresh(C, W, GROUP_A, pos_o == 0)
    _refresh(C, W, ("mem",), pos_m == 0)
    k, v, qh, eta, alpha, _ = project(C, x, q, kind=kind, activation=act, eta_scale=cfg["eta_scale"],
                                      use_alpha=cfg["use_alpha"])
    o = apply(C["mem"] if cfg["read"] == "chunk" else W["mem"], qh, kind, act)
    for m in MEMORIES:
        w_new, s_new = token_update(W[m], None if S is None else S[m], C[m], k, v, eta, alpha,
                                    cfg["mu"], kind, act)
        for i, w in enumerate(W[m]):
            if w is not None:
                w.copy_(w_new[i])
                if S is not None:
                    S[m][i].copy_(s_new[i])
    pos_o.copy_((pos_o + 1) % cfg["chunk_size_other"])
    pos_m.copy_((pos_m + 1) % cfg["chunk_size_memory"])
    _refresh(C, W, GROUP_A, pos_o == 0)
    _refresh(C, W, ("mem",), pos_m == 0)
    return o.to(inputs["x"].dtype)


def fake(inputs, state, cfg):
    return torch.empty_like(inputs["x"])
