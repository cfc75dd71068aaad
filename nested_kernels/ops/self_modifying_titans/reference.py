"""Token-loop reference of ``self_modifying_titans``: SPEC §5 line by line, float64-capable.

Loops over sequences and tokens (heads batched); differentiable by autograd. For each token, from
the chunk-start weights of its groups: the projections k, v, q̂, η, α (group A), the read o
(M_mem at its chunk start, or its per-token state for read="before"); then every memory takes
the token's step of the mlp_memory / linear_memory rule (frozen gradient at its chunk start,
self-generated target, β = η, momentum mu). Updating token by token with frozen gradients is the
same as applying the chunk's tokens in order at the chunk end: inside a chunk nothing reads the
per-token states of group A, and M_mem's are read only by read="before".
"""
from __future__ import annotations

import torch

from .inputs import pack_outputs, prepare
from .memories import GROUP_A, MEMORIES, apply, project, token_update


def _stack(per_seq: list[dict], m: str, n_slots: int):
    return tuple(None if per_seq[0][m][i] is None else torch.stack([s[m][i] for s in per_seq])
                 for i in range(n_slots))


def forward(inputs, cfg):
    p = prepare(inputs, cfg)
    kind, act = cfg["memory"], cfg["activation"]
    CA, CB, mu = cfg["chunk_size_other"], cfg["chunk_size_memory"], cfg["mu"]
    B, T, H, D = p.x.shape
    rows = [[] for _ in range(B)]
    finals = []
    for seg in p.segments:
        n, b = seg.index, seg.row
        sel = lambda grp: {m: tuple(None if w is None else w[n] for w in grp[m]) for m in MEMORIES}  # noqa: E731
        W, C = sel(p.W), sel(p.C)
        S = None if p.S is None else sel(p.S)
        pa, pb = p.pos_other[n], p.pos_memory[n]
        for t in range(seg.start, seg.end):
            if pa == 0:
                C.update({m: W[m] for m in GROUP_A})
            if pb == 0:
                C["mem"] = W["mem"]
            k, v, qh, eta, alpha, _ = project(C, p.x[b, t], p.q[b, t], kind=kind, activation=act,
                                              eta_scale=cfg["eta_scale"], use_alpha=cfg["use_alpha"])
            read_from = C["mem"] if cfg["read"] == "chunk" else W["mem"]
            rows[b].append(apply(read_from, qh, kind, act))
            for m in MEMORIES:
                W[m], s_m = token_update(W[m], None if S is None else S[m], C[m], k, v, eta, alpha,
                                         mu, kind, act)
                if S is not None:
                    S[m] = s_m
            pa, pb = (pa + 1) % CA, (pb + 1) % CB
        if pa == 0:
            C.update({m: W[m] for m in GROUP_A})
        if pb == 0:
            C["mem"] = W["mem"]
        finals.append((W, S, C, pa, pb))
    o = torch.stack([torch.stack(r) if r else p.x.new_zeros(0, H, D) for r in rows]).to(inputs["x"].dtype)
    if not cfg["output_final_state"]:
        return pack_outputs(o, None, None, None, None, None, cfg)
    n_slots = len(p.W["k"])
    Wf = {m: _stack([f[0] for f in finals], m, n_slots) for m in MEMORIES}
    Sf = None if p.S is None else {m: _stack([f[1] for f in finals], m, n_slots) for m in MEMORIES}
    Cf = {m: _stack([f[2] for f in finals], m, n_slots) for m in MEMORIES}
    dev = o.device
    pos_o = torch.tensor([f[3] for f in finals], dtype=torch.int64, device=dev)
    pos_m = torch.tensor([f[4] for f in finals], dtype=torch.int64, device=dev)
    return pack_outputs(o, Wf, Sf, Cf, pos_o, pos_m, cfg)
