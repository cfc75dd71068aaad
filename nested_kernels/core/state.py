"""Base of the streaming-state objects (SPEC §6).

A chunked op's state holds, per sequence, the current memory, the chunk-start copy that the
frozen gradients of the current chunk use, and ``position``: how many tokens of the current chunk
have been processed (0 means "at a chunk boundary"). Passing a call's ``final_state`` as the next
call's ``initial_state`` continues the stream exactly as one call over the whole stream would.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import torch


@dataclasses.dataclass
class StreamState:
    """Tensor fields (float32 states, int64 ``position`` of shape [N]) plus ``chunk_size``."""

    def tensors(self) -> dict[str, Optional[torch.Tensor]]:
        return {n: getattr(self, n) for n in _tensor_fields(type(self))}

    def _map(self, fn) -> "StreamState":
        return dataclasses.replace(self, **{k: None if v is None else fn(v) for k, v in self.tensors().items()})

    def clone(self) -> "StreamState":
        return self._map(torch.Tensor.clone)

    def detach(self) -> "StreamState":
        return self._map(torch.Tensor.detach)

    def to(self, device) -> "StreamState":
        return self._map(lambda t: t.to(device))

    @property
    def num_sequences(self) -> int:
        return self.position.shape[0]


@functools.lru_cache(maxsize=None)
def _tensor_fields(cls) -> tuple:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "chunk_size")
