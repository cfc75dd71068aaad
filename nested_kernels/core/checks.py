"""Argument checks (SPEC §8): each failure is a ``ValueError`` naming the argument and the
expected form, raised before any kernel runs."""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


def _fmt_shape(shape: Sequence) -> str:
    return "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"


def check_tensor(name: str, t, shape: Sequence[Optional[int]], *, names: str = "",
                 dtypes=FLOAT_DTYPES, device: Optional[torch.device] = None) -> None:
    """``t`` must be a tensor with ``len(shape)`` dims; each non-None entry of ``shape`` must match.

    ``names`` (e.g. "B, T, H, K") is printed in the message to state the expected form.
    Reads only metadata (no device sync); the message is formatted only on failure.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {_form(shape, names)}, got {type(t).__name__}")
    got = t.shape
    if len(got) != len(shape):
        raise ValueError(f"{name} must have {len(shape)} dimensions {_form(shape, names)}, got shape {tuple(got)}")
    for i, want in enumerate(shape):
        if want is not None and got[i] != want:
            raise ValueError(f"{name} must have shape {_form(shape, names)} = {_fmt_shape(shape)}, got {tuple(got)}"
                             f" (dimension {i} is {got[i]}, expected {want})")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise ValueError(f"{name} has unsupported dtype {str(t.dtype).replace('torch.', '')}; expected one of {allowed}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device}, but the inputs are on {device}; put all tensors on one device")


def _form(shape: Sequence, names: str) -> str:
    return f"[{names}]" if names else _fmt_shape(shape)


def check_option(name: str, value, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_scalar(name: str, value, *, low: float = float("-inf"), high: float = float("inf")) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")


def check_cu_seqlens(cu_seqlens, batch: int, length: int, device: torch.device) -> int:
    """Check the structure of ``cu_seqlens`` ([N+1] int32/int64, B == 1) and return N.

    The values (start 0, non-decreasing, end T) are checked by :func:`check_cu_seqlens_values`,
    which reads them from the device and so runs inside the op, still before any kernel.
    """
    if not isinstance(cu_seqlens, torch.Tensor):
        raise ValueError(f"cu_seqlens must be a 1-D int32/int64 tensor [N+1], got {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype not in INDEX_DTYPES:
        raise ValueError(f"cu_seqlens must have dtype int32 or int64, got {str(cu_seqlens.dtype).replace('torch.', '')}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D with N+1 >= 2 entries, got shape {tuple(cu_seqlens.shape)}")
    if batch != 1:
        raise ValueError(f"cu_seqlens requires batch size B == 1 (sequences packed along T), got B = {batch}")
    if cu_seqlens.device != device:
        raise ValueError(f"cu_seqlens is on {cu_seqlens.device}, but the inputs are on {device}")
    return cu_seqlens.numel() - 1


def check_cu_seqlens_values(cu_seqlens: torch.Tensor, length: int) -> list[int]:
    """Return the offsets as Python ints after checking: starts at 0, non-decreasing, ends at T."""
    cu = [int(c) for c in cu_seqlens.tolist()]
    if cu[0] != 0:
        raise ValueError(f"cu_seqlens must start at 0, got {cu[0]}")
    if any(b < a for a, b in zip(cu, cu[1:])):
        raise ValueError(f"cu_seqlens must be non-decreasing, got {cu}")
    if cu[-1] != length:
        raise ValueError(f"cu_seqlens must end at T = {length}, got {cu[-1]}")
    return cu


def common_device(**tensors) -> torch.device:
    """The device of the first given tensor; every other tensor must be on it."""
    device = None
    for name, t in tensors.items():
        if t is None:
            continue
        if device is None:
            device = t.device
        elif t.device != device:
            first = next(n for n, x in tensors.items() if x is not None)
            raise ValueError(f"{name} is on {t.device}, but {first} is on {device}; put all tensors on one device")
    return device
