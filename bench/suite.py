"""Benchmark cases shared by the ``bench_*.py`` pytest files and ``python -m nested_kernels``.

A :class:`BenchCase` is one (op, provider, shape): how to build a :class:`~bench.utils.Workload`
on a device, whether the provider can run there, and its roofline cost. Providers are our
backends (``nested_kernels.<backend>``) and peers when importable (``fla.*``, ``titans.*``,
``torch.*`` static baselines). Shapes: the issue shapes on CUDA, tiny ones elsewhere;
``NESTED_KERNELS_BENCH_SHAPES=tiny|issue`` (or pytest ``--bench-shapes``) forces a set.
"""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from nested_kernels import cases as nk_cases
from nested_kernels.core.backends import BACKEND_NAMES, available_backends
from nested_kernels.verify import UNSUPPORTED_MARKER

from .roofline import Cost
from .utils import (CLOCK, MODES, Runner, Workload, append_row, check_finite, make_row, make_step, measure,
                    plan, quantiles_ms)

OPS = ("linear_memory", "mlp_memory", "fast_mlp", "cms", "self_modifying_titans", "decode_step")
SHAPES_ENV = "NESTED_KERNELS_BENCH_SHAPES"


def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def shape_set(device: Optional[torch.device] = None) -> str:
    """"issue" (the foundation issue's shapes) on CUDA, "tiny" elsewhere, unless forced."""
    forced = os.environ.get(SHAPES_ENV, "").strip()
    if forced in ("tiny", "issue"):
        return forced
    return "issue" if (device or bench_device()).type == "cuda" else "tiny"


@dataclass
class BenchCase:
    """build(device, seed, requires_grad) -> Workload; available(device) -> None or why not."""
    op: str
    provider: str
    shape: str
    dtype: torch.dtype
    build: Callable[[torch.device, int, bool], Workload]
    available: Callable[[torch.device], Optional[str]]
    cost: Optional[Cost] = None
    modes: tuple = MODES

    @property
    def dtype_name(self) -> str:
        return nk_cases.DTYPE_NAMES.get(self.dtype, str(self.dtype))

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9+.=_-]+", "_", f"{self.provider}-{self.shape}")

    def floor_ms(self, mode: str, device: torch.device) -> Optional[float]:
        # the ceilings are the H100's: a floor means nothing for a CPU run
        return self.cost.floor_ms(mode) if self.cost is not None and device.type == "cuda" else None


# ---------------------------------------------------------------------------------------------
# Availability helpers
# ---------------------------------------------------------------------------------------------
def our_backend_available(op: str, backend: str) -> Callable[[torch.device], Optional[str]]:
    """Our ``backend`` of ``op`` (``cms`` uses fast_mlp's backends); the token-loop reference only
    off CUDA (it takes minutes at the issue shapes), Triton only on CUDA (the interpreter is slow)."""
    module_op = "fast_mlp" if op == "cms" else op

    def available(device):
        if backend == "reference" and device.type == "cuda":
            return "the token-loop reference is not benchmarked on CUDA"
        if backend == "triton" and device.type != "cuda":   # tests/ops run them under the interpreter
            return "Triton kernels are benchmarked on CUDA only"
        why = nk_cases.op_status(module_op)
        if why:
            return f"{module_op}: {why}"
        if op == "cms":
            try:
                importlib.import_module("nested_kernels.modules.cms")
            except ImportError as exc:
                return f"CMS not available ({exc})"
        _, backends = nk_cases.load_op(module_op)
        if backend not in backends:
            return f"{module_op} has no {backend!r} backend"
        if backends[backend].experimental:
            return f"{module_op}'s {backend!r} backend is experimental: {backends[backend].experimental}"
        if backend not in available_backends(backends, device):
            return f"backend {backend!r} cannot run on {device.type} here"
        return None
    return available


def module_available(module: str, needs_cuda: bool = False) -> Callable[[torch.device], Optional[str]]:
    def available(device):
        if needs_cuda and device.type != "cuda":
            return f"{module} needs CUDA"
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure means "not installed"
            return f"{module} not importable ({type(exc).__name__}: {exc})"
        return None
    return available


def all_of(*checks) -> Callable[[torch.device], Optional[str]]:
    def available(device):
        for check in checks:
            why = check(device)
            if why:
                return why
        return None
    return available


def grad_leaves(tensors: dict, requires_grad: bool, skip=("cu_seqlens",)) -> dict:
    """The inputs as leaves; floating ones require grad for fwd+bwd."""
    out = {}
    for n, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and n not in skip:
            t = t.detach().requires_grad_(requires_grad)
        out[n] = t
    return out


