"""Output allocation for kernel backends.

With ``NESTED_KERNELS_POISON=1`` (set by the tests and by ``verify``) new outputs are filled with
NaN (integers: their max) instead of left uninitialised, so an element a kernel forgot to write
fails the comparison with the reference instead of passing by luck.
"""
from __future__ import annotations

import torch

from .env import getenv


def poison_enabled() -> bool:
    return getenv("NESTED_KERNELS_POISON") == "1"


def new_empty(*shape, dtype: torch.dtype, device) -> torch.Tensor:
    t = torch.empty(*shape, dtype=dtype, device=device)
    if poison_enabled():
        t.fill_(float("nan") if t.is_floating_point() else torch.iinfo(dtype).max)
    return t
