"""Streaming state of ``mlp_memory`` (SPEC §3, §6)."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ...core.state import StreamState


@dataclasses.dataclass
class MLPMemoryState(StreamState):
    """State of N sequences × H heads of the MLP memory M(x) = [x +] W1 φ(W2 x) after some tokens.

    W1        [N, H, V, F]  output-layer weights after the last token (W1_t)
    W2        [N, H, F, K]  input-layer weights after the last token (W2_t)
    S1        [N, H, V, F]  momentum of W1 after the last token, or None when ``mu`` is not used
    S2        [N, H, F, K]  momentum of W2, or None when ``mu`` is not used
    W1_chunk  [N, H, V, F]  W1 at the start of the current chunk (W1_s: the frozen gradients and
                            self-generated targets of the current chunk use it); equals W1 at a
                            chunk boundary
    W2_chunk  [N, H, F, K]  W2 at the start of the current chunk (W2_s)
    position  [N] int64     tokens of the current chunk already processed, in [0, chunk_size)
    chunk_size              the chunk size the state was produced with (a resumed call must match)
    States are float32 (float64 when the inputs are float64). Pass the state as ``initial_state``
    to continue a stream (any split point, also inside a chunk) or to ``mlp_memory_step``.
    """
    W1: torch.Tensor
    W2: torch.Tensor
    S1: Optional[torch.Tensor]
    S2: Optional[torch.Tensor]
    W1_chunk: torch.Tensor
    W2_chunk: torch.Tensor
    position: torch.Tensor
    chunk_size: int

    @classmethod
    def from_weights(cls, w1: torch.Tensor, w2: torch.Tensor, num_sequences: int, *, chunk_size: int,
                     momentum: bool = False, dtype: torch.dtype = torch.float32) -> "MLPMemoryState":
        """The state before the first token: every sequence starts from the shared w1 [H,V,F],
        w2 [H,F,K] (copied, detached), zero momenta when ``momentum``, position 0. Useful to decode
        with ``mlp_memory_step`` from scratch."""
        N = num_sequences
        W1 = w1.detach().to(dtype).unsqueeze(0).repeat(N, 1, 1, 1)
        W2 = w2.detach().to(dtype).unsqueeze(0).repeat(N, 1, 1, 1)
        S1 = torch.zeros_like(W1) if momentum else None
        S2 = torch.zeros_like(W2) if momentum else None
        position = torch.zeros(N, dtype=torch.int64, device=W1.device)
        return cls(W1, W2, S1, S2, W1.clone(), W2.clone(), position, chunk_size)
