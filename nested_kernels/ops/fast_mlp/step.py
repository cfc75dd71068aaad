"""Decode step of ``fast_mlp`` in PyTorch: one token for all N sequences at once, in place.

No Python work per sequence: the token's contribution η_t ∇_W⟨g_t, MLP_W(x_t)⟩ is added to the
pending update of every sequence (batched matmuls), and the sequences whose chunk completes apply
W ← retention·W − U, U ← 0 through ``torch.where``. Weights stored in bfloat16 (``weight_dtype``)
are read in float32 and the update is rounded once when it is written back.
"""
from __future__ import annotations

import torch

from .inputs import round_weight
from .mlp import num_weights
from .reference import token


def forward(inputs, state, cfg):
    k = num_weights(cfg["mlp"])
    W = [state[f"w{i}"] for i in range(k)]
    U = [state[f"u{i}"] for i in range(k)]
    position = state["position"]
    dt = U[0].dtype                                     # float32 (float64): the compute dtype
    x = inputs["x"].to(dt)
    eta = (torch.full(x.shape[:1], cfg["eta_value"], dtype=dt, device=x.device) if inputs["eta"] is None
           else inputs["eta"].to(dt))
    mode = "teach" if inputs["target"] is None else "target"
    Wc = [w.to(dt) for w in W]
    y, U_new = token(Wc, U, x, eta, inputs[mode].to(dt), mode=mode, mlp=cfg["mlp"],
                     residual=cfg["residual"])
    done = position + 1 == cfg["chunk_size"]            # [N]: this token completes the chunk
    mask = done.view(-1, 1, 1)
    for w, wc, u, u_new in zip(W, Wc, U, U_new):        # the update is rounded to weight_dtype
        w.copy_(torch.where(mask, round_weight(cfg["retention"] * wc - u_new, cfg), wc))
        u.copy_(torch.where(mask, torch.zeros_like(u_new), u_new))
    position.copy_(torch.where(done, torch.zeros_like(position), position + 1))
    return y.to(inputs["x"].dtype)


def fake(inputs, state, cfg):
    x = inputs["x"]
    return x.new_empty(x.shape)
