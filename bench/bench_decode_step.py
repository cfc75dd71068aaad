"""Benchmarks of the decode steps ``linear_memory_step``, ``mlp_memory_step``, ``fast_mlp_step``
(SPEC §6): one token for every sequence, state updated in place; providers are the step backends
(``nested_kernels.cuda`` where an op has one, ``nested_kernels.triton``, against the
``nested_kernels.torch`` baseline). Mode ``fwd`` only.

Issue shapes (CUDA), bf16 inputs, float32 states, sequences spread over the positions of their
chunk (most steps read the chunk-start copy, a few cross a boundary):
* linear_memory_step N64 H16 K=V=128, C64: all gates (α, β, μ) and no gates;
* mlp_memory_step N64 H8 K=V=64 F256, C64, gelu, residual: all gates with self target and read
  "chunk" (the issue's configuration), and no gates;
* fast_mlp_step N4 D2048, C64, target signal: gelu F8192 and swiglu F5504.
Each timed call is one Python-level step (host overhead included: the custom-op dispatch and the
launches); ``python/check_steps_triton.py`` also times CUDA-graph replays (device time only).
Floors: ``roofline.*_step`` (float32 state bytes at 3.0 TB/s).
"""
from __future__ import annotations

import pytest
import torch

from nested_kernels.cases import Case, make_inputs
from nested_kernels.core.backends import available_backends
from nested_kernels.step_check import call_step, step_function, tokens

from . import roofline
from .suite import CLOCK, BenchCase, run_pytest_case, shape_set
from .utils import Workload

pytestmark = pytest.mark.benchmark(timer=CLOCK, group="decode_step")
ALL = ("log_alpha", "beta", "mu")
PROVIDERS = ("cuda", "triton", "torch")


def _available(op: str, backend: str):
    def available(device):
        import importlib
        api = importlib.import_module(f"nested_kernels.ops.{op}.api")
        if backend not in api.STEP_BACKENDS:
            return f"{op}_step has no {backend!r} backend"
        if backend not in available_backends(api.STEP_BACKENDS, device):
            return f"backend {backend!r} cannot run on {device.type} here"
        return None
    return available


def _state(case: Case, t: dict, device):
    """A float32 state of N = B sequences at positions spread over the chunk."""
    from nested_kernels import FastMLPState, LinearMemoryState, MLPMemoryState
    N, C = case.dims["B"], case.kwargs["chunk_size"]
    position = (torch.arange(N, device=device) * 7) % C
    if case.op == "linear_memory":
        M = t["M0"]
        return LinearMemoryState(M, t.get("S0"), M + 0.01 * torch.randn_like(M), position, C)
    if case.op == "mlp_memory":
        W1, W2 = t["W1_0"], t["W2_0"]
        return MLPMemoryState(W1, W2, t.get("S1_0"), t.get("S2_0"), W1 + 0.01 * torch.randn_like(W1),
                              W2 + 0.01 * torch.randn_like(W2), position, C)
    names = ("w_gate", "w_up", "w_down") if case.kwargs["mlp"] == "swiglu" else ("w_in", "w_out")
    weights = [t[n].float().unsqueeze(0).repeat(N, 1, 1) for n in names]
    st = FastMLPState.from_weights(weights, C)
    st.position.copy_(position)
    for u in st.updates:
        u.normal_(std=1e-4)
    return st


def _build(case: Case, backend: str):
    def build(device, seed, grad):
        t = make_inputs(case, device, seed)
        tok = tokens(case, t, 0)
        torch.manual_seed(seed)             # the same state for every provider
        state = _state(case, t, device)
        inputs = {n: x for n, x in tok.items() if isinstance(x, torch.Tensor)}
        inputs.update({f"state.{n}": x for n, x in state.tensors().items() if x is not None})
        return Workload(inputs, lambda _: call_step(case, tok, state, backend))
    return build


def _cases_of(op: str, case: Case, shape: str, cost) -> list[BenchCase]:
    step_function(op)                       # the op exports its step
    return [BenchCase(f"{op}_step", f"nested_kernels.{b}", shape, case.dtype, _build(case, b), _available(op, b),
                      cost, modes=("fwd",)) for b in PROVIDERS]


def cases(device) -> list[BenchCase]:
    tiny = shape_set(device) == "tiny"
    dt = torch.float32 if tiny else torch.bfloat16
    dn = "fp32" if tiny else "bf16"
    out = []
    C = 8 if tiny else 64
    N, H, K = (4, 2, 16) if tiny else (64, 16, 128)
    for gates in (ALL, ()):
        c = Case("linear_memory", dict(B=N, T=1, H=H, K=K, V=K), dt, dict(chunk_size=C),
                 dict(gates=gates, initial_state=True))
        out += _cases_of("linear_memory", c, f"N{N} H{H} K{K} V{K} C{C} {'+a+b+mu' if gates else 'no gates'}",
                         roofline.linear_memory_step(N, H, K, K, gates, dtype=dn))
    N, H, K, F = (4, 2, 16, 32) if tiny else (64, 8, 64, 256)
    for gates, kw in ((ALL, dict(target="self", read="chunk")), ((), {})):
        c = Case("mlp_memory", dict(B=N, T=1, H=H, K=K, V=K, F=F), dt, dict(chunk_size=C, **kw),
                 dict(gates=gates, initial_state=True))
        label = "+a+b+mu self chunk" if gates else "no gates"
        out += _cases_of("mlp_memory", c, f"N{N} H{H} K{K} V{K} F{F} C{C} {label}",
                         roofline.mlp_memory_step(N, H, K, K, F, gates, kw.get("target", "external"), dn))
    N, D = (2, 32) if tiny else (4, 2048)
    for mlp, F in (("gelu", 4 * D), ("swiglu", 96 if tiny else 5504)):
        c = Case("fast_mlp", dict(B=N, T=1, D=D, F=F), dt, dict(mlp=mlp, chunk_size=C), dict(signal="target"))
        out += _cases_of("fast_mlp", c, f"N{N} D{D} F{F} {mlp} C{C}", roofline.fast_mlp_step(N, D, F, mlp, dn))
    return out


CASES = cases(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.id}" for c in CASES])
def test_decode_step(benchmark, case, bench_csv):
    run_pytest_case(benchmark, case, "fwd", bench_csv)