def ours(op: str, case: nk_cases.Case, shape: str, cost: Optional[Cost] = None,
         backends=BACKEND_NAMES) -> list[BenchCase]:
    """One BenchCase per backend of our op on a verification-style case (no final state)."""
    case.kwargs.setdefault("output_final_state", False)
    out = []
    for backend in backends:
        def build(device, seed, grad, backend=backend):
            fn, _ = nk_cases.load_op(op)
            t = grad_leaves(nk_cases.make_inputs(case, device, seed), grad)
            return Workload(t, lambda t: nk_cases.call_op(fn, case, t, backend)[0])
        out.append(BenchCase(op, f"nested_kernels.{backend}", shape, case.dtype, build,
                             our_backend_available(op, backend), cost))
    return out


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def run_pytest_case(benchmark, case: BenchCase, mode: str, csv_path: Optional[str]) -> None:
    """Body of every bench test: skip when unavailable; with --benchmark-disable one untimed call
    (smoke test: the output must be finite); else time with pytest-benchmark on the device clock
    and append a CSV row."""
    import pytest
    device = bench_device()
    why = case.available(device)
    if why:
        pytest.skip(why)
    if mode not in case.modes:
        pytest.skip(f"{case.provider} has no {mode}")

    def build(seed):
        return case.build(device, seed, mode == "fwd+bwd")
    try:
        if benchmark.disabled:
            check_finite(benchmark.pedantic(make_step(build(0), mode)))
            return
        runner = Runner(build, mode, device)
        warm, rounds = plan(runner, device)
    except RuntimeError as exc:
        if UNSUPPORTED_MARKER in str(exc):
            pytest.skip(f"{case.provider}: {str(exc).split(UNSUPPORTED_MARKER)[-1].strip(' :')}")
        raise
    benchmark.pedantic(runner, rounds=rounds, warmup_rounds=warm, iterations=1)
    stats = {**quantiles_ms(list(benchmark.stats.stats.data)), "rounds": rounds, "sets": len(runner.sets)}
    floor = case.floor_ms(mode, device)
    benchmark.extra_info.update(op=case.op, provider=case.provider, mode=mode, shape=case.shape,
                                dtype=case.dtype_name, floor_ms=floor, **stats)
    if csv_path:
        append_row(make_row(case.op, case.provider, mode, case.shape, case.dtype_name, device, stats, floor),
                   csv_path)


def load_cases(op: str, device: Optional[torch.device] = None) -> list[BenchCase]:
    """The BenchCases of ``bench/bench_<op>.py`` for the current shape set."""
    module = importlib.import_module(f"bench.bench_{op}")
    return module.cases(device or bench_device())


def run_summary(ops=OPS, device=None, csv_path: Optional[str] = None, log=print,
                budget: Optional[dict] = None) -> list[dict]:
    """Time every available case × mode (no pytest) and return the rows (also appended to
    ``csv_path`` when given). Unavailable providers are listed once per op."""
    device = torch.device(device) if device else bench_device()
    rows = []
    for op in ops:
        skipped = {}
        for case in load_cases(op, device):
            why = case.available(device)
            if why:
                skipped.setdefault(case.provider, why)
                continue
            for mode in case.modes:
                try:
                    stats = measure(lambda seed: case.build(device, seed, mode == "fwd+bwd"), mode, device, budget)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    if UNSUPPORTED_MARKER in str(exc):
                        skipped.setdefault(f"{case.provider} ({case.shape})", "backend does not support the shape")
                        break
                    log(f"  {op} {case.provider} {mode} {case.shape}: ERROR {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
                    continue
                row = make_row(case.op, case.provider, mode, case.shape, case.dtype_name, device, stats,
                               case.floor_ms(mode, device))
                rows.append(row)
                if csv_path:
                    append_row(row, csv_path)
        for provider, why in skipped.items():
            log(f"  {op}: {provider} skipped: {why}")
    return rows


def format_rows(rows: list[dict]) -> str:
    head = ("op", "provider", "mode", "shape", "dtype", "median ms", "p20", "p80", "floor ms", "×floor")
    keys = ("op", "provider", "mode", "shape", "dtype", "median_ms", "p20_ms", "p80_ms", "floor_ms", "ratio_to_floor")
    body = [tuple(str(r.get(k, "")) or "-" for k in keys) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


__all__ = ["BenchCase", "OPS", "CLOCK", "bench_device", "shape_set", "ours", "run_pytest_case", "run_summary",
           "format_rows", "load_cases", "module_available", "our_backend_available", "all_of", "grad_leaves",
           "BACKEND_NAMES"]
