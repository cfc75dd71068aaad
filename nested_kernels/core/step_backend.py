"""Host-side helpers shared by the Triton decode steps (``ops/*/triton_step.py``).

A decode step updates its state tensors in place, so a kernel can only run on states it can write
directly: float32 and contiguous (``state_unsupported``). Each fused step kernel also advances the
per-sequence ``position`` itself; the programs of one sequence count themselves on a small int32
counter per sequence (``position_counters``) so that the last one to finish writes the new position
after every program has read the old one (see ``core/triton_helpers.finish_position``). The
counters return to zero at the end of every launch, so one buffer per (device, stream) serves every
call and CUDA-graph replays. Triton itself is not imported here.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch

from .triton_launch import float64_unsupported as _float64_unsupported

STATE_PREFIX = "state."


def with_state(inputs: Mapping, state: Mapping) -> dict:
    """``inputs`` plus the state tensors as ``state.<name>``: what ``select_backend`` hands to a
    step backend's ``unsupported`` (which must see the state's dtype and layout)."""
    return {**inputs, **{STATE_PREFIX + n: t for n, t in state.items()}}


def state_unsupported(inputs: Mapping, names, bf16_names=()) -> Optional[str]:
    """Why a kernel cannot update these state tensors in place (None when it can): each named
    state must be float32 (or bfloat16, for those in ``bf16_names``) and contiguous,
    ``state.position`` int64 and contiguous."""
    for name in names:
        t = inputs.get(STATE_PREFIX + name)
        if t is None or t.numel() == 0:
            continue
        want = ((torch.int64,) if name == "position" else
                (torch.float32, torch.bfloat16) if name in bf16_names else (torch.float32,))
        if t.dtype not in want:
            return (f"state.{name} is {str(t.dtype).replace('torch.', '')}: the Triton step updates "
                    f"{' or '.join(str(w).replace('torch.', '') for w in want)} states in place "
                    "(others run on the torch step)")
        if not t.is_contiguous():
            return f"state.{name} is not contiguous: the Triton step updates contiguous states in place"
    return None


def float64_unsupported(inputs: Mapping) -> Optional[str]:
    """``triton_launch.float64_unsupported`` over the step's inputs (its states are judged by
    ``state_unsupported``)."""
    return _float64_unsupported({n: t for n, t in inputs.items()
                                 if not n.startswith(STATE_PREFIX) and isinstance(t, torch.Tensor)})


_COUNTERS: dict = {}


def position_counters(device: torch.device, n: int) -> torch.Tensor:
    """A zeroed int32 buffer of at least ``n`` counters for the current stream of ``device``
    (allocated once; every step kernel leaves it zeroed)."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (str(device), stream)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < n:
        buf = torch.zeros(max(n, 64), dtype=torch.int32, device=device)
        _COUNTERS[key] = buf
    return buf


def next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def row_strides(t: torch.Tensor) -> tuple:
    """(t, stride of dim 0, stride of dim 1) of a [N, H, D] or [N, H] input for the kernels, which
    need a unit stride along D: such inputs are passed as they are (slices of a larger projection
    included), others are made contiguous first."""
    if t.dim() == 3 and t.stride(-1) != 1:
        t = t.contiguous()
    return t, t.stride(0), t.stride(1)


TOKEN_INPUTS = ("q", "k", "v", "eta", "log_alpha", "beta", "mu")


def token_rows(inputs: Mapping) -> tuple[list, list]:
    """The step kernels' per-token arguments: (tensors of ``TOKEN_INPUTS`` in that order, None for
    an absent gate; their (dim 0, dim 1) strides flattened in the same order, 0 for an absent gate)."""
    rows = [row_strides(inputs[n]) if inputs[n] is not None else (None, 0, 0) for n in TOKEN_INPUTS]
    return [r[0] for r in rows], [s for r in rows for s in r[1:]]
