"""Inputs of ``fast_mlp`` as the backends see them, and the op's tensor names.

Op inputs (``INPUTS``): x, the shared weights ``w0..w2`` (absent when per-sequence initial
weights are given), eta (absent when it is a Python float, then ``cfg["eta_value"]``), target /
teach (exactly one), the initial state ``s_w0..s_w2`` (per-sequence weights), ``s_u0..s_u2``
(pending partial-chunk update), ``position0``, and cu_seqlens. Weight slots are numbered in the
``weights`` order; slot 2 is absent for gelu/silu.
``cfg["weight_dtype"]``: None, "float32" or "bfloat16" — the dtype the fast weights are rounded
to and stored in (``round_weight``, ``state_dtype``; docs/fast_mlp.md §8).
Op outputs (``OUTPUTS``): y and, with ``output_final_state``, the final state fields (empty
placeholders otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from ...core.sequences import Segment, segments
from .mlp import num_weights

INPUTS = ("x", "w0", "w1", "w2", "eta", "target", "teach", "s_w0", "s_w1", "s_w2",
          "s_u0", "s_u1", "s_u2", "position0", "cu_seqlens")
OUTPUTS = ("y", "w0", "w1", "w2", "u0", "u1", "u2", "position")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs, else float32 (SPEC §1: all arithmetic accumulates in float32)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


WEIGHT_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16"}


def weight_dtype_name(weight_dtype) -> Optional[str]:
    """The cfg value of the ``weight_dtype`` argument (None, "float32" or "bfloat16")."""
    if weight_dtype is None:
        return None
    if not isinstance(weight_dtype, torch.dtype) or weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype must be None, torch.float32 or torch.bfloat16, got {weight_dtype!r}")
    return WEIGHT_DTYPES[weight_dtype]


def rounding_dtype(cfg: Mapping) -> Optional[torch.dtype]:
    """The dtype the fast weights are rounded to (None: no rounding)."""
    name = cfg.get("weight_dtype")
    return None if name is None else getattr(torch, name)


def state_dtype(x: torch.Tensor, cfg: Mapping) -> torch.dtype:
    """dtype of the fast weights of a state: float64 for float64 inputs (holding rounded values
    when ``weight_dtype`` is set), else ``weight_dtype`` (default float32)."""
    if x.dtype == torch.float64:
        return torch.float64
    return rounding_dtype(cfg) or torch.float32


_EXACT_IN = {torch.float32: (torch.bfloat16, torch.float16), torch.float64: (torch.float32, torch.bfloat16,
                                                                            torch.float16)}


def round_weight(w: torch.Tensor, cfg: Mapping, dtype: Optional[torch.dtype] = None,
                 keep_exact: bool = False) -> torch.Tensor:
    """``w`` rounded to ``weight_dtype`` and held in ``dtype`` (default: w's dtype). Gradients pass
    straight through the rounding (w + (round(w) − w) with the difference detached).
    ``keep_exact``: a ``w`` that needs no rounding and whose dtype converts exactly into ``dtype``
    (bf16 or fp16 into float32) is returned as it is — the same values, no conversion pass (for
    kernels that read it in either dtype)."""
    rd, dtype = rounding_dtype(cfg), dtype or w.dtype
    if rd is None or w.dtype == rd:
        return w if keep_exact and w.dtype in _EXACT_IN.get(dtype, ()) else w.to(dtype)
    w = w.to(dtype)
    return w + (w.detach().to(rd).to(dtype) - w.detach())


@dataclass
class Prepared:
    """x [B,T,D], eta [B,T], signal [B,T,D] (target or teach, per ``mode``) in the compute dtype
    (x and signal: in ``prepare``'s token dtype);
    ``shared`` — the shared initial weights [out,in] (None when per-sequence weights are given);
    ``weights`` — per-sequence initial weights [N,out,in] (None when shared); ``pending`` — the
    initial partial-chunk update [N,out,in] (None: zero); position [N] as Python ints."""
    x: torch.Tensor
    eta: torch.Tensor
    signal: torch.Tensor
    mode: str
    shared: Optional[list]
    weights: Optional[list]
    pending: Optional[list]
    position: list
    segments: list
    num_weights: int


def prepare(inputs: Mapping[str, Optional[torch.Tensor]], cfg: dict,
            token_dtype: Optional[torch.dtype] = None, weight_dtype: Optional[torch.dtype] = None,
            keep_exact: bool = False) -> Prepared:
    """The inputs in the compute dtype; ``token_dtype`` (default: the compute dtype) is the dtype
    of x and of the signal (a kernel backend keeps them in the input dtype for its products);
    the shared and per-sequence weights are rounded (``round_weight``) and held in
    ``weight_dtype`` (default: the compute dtype) — or, with ``keep_exact``, in their own dtype
    where that holds the same values."""
    x = inputs["x"]
    dt = compute_dtype(x)
    tdt = token_dtype or dt
    B, T, _ = x.shape
    k = num_weights(cfg["mlp"])
    segs: list[Segment] = segments(B, T, inputs["cu_seqlens"])
    eta = (torch.full((B, T), cfg["eta_value"], dtype=dt, device=x.device) if inputs["eta"] is None
           else inputs["eta"].to(dt))
    mode = "teach" if inputs["target"] is None else "target"
    signal = inputs[mode].to(tdt)
    as_list = lambda prefix, fn: (None if inputs[prefix + "0"] is None  # noqa: E731
                                  else [fn(inputs[f"{prefix}{i}"]) for i in range(k)])
    fast = lambda w: round_weight(w, cfg, weight_dtype or dt, keep_exact)  # noqa: E731
    position = ([0] * len(segs) if inputs["position0"] is None
                else [int(p) for p in inputs["position0"].tolist()])
    return Prepared(x.to(tdt), eta, signal, mode, as_list("w", fast), as_list("s_w", fast),
                    as_list("s_u", lambda u: u.to(dt)), position, segs, k)


def pack_outputs(inputs: Mapping, y: torch.Tensor, cfg: dict, weights=None, pending=None,
                 position=None) -> tuple:
    """The op's output tuple: y in x's dtype, then the final state (or empty placeholders).

    Weights are stored in ``state_dtype`` (their values are already rounded to it), pending updates
    in the compute dtype. State tensors that still share memory with an input (a sequence that did
    not update) are copied: a custom op's outputs must not alias its inputs."""
    x = inputs["x"]
    dt, wdt = compute_dtype(x), state_dtype(x, cfg)
    y = y.to(x.dtype)
    taken = {t.untyped_storage().data_ptr() for t in inputs.values() if t is not None and t.numel()}
    fresh = lambda t: t.clone() if t.numel() and t.untyped_storage().data_ptr() in taken else t  # noqa: E731
    weights = [fresh(t.to(wdt)) for t in weights or ()]
    pending = [fresh(t) for t in pending or ()]
    no_position = torch.empty(0, dtype=torch.int64, device=x.device)
    if not cfg["output_final_state"]:
        return (y,) + tuple(x.new_empty(0, dtype=dt) for _ in range(6)) + (no_position,)
    pad = lambda ts, d: list(ts) + [x.new_empty(0, dtype=d)] * (3 - len(ts))  # noqa: E731
    position = torch.tensor(position, dtype=torch.int64, device=x.device)
    return (y, *pad(weights, wdt), *pad(pending, dt), position)


def no_sequences(p: Prepared) -> tuple:
    """(weights, pending, position) of an empty final state (N == 0)."""
    ws = [w.new_zeros(0, *w.shape[-2:]) for w in (p.weights or p.shared)]
    return ws, [w.new_zeros(w.shape, dtype=p.eta.dtype) for w in ws], []
