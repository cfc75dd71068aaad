"""Token-loop reference of ``mlp_memory``: SPEC §3 line by line, float64-capable.

Loops over sequences and tokens (heads batched); differentiable by autograd.
"""
from __future__ import annotations

import torch

from .inputs import empty_outputs, prepare
from .recurrence import token_step


def forward(inputs, cfg):
    p = prepare(inputs, cfg)
    B, T, H, _ = p.q.shape
    V = p.W1.shape[-2]
    C = cfg["chunk_size"]
    opts = dict(target=cfg["target"], read=cfg["read"], scale=cfg["scale"],
                activation=cfg["activation"], residual=cfg["residual"])
    rows = [[] for _ in range(B)]                    # output pieces per batch row, in time order
    finals = []
    for seg in p.segments:
        n, b = seg.index, seg.row
        W1, W2, W1c, W2c, pos = p.W1[n], p.W2[n], p.W1_chunk[n], p.W2_chunk[n], p.position[n]
        S1 = None if p.S1 is None else p.S1[n]
        S2 = None if p.S2 is None else p.S2[n]
        for t in range(seg.start, seg.end):
            if pos == 0:
                W1c, W2c = W1, W2
            o, W1, W2, S1, S2 = token_step(
                W1, W2, S1, S2, W1c, W2c, p.q[b, t], p.k[b, t], p.v[b, t], p.eta[b, t],
                p.alpha[b, t], p.beta[b, t], None if p.mu is None else p.mu[b, t], **opts)
            rows[b].append(o)
            pos = (pos + 1) % C
        if pos == 0:
            W1c, W2c = W1, W2
        finals.append((W1, W2, S1, S2, W1c, W2c, pos))
    o = torch.stack([torch.stack(r) if r else p.q.new_zeros(0, H, V) for r in rows]).to(inputs["q"].dtype)
    if not cfg["output_final_state"]:
        return (o,) + empty_outputs(inputs["q"])
    stack = lambda i: torch.stack([f[i] for f in finals])  # noqa: E731  (new tensors: no aliasing)
    W1, W2, W1c, W2c = stack(0), stack(1), stack(4), stack(5)
    S1, S2 = (stack(2), stack(3)) if p.S1 is not None else (W1.new_empty(0), W1.new_empty(0))
    position = torch.tensor([f[6] for f in finals], dtype=torch.int64, device=o.device)
    return o, W1, W2, S1, S2, W1c, W2c, position
