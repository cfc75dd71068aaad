"""Decode step of ``mlp_memory`` in PyTorch: one token for all N sequences at once, in place.

No Python work per sequence or head: the chunk-start copies are refreshed with ``torch.where``.
"""
from __future__ import annotations

import torch

from .recurrence import token_step


def forward(inputs, state, cfg):
    W1, W2, S1, S2 = state["W1"], state["W2"], state["S1"], state["S2"]
    W1c, W2c, position = state["W1_chunk"], state["W2_chunk"], state["position"]
    dt = W1.dtype
    q, k, v, eta = (inputs[n].to(dt) for n in ("q", "k", "v", "eta"))
    alpha = torch.ones_like(eta) if inputs["log_alpha"] is None else inputs["log_alpha"].to(dt).exp()
    beta = torch.zeros_like(eta) if inputs["beta"] is None else inputs["beta"].to(dt)
    mu = None if inputs["mu"] is None else inputs["mu"].to(dt)
    at_start = (position == 0).view(-1, 1, 1, 1)
    W1c.copy_(torch.where(at_start, W1, W1c))
    W2c.copy_(torch.where(at_start, W2, W2c))
    o, W1n, W2n, S1n, S2n = token_step(
        W1, W2, S1 if mu is not None else None, S2 if mu is not None else None, W1c, W2c, q, k, v,
        eta, alpha, beta, mu, target=cfg["target"], read=cfg["read"], scale=cfg["scale"],
        activation=cfg["activation"], residual=cfg["residual"])
    W1.copy_(W1n)
    W2.copy_(W2n)
    if mu is not None:
        S1.copy_(S1n)
        S2.copy_(S2n)
    position.copy_((position + 1) % cfg["chunk_size"])
    at_end = (position == 0).view(-1, 1, 1, 1)
    W1c.copy_(torch.where(at_end, W1, W1c))
    W2c.copy_(torch.where(at_end, W2, W2c))
    return o.to(inputs["q"].dtype)


def fake(inputs, state, cfg):
    q, W1 = inputs["q"], state["W1"]
    return q.new_empty(q.shape[0], q.shape[1], W1.shape[-2])
