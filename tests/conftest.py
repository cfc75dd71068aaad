"""Test setup shared by every test.

TRITON_INTERPRET=1 is set before any Triton kernel is defined, so the Triton backends run on CPU
tensors (tiny shapes only: each program instance costs ~0.5 ms). Kernel outputs are poisoned. Tests marked ``gpu`` need CUDA
and are skipped without it (`pytest -m gpu` on the GPU machine).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["NESTED_KERNELS_POISON"] = "1"  # kernel outputs start as NaN (core/alloc.py)


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (run with `pytest -m gpu` on the GPU machine)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
