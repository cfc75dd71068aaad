"""The GPU check programs' inputs (python/check_*.py) are meaningful: bounded dynamics."""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import check_mlp_memory_triton as mlp_check  # noqa: E402


def test_mlp_memory_check_cases_stay_bounded():
    """Every case of check_mlp_memory_triton.py keeps |o| ≤ 1e3 in float64 (the torch backend on the
    CPU): with η up to 0.1 and no α two of them ran away to 1e20 and NaN, where a comparison with
    the reference says nothing (2026-12-06h)."""
    for name, shape, gates, cfg, extra in mlp_check.CASES:
        x, st = mlp_check.case_inputs(shape, gates, extra, device="cpu")
        cu = extra.get("cu")
        outs, _ = mlp_check.run("torch", x, st, torch.float64, dict(cfg), None if cu is None else torch.tensor(cu))
        largest = outs["o"].abs().max().item()
        assert largest <= 1e3, (name, largest)
