"""Streaming state of ``fast_mlp`` (SPEC §4, §6)."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ...core.state import StreamState


@dataclasses.dataclass
class FastMLPState(StreamState):
    """State of N sequences of a fast-weight MLP after some tokens.

    Fields are numbered in the order of the op's ``weights`` tuple: (w_in, w_out) for gelu/silu
    (``w2``/``u2`` are None), (w_gate, w_up, w_down) for swiglu.

    w0, w1, w2  [N, out, in]  fast weights of the current chunk, W_c: every token of the chunk
                              uses them (inside a chunk nothing changes, so they are also the
                              "current" weights)
    u0, u1, u2  [N, out, in]  the part of the current chunk's update already accumulated:
                              Σ_{processed tokens t of the current chunk} η_t ∇_W⟨g_t, MLP_W(x_t)⟩
                              at W_c; zero at a chunk boundary. When the chunk completes,
                              W_{c+1} = retention·W_c − (u + the rest of the chunk's sum)
    position    [N] int64     tokens of the current chunk already processed, in [0, chunk_size)
    chunk_size                the chunk size the state was produced with (a resumed call must match)
    Tensors are float32 (float64 when the inputs are float64).
    """
    w0: torch.Tensor
    w1: torch.Tensor
    w2: Optional[torch.Tensor]
    u0: torch.Tensor
    u1: torch.Tensor
    u2: Optional[torch.Tensor]
    position: torch.Tensor
    chunk_size: int

    @property
    def weights(self) -> tuple[torch.Tensor, ...]:
        """The fast weights W_c per sequence, in the op's ``weights`` order."""
        return tuple(w for w in (self.w0, self.w1, self.w2) if w is not None)

    @property
    def updates(self) -> tuple[torch.Tensor, ...]:
        """The accumulated partial-chunk update, in the op's ``weights`` order."""
        return tuple(u for u in (self.u0, self.u1, self.u2) if u is not None)

    @property
    def mlp_family(self) -> str:
        """"swiglu" for three weights, else "gelu/silu" (the activation is not stored)."""
        return "swiglu" if self.w2 is not None else "gelu/silu"

    @classmethod
    def from_weights(cls, weights, chunk_size: int) -> "FastMLPState":
        """A state at a chunk boundary (position 0, no pending update) holding ``weights``
        (a tuple of per-sequence weights [N, out, in] in the op's order)."""
        weights = tuple(weights)
        w = list(weights) + [None] * (3 - len(weights))
        u = [None if t is None else torch.zeros_like(t) for t in w]
        position = torch.zeros(weights[0].shape[0], dtype=torch.int64, device=weights[0].device)
        return cls(w[0], w[1], w[2], u[0], u[1], u[2], position, chunk_size)
