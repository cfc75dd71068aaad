"""Triton device functions shared by several kernels (imported only by kernel modules, so that
importing the package never imports Triton).

* ``act`` / ``act_grad`` — φ and φ' of the MLP memories: exact (erf) GELU (ACT = 0) and SiLU
  (ACT = 1), in float32.
* ``finish_position`` — the end of a fused decode step: the programs of sequence ``i_n`` count
  themselves on ``counters[i_n]`` (acquire/release atomics); the last of ``total`` programs writes
  the new position and zeroes the counter. Every program has read the old position before it
  counts (the kernels call this after a block-wide reduction that consumed it).
"""
from __future__ import annotations

import triton
import triton.language as tl

_INV_SQRT2 = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def act(z, ACT: tl.constexpr):
    if ACT == 0:
        return 0.5 * z * (1.0 + tl.erf(z * _INV_SQRT2))
    else:
        return z * tl.sigmoid(z)


@triton.jit
def act_grad(z, ACT: tl.constexpr):
    if ACT == 0:
        return 0.5 * (1.0 + tl.erf(z * _INV_SQRT2)) + z * tl.exp(-0.5 * z * z) * _INV_SQRT_2PI
    else:
        s = tl.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))


@triton.jit
def finish_position(pos_ptr, counters, i_n, p_new, total):
    done = tl.atomic_add(counters + i_n, 1, sem="acq_rel")
    last = done == total - 1
    tl.store(pos_ptr + i_n, p_new, mask=last)
    tl.store(counters + i_n, 0, mask=last)
