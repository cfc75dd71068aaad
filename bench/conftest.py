"""pytest setup of the benchmarks (collected through the repository's pytest.ini: python_files
includes bench_*.py).

    pytest bench --benchmark-disable -q     # smoke test: each case runs once, outputs must be finite
    pytest bench                            # time (CUDA events on GPU) and append rows to the CSV

Options: ``--bench-csv PATH`` (default: bench/results.csv on CUDA; off the GPU rows are written
only when this is given), ``--bench-shapes tiny|issue`` (default: issue on CUDA, tiny elsewhere).
Off CUDA the Triton backends run under the interpreter (TRITON_INTERPRET=1, set here before any
kernel is defined). Outputs are not NaN-poisoned here (poisoning costs time; verify checks it).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    # tiny shapes: one thread is as fast, and spares the OpenMP spin-waits that slow small ops
    # 100x when other processes share the cores
    torch.set_num_threads(1)
os.environ.pop("NESTED_KERNELS_POISON", None)


def pytest_addoption(parser):
    group = parser.getgroup("nested_kernels bench")
    group.addoption("--bench-csv", default=None, help="append result rows to this CSV "
                    "(default: bench/results.csv on CUDA, none elsewhere)")
    group.addoption("--bench-shapes", default=None, choices=("tiny", "issue"),
                    help="shape set (default: issue on CUDA, tiny elsewhere)")


def pytest_configure(config):
    shapes = config.getoption("--bench-shapes", default=None)
    if shapes:
        os.environ["NESTED_KERNELS_BENCH_SHAPES"] = shapes


@pytest.fixture
def bench_csv(request):
    path = request.config.getoption("--bench-csv")
    if path:
        return path
    if torch.cuda.is_available():
        from bench.utils import DEFAULT_CSV
        return DEFAULT_CSV
    return None


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
