"""Benchmarks of ``linear_memory`` (SPEC §2) and its peers.

Issue shapes (CUDA), B4 T4096 H16 K=V=128 bf16:
* C64, all gates (α, β, μ): ours; fla ``chunk_ttt_linear`` (mini-batch TTT, its chunk 16) as the
  nearest chunked peer.
* C1 (exact online rule = delta rule with η as β): ours; fla ``chunk_delta_rule``.
* C1 with momentum (momentum delta rule): ours; fla ``chunk_momentum_delta_rule``.
* C1 with self targets, α + β (from an initial state: a self-target memory that starts at 0 stays
  0): ours only.
* titans shape, B4 T4096 H4 × 128 fp32, C64 with α, μ: ours; titans-pytorch ``NeuralMemory``
  depth 1 (dim 512, linear memory model; includes its projections and norms).
Peers get the same random inputs (``nested_kernels.cases``), mapped to their arguments.
"""
from __future__ import annotations

import pytest
import torch

from nested_kernels.cases import Case, make_inputs

from . import roofline
from .suite import (CLOCK, BenchCase, all_of, grad_leaves, module_available, ours, run_pytest_case,
                    shape_set)
from .utils import MODES, Workload

OP = "linear_memory"
pytestmark = pytest.mark.benchmark(timer=CLOCK, group=OP)
ALL = ("log_alpha", "beta", "mu")


def _dims(tiny: bool, H: int = 16) -> dict:
    return dict(B=1, T=64, H=2, K=16, V=16) if tiny else dict(B=4, T=4096, H=H, K=128, V=128)


def _shape(case: Case) -> str:
    return f"{case.shape_str()} {case.options_str()}"


def _fla(fn_path: str, case: Case, call):
    def build(device, seed, grad):
        module, name = fn_path.rsplit(".", 1)
        fn = getattr(__import__(module, fromlist=[name]), name)
        t = grad_leaves(make_inputs(case, device, seed), grad)
        return Workload(t, lambda t: call(fn, t))
    return build


def _titans(case: Case, depth: int, expansion: float = 1.0):
    """titans-pytorch NeuralMemory on x [B, T, H·K] (its own projections make q, k, v)."""
    def build(device, seed, grad):
        from titans_pytorch import NeuralMemory
        torch.manual_seed(seed)
        d = case.dims
        mem = NeuralMemory(dim=d["H"] * d["K"], chunk_size=case.kwargs["chunk_size"], heads=d["H"],
                           dim_head=d["K"], default_model_kwargs=dict(depth=depth, expansion_factor=expansion))
        mem = mem.to(device=device, dtype=case.dtype)
        for p in mem.parameters():
            p.requires_grad_(grad)
        x = make_inputs(case, device, seed)["q"].reshape(d["B"], d["T"], d["H"] * d["K"]).requires_grad_(grad)
        return Workload({"x": x}, lambda t: mem(t["x"])[0], list(mem.parameters()))
    return build


def cases(device) -> list[BenchCase]:
    tiny = shape_set(device) == "tiny"
    dt = torch.float32 if tiny else torch.bfloat16
    out = []
    cost = lambda c, gates: roofline.linear_memory(  # noqa: E731
        c.dims["B"], c.dims["T"], c.dims["H"], c.dims["K"], c.dims["V"], c.kwargs["chunk_size"], gates,
        dtype=c.dtype_name)

    # C64, all gates
    c = Case(OP, _dims(tiny), dt, dict(chunk_size=16 if tiny else 64), dict(gates=ALL))
    out += ours(OP, c, _shape(c), cost(c, ALL))
    out.append(BenchCase(OP, "fla.chunk_ttt_linear", _shape(c), dt, _ttt(c),
                         module_available("fla.ops.ttt", needs_cuda=True), cost(c, ALL)))

    # C1: delta rule
    c1 = Case(OP, _dims(tiny), dt, dict(chunk_size=1), dict(gates=()))
    out += ours(OP, c1, _shape(c1), cost(c1, ()))
    out.append(BenchCase(OP, "fla.chunk_delta_rule", _shape(c1), dt, _fla(
        "fla.ops.delta_rule.chunk_delta_rule", c1,
        lambda fn, t: fn(t["q"], t["k"], t["v"], t["eta"], scale=1.0, use_qk_l2norm_in_kernel=False)[0]),
        module_available("fla.ops.delta_rule", needs_cuda=True), cost(c1, ())))

    # C1 + momentum: momentum delta rule
    cm = Case(OP, _dims(tiny), dt, dict(chunk_size=1), dict(gates=("mu",)))
    out += ours(OP, cm, _shape(cm), cost(cm, ("mu",)))
    out.append(BenchCase(OP, "fla.chunk_momentum_delta_rule", _shape(cm), dt, _fla(
        "fla.ops.momentum_delta_rule.chunk_momentum_delta_rule", cm,
        lambda fn, t: fn(t["q"], t["k"], t["v"], torch.zeros_like(t["eta"]), t["mu"].clamp_min(1e-6).log(),
                         eta=t["eta"], scale=1.0, use_qk_l2norm_in_kernel=False, chunk_size=64)[0]),
        all_of(module_available("fla.ops.momentum_delta_rule", needs_cuda=True),
               lambda d: "fla's momentum delta rule takes bf16/fp16 only" if dt == torch.float32 else None),
        cost(cm, ("mu",))))

    # C1, self targets (HOPE's exact self-modifying rule, DESIGN §4's 2n×2n system): no peer has it
    cs = Case(OP, _dims(tiny), dt, dict(chunk_size=1, target="self"),
              dict(gates=("log_alpha", "beta"), initial_state=True))
    out += ours(OP, cs, _shape(cs), roofline.linear_memory(
        cs.dims["B"], cs.dims["T"], cs.dims["H"], cs.dims["K"], cs.dims["V"], 1, ("log_alpha", "beta"),
        target="self", dtype=cs.dtype_name))

    # titans shape (fp32)
    ct = Case(OP, _dims(tiny, H=4), torch.float32, dict(chunk_size=16 if tiny else 64),
              dict(gates=("log_alpha", "mu")))
    out += ours(OP, ct, _shape(ct), cost(ct, ("log_alpha", "mu")))
    out.append(BenchCase(OP, "titans.NeuralMemory-depth1", _shape(ct), torch.float32, _titans(ct, 1),
                         module_available("titans_pytorch"), cost(ct, ("log_alpha", "mu"))))
    return out


def _ttt(case: Case):
    """fla chunk_ttt_linear: LayerNorm weight/bias [H, V] (ones/zeros), η [B, T, H, 1]."""
    def build(device, seed, grad):
        from fla.ops.ttt import chunk_ttt_linear
        t = grad_leaves(make_inputs(case, device, seed), grad)
        H, V = case.dims["H"], case.dims["V"]
        t["ln_w"] = torch.ones(H, V, device=device, dtype=case.dtype, requires_grad=grad)
        t["ln_b"] = torch.zeros(H, V, device=device, dtype=case.dtype, requires_grad=grad)
        return Workload(t, lambda t: chunk_ttt_linear(t["q"], t["k"], t["v"], t["ln_w"], t["ln_b"],
                                                      t["eta"][..., None], scale=1.0, chunk_size=16)[0])
    return build


CASES = cases(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_linear_memory(benchmark, case, mode, bench_csv):
    run_pytest_case(benchmark, case, mode, bench_csv)
