"""``python -m nested_kernels.verify`` on the CPU: the quick set passes for the ops that exist,
and a deliberately broken backend is reported as FAIL (exit code 1)."""
import dataclasses
import json
import re

import pytest
import torch

from nested_kernels import verify
from nested_kernels.cases import OPS, STEP_OPS, op_status
from nested_kernels.core.backends import Backend

AVAILABLE = [op for op in OPS + STEP_OPS if op_status(op) is None]


def _linear_api():
    from nested_kernels.ops.linear_memory import api
    return api


@pytest.mark.parametrize("op", AVAILABLE)
def test_quick_verify_passes(op, tmp_path, capsys):
    out = tmp_path / "verify.json"
    code = verify.main(["--quick", "--device", "cpu", "--ops", op, "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["status"] in ("PASS", "SKIP", "N/A") for r in rows), text
    assert "verify: OK" in text


def test_step_rows_cover_every_step_backend(tmp_path, capsys):
    """The decode steps are verified per backend over streams (the quick CPU set: the torch step
    and the Triton step under the interpreter), each row naming its steps."""
    out = tmp_path / "verify.json"
    code = verify.main(["--quick", "--device", "cpu", "--ops", "linear_memory_step", "--json", str(out)])
    assert code == 0, capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"torch", "triton"}
    assert all(r["status"] == "PASS" and "steps 6..12" in r["case"] for r in rows), rows


def test_broken_step_fails(monkeypatch, capsys):
    """A step backend whose output is off by 1 % fails the stream check (exit code 1; the fp32 bound
    is 2e-3)."""
    from nested_kernels.ops.linear_memory import api, step
    broken = Backend(lambda inputs, state, cfg: step.forward(inputs, state, cfg) * 1.01)
    monkeypatch.setitem(api.STEP_BACKENDS, "torch", broken)
    monkeypatch.setitem(api.STEP_OP.backends, "torch", broken)
    code = verify.main(["--quick", "--device", "cpu", "--ops", "linear_memory_step", "--backends", "torch"])
    text = capsys.readouterr().out
    assert code == 1, text
    assert "FAIL" in text and "verify: FAILED" in text


def test_reference_low_precision_checked_when_named(capsys):
    """Naming 'reference' checks it in float32/bf16 against itself in float64 (SPEC §7: 1e-5)."""
    code = verify.main(["--quick", "--device", "cpu", "--ops", "linear_memory", "--backends", "reference",
                        "--case", "T = 1"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "reference  linear_memory" in text and "PASS" in text


def _broken(scale=1.0 + 1e-3, nan=False):
    """The reference, with its output perturbed (or partly unwritten: NaN)."""
    from nested_kernels.ops.linear_memory import reference

    def forward(inputs, cfg):
        o, *rest = reference.forward(inputs, cfg)
        if nan:
            o = o.clone()
            o[..., -1, :] = float("nan")
            return (o, *rest)
        return (o * scale, *rest)
    return Backend(forward)


def _verify_as_torch_backend(fake: Backend, monkeypatch, capsys):
    """(exit code, printed text) of the quick `T = 1` linear_memory verify with ``fake`` standing in
    for the torch backend."""
    api = _linear_api()
    monkeypatch.setitem(api.BACKENDS, "torch", fake)
    monkeypatch.setitem(api.OP.backends, "torch", fake)
    code = verify.main(["--quick", "--device", "cpu", "--ops", "linear_memory", "--backends", "torch",
                        "--case", "T = 1"])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("nan", [False, True], ids=["perturbed", "unwritten"])
def test_broken_backend_fails(monkeypatch, capsys, nan):
    code, text = _verify_as_torch_backend(_broken(nan=nan), monkeypatch, capsys)
    assert code == 1, text
    assert "FAIL" in text and "verify: FAILED" in text


def test_fallback_is_an_error_not_a_pass(monkeypatch, capsys):
    """A backend that hands the work to another one (BackendFallbackWarning) gets ERROR, even when
    the numbers it returns are right."""
    import warnings
    from nested_kernels.core.backends import BackendFallbackWarning
    from nested_kernels.ops.linear_memory import reference

    def forward(inputs, cfg):
        warnings.warn("out of resources; using the reference backend", BackendFallbackWarning)
        return reference.forward(inputs, cfg)
    code, text = _verify_as_torch_backend(Backend(forward), monkeypatch, capsys)
    assert code == 1, text
    assert "ERROR" in text and "fell back" in text


def test_experimental_backend_only_when_named(monkeypatch, capsys):
    """An experimental backend (``Backend.experimental``: e.g. kernels never run on a GPU) is left
    out of ``auto``, ``available_backends`` and the verify command's default list, and runs when
    named: here a broken torch backend, whose failure shows only when asked for."""
    from nested_kernels.core.backends import available_backends, select_backend
    api = _linear_api()
    fake = dataclasses.replace(_broken(), experimental="not run on a GPU yet")
    monkeypatch.setitem(api.BACKENDS, "torch", fake)
    monkeypatch.setitem(api.OP.backends, "torch", fake)
    cpu = torch.device("cpu")
    assert "torch" not in available_backends(api.BACKENDS, cpu)
    assert "torch" in available_backends(api.BACKENDS, cpu, experimental=True)
    assert select_backend("linear_memory", "auto", api.BACKENDS, cpu, {}, {}) == "reference"
    assert select_backend("linear_memory", "torch", api.BACKENDS, cpu, {}, {}) == "torch"
    code = verify.main(["--quick", "--device", "cpu", "--ops", "linear_memory", "--case", "T = 1"])
    text = capsys.readouterr().out
    assert code == 0 and not re.search(r"^\s*(PASS\s+)?torch\s+linear_memory", text, re.M), text
    code, text = _verify_as_torch_backend(fake, monkeypatch, capsys)
    assert code == 1 and "FAIL" in text, text


def test_jobs_split_the_cases_between_workers(tmp_path, capsys):
    """--jobs 2: two worker processes, each every 2nd case; together the rows of one serial run."""
    args = ["--quick", "--device", "cpu", "--ops", "fast_mlp", "--backends", "torch", "--case", "gelu"]
    assert verify.main(args + ["--json", str(tmp_path / "serial.json")]) == 0
    assert verify.main(args + ["--jobs", "2", "--json", str(tmp_path / "jobs.json")]) == 0
    text = capsys.readouterr().out
    assert "2 worker processes" in text
    key = lambda r: (r["backend"], r["case"], r["dtype"], r["error"])  # noqa: E731
    serial, jobs = (sorted(map(key, json.loads((tmp_path / f).read_text())["rows"])) for f in ("serial.json", "jobs.json"))
    assert len(serial) >= 2 and jobs == serial


def test_a_worker_without_results_is_an_error():
    rows = verify._run_workers(["--ops", "no_such_op"], 2, ["no_such_op"], log=lambda line: None)
    assert [r.status for r in rows] == ["ERROR", "ERROR"] and "without results" in rows[0].note


def test_unavailable_op_is_reported_not_raised(monkeypatch):
    from nested_kernels import cases
    real = cases.op_status
    monkeypatch.setattr(verify, "op_status", lambda op: "not available (module missing)" if op == "mlp_memory"
                        else real(op))
    rows, _ = verify.run(["mlp_memory"], device="cpu", quick=True)
    assert [r.status for r in rows] == ["N/A"]


def test_cases_draw_valid_inputs():
    """Inputs are never zero and stay in SPEC §7's range (‖k‖ = 1, η ∈ [0, 0.1], α ∈ (0.9, 1],
    β ≤ α, μ ∈ [0, 0.9))."""
    from nested_kernels.cases import make_inputs, verification_cases
    for case in verification_cases("linear_memory", "cpu", quick=False):
        t = make_inputs(case, "cpu", seed=3)
        assert t["q"].abs().sum() > 0
        assert torch.allclose(t["k"].float().norm(dim=-1), torch.ones(()), atol=1e-2)
        assert 0 <= t["eta"].min() and t["eta"].max() <= 0.1
        if t["log_alpha"] is not None:
            alpha = t["log_alpha"].float().exp()
            assert 0.9 - 1e-2 <= alpha.min() and alpha.max() <= 1.0   # bf16 rounding of log α
            if t["beta"] is not None:
                assert (t["beta"].float() <= alpha).all()
        if t["mu"] is not None:
            assert 0 <= t["mu"].min() and t["mu"].max() < 0.9
        if case.inputs.get("lengths"):
            assert int(t["cu_seqlens"][-1]) == t["q"].shape[1]
    assert dataclasses.is_dataclass(case)
