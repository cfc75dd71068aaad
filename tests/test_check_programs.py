"""The GPU checks' inputs (python/check_*.py, the verify command's GPU cases) are meaningful:
bounded dynamics."""
from __future__ import annotations

import os
import sys

import pytest
import torch

from nested_kernels import cases
from nested_kernels.testing import rel_error

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import check_linear_memory_triton as linear_check  # noqa: E402
import check_mlp_memory_triton as mlp_check  # noqa: E402


@pytest.mark.parametrize("program", [mlp_check, linear_check], ids=["mlp_memory", "linear_memory"])
def test_check_program_cases_stay_bounded(program):
    """Every case of check_mlp_memory_triton.py / check_linear_memory_triton.py keeps |o| ≤ 1e3 in
    float64 (the torch backend on the CPU): with η up to 0.1 and no α two mlp_memory cases ran away
    to 1e20 and NaN, where a comparison with the reference says nothing (2026-12-06h)."""
    for name, shape, gates, cfg, extra in program.CASES:
        x, st = program.case_inputs(shape, gates, extra, device="cpu")
        cu = extra.get("cu")
        outs, _ = program.run("torch", x, st, torch.float64, dict(cfg), None if cu is None else torch.tensor(cu))
        largest = outs["o"].abs().max().item()
        assert largest <= 1e3, (name, largest)


@pytest.mark.parametrize("op", cases.OPS)
def test_verify_gpu_cases_stay_bounded(op):
    """The GPU cases of ``python -m nested_kernels.verify`` keep every output finite and ≤ 1e3 in
    float64 (the torch backend on the CPU, no gradients): the comparison with the reference means
    something there."""
    fn, backends = cases.load_op(op)
    for case in cases.verification_cases(op, "cuda"):
        t = cases.upcast(cases.make_inputs(case, "cpu", seed=0))
        with torch.no_grad():
            flat = cases.flatten_result(case, cases.call_op(fn, case, t, "torch"))
        values = [v for v in flat.values() if v.is_floating_point() and v.numel()]
        assert all(torch.isfinite(v).all() for v in values), str(case)
        largest = max(v.abs().max().item() for v in values)
        assert largest <= 1e3, (str(case), largest)


@pytest.mark.parametrize("gates", ["bm", "m", "b", ""])
def test_tf32_products_suffice_unless_the_memory_runs_away(gates):
    """mlp_memory's precision="auto" is tf32 for 16-bit inputs in every configuration: emulated with
    tf32-rounded products (python/emulate_mlp_memory_conditioning.py; self target, no α), the
    gradients meet SPEC §7's 2e-2 on inputs whose outputs stay within 1e12 (η, β three times smaller),
    and miss it only with β + μ on the runaway inputs (|o| to 1e21; precision="float32" is for those)."""
    import emulate_mlp_memory_conditioning as emu
    ref, tf, _ = emu.emulate(gates, "self", None, 0.3)
    worst = max(rel_error(tf[n], ref[n]) for n in ref)
    assert worst <= 2e-2 and ref["o"].abs().max() < 1e13, worst
    if gates == "bm":
        ref, tf, _ = emu.emulate(gates, "self", None, 1.0)
        assert max(rel_error(tf[n], ref[n]) for n in ref if n.startswith("d")) > 2e-2
