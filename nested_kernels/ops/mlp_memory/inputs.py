"""Inputs of ``mlp_memory`` as the backends see them: compute-dtype tensors and start states."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from ...core.sequences import Segment, segments
from ..linear_memory.inputs import compute_dtype

__all__ = ["Prepared", "prepare", "empty_outputs", "compute_dtype"]


@dataclass
class Prepared:
    """q, k, v [B,T,H,*] and gates [B,T,H] in the compute dtype: log_alpha (0 if absent), alpha =
    exp(log_alpha), beta (0 if absent), mu (None if absent). Start weights W1 [N,H,V,F],
    W2 [N,H,F,K] (the shared w1, w2 expanded over sequences unless an initial state is given),
    momenta S1, S2 (zeros when mu is used without initial momenta, None without mu), chunk-start
    weights, position [N] as Python ints; the sequences. ``has_alpha``/``has_beta`` say whether the
    gate was given."""
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    eta: torch.Tensor
    log_alpha: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    mu: Optional[torch.Tensor]
    has_alpha: bool
    has_beta: bool
    W1: torch.Tensor
    W2: torch.Tensor
    S1: Optional[torch.Tensor]
    S2: Optional[torch.Tensor]
    W1_chunk: torch.Tensor
    W2_chunk: torch.Tensor
    position: list[int]
    segments: list[Segment]


def prepare(inputs: Mapping[str, Optional[torch.Tensor]], cfg: dict) -> Prepared:
    q, k, v, eta = (inputs[n] for n in ("q", "k", "v", "eta"))
    dt = compute_dtype(q)
    B, T, H, K = q.shape
    segs = segments(B, T, inputs["cu_seqlens"])
    N = len(segs)
    zeros = lambda: torch.zeros((B, T, H), dtype=dt, device=q.device)  # noqa: E731
    log_alpha = zeros() if inputs["log_alpha"] is None else inputs["log_alpha"].to(dt)
    beta = zeros() if inputs["beta"] is None else inputs["beta"].to(dt)
    mu = None if inputs["mu"] is None else inputs["mu"].to(dt)
    w1, w2 = inputs["w1"].to(dt), inputs["w2"].to(dt)
    W1 = w1.expand(N, *w1.shape) if inputs["w1_0"] is None else inputs["w1_0"].to(dt)
    W2 = w2.expand(N, *w2.shape) if inputs["w2_0"] is None else inputs["w2_0"].to(dt)
    S1 = S2 = None
    if mu is not None:
        S1 = torch.zeros(W1.shape, dtype=dt, device=q.device) if inputs["s1_0"] is None else inputs["s1_0"].to(dt)
        S2 = torch.zeros(W2.shape, dtype=dt, device=q.device) if inputs["s2_0"] is None else inputs["s2_0"].to(dt)
    W1c = W1 if inputs["w1_chunk0"] is None else inputs["w1_chunk0"].to(dt)
    W2c = W2 if inputs["w2_chunk0"] is None else inputs["w2_chunk0"].to(dt)
    position = [0] * N if inputs["position0"] is None else [int(p) for p in inputs["position0"].tolist()]
    return Prepared(q.to(dt), k.to(dt), v.to(dt), eta.to(dt), log_alpha, log_alpha.exp(), beta, mu,
                    inputs["log_alpha"] is not None, inputs["beta"] is not None,
                    W1, W2, S1, S2, W1c, W2c, position, segs)


def empty_outputs(q: torch.Tensor) -> tuple:
    """Placeholders for the six state outputs and position when ``output_final_state`` is False."""
    return tuple(q.new_empty(0, dtype=compute_dtype(q)) for _ in range(6)) + (
        torch.empty(0, dtype=torch.int64, device=q.device),)
