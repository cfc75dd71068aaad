"""Benchmarks of the ``CMS`` module (SPEC §4): a chain of fast_mlp levels with chunk sizes
64 / 512 / 4096 (issue shape B4 T4096 D2048 F8192 gelu bf16), against three static MLPs chained
with the same weights (no updates). The module returns its state as in streaming use; the
triton backend is also timed with ``output_final_state=False`` (shape "… no state": training
without streaming, each level's last update skipped — what the issue's floor leaves out).
"""
from __future__ import annotations

import pytest
import torch

from nested_kernels.cases import DTYPE_NAMES

from . import roofline
from .bench_fast_mlp import static_mlp
from .suite import CLOCK, BACKEND_NAMES, BenchCase, all_of, module_available, our_backend_available, \
    run_pytest_case, shape_set
from .utils import MODES, Workload

OP = "cms"
pytestmark = pytest.mark.benchmark(timer=CLOCK, group=OP)


def _cms(dims, levels, mlp, dtype, backend, final=True):
    def build(device, seed, grad):
        from nested_kernels.modules.cms import CMS
        torch.manual_seed(seed)
        B, T, D, Fh = dims
        cms = CMS(D, Fh, levels=[(c, 1e-3) for c in levels], mlp=mlp, backend=backend, device=device, dtype=dtype)
        for p in cms.parameters():
            p.requires_grad_(grad)
        x = torch.randn(B, T, D, device=device, dtype=dtype).requires_grad_(grad)
        return Workload({"x": x}, lambda t: cms(t["x"], output_final_state=final)[0], list(cms.parameters()))
    return build


def _static_chain(dims, levels, mlp, dtype):
    def build(device, seed, grad):
        from nested_kernels.modules.cms import CMS
        torch.manual_seed(seed)
        B, T, D, Fh = dims
        cms = CMS(D, Fh, levels=[(c, 1e-3) for c in levels], mlp=mlp, device=device, dtype=dtype)
        params = [p.requires_grad_(grad) for p in cms.parameters()]
        x = torch.randn(B, T, D, device=device, dtype=dtype).requires_grad_(grad)

        def forward(t):
            y = t["x"]
            for level in cms.levels:
                y = static_mlp(y, level.weights, mlp)
            return y
        return Workload({"x": x}, forward, params)
    return build


def cases(device) -> list[BenchCase]:
    tiny = shape_set(device) == "tiny"
    dt = torch.float32 if tiny else torch.bfloat16
    dims = (1, 64, 64, 256) if tiny else (4, 4096, 2048, 8192)
    levels = (16, 32, 64) if tiny else (64, 512, 4096)
    mlp = "gelu"
    B, T, D, Fh = dims
    shape = f"B{B} T{T} D{D} F{Fh} {mlp} levels {'/'.join(map(str, levels))}"
    name = DTYPE_NAMES[dt]
    cms_ok = module_available("nested_kernels.modules.cms")
    out = [BenchCase(OP, "torch.static_mlp x3", shape, dt, _static_chain(dims, levels, mlp, dt), cms_ok,
                     roofline.static_cms(B, T, D, Fh, len(levels), mlp, name))]
    for backend in BACKEND_NAMES:
        out.append(BenchCase(OP, f"nested_kernels.{backend}", shape, dt, _cms(dims, levels, mlp, dt, backend),
                             all_of(cms_ok, our_backend_available(OP, backend)),
                             roofline.cms(B, T, D, Fh, levels, mlp, name)))
    out.append(BenchCase(OP, "nested_kernels.triton", f"{shape} no state", dt,
                         _cms(dims, levels, mlp, dt, "triton", final=False),
                         all_of(cms_ok, our_backend_available(OP, "triton")),
                         roofline.cms(B, T, D, Fh, levels, mlp, name)))
    return out


CASES = cases(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cms(benchmark, case, mode, bench_csv):
    run_pytest_case(benchmark, case, mode, bench_csv)
