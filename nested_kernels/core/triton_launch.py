"""Launcher utilities shared by the Triton backends (plain Python: importing this module never
imports Triton).

* ``interpreting()`` — TRITON_INTERPRET=1 (kernels run on the CPU interpreter).
* ``env_int(name, default)`` / ``env_flag(name, default)`` — an integer / on-off ("1" / "0")
  tuning knob from the environment.
* ``float64_unsupported(inputs)`` — the ``unsupported`` reason of the Triton backends for float64
  tensors (they run on the reference and torch backends).
* ``ptxas_options(env_name, opts, default="-O1")`` — ``opts`` plus ptxas options off the
  interpreter: ``env_name`` if set ("" for ptxas' default, -O3), else ``default`` (-O1: ptxas -O3
  squeezes the large kernels into few registers with heavy spills, see docs/linear_memory_triton.md).
* ``tile_table(ends, n_tiles)`` — (sequence, index in its sequence) of every global tile of a
  tile-parallel grid of ``n_tiles`` (an upper bound, no device sync) from the cumulative tile
  counts ``ends`` [N] of the sequences; -1 / 0 for the unused tail.
* ``tile_plan(B, T, BT, C, cu, pos, device)`` — the tiles of BT tokens of a batch (``TilePlan``):
  per-sequence lengths, start positions, first global tile and final chunk position, the
  tile table, and the grid size; cached for fixed-length batches that start at chunk position 0
  (the usual training call), so such a call runs no torch op for it.
* ``launch(kernel, grid, *args, **kwargs)`` — ``kernel[grid](*args, **kwargs)`` with less host
  work per launch: the compiled kernel of each specialization is looked up by a key of its own.
* ``mma_sync(on)`` — context manager: the launches inside compile with Ampere-style MMA
  (mma.sync, Triton's DISABLE_MMA_V3) when ``on`` and not interpreting. Triton reads the variable
  when it compiles and keys its disk cache on it, so it is set only around these launches.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import NamedTuple, Optional

import torch

from .env import getenv


def interpreting() -> bool:
    return getenv("TRITON_INTERPRET") == "1"


def env_int(name: str, default: int) -> int:
    value = getenv(name)
    return int(value) if value else default


def env_flag(name: str, default: bool) -> bool:
    """An on/off tuning knob: "1" or "0" (unset or empty: ``default``); anything else is a
    ValueError naming the variable."""
    value = getenv(name) or ("1" if default else "0")
    if value not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {value!r}")
    return value == "1"


def float64_unsupported(inputs: dict) -> Optional[str]:
    for name, t in inputs.items():
        if t is not None and t.is_floating_point() and t.dtype == torch.float64:
            return f"{name} is float64: float64 runs on the reference and torch backends"
    return None


def ptxas_options(env_name: str, opts: dict, default: str = "-O1") -> dict:
    if not interpreting():
        ptx = getenv(env_name, default)
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


class TilePlan(NamedTuple):
    """Tiles of ``BT`` tokens over the N sequences of a batch (int64 [N] unless said): ``lengths``,
    start positions ``pos`` (in the chunk, 0 unless resumed), ``tile_base`` (global index of each
    sequence's first tile), ``final_pos`` ((pos + length) mod chunk_size), ``tile_seq`` /
    ``tile_idx`` (int32 [n_tiles]: ``tile_table``) and ``n_tiles``: the tile count of a fixed-length
    batch starting at position 0, else the sync-free bound Σ ceil((L + p)/BT) ≤ B·T/BT + 2N."""
    lengths: torch.Tensor
    pos: torch.Tensor
    tile_base: torch.Tensor
    final_pos: torch.Tensor
    tile_seq: torch.Tensor
    tile_idx: torch.Tensor
    n_tiles: int


def fixed_length(cu: Optional[torch.Tensor], pos: Optional[torch.Tensor], T: int) -> bool:
    """Whether a batch has equal-length sequences (no ``cu``) starting at position 0 (no ``pos``)."""
    return cu is None and pos is None and T > 0


def n_tiles(B: int, T: int, BT: int, N: int, fixed: bool) -> int:
    """Grid size of a tile-parallel launch: exact when ``fixed`` (``fixed_length``), else the bound."""
    return N * -(-T // BT) if fixed else (B * T) // BT + 2 * N


def tile_plan(B: int, T: int, BT: int, C: int, cu: Optional[torch.Tensor], pos: Optional[torch.Tensor],
              device: torch.device) -> TilePlan:
    """The ``TilePlan`` of a batch: ``cu`` int64 [N + 1] offsets of a packed batch (B = 1) or None
    (N = B sequences of T tokens), ``pos`` int64 [N] resumed positions or None."""
    device = torch.device(device)
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if fixed_length(cu, pos, T) and not capturing:    # a graph capture records torch ops, runs none
        return _fixed_plan(B, T, BT, C, device)
    return _plan(B, T, BT, C, cu, pos, device)


def _plan(B, T, BT, C, cu, pos, device) -> TilePlan:
    N = B if cu is None else cu.numel() - 1
    lengths = torch.full((N,), T, dtype=torch.int64, device=device) if cu is None else cu[1:] - cu[:-1]
    p = torch.zeros_like(lengths) if pos is None else pos
    nt = torch.where(lengths > 0, (lengths + p + BT - 1) // BT, 0)
    ends = torch.cumsum(nt, 0)
    n = n_tiles(B, T, BT, N, fixed_length(cu, pos, T))
    return TilePlan(lengths, p, (ends - nt).contiguous(), (p + lengths) % C, *tile_table(ends, n), n)


@functools.lru_cache(maxsize=64)
def _fixed_plan(B, T, BT, C, device) -> TilePlan:
    with torch.inference_mode(False):     # ordinary tensors, usable in and out of inference mode
        return _plan(B, T, BT, C, None, None, device)


@contextlib.contextmanager
def mma_sync(on: bool = True):
    if not on or interpreting():
        yield
        return
    old = getenv("DISABLE_MMA_V3")
    os.environ["DISABLE_MMA_V3"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["DISABLE_MMA_V3"]
        else:
            os.environ["DISABLE_MMA_V3"] = old


# -- launches ---------------------------------------------------------------------------------
# ``JITFunction.run`` (Triton 3.6) spends tens of µs of host time per launch of our kernels (~45
# arguments: the generated binder, a cache key of every argument's specialization and the options,
# launch metadata); a linear_memory forward + backward launches six. ``launch`` keeps the
# ``CompiledKernel`` that Triton's own ``run`` returned under a key that holds at least everything
# Triton specializes on (each tensor's dtype and 16-byte alignment; each integer's 32/64-bit range,
# == 1 and divisibility by 16; None; constexprs by value; every keyword: constexprs and options)
# plus the device, and on a hit launches it the way ``run`` does. A miss (the first launch of a
# specialization) goes through ``run`` itself, which compiles or finds the kernel.
# NESTED_KERNELS_LAUNCH_CACHE=0 sends every launch through ``run``.
_LAUNCHES: dict = {}
_KERNELS: dict = {}     # kernel -> (indices of its constexpr parameters, parameter names)


def _tensor_spec(a):
    return a.dtype, a.data_ptr() % 16 == 0


def _int_spec(a):
    return int, a == 1, a % 16 == 0, -2 ** 31 <= a < 2 ** 31, a >= 2 ** 63


def _other_spec(a):
    if isinstance(a, torch.Tensor):
        return _tensor_spec(a)
    if isinstance(a, int) and not isinstance(a, bool):
        return _int_spec(a)
    return float if isinstance(a, float) else a


_SPECS = {torch.Tensor: _tensor_spec, int: _int_spec, float: lambda a: float}


def _spec(a):
    return _SPECS.get(type(a), _other_spec)(a)


def launch(kernel, grid: tuple, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)`` (``grid``: a tuple of 1–3 ints; ``args``: the kernel's
    leading parameters, ``kwargs``: the rest and the launch options), by the cached compiled
    kernel when this specialization ran before (see above)."""
    from triton import knobs
    from triton.runtime.driver import driver
    from triton.runtime.jit import JITFunction
    if interpreting() or type(kernel) is not JITFunction or getenv("NESTED_KERNELS_LAUNCH_CACHE") == "0":
        kernel[grid](*args, **kwargs)       # the interpreter, a stand-in (the compile probes), or asked
        return
    info = _KERNELS.get(kernel)
    if info is None:
        info = _KERNELS[kernel] = frozenset(kernel.constexprs), tuple(kernel.arg_names)
    constexprs, names = info
    device = driver.active.get_current_device()
    key = (kernel, device, tuple(kwargs.items()), tuple(map(_spec, args)),
           tuple(a for i, a in enumerate(args) if i in constexprs))     # positional constexprs by value
    hit = _LAUNCHES.get(key)
    if hit is None:
        compiled = kernel[grid](*args, **kwargs)
        if compiled is not None and not hasattr(compiled, "result"):     # not an async compile
            _LAUNCHES[key] = compiled, names[len(args):]
        return
    compiled, rest = hit
    params = args + tuple(kwargs[n] for n in rest)
    stream = driver.active.get_current_stream(device)
    g = tuple(grid) + (1, 1)
    compiled.run(g[0], g[1], g[2], stream, compiled.function, compiled.packed_metadata,
                 compiled.launch_metadata(grid, stream, *params), knobs.runtime.launch_enter_hook,
                 knobs.runtime.launch_exit_hook, *params)
