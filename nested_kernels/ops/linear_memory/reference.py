"""Token-loop reference of ``linear_memory``: SPEC §2 line by line, float64-capable.

Loops over sequences and tokens (heads batched); differentiable by autograd.
"""
from __future__ import annotations

import torch

from .inputs import empty_outputs, prepare
from .recurrence import token_step


def forward(inputs, cfg):
    p = prepare(inputs, cfg)
    B, T, H, _ = p.q.shape
    V = p.v.shape[-1] if cfg["target"] == "external" else p.M.shape[-1]
    C = cfg["chunk_size"]
    rows = [[] for _ in range(B)]                    # output pieces per batch row, in time order
    finals = []
    for seg in p.segments:
        n, b = seg.index, seg.row
        M, M_chunk, pos = p.M[n], p.M_chunk[n], p.position[n]
        S = None if p.S is None else p.S[n]
        for t in range(seg.start, seg.end):
            if pos == 0:
                M_chunk = M
            o, M, S = token_step(
                M, S, M_chunk, p.q[b, t], p.k[b, t], p.v[b, t], p.eta[b, t], p.alpha[b, t],
                p.beta[b, t], None if p.mu is None else p.mu[b, t],
                target=cfg["target"], read=cfg["read"], scale=cfg["scale"])
            rows[b].append(o)
            pos = (pos + 1) % C
        finals.append((M, S, M if pos == 0 else M_chunk, pos))
    o = torch.stack([torch.stack(r) if r else p.q.new_zeros(0, H, V) for r in rows]) if rows \
        else p.q.new_zeros(0, T, H, V)                                       # B == 0
    o = o.to(inputs["q"].dtype)
    if not cfg["output_final_state"]:
        return (o,) + empty_outputs(inputs["q"], V)
    if not finals:
        return o, p.M.clone(), p.M.new_empty(0) if p.S is None else p.S.clone(), p.M.clone(), \
            torch.zeros(0, dtype=torch.int64, device=o.device)
    M = torch.stack([f[0] for f in finals])
    S = torch.stack([f[1] for f in finals]) if p.S is not None else M.new_empty(0)
    M_chunk = torch.stack([f[2] for f in finals])
    position = torch.tensor([f[3] for f in finals], dtype=torch.int64, device=o.device)
    return o, M, S, M_chunk, position
