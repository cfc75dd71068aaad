"""Benchmarks of ``mlp_memory`` (SPEC §3) and its peer.

Issue shape (CUDA): B4 T4096 H8 K=V=64 F=256 (F = 4K) bf16, chunk 64, the issue's configuration —
self target, read chunk, β = η, α and μ — gelu, residual; titans shape: B4 T4096 H4 × 128, F = 512, fp32, chunk 64 with α, μ. Peer: titans-pytorch
``NeuralMemory`` depth 2 (expansion F/K) on both shapes, in fp32 (includes its projections,
norms and the residual LayerNorm of its memory model).
"""
from __future__ import annotations

import pytest
import torch

from nested_kernels.cases import Case, make_inputs

from . import roofline
from .suite import CLOCK, BenchCase, module_available, ours, run_pytest_case, shape_set
from .utils import MODES, Workload

OP = "mlp_memory"
pytestmark = pytest.mark.benchmark(timer=CLOCK, group=OP)
ALL = ("log_alpha", "beta", "mu")


def _shape(case: Case) -> str:
    return f"{case.shape_str()} {case.options_str()}"


def titans_memory(case: Case, depth: int):
    """titans-pytorch NeuralMemory on x [B, T, H·K] with an MLP memory of hidden F (fp32)."""
    def build(device, seed, grad):
        from titans_pytorch import NeuralMemory
        torch.manual_seed(seed)
        d = case.dims
        mem = NeuralMemory(dim=d["H"] * d["K"], chunk_size=case.kwargs["chunk_size"], heads=d["H"], dim_head=d["K"],
                           default_model_kwargs=dict(depth=depth, expansion_factor=d.get("F", d["K"]) / d["K"]))
        mem = mem.to(device=device, dtype=torch.float32)
        for p in mem.parameters():
            p.requires_grad_(grad)
        x = make_inputs(case, device, seed)["q"].float().reshape(d["B"], d["T"], d["H"] * d["K"]).requires_grad_(grad)
        return Workload({"x": x}, lambda t: mem(t["x"])[0], list(mem.parameters()))
    return build


def cases(device) -> list[BenchCase]:
    tiny = shape_set(device) == "tiny"
    out = []
    cost = lambda c, gates: roofline.mlp_memory(  # noqa: E731
        c.dims["B"], c.dims["T"], c.dims["H"], c.dims["K"], c.dims["V"], c.dims["F"], c.kwargs["chunk_size"],
        gates, dtype=c.dtype_name)
    dims = dict(B=1, T=64, H=2, K=32, V=32, F=128) if tiny else dict(B=4, T=4096, H=8, K=64, V=64, F=256)
    dt = torch.float32 if tiny else torch.bfloat16
    c = Case(OP, dims, dt, dict(chunk_size=16 if tiny else 64, target="self", read="chunk"),
             dict(gates=ALL, beta="eta"))
    out += ours(OP, c, _shape(c), cost(c, ALL))
    # titans at the same sizes (its own dtype, fp32)
    out.append(BenchCase(OP, "titans.NeuralMemory-depth2(fp32)", _shape(c), torch.float32, titans_memory(c, 2),
                         module_available("titans_pytorch"), None))

    dims = dict(B=1, T=64, H=2, K=32, V=32, F=128) if tiny else dict(B=4, T=4096, H=4, K=128, V=128, F=512)
    ct = Case(OP, dims, torch.float32, dict(chunk_size=16 if tiny else 64), dict(gates=("log_alpha", "mu")))
    out += ours(OP, ct, _shape(ct), cost(ct, ("log_alpha", "mu")))
    out.append(BenchCase(OP, "titans.NeuralMemory-depth2", _shape(ct), torch.float32, titans_memory(ct, 2),
                         module_available("titans_pytorch"), cost(ct, ("log_alpha", "mu"))))
    return out


CASES = cases(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mlp_memory(benchmark, case, mode, bench_csv):
    run_pytest_case(benchmark, case, mode, bench_csv)
