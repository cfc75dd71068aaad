"""Streaming state of ``self_modifying_titans`` (SPEC §5, §6)."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from ...core.state import StreamState
from .memories import MAX_SLOTS, MEMORIES, SLOTS


def flat_name(kind: str, memory: str, slot: int) -> str:
    """Name of one state tensor in the flat form used by the custom op: ``W.k.0`` (weights),
    ``S.k.0`` (momenta), ``C.k.0`` (chunk-start copies); slot 0..2 = (w1, w2, w_skip) for the MLP
    form, 0 = w for the linear form."""
    return f"{kind}.{memory}.{slot}"


FLAT_KINDS = ("W", "S", "C")
FLAT_STATE = tuple(flat_name(k, m, i) for k in FLAT_KINDS for m in MEMORIES for i in range(MAX_SLOTS)) \
    + ("pos_other", "pos_memory")

_FLAT_NAMES = {k: tuple((m, tuple(flat_name(k, m, i) for i in range(MAX_SLOTS))) for m in MEMORIES)
               for k in FLAT_KINDS}
Memories = dict  # memory name -> tuple of tensors (None where a slot is absent)


@dataclasses.dataclass
class SelfModifyingTitansState(StreamState):
    """State of N sequences × H heads of the five memories after some tokens.

    weights         {"k", "v", "eta", "alpha", "mem"} -> the memory's current weights, a tuple
                    like the params entry with a leading N: memory="mlp": (w1 [N,H,O,D],
                    w2 [N,H,D,D], w_skip [N,H,1,D] for "eta"/"alpha", None for the others);
                    memory="linear": (w [N,H,O,D],). O = D for k, v, mem; O = 1 for eta, alpha.
    momentum        the same structure with the momenta S of every weight, or None when ``mu`` is
                    None (no momentum state).
    chunk_start     the same structure with the weights at the start of the current chunk of their
                    group (group A = k, v, eta, alpha on the grid of chunk_size_other; group B =
                    mem on the grid of chunk_size_memory): the projections, frozen gradients and
                    self-generated targets of the current chunk use them. Equal to ``weights`` at a
                    chunk boundary of the group.
    position_other  [N] int64: tokens of the current group-A chunk already processed, in
                    [0, chunk_size_other).
    position_memory [N] int64: the same for group B, in [0, chunk_size_memory).
    memory, chunk_size_other, chunk_size_memory: the options the state was produced with (a
                    resumed call must use the same).
    States are float32 (float64 when the inputs are float64). Pass the state as ``initial_state`` to
    continue a stream (any split point, also inside a chunk) or to ``self_modifying_titans_step``.
    """
    weights: Memories
    momentum: Optional[Memories]
    chunk_start: Memories
    position_other: torch.Tensor
    position_memory: torch.Tensor
    memory: str
    chunk_size_other: int
    chunk_size_memory: int

    # -- flat form ----------------------------------------------------------------------------
    def tensors(self) -> dict[str, Optional[torch.Tensor]]:
        """All tensors by flat name (``W.k.0`` …, ``pos_other``, ``pos_memory``); None if absent."""
        out: dict[str, Optional[torch.Tensor]] = {}
        for kind, group in zip(FLAT_KINDS, (self.weights, self.momentum, self.chunk_start)):
            for m, names in _FLAT_NAMES[kind]:
                slots = group[m] if group is not None else ()
                for i, name in enumerate(names):
                    out[name] = slots[i] if i < len(slots) else None
        out["pos_other"], out["pos_memory"] = self.position_other, self.position_memory
        return out

    @classmethod
    def from_flat(cls, flat: dict, *, memory: str, chunk_size_other: int, chunk_size_memory: int,
                  momentum: bool) -> "SelfModifyingTitansState":
        n = len(SLOTS[memory])
        group = lambda kind: {m: tuple(flat.get(flat_name(kind, m, i)) for i in range(n))  # noqa: E731
                              for m in MEMORIES}
        return cls(group("W"), group("S") if momentum else None, group("C"), flat["pos_other"],
                   flat["pos_memory"], memory, chunk_size_other, chunk_size_memory)

    def _map(self, fn: Callable) -> "SelfModifyingTitansState":
        f = lambda t: None if t is None else fn(t)  # noqa: E731
        g = lambda grp: None if grp is None else {m: tuple(f(t) for t in w) for m, w in grp.items()}  # noqa: E731
        return dataclasses.replace(self, weights=g(self.weights), momentum=g(self.momentum),
                                   chunk_start=g(self.chunk_start),
                                   position_other=fn(self.position_other),
                                   position_memory=fn(self.position_memory))

    @property
    def position(self) -> torch.Tensor:
        return self.position_other

    @property
    def num_sequences(self) -> int:
        return self.position_other.shape[0]

    @classmethod
    def from_params(cls, params: dict, num_sequences: int, *, memory: str = "mlp",
                    chunk_size_other: int = 16, chunk_size_memory: int = 64, momentum: bool = False,
                    dtype: torch.dtype = torch.float32) -> "SelfModifyingTitansState":
        """The state before the first token: every sequence starts from the shared params
        (copied, detached), zero momenta when ``momentum``, positions 0. Useful to decode with
        ``self_modifying_titans_step`` from scratch."""
        N = num_sequences
        rep = lambda t: None if t is None else t.detach().to(dtype).unsqueeze(0).repeat(N, 1, 1, 1)  # noqa: E731
        weights = {m: tuple(rep(t) for t in params[m]) for m in MEMORIES}
        zeros = lambda grp: {m: tuple(None if t is None else torch.zeros_like(t) for t in w)  # noqa: E731
                             for m, w in grp.items()}
        clone = {m: tuple(None if t is None else t.clone() for t in w) for m, w in weights.items()}
        device = weights["k"][0].device
        pos = torch.zeros(N, dtype=torch.int64, device=device)
        return cls(weights, zeros(weights) if momentum else None, clone, pos, pos.clone(), memory,
                   chunk_size_other, chunk_size_memory)
