"""The CPU-testable helpers of ``python/gpu_check_utils.py`` (shared by the GPU check scripts):
the correctness-check loop's lines and rows, optional peers, JSON output."""
from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from gpu_check_utils import import_peer, run_checks, write_json  # noqa: E402

CASES = [("pass case", 1), ("fail case", 2), ("raising case", 3), ("refused case", 4)]


def _check(case, dtype):
    if case[1] == 3:
        raise ValueError("boom")
    if case[1] == 4:
        raise RuntimeError("linear_memory: backend 'triton' (from the call) cannot run these inputs: no")
    errs = {"o": 1e-4 * case[1] ** 8, "dq": 1e-5}
    return errs["o"] <= 2e-2, errs, "o", case[1] == 1, 0.5


def test_run_checks_lines_rows_and_failures(capsys):
    args = SimpleNamespace(cases=None, quick=False, dtypes="bf16", ref="reference", verbose=False)
    failures, rows = run_checks(args, CASES, [0], _check)
    out = capsys.readouterr().out.splitlines()
    assert failures == 2
    assert out == [
        "== correctness vs float64 reference (tolerance: fp32 2e-3, bf16/fp16 2e-2)",
        "PASS pass case [bfloat16]: worst o 1.00e-04  (triton fwd+bwd 0.50s incl. compile)",
        "FAIL fail case [bfloat16]: worst o 2.56e-02 (position mismatch)  (triton fwd+bwd 0.50s incl. compile)",
        "      o 2.6e-02  dq 1.0e-05",
        "ERROR raising case [bfloat16]: ValueError: boom",
        "SKIP refused case [bfloat16]: linear_memory: backend 'triton' (from the call) cannot run these inputs: no",
    ]
    assert [r["ok"] for r in rows] == [True, False, False, True] and rows[2]["error"] == "ValueError: boom"
    assert "skipped" in rows[3]


def test_run_checks_selects_quick_and_listed_cases(capsys):
    args = SimpleNamespace(cases=None, quick=True, dtypes="fp32,fp16", ref="torch", verbose=True)
    failures, rows = run_checks(args, CASES, [0], _check)
    assert failures == 0 and [r["case"] for r in rows] == ["pass case [float32]", "pass case [float16]"]
    args = SimpleNamespace(cases="1", quick=True, dtypes="fp32", ref="torch", verbose=False)
    assert run_checks(args, CASES, [0], _check)[1][0]["case"] == "fail case [float32]"


def test_import_peer(capsys):
    assert import_peer("json", "dumps", "json") is json.dumps
    assert import_peer("no_such_peer_module", "x", "nope") is None
    assert capsys.readouterr().out == "(nope not importable: ModuleNotFoundError: No module named 'no_such_peer_module')\n"


def test_write_json(tmp_path):
    path = str(tmp_path / "r.json")
    write_json(path, dict(dtype=torch.float32, n=1))
    assert json.load(open(path)) == dict(dtype="torch.float32", n=1)
