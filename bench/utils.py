"""Timing and recording for the benchmarks (METHOD.md of the device tool: warm up, device events,
median of many repeats, rotate inputs that would sit in L2).

* :class:`Workload` — a ready-to-run provider call: inputs (one or more sets), the forward, and
  the tensors to differentiate for ``fwd+bwd``.
* :func:`plan` — warm-up and repeat counts from a time budget, after one untimed call (compile,
  autotune, handle creation) and one probe.
* :class:`DeviceClock` — a clock that advances only by the device time of timed calls: CUDA
  events around each call on CUDA, ``time.perf_counter`` on the CPU. pytest-benchmark uses it as
  its timer (``pytest.mark.benchmark(timer=CLOCK)``), so its statistics are event times, and
  :func:`measure` uses it without pytest.
* :func:`append_row` — one tidy CSV row per measurement (``bench/results.csv``).

Each timed call is synchronised (the GPU is idle when it starts): the time includes the host's
launch latency of the first kernel (a few µs), negligible for the ms-scale issue shapes.
"""
from __future__ import annotations

import csv
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CSV = os.path.join(HERE, "results.csv")
CSV_COLUMNS = ("op", "provider", "mode", "shape", "dtype", "device", "torch", "triton", "commit", "date",
               "median_ms", "p20_ms", "p80_ms", "floor_ms", "ratio_to_floor", "rounds", "sets")
MODES = ("fwd", "fwd+bwd")

# Time budgets (ms of measured calls) and bounds of the repeat counts.
BUDGET = {"cuda": dict(warmup_ms=100.0, rep_ms=400.0, min_rounds=5, max_rounds=200),
          "cpu": dict(warmup_ms=0.0, rep_ms=50.0, min_rounds=2, max_rounds=20)}
