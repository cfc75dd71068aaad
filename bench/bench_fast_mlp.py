"""Benchmarks of ``fast_mlp`` (SPEC §4) against the static MLP of the same shape.

Issue shapes (CUDA): B4 T4096 D2048 bf16, gelu F = 8192 and swiglu F = 5504, chunk 64 / 512 / 1024,
target signal, per-token η; peer: the static MLP y = x + MLP(x) with the same weights (cuBLAS
through torch), whose time is the price of a CMS level without any update. One more row per MLP at
the smallest chunk keeps the fast weights in bfloat16 (``weight_dtype``, label ``bf16w``).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nested_kernels.cases import Case, make_inputs

from . import roofline
from .suite import CLOCK, BenchCase, grad_leaves, ours, run_pytest_case, shape_set
from .utils import MODES, Workload

OP = "fast_mlp"
pytestmark = pytest.mark.benchmark(timer=CLOCK, group=OP)


def static_mlp(x, weights, mlp: str, residual: bool = True):
    if mlp == "swiglu":
        w_gate, w_up, w_down = weights
        y = F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
    else:
        w_in, w_out = weights
        act = F.gelu if mlp == "gelu" else F.silu
        y = F.linear(act(F.linear(x, w_in)), w_out)
    return x + y if residual else y


def weight_names(mlp: str) -> tuple:
    return ("w_gate", "w_up", "w_down") if mlp == "swiglu" else ("w_in", "w_out")


def _static(case: Case):
    mlp = case.kwargs.get("mlp", "gelu")

    def build(device, seed, grad):
        t = make_inputs(case, device, seed)
        t = grad_leaves({n: t[n] for n in ("x",) + weight_names(mlp)}, grad)
        return Workload(t, lambda t: static_mlp(t["x"], [t[n] for n in weight_names(mlp)], mlp))
    return build


def cases(device) -> list[BenchCase]:
    tiny = shape_set(device) == "tiny"
    dt = torch.float32 if tiny else torch.bfloat16
    B, T, D = (1, 64, 64) if tiny else (4, 4096, 2048)
    chunks = (16, 32) if tiny else (64, 512, 1024)
    out = []
    for mlp, Fh in (("gelu", 4 * D), ("swiglu", 64 * -(-8 * D // 3 // 64) if not tiny else 192)):
        if not tiny and mlp == "swiglu":
            Fh = 5504
        base = Case(OP, dict(B=B, T=T, D=D, F=Fh), dt, dict(mlp=mlp), dict(signal="target"))
        shape = f"{base.shape_str()} {mlp} static"
        out.append(BenchCase(OP, "torch.static_mlp", shape, dt, _static(base), lambda d: None,
                             roofline.static_mlp(B, T, D, Fh, mlp, base.dtype_name)))
        variants = [(c, {}, "") for c in chunks] + [(chunks[0], dict(weight_dtype=torch.bfloat16), " bf16w")]
        for c, extra, label in variants:
            case = Case(OP, dict(B=B, T=T, D=D, F=Fh), dt, dict(mlp=mlp, chunk_size=c, **extra),
                        dict(signal="target"))
            out += ours(OP, case, f"{case.shape_str()} {mlp} C{c}{label}",
                        roofline.fast_mlp(B, T, D, Fh, c, mlp, "target", case.dtype_name))
    return out


CASES = cases(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fast_mlp(benchmark, case, mode, bench_csv):
    run_pytest_case(benchmark, case, mode, bench_csv)
