"""The Triton kernels' tiles as a batch dimension for torch ops (``tile_grads``, ``prep_torch``).

Tiles follow the kernels' tile table (``core.triton_launch.TilePlan``): tile t of sequence
n = tile_seq[t], index i = tile_idx[t], holds the tokens [max(0, iC − p), min(L, (i+1)C − p)) in
its first slots; the other slots are padding tokens that leave the state unchanged (η = 0, α = 1,
β = 0, μ = 1, ρ = 0: the torch backend's convention). Token tensors are gathered into
[tiles, H, C, ·] through one extra padding row, and results scattered back the same way, so no
step needs a device sync.
"""
from __future__ import annotations

import contextlib

import torch


def tile_rows(a) -> tuple:
    """(rows [tiles, C] int64: each slot's row of the flattened [B·T] tokens, B·T for padding;
    valid [tiles, C] bool; resumed [tiles] bool: the tile finishes a chunk begun by an earlier
    call) for the tile table of ``a`` (``triton_backend._Args``)."""
    plan, C, dev = a.plan, a.C, a.device
    seq = plan.tile_seq.long()
    live = seq >= 0
    n = seq.clamp(min=0)
    idx = plan.tile_idx.long()
    L, p = plan.lengths[n], plan.pos[n]
    row0 = a.cu[n] if a.cu is not None else n * a.T
    s = (idx * C - p).clamp(min=0)
    e = torch.minimum(L, (idx + 1) * C - p)
    tok = s[:, None] + torch.arange(C, device=dev)
    valid = live[:, None] & (tok < e[:, None])
    rows = torch.where(valid, row0[:, None] + tok, a.B * a.T)
    return rows, valid, live & (idx == 0) & (p > 0)


def padded(x: torch.Tensor, R: int, H: int, fill: float) -> torch.Tensor:
    """x [B, T, H, *] (B·T = R) -> float32 [R + 1, H, d], the last row (padding) filled with ``fill``."""
    x = x.reshape(R, H, -1).float()
    return torch.cat([x, x.new_full((1,) + x.shape[1:], fill)])


def at_rows(flat: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The ``padded`` rows ``rows`` [tiles, C] of ``flat`` as [tiles, H, C, d]."""
    return flat[rows].permute(0, 2, 1, 3).contiguous()


def put_rows(dest: torch.Tensor, rows: torch.Tensor, x: torch.Tensor) -> None:
    """The inverse of ``at_rows``: dest [R + 1, H, d] (``padded`` layout) takes x [tiles, H, C, d]
    at ``rows``; the padding slots all land in row R."""
    dest[rows] = x.transpose(1, 2)


@contextlib.contextmanager
def tf32(on: bool):
    """float32 products with tf32 operands while ``on`` (cuBLAS' allow_tf32 flag, restored after)."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
