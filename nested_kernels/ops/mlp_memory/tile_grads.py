"""The token and gate gradients of every tile at once, by autograd through the torch tile algebra.

The split backward of the ``triton`` backend walks the chain of weight adjoints (``_bwd_kernel``
PART 1) and stores every tile's tile-end adjoints. After that, each tile's token and gate
gradients depend on nothing but the tile itself: its tokens, its tile-start states (the forward's
checkpoints), its chunk-start weights, dO of its rows and its tile-end adjoints. So they are one
vector-Jacobian product of ``chunk._tile`` — batched over (tiles, heads), not walked — with the
cotangents (dO, dW1_end, dW2_end[, dS1_end, dS2_end]). The default since 2026-12-06e;
NESTED_KERNELS_MLP_TRITON_TOKENS=triton runs the kernel's PARTs 2 and 3 instead.

Tiles as a batch: ``tile_batch``. A resumed first tile (p > 0) takes its gradients at the state's
chunk-start copy. Tiles past the table's end (its sync-free bound) have only padding; their
(uninitialised) checkpoints reach nothing but their own padding slots, which are dropped.
"""
from __future__ import annotations

import warnings

import torch

from ...core.custom_op import autograd_enabled_guard
from ...core.triton_launch import env_flag
from . import chunk
from .tile_batch import at_rows, padded, put_rows, tf32, tile_rows

_GATES = (("log_alpha", "la", 0.0), ("beta", "beta", 0.0), ("mu", "mu", 1.0))


class _Tile:
    """``chunk._tile``, compiled by torch.compile on CUDA (its elementwise work fused between the
    products) unless NESTED_KERNELS_MLP_TRITON_TOKENS_COMPILE=0; eager elsewhere. The first shape
    compiles static; a call with another tile count recompiles once with dynamic sizes (torch's
    automatic dynamic shapes), so batches of varying length do not compile again and again. H100 2026-12-06e
    (issue 4's shape, fwd+bwd of the op): 44.9 ms compiled, 59.6 ms eager (call 4). If compiling
    fails, a RuntimeWarning says so and this process goes on eagerly."""
    compiled = None
    broken = False

    @classmethod
    def vjp(cls, device: torch.device, args: tuple, opts: dict, cots: list, leaves: list, n_out: int):
        """Gradients of (o, tile-end states[:n_out − 1]) of ``_tile(*args, **opts)`` for ``leaves``
        with the cotangents ``cots``."""
        if device.type == "cuda" and not cls.broken and env_flag("NESTED_KERNELS_MLP_TRITON_TOKENS_COMPILE", True):
            if cls.compiled is None:
                cls.compiled = torch.compile(chunk._tile)
            try:
                return cls._vjp(cls.compiled, args, opts, cots, leaves, n_out)
            except torch.OutOfMemoryError:
                raise
            except Exception as e:      # inductor / dynamo failed: the same mathematics eagerly
                cls.broken = True
                warnings.warn(f"mlp_memory tile_grads: torch.compile failed ({type(e).__name__}: {e}); "
                              "running the tile algebra eagerly", RuntimeWarning, stacklevel=3)
        return cls._vjp(chunk._tile, args, opts, cots, leaves, n_out)

    @staticmethod
    def _vjp(tile, args, opts, cots, leaves, n_out):
        o, *ends = tile(*args, **opts)
        return torch.autograd.grad([o] + ends[:n_out - 1], leaves, cots, allow_unused=True)


def tile_grads(a, cfg, saved: dict, adj: dict, dO: torch.Tensor, group: int) -> dict:
    """{name: float32 gradient [1, B·T, H, ·]} of q, k, v, eta and the gates present, for the
    launcher's per-slice layout (one slice). ``a``: ``triton_backend._Args``; ``saved``: the
    forward's tile-start checkpoints W1, W2 (S1, S2) [tiles, H, ·, ·]; ``adj``: the tile-end
    adjoints of PART 1, same shapes; dO [B, T, H, V]; ``group``: most tiles per autograd call
    (bounds the memory of its intermediates; the calls take equally many, the last one repeating
    the last tile, so that the compiled ``_tile`` sees one shape). Products in tf32 where the
    kernels' operands are tf32-rounded or narrower (``a.prec``: 16-bit inputs by default), float32
    where they are tf32x3 / ieee (float32 inputs, precision="float32"). No device sync."""
    rows_all, valid_all, resumed_all = tile_rows(a)
    R, H, nt = a.B * a.T, a.H, a.n_tiles
    toks = {n: padded(x, R, H, 0.0) for n, x in dict(q=a.q, k=a.k, v=a.v, eta=a.eta, dO=dO).items()}
    for name, attr, fill in _GATES:
        if getattr(a, attr) is not None:
            toks[name] = padded(getattr(a, attr), R, H, fill)
    # gradients per row, the padding slots' into the extra row B·T (dropped)
    out = {n: torch.zeros(1, R + 1, H, toks[n].shape[-1], dtype=torch.float32, device=a.device)
           for n in toks if n != "dO"}
    states = ("W1", "W2", "S1", "S2") if a.mom else ("W1", "W2")
    opts = dict(target=cfg["target"], read=cfg["read"], activation=cfg["activation"], residual=cfg["residual"])
    n_calls = -(-nt // group)
    size = -(-nt // n_calls)
    with autograd_enabled_guard(), torch.enable_grad(), tf32(a.prec not in ("tf32x3", "ieee")):
        for g0 in range(0, nt, size):
            if g0 + size <= nt:
                part = lambda x: x[g0:g0 + size]                          # noqa: E731
            else:
                ids = torch.arange(g0, g0 + size, device=a.device).clamp(max=nt - 1)
                part = lambda x: x[ids]                                   # noqa: E731
            rows, valid = part(rows_all), part(valid_all)
            take = lambda n: at_rows(toks[n], rows)                      # [G, H, C, d]  # noqa: E731
            leaves = {n: take(n).requires_grad_() for n in out}
            sc = lambda n: leaves[n][..., 0] if n in leaves else None     # [G, H, C]  # noqa: E731
            rho = valid[:, None, :].expand(-1, H, -1).float() if a.mom else None
            st = {n: part(saved[n]) for n in states}
            W1g, W2g = st["W1"], st["W2"]
            if a.resumed:       # a resumed first tile takes its gradients at the chunk-start copy
                n0 = part(a.plan.tile_seq).long().clamp(min=0)
                pick = part(resumed_all)[:, None, None, None]
                W1g = torch.where(pick, a.chunk0[0][n0], W1g)
                W2g = torch.where(pick, a.chunk0[1][n0], W2g)
            args = (leaves["q"] * a.scale, leaves["k"], leaves["v"], sc("eta"), sc("log_alpha"), sc("beta"),
                    sc("mu"), rho, st["W1"], st["W2"], st.get("S1"), st.get("S2"), W1g, W2g)
            cots = [take("dO")] + [part(adj[n]) for n in states]
            grads = _Tile.vjp(a.device, args, opts, cots, list(leaves.values()), len(cots))
            for n, gx in zip(leaves, grads):
                if gx is not None:
                    put_rows(out[n][0], rows, gx)
    return {n: x[:, :R] for n, x in out.items()}
