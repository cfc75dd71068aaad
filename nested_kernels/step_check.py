"""Decode-step checks shared by the step tests and ``python/check_steps_triton.py``.

A stream of T tokens (inputs drawn by :mod:`nested_kernels.cases`) is processed as a prefix of P
tokens by the full op (``torch`` backend, the case's dtype), then one token at a time by the
``*_step`` function of a chosen backend; outputs and the final state are compared with one call of
the full op over all T tokens in float64 (SPEC §6: streaming equals one call).
"""
from __future__ import annotations

import importlib
from typing import Optional

import torch

from . import cases as nk_cases
from .testing import assert_close_rel, rel_error, tolerance

STREAMED = {"linear_memory": ("q", "k", "v", "eta", "log_alpha", "beta", "mu"),
            "mlp_memory": ("q", "k", "v", "eta", "log_alpha", "beta", "mu"),
            "fast_mlp": ("x", "eta", "target", "teach")}
STEP_OPTIONS = {"linear_memory": ("target", "read", "scale"),
                "mlp_memory": ("target", "read", "scale", "activation", "residual"),
                "fast_mlp": ("mlp", "residual", "retention")}


def step_function(op: str):
    return getattr(importlib.import_module("nested_kernels"), f"{op}_step")


def tokens(case: nk_cases.Case, t: dict, a: int, b: Optional[int] = None) -> dict:
    """The inputs restricted to tokens [a, b) (b None: the single token a, time dimension dropped)."""
    out = dict(t)
    for name in STREAMED[case.op]:
        x = t.get(name)
        if isinstance(x, torch.Tensor):
            out[name] = x[:, a] if b is None else x[:, a:b]
    return out


def call_step(case: nk_cases.Case, tok: dict, state, backend: str) -> torch.Tensor:
    """One step of ``case.op`` on the token inputs ``tok`` (from :func:`tokens`)."""
    fn = step_function(case.op)
    opts = {n: case.kwargs[n] for n in STEP_OPTIONS[case.op] if n in case.kwargs}
    if case.op == "fast_mlp":
        eta = tok["eta"] if tok.get("eta") is not None else 0.05 / case.dims["D"]
        return fn(tok["x"], eta, state=state, target=tok.get("target"), teach=tok.get("teach"),
                  backend=backend, **opts)
    beta = nk_cases._beta(case, tok)
    return fn(tok["q"], tok["k"], tok["v"], tok["eta"], tok.get("log_alpha"), beta, tok.get("mu"),
              state=state, backend=backend, **opts)


def prefix_state(case: nk_cases.Case, t: dict, prefix: int):
    """The state after the first ``prefix`` tokens (full op, torch backend, the case's dtype)."""
    fn, _ = nk_cases.load_op(case.op)
    _, state = nk_cases.call_op(fn, case, tokens(case, t, 0, prefix), "torch")
    return state.detach()


def stream_errors(case: nk_cases.Case, device, backend: str, prefix: int, seed: int = 0) -> dict:
    """Relative errors against the float64 full op of the step outputs (``o``/``y``) and of every
    final state field after ``prefix`` tokens by the full op and the rest by ``backend``'s steps;
    ``position`` is 0 when the positions agree exactly, else inf."""
    t = nk_cases.make_inputs(case, device, seed)
    T = case.dims["T"]
    fn, _ = nk_cases.load_op(case.op)
    ref = nk_cases.flatten_result(case, nk_cases.call_op(fn, case, nk_cases.upcast(t), "torch"))
    state = prefix_state(case, t, prefix)
    outs = [call_step(case, tokens(case, t, i), state, backend) for i in range(prefix, T)]
    main = "y" if case.op == "fast_mlp" else "o"
    errs = {main: rel_error(torch.stack(outs, 1), ref[main][:, prefix:])}
    for name, value in nk_cases.flatten(state, "final").items():
        if name == "final.position":
            errs["position"] = 0.0 if torch.equal(value.cpu(), ref[name].cpu()) else float("inf")
        else:
            errs[name[len("final."):]] = rel_error(value, ref[name])
    return errs


def assert_stream_close(case: nk_cases.Case, prefix: int = 2, seed: int = 0, device="cpu",
                        backend: str = "triton") -> None:
    """:func:`stream_errors` of ``backend`` within the SPEC §7 kernel bound of the case's dtype."""
    errs = stream_errors(case, device, backend, prefix, seed)
    tol = tolerance("kernel", case.dtype)
    bad = {n: e for n, e in errs.items() if not e <= tol}
    assert not bad, f"relative errors above {tol}: {bad}"


def step_inputs(case: nk_cases.Case, prefix: int, seed: int = 0, device="cpu") -> tuple:
    """(state after the first ``prefix`` tokens, the inputs of token ``prefix``) of a fresh stream."""
    t = nk_cases.make_inputs(case, device, seed)
    return prefix_state(case, t, prefix), tokens(case, t, prefix)


def assert_step_in_place(case: nk_cases.Case, tok: dict, state, backend: str = "triton", tol: float = 1e-5) -> None:
    """One step of ``backend`` updates ``state`` in place (same storage) and matches the torch step on
    a clone: the output (finite, in the input dtype), every state tensor and the positions."""
    ref = state.clone()
    ptrs = {n: t.data_ptr() for n, t in state.tensors().items() if t is not None}
    out = call_step(case, tok, state, backend)
    out_ref = call_step(case, tok, ref, "torch")
    main = "y" if case.op == "fast_mlp" else "o"
    assert out.dtype == tok["x" if case.op == "fast_mlp" else "q"].dtype and torch.isfinite(out).all()
    assert {n: t.data_ptr() for n, t in state.tensors().items() if t is not None} == ptrs, \
        "state must be updated in place"
    assert_close_rel(out, out_ref, tol, main)
    for n, t in state.tensors().items():
        if t is not None and n != "position":
            assert_close_rel(t, getattr(ref, n), tol, n)
    assert torch.equal(state.position, ref.position)
