"""Inputs of ``self_modifying_titans`` as the backends see them: compute-dtype tensors, start
states, and the flat names the custom op uses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from ...core.sequences import Segment, segments
from .memories import GROUP_A, MAX_SLOTS, MEMORIES, SLOTS
from .state import FLAT_KINDS, FLAT_STATE, flat_name

PARAM_NAMES = tuple(flat_name("P", m, i) for m in MEMORIES for i in range(MAX_SLOTS))
INPUTS = ("x", "q") + PARAM_NAMES + FLAT_STATE + ("cu_seqlens",)
OUTPUTS = ("o",) + FLAT_STATE


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, else float32 (SPEC §1)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@dataclass
class Prepared:
    """x, q [B,T,H,D] in the compute dtype; per memory: start weights W, momenta S (None without
    mu; zeros when mu is used without a state) and chunk-start copies C, each a tuple of
    [N,H,O,I] tensors (None for absent slots); start positions as Python ints; the sequences."""
    x: torch.Tensor
    q: torch.Tensor
    W: dict
    S: Optional[dict]
    C: dict
    pos_other: list[int]
    pos_memory: list[int]
    segments: list[Segment]


def prepare(inputs: Mapping[str, Optional[torch.Tensor]], cfg: dict) -> Prepared:
    x, q = inputs["x"], inputs["q"]
    dt = compute_dtype(x)
    B, T, H, D = x.shape
    segs = segments(B, T, inputs["cu_seqlens"])
    N = len(segs)
    n_slots = len(SLOTS[cfg["memory"]])
    get = lambda kind, m: tuple(None if inputs[flat_name(kind, m, i)] is None  # noqa: E731
                                else inputs[flat_name(kind, m, i)].to(dt) for i in range(n_slots))
    has_state = inputs["W.k.0"] is not None
    if has_state:
        W = {m: get("W", m) for m in MEMORIES}
        C = {m: get("C", m) for m in MEMORIES}
        pos_o = [int(p) for p in inputs["pos_other"].tolist()]
        pos_m = [int(p) for p in inputs["pos_memory"].tolist()]
    else:
        W = {m: tuple(None if p is None else p.unsqueeze(0).expand(N, *p.shape) for p in get("P", m))
             for m in MEMORIES}
        C = W
        pos_o, pos_m = [0] * N, [0] * N
    S = None
    if cfg["mu"] is not None:
        if has_state and inputs["S.k.0"] is not None:
            S = {m: get("S", m) for m in MEMORIES}
        else:
            S = {m: tuple(None if w is None else torch.zeros(w.shape, dtype=dt, device=x.device) for w in ws)
                 for m, ws in W.items()}
    return Prepared(x.to(dt), q.to(dt), W, S, C, pos_o, pos_m, segs)


def pack_outputs(o: torch.Tensor, W: dict, S: Optional[dict], C: dict, pos_other: torch.Tensor,
                 pos_memory: torch.Tensor, cfg: dict) -> tuple:
    """The op's output tuple (OUTPUTS order): o, then the state tensors (empty placeholders for
    absent slots, and for every state tensor when ``output_final_state`` is False)."""
    dt = compute_dtype(o)
    empty = lambda: o.new_empty(0, dtype=dt)  # noqa: E731
    out = [o]
    for kind, grp in zip(FLAT_KINDS, (W, S, C)):
        for m in MEMORIES:
            for i in range(MAX_SLOTS):
                t = None
                if cfg["output_final_state"] and grp is not None and i < len(grp[m]):
                    t = grp[m][i]
                out.append(empty() if t is None else t)
    if cfg["output_final_state"]:
        out += [pos_other, pos_memory]
    else:
        out += [torch.empty(0, dtype=torch.int64, device=o.device) for _ in range(2)]
    return tuple(out)


def group_a(d: dict) -> dict:
    return {m: d[m] for m in GROUP_A}
