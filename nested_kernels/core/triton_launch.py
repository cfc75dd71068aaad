"""Launcher utilities shared by the Triton backends (plain Python: importing this module never
imports Triton).

* ``interpreting()`` — TRITON_INTERPRET=1 (kernels run on the CPU interpreter).
* ``env_int(name, default)`` — an integer tuning knob from the environment.
* ``float64_unsupported(inputs)`` — the ``unsupported`` reason of the Triton backends for float64
  tensors (they run on the reference and torch backends).
* ``ptxas_options(env_name, opts)`` — ``opts`` plus ptxas options off the interpreter: ``env_name``
  if set ("" for ptxas' default), else "-O1" (ptxas -O3 squeezes the large kernels into few
  registers with heavy spills, see docs/linear_memory_triton.md).
* ``tile_table(ends, n_tiles)`` — (sequence, index in its sequence) of every global tile of a
  tile-parallel grid of ``n_tiles`` (an upper bound, no device sync) from the cumulative tile
  counts ``ends`` [N] of the sequences; -1 / 0 for the unused tail.
* ``mma_sync(on)`` — context manager: the launches inside compile with Ampere-style MMA
  (mma.sync, Triton's DISABLE_MMA_V3) when ``on`` and not interpreting. Triton reads the variable
  when it compiles and keys its disk cache on it, so it is set only around these launches.
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def float64_unsupported(inputs: dict) -> Optional[str]:
    for name, t in inputs.items():
        if t is not None and t.is_floating_point() and t.dtype == torch.float64:
            return f"{name} is float64: float64 runs on the reference and torch backends"
    return None


def ptxas_options(env_name: str, opts: dict) -> dict:
    if not interpreting():
        ptx = os.environ.get(env_name, "-O1")
        if ptx:
            opts["ptx_options"] = ptx
    return opts


def tile_table(ends: torch.Tensor, n_tiles: int) -> tuple:
    g = torch.arange(n_tiles, device=ends.device)
    seq = torch.searchsorted(ends, g, right=True)
    valid = seq < ends.numel()
    start = torch.cat([ends.new_zeros(1), ends])[seq.clamp(max=ends.numel())]
    return (torch.where(valid, seq, -1).to(torch.int32).contiguous(),
            torch.where(valid, g - start, 0).to(torch.int32).contiguous())


@contextlib.contextmanager
def mma_sync(on: bool = True):
    if not on or interpreting():
        yield
        return
    old = os.environ.get("DISABLE_MMA_V3")
    os.environ["DISABLE_MMA_V3"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["DISABLE_MMA_V3"]
        else:
            os.environ["DISABLE_MMA_V3"] = old
