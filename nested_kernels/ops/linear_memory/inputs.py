"""Inputs of ``linear_memory`` as the backends see them: compute-dtype tensors and start states."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from ...core.sequences import Segment, segments


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, else float32 (SPEC §1: all arithmetic accumulates in float32)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@dataclass
class Prepared:
    """q, k, v [B,T,H,*] and gates [B,T,H] in the compute dtype (alpha = exp(log_alpha), 1 if
    absent; beta 0 if absent; mu None if absent); start states [N,H,K,V] (S zeros when mu is used
    without an initial S, None without mu); position [N] as Python ints; the sequences."""
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    eta: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    mu: Optional[torch.Tensor]
    M: torch.Tensor
    S: Optional[torch.Tensor]
    M_chunk: torch.Tensor
    position: list[int]
    segments: list[Segment]


def prepare(inputs: Mapping[str, Optional[torch.Tensor]], cfg: dict) -> Prepared:
    q, k, v, eta = (inputs[n] for n in ("q", "k", "v", "eta"))
    dt = compute_dtype(q)
    B, T, H, K = q.shape
    V = v.shape[-1]
    segs = segments(B, T, inputs["cu_seqlens"])
    N = len(segs)
    gate = lambda name, default: (torch.full((B, T, H), default, dtype=dt, device=q.device)  # noqa: E731
                                  if inputs[name] is None else inputs[name].to(dt))
    alpha = torch.ones((B, T, H), dtype=dt, device=q.device) if inputs["log_alpha"] is None \
        else inputs["log_alpha"].to(dt).exp()
    mu = None if inputs["mu"] is None else inputs["mu"].to(dt)
    M = torch.zeros(N, H, K, V, dtype=dt, device=q.device) if inputs["m0"] is None else inputs["m0"].to(dt)
    S = None
    if mu is not None:
        S = torch.zeros_like(M) if inputs["s0"] is None else inputs["s0"].to(dt)
    M_chunk = M if inputs["m_chunk0"] is None else inputs["m_chunk0"].to(dt)
    position = [0] * N if inputs["position0"] is None else [int(p) for p in inputs["position0"].tolist()]
    if any(not 0 <= p < cfg["chunk_size"] for p in position):
        raise ValueError(f"initial_state.position must hold values in [0, chunk_size = {cfg['chunk_size']}), "
                         f"got {position}")
    return Prepared(q.to(dt), k.to(dt), v.to(dt), eta.to(dt), alpha, gate("beta", 0.0), mu,
                    M, S, M_chunk, position, segs)


def empty_outputs(q: torch.Tensor, V: int) -> tuple:
    """Placeholders for the state outputs when ``output_final_state`` is False."""
    return tuple(q.new_empty(0, dtype=compute_dtype(q)) for _ in range(3)) + (
        torch.empty(0, dtype=torch.int64, device=q.device),)
