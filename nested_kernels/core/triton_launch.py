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
* ``mma_sync(on)`` — context manager: the launches inside compile with Ampere-style MMA
  (mma.sync, Triton's DISABLE_MMA_V3) when ``on`` and not interpreting. Triton reads the variable
  when it compiles and keys its disk cache on it, so it is set only around these launches.
"""
from __future__ import annotations

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


class mma_sync:
    """Context manager (module docstring); a class, not a generator: it wraps every launch, and a
    generator-based one costs ~3 µs more per launch."""
    __slots__ = ("on", "old")

    def __init__(self, on: bool = True):
        self.on = on and not interpreting()

    def __enter__(self):
        if self.on:
            self.old = getenv("DISABLE_MMA_V3")
            os.environ["DISABLE_MMA_V3"] = "1"

    def __exit__(self, *exc):
        if self.on:
            if self.old is None:
                del os.environ["DISABLE_MMA_V3"]
            else:
                os.environ["DISABLE_MMA_V3"] = self.old
