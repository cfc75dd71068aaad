"""Streaming state of ``linear_memory`` (SPEC §2, §6)."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ...core.state import StreamState


@dataclasses.dataclass
class LinearMemoryState(StreamState):
    """State of N sequences × H heads after some tokens.

    M        [N, H, K, V]  memory after the last token (M_t)
    S        [N, H, K, V]  momentum after the last token, or None when ``mu`` is not used
    M_chunk  [N, H, K, V]  memory at the start of the current chunk (M_s); equals M at a boundary
    position [N] int64     tokens of the current chunk already processed, in [0, chunk_size)
    chunk_size             the chunk size the state was produced with (a resumed call must match)
    States are float32 (float64 when the inputs are float64).
    """
    M: torch.Tensor
    S: Optional[torch.Tensor]
    M_chunk: torch.Tensor
    position: torch.Tensor
    chunk_size: int