ROTATE_FACTOR = 3       # rotate among enough input sets to occupy ROTATE_FACTOR × L2
MAX_SETS = 16
DEFAULT_L2_BYTES = 50 * 2 ** 20    # H100


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------
@dataclass
class Workload:
    """One set of inputs and how to run a provider on it.

    forward(inputs) -> the main output tensor (or a tuple; its floating tensors that require
    grad are differentiated in ``fwd+bwd``).
    params: extra leaves to differentiate (a module's parameters).
    """
    inputs: dict
    forward: Callable[[dict], Any]
    params: list = field(default_factory=list)

    def nbytes(self) -> int:
        tensors = [t for t in self.inputs.values() if isinstance(t, torch.Tensor)] + list(self.params)
        return sum(t.numel() * t.element_size() for t in tensors)

    def leaves(self) -> list:
        ins = [t for t in self.inputs.values()
               if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
        return ins + [p for p in self.params if p.requires_grad]


def _outputs(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []


def make_step(workload: Workload, mode: str) -> Callable[[], Any]:
    """A no-argument callable that runs one forward (``fwd``, without autograd) or one forward
    plus the backward of a fixed random upstream gradient (``fwd+bwd``)."""
    if mode == "fwd":
        def fwd():
            with torch.no_grad():
                return workload.forward(workload.inputs)
        return fwd
    leaves = workload.leaves()
    if not leaves:
        raise ValueError("fwd+bwd needs inputs or parameters that require grad")
    outs = [o for o in _outputs(workload.forward(workload.inputs)) if o.requires_grad]
    gen = torch.Generator(device=outs[0].device)
    gen.manual_seed(1)
    grads = [torch.randn(o.shape, generator=gen, device=o.device, dtype=torch.float32).to(o.dtype) for o in outs]
    del outs

    def fwd_bwd():
        out = [o for o in _outputs(workload.forward(workload.inputs)) if o.requires_grad]
        return torch.autograd.grad(out, leaves, grads[:len(out)], allow_unused=True)
    return fwd_bwd


def l2_bytes(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)


def num_sets(set_bytes: int, device: torch.device) -> int:
    """Input sets to rotate so that repeated calls do not find their inputs in L2."""
    l2 = l2_bytes(device)
    if l2 == 0 or set_bytes >= ROTATE_FACTOR * l2:
        return 1
    return max(1, min(MAX_SETS, math.ceil(ROTATE_FACTOR * l2 / max(set_bytes, 1))))


# ---------------------------------------------------------------------------------------------
# Clock and timing
# ---------------------------------------------------------------------------------------------
class DeviceClock:
    """A clock (seconds) that advances only by the measured time of :meth:`timed` calls."""

    def __init__(self):
        self.now = 0.0
        self._events = None

    def __call__(self) -> float:
        return self.now

    def timed(self, fn: Callable[[], Any], device: torch.device) -> Callable[[], None]:
        """``fn`` wrapped so that each call advances the clock by its duration."""
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

            def call():
                torch.cuda.synchronize(device)
                start.record()
                fn()
                end.record()
                end.synchronize()
                self.now += start.elapsed_time(end) / 1e3
        else:
            def call():
                t0 = time.perf_counter()
                fn()
                self.now += time.perf_counter() - t0
        return call


CLOCK = DeviceClock()


def plan(call: Callable[[], None], device: torch.device, budget: Optional[dict] = None) -> tuple[int, int]:
    """(warm-up rounds, timed rounds) after one untimed call and one probe of ``call``."""
    b = dict(BUDGET["cuda" if device.type == "cuda" else "cpu"], **(budget or {}))
    call()                      # first call: compilation, autotuning, allocator growth
    t0 = CLOCK.now
    call()                      # probe
    probe_ms = max((CLOCK.now - t0) * 1e3, 1e-3)
    warm = min(50, math.ceil(b["warmup_ms"] / probe_ms)) if b["warmup_ms"] > 0 else 0
    rounds = int(min(b["max_rounds"], max(b["min_rounds"], math.ceil(b["rep_ms"] / probe_ms))))
    return warm, rounds


def quantiles_ms(samples_s: list[float]) -> dict:
    """median, p20, p80 in ms of per-call times in seconds."""
    ms = sorted(s * 1e3 for s in samples_s)
    if len(ms) == 1:
        return {"median_ms": ms[0], "p20_ms": ms[0], "p80_ms": ms[0]}
    q = statistics.quantiles(ms, n=10, method="inclusive")     # deciles: q[1] = p20, q[7] = p80
    return {"median_ms": statistics.median(ms), "p20_ms": q[1], "p80_ms": q[7]}


class Runner:
    """The timed step of a workload, rotating among its input sets."""

    def __init__(self, build: Callable[[int], Workload], mode: str, device: torch.device):
        first = build(0)
        n = num_sets(first.nbytes(), device)
        self.sets = [first] + [build(i) for i in range(1, n)]
        self.steps = [make_step(w, mode) for w in self.sets]
        self.index = 0
        self.device = device
        self.timed = [CLOCK.timed(s, device) for s in self.steps]

    def next(self) -> Callable[[], None]:
        call = self.timed[self.index]
        self.index = (self.index + 1) % len(self.timed)
        return call

    def __call__(self) -> None:
        self.next()()


def measure(build: Callable[[int], Workload], mode: str, device, budget: Optional[dict] = None) -> dict:
    """Time ``mode`` of the workload without pytest: quantiles in ms, rounds and sets."""
    device = torch.device(device)
    runner = Runner(build, mode, device)
    warm, rounds = plan(runner, device, budget)
    for _ in range(warm):
        runner()
    samples = []
    for _ in range(rounds):
        t0 = CLOCK.now
        runner()
        samples.append(CLOCK.now - t0)
    return {**quantiles_ms(samples), "rounds": rounds, "sets": len(runner.sets)}


def check_finite(out) -> None:
    for t in _outputs(out):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise AssertionError("benchmark output has NaN/Inf")


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------
_ENV_CACHE: dict = {}


def environment(device) -> dict:
    """device, torch, triton, commit, date (cached per device; the date is the run's start)."""
    device = torch.device(device)
    key = str(device)
    if key not in _ENV_CACHE:
        from nested_kernels.verify import environment as env
        _ENV_CACHE[key] = env(device)
    return _ENV_CACHE[key]


def make_row(op: str, provider: str, mode: str, shape: str, dtype: str, device, stats: dict,
             floor_ms: Optional[float]) -> dict:
    env = environment(device)
    row = {"op": op, "provider": provider, "mode": mode, "shape": shape, "dtype": dtype,
           "device": env["device"], "torch": env["torch"], "triton": env["triton"], "commit": env["commit"],
           "date": env["date"], "median_ms": f"{stats['median_ms']:.5g}", "p20_ms": f"{stats['p20_ms']:.5g}",
           "p80_ms": f"{stats['p80_ms']:.5g}", "floor_ms": "" if floor_ms is None else f"{floor_ms:.5g}",
           "ratio_to_floor": "" if not floor_ms else f"{stats['median_ms'] / floor_ms:.3g}",
           "rounds": stats.get("rounds", ""), "sets": stats.get("sets", "")}
    return row


def append_row(row: dict, path: str = DEFAULT_CSV) -> None:
    """Append one row to the CSV (header written when the file is new)."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})


def read_rows(path: str = DEFAULT_CSV) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
