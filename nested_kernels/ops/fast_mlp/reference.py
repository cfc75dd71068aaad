"""Token-loop reference of ``fast_mlp``: SPEC §4 line by line, float64-capable.

Loops over sequences and tokens; differentiable by autograd. Per sequence, with W the weights of
the current chunk and U the part of its update accumulated so far, for each token t:
    y_t = [x_t +] MLP_W(x_t)
    g_t = y_t − target_t   (or teach_t)
    U  += η_t ∇_W⟨g_t, MLP_W(x_t)⟩          (at W, the chunk-start weights)
    if t completes a chunk:  W ← round(retention·W − U),  U ← 0
where round is the rounding to ``weight_dtype`` (identity when None), also applied to the
per-sequence copy of the shared initial weights: in float64 the same rounding points as a kernel
that stores its fast weights in bfloat16, so this is their witness.
"""
from __future__ import annotations

import torch

from . import mlp as mlp_math
from .inputs import no_sequences, pack_outputs, prepare, round_weight


def token(weights, pending, x_t, eta_t, signal_t, *, mode: str, mlp: str, residual: bool):
    """One token of one sequence (or of N sequences, batched over leading dimensions):
    returns (y_t, pending + η_t ∇_W⟨g_t, MLP_W(x_t)⟩). x_t, signal_t [..., D]; eta_t [...]."""
    out, cache = mlp_math.forward(weights, x_t[..., None, :], mlp)
    y_t = out[..., 0, :] + x_t if residual else out[..., 0, :]
    g_t = y_t - signal_t if mode == "target" else signal_t
    factors = mlp_math.grad_factors(weights, x_t[..., None, :], cache, g_t[..., None, :], mlp)
    pending = [u + mlp_math.eta_weighted_sum(left, right, eta_t[..., None])
               for u, (left, right) in zip(pending, factors)]
    return y_t, pending


def forward(inputs, cfg):
    p = prepare(inputs, cfg)
    B, T, D = p.x.shape
    C, retention = cfg["chunk_size"], cfg["retention"]
    rows = [[] for _ in range(B)]                    # y_t per batch row, in time order
    finals = []
    for seg in p.segments:
        n, b = seg.index, seg.row
        W = [w[n] for w in p.weights] if p.weights is not None else list(p.shared)
        U = [u[n] for u in p.pending] if p.pending is not None else [torch.zeros_like(w) for w in W]
        pos = p.position[n]
        for t in range(seg.start, seg.end):
            y_t, U = token(W, U, p.x[b, t], p.eta[b, t], p.signal[b, t], mode=p.mode, mlp=cfg["mlp"],
                           residual=cfg["residual"])
            rows[b].append(y_t)
            pos += 1
            if pos == C:                             # the chunk is complete: apply its update
                W = [round_weight(retention * w - u, cfg) for w, u in zip(W, U)]
                U = [torch.zeros_like(u) for u in U]
                pos = 0
        finals.append((W, U, pos))
    y = torch.stack([torch.stack(r) if r else p.x.new_zeros(0, D) for r in rows]) if B else p.x.new_zeros(0, T, D)
    if not cfg["output_final_state"]:
        return pack_outputs(inputs, y, cfg)
    if not finals:                                   # no sequences (B == 0)
        return pack_outputs(inputs, y, cfg, *no_sequences(p))
    weights = [torch.stack([f[0][i] for f in finals]) for i in range(p.num_weights)]
    pending = [torch.stack([f[1][i] for f in finals]) for i in range(p.num_weights)]
    return pack_outputs(inputs, y, cfg, weights, pending, [f[2] for f in finals])
