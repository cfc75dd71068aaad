"""Sequences of a batch: either B rows of length T, or (B == 1) segments given by ``cu_seqlens``."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .checks import check_cu_seqlens_values


class Segment(NamedTuple):
    """Sequence ``index`` occupies ``x[row, start:end]``."""
    index: int
    row: int
    start: int
    end: int


def segments(batch: int, length: int, cu_seqlens: Optional[torch.Tensor]) -> list[Segment]:
    """The sequences of a ``[B, T, ...]`` input, in state order (index n of ``[N, ...]`` states)."""
    if cu_seqlens is None:
        return [Segment(b, b, 0, length) for b in range(batch)]
    cu = check_cu_seqlens_values(cu_seqlens, length)
    return [Segment(n, 0, cu[n], cu[n + 1]) for n in range(len(cu) - 1)]


def num_sequences(batch: int, cu_seqlens: Optional[torch.Tensor]) -> int:
    return batch if cu_seqlens is None else cu_seqlens.numel() - 1
