"""Output allocation for kernel backends.

With ``NESTED_KERNELS_POISON=1`` (set by the tests and by ``verify``) new outputs are filled with
NaN (integers: their max) instead of left uninitialised, so an element a kernel forgot to write
fails the comparison with the reference instead of passing by luck.
"""
from __future__ import annotations

from typing import Optional

import torch

from .env import getenv


def poison_enabled() -> bool:
    return getenv("NESTED_KERNELS_POISON") == "1"


def new_empty(*shape, dtype: torch.dtype, device, poison: Optional[bool] = None) -> torch.Tensor:
    """``torch.empty``, poisoned when ``poison`` (None: ``poison_enabled()``)."""
    t = torch.empty(*shape, dtype=dtype, device=device)
    if poison_enabled() if poison is None else poison:
        t.fill_(float("nan") if t.is_floating_point() else torch.iinfo(dtype).max)
    return t


def residual_budget(device: torch.device, env: str) -> int:
    """Bytes a backend may keep between its forward and backward (residuals, or a backward's
    stash): the environment variable ``env`` when set, else a third of the GPU memory this process
    can still use — free on the device plus what PyTorch's caching allocator holds unused (the
    previous call's residuals, freed, stay reserved there and are not free to the driver) — or
    1 GiB on the CPU. Callers mark their wrapper ``_dynamo_marked_constant`` so that torch.compile
    evaluates it once while tracing (fixed residual shapes)."""
    value = getenv(env)
    if value:
        return int(value)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return (free + cached) // 3
    return 1 << 30
