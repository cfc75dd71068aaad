"""Decode step of ``linear_memory`` in PyTorch: one token for all N sequences at once, in place.

No Python work per sequence or head: the chunk-start copy is refreshed with ``torch.where``.
"""
from __future__ import annotations

import torch

from .recurrence import token_step


def forward(inputs, state, cfg):
    M, S, M_chunk, position = state["M"], state["S"], state["M_chunk"], state["position"]
    dt = M.dtype
    q, k, v, eta = (inputs[n].to(dt) for n in ("q", "k", "v", "eta"))
    alpha = torch.ones_like(eta) if inputs["log_alpha"] is None else inputs["log_alpha"].to(dt).exp()
    beta = torch.zeros_like(eta) if inputs["beta"] is None else inputs["beta"].to(dt)
    mu = None if inputs["mu"] is None else inputs["mu"].to(dt)
    at_start = (position == 0).view(-1, 1, 1, 1)
    M_chunk.copy_(torch.where(at_start, M, M_chunk))
    o, M_new, S_new = token_step(M, S if mu is not None else None, M_chunk, q, k, v, eta, alpha, beta,
                                 mu, target=cfg["target"], read=cfg["read"], scale=cfg["scale"])
    M.copy_(M_new)
    if mu is not None:
        S.copy_(S_new)
    position.copy_((position + 1) % cfg["chunk_size"])
    M_chunk.copy_(torch.where((position == 0).view(-1, 1, 1, 1), M, M_chunk))
    return o.to(inputs["q"].dtype)


def fake(inputs, state, cfg):
    q, M = inputs["q"], state["M"]
    return q.new_empty(q.shape[0], q.shape[1], M.shape[-1])
