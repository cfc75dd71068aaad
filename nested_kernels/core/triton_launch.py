"""Launcher utilities shared by the Triton backends (plain Python: importing this module never
imports Triton).

* ``interpreting()`` — TRITON_INTERPRET=1 (kernels run on the CPU interpreter).
* ``env_int(name, default)`` — an integer tuning knob from the environment.
* ``float64_unsupported(inputs)`` — the ``unsupported`` reason of the Triton backends for float64
  tensors (they run on the reference and torch backends).
* ``ptxas_options(env_name, opts)`` — ``opts`` plus ptxas options off the interpreter: ``env_name``
  if set ("" for ptxas' default), else "-O1" (ptxas -O3 squeezes the large kernels into few
  registers with heavy spills, see docs/linear_memory_triton.md).
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
