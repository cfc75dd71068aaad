"""The ``triton`` backend of ``fast_mlp_step``: three launches per call (hidden pre-activations;
output and its gradient signal; pending-update accumulation, applied at chunk end), see
``triton_step_kernel`` for why three and docs/decode_step.md for the bytes.

Supported: gelu / silu / swiglu, residual on/off, target or teach, η per sequence or a number, any
retention and chunk size, any D and F, float32 / bfloat16 / float16 x, target, teach and η (x and
the signal may be row-strided views), float32 or bfloat16 (``weight_dtype``: the update is rounded
once, to nearest even) contiguous fast weights, float32 pending updates. float64 and other states
run on the torch step.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...core.alloc import new_empty
from ...core.backends import Backend
from ...core.env import getenv
from ...core.fast_launch import launch
from ...core.step_backend import float64_unsupported, state_unsupported
from ...core.triton_launch import interpreting
from .mlp import num_weights

STATE = ("w0", "w1", "w2", "u0", "u1", "u2", "position")


def unsupported(inputs, cfg) -> Optional[str]:
    return float64_unsupported(inputs) or state_unsupported(inputs, STATE, bf16_names=STATE[:3])


def _rows(t: Optional[torch.Tensor]):
    """(t with a unit last stride, its row stride); (None, 0) for None."""
    if t is None:
        return None, 0
    if t.stride(-1) != 1:
        t = t.contiguous()
    return t, t.stride(0)


def _blocks() -> tuple[int, int]:
    """(BD, BF): the tile of W_in / W_out in kernels 1 and 3 (4096 elements by default); kernel 2
    takes BF/2 rows of W_out by 2·BD columns (more programs over D)."""
    env = getenv("NESTED_KERNELS_FM_STEP_BLOCKS")
    if env:
        bd, bf = (int(s) for s in env.split(","))
        return bd, bf
    return 128, 32


def forward(inputs, state, cfg):
    from .triton_step_kernel import _fm_hidden_kernel, _fm_out_kernel, _fm_update_kernel
    nw = num_weights(cfg["mlp"])
    W = [state[f"w{i}"] for i in range(nw)] + [None] * (3 - nw)
    U = [state[f"u{i}"] for i in range(nw)] + [None] * (3 - nw)
    N, F, D = W[0].shape
    x, sxn = _rows(inputs["x"])
    teach = inputs["target"] is None
    sig, ssn = _rows(inputs["teach"] if teach else inputs["target"])
    eta, sen = (None, 0) if inputs["eta"] is None else (inputs["eta"], inputs["eta"].stride(0))
    y = new_empty(N, D, dtype=x.dtype, device=x.device)
    if N == 0:
        return y
    swiglu = cfg["mlp"] == "swiglu"
    act = 1 if cfg["mlp"] == "silu" else 0
    hid = torch.empty(2 if swiglu else 1, N, F, dtype=torch.float32, device=x.device)
    g = torch.empty(N, D, dtype=torch.float32, device=x.device)
    BD, BF = _blocks()
    pos = state["position"]
    w_out = W[2] if swiglu else W[1]
    launch(_fm_hidden_kernel, (-(-F // BF), N), x, sxn, W[0], W[1] if swiglu else None, hid, pos, N,
           cfg["chunk_size"], D=D, F=F, BD=BD, BF=BF, SWIGLU=swiglu)
    launch(_fm_out_kernel, (-(-D // (BF // 2)), N), x, sxn, sig, ssn, w_out, hid, y, g, N, D=D, F=F,
           BD=BF // 2, BF=2 * BD, ACT=act, SWIGLU=swiglu, RESIDUAL=bool(cfg["residual"]), TEACH=teach)
    launch(_fm_update_kernel, (-(-F // BF), N),
        x, sxn, eta, sen, float(cfg["eta_value"] or 0.0), *W, *U, hid, g, pos, N, float(cfg["retention"]),
        D=D, F=F, BD=BD, BF=BF, ACT=act, SWIGLU=swiglu, ETA_SCALAR=eta is None, INTERP=interpreting())
    return y


BACKEND = Backend(forward, unsupported=unsupported)
