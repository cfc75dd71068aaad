"""Benchmarks of ``self_modifying_titans`` (SPEC §5), the fused HOPE sequence-mixing core.

CUDA shapes: the nested-learning peer's configuration (d 512 = H8 × D64, B1 T2048, chunks 8 / 64;
GUIDE §2 quotes ~450–900 tokens/s for its update pass; that package is not carried, so no peer
row) with MLP and linear memories, and a training-size B4 T4096 H8 D64 with chunks 16 / 64.
"""
from __future__ import annotations

import pytest
import torch

from nested_kernels.cases import Case, smt_eta_scale

from . import roofline
from .suite import CLOCK, BenchCase, ours, run_pytest_case, shape_set
from .utils import MODES

OP = "self_modifying_titans"
pytestmark = pytest.mark.benchmark(timer=CLOCK, group=OP)


def cases(device) -> list[BenchCase]:
    tiny = shape_set(device) == "tiny"
    dt = torch.float32 if tiny else torch.bfloat16
    configs = ([(dict(B=1, T=64, H=2, D=16), 4, 16, "mlp"), (dict(B=1, T=64, H=2, D=16), 4, 16, "linear")] if tiny
               else [(dict(B=1, T=2048, H=8, D=64), 8, 64, "mlp"), (dict(B=1, T=2048, H=8, D=64), 8, 64, "linear"),
                     (dict(B=4, T=4096, H=8, D=64), 16, 64, "mlp")])
    out = []
    for dims, co, cm, memory in configs:
        es = smt_eta_scale(dims["D"], co, cm) if memory == "mlp" else 0.1
        case = Case(OP, dims, dt, dict(memory=memory, chunk_size_other=co, chunk_size_memory=cm, eta_scale=es))
        shape = f"{case.shape_str()} Co{co} Cm{cm} {memory}"
        out += ours(OP, case, shape, roofline.self_modifying_titans(dims["B"], dims["T"], dims["H"], dims["D"], co, cm,
                                                                      memory, case.dtype_name))
    return out


CASES = cases(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_self_modifying_titans(benchmark, case, mode, bench_csv):
    run_pytest_case(benchmark, case, mode, bench_csv)
