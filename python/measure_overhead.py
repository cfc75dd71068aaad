"""Host overhead of every public op and step call, on the CPU with tiny tensors.

    python python/measure_overhead.py [--profile] [--repeat 7] [--calls 300]
    python python/measure_overhead.py --triton-stub [--profile | --instructions [--calls 50]]
    python python/measure_overhead.py --fast-mlp-stub dual|materialized [--profile]

For each call (backend "torch", tensors that do not require grad) it prints, in µs per call:

* ``public``  — the whole public call (checks, backend choice, custom-op packing and dispatch,
  the backend's forward);
* ``forward`` — the backend's forward alone, on the inputs and config it received in that call;
* ``a − b``   — the difference (noisy for the full ops, whose forward takes milliseconds);
* ``stubbed`` — the public call with the backend's forward replaced by a function returning the
  outputs of one real call: the overhead measured directly (what a GPU call pays on the host on top
  of the launches, which are device-independent Python too).

``--profile`` adds the cProfile of the stubbed call: the functions with the largest own time,
per call (cProfile inflates every Python call, so these are shares, not absolute times).
The overhead is Python work independent of the device; see docs/decode_step.md ("Host overhead").

``--triton-stub`` instead times linear_memory's ``triton`` backend at the issue's head shape (B4
H16 K=V=128 C64, T 256 to spare the CPU's allocator) with every Triton kernel replaced by a no-op
(under TRITON_INTERPRET=1, on the CPU): the host µs of a forward without gradients and of a
forward + backward whose inputs require them — the whole Python path (checks, dispatch, the eager
autograd function, the launchers' argument work) except Triton's own launch, which costs ~25 µs
per launch on this machine (``JITFunction.run``'s hit path; six launches per η-only fwd+bwd).
With ``--instructions`` it counts instead the instructions per call under valgrind's callgrind
(only the calls are collected; repeatable within 0.3 %, unlike times on a shared CPU; ≈ 3 min).
2026-12-07f, 30 calls: main 684–686 k per forward, 1.711–1.712 M per forward + backward; with the
cached launch configuration (``_Config``) 617–619 k and 1.501–1.505 M (−10 %, −12 %). 2026-12-07g
(PLAIN_D: one gradient launch instead of two, its residual handed to the kernels flat): 631 k and
1.452 M.

``--fast-mlp-stub FORM`` does the same for fast_mlp's triton backend in one form (``dual``: the
walk over the chunks, launch-bound on the H100, docs/fast_mlp.md §6; ``materialized``: the chunk
loop of C ≥ 512) and counts the launches per chunk of each kernel: host µs per call and per chunk.
"""
from __future__ import annotations

import argparse
import cProfile
import ctypes
import dataclasses
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nested_kernels import cases as nk_cases  # noqa: E402
from nested_kernels import step_check  # noqa: E402
from nested_kernels.ops.fast_mlp import api as fm_api  # noqa: E402
from nested_kernels.ops.linear_memory import api as lm_api  # noqa: E402
from nested_kernels.ops.mlp_memory import api as mm_api  # noqa: E402
from nested_kernels.ops.self_modifying_titans import api as smt_api  # noqa: E402

F32 = torch.float32
CASES = {
    "linear_memory": nk_cases.Case("linear_memory", dict(B=2, T=8, H=2, K=8, V=8), F32,
                                   dict(chunk_size=4), dict(gates=("log_alpha", "beta", "mu"))),
    "mlp_memory": nk_cases.Case("mlp_memory", dict(B=2, T=8, H=2, K=8, F=16), F32,
                                dict(chunk_size=4), dict(gates=("log_alpha", "beta", "mu"))),
    "fast_mlp": nk_cases.Case("fast_mlp", dict(B=2, T=8, D=8, F=16), F32, dict(chunk_size=4)),
    "self_modifying_titans": nk_cases.Case("self_modifying_titans", dict(B=2, T=8, H=2, D=8), F32,
                                           dict(chunk_size_other=2, chunk_size_memory=4, mu=0.5)),
}
SPECS = {"linear_memory": lm_api, "mlp_memory": mm_api, "fast_mlp": fm_api,
         "self_modifying_titans": smt_api}


def _full_call(op: str):
    case = dataclasses.replace(CASES[op], kwargs={**CASES[op].kwargs, "output_final_state": False})
    t = nk_cases.make_inputs(case)
    fn, _ = nk_cases.load_op(op)
    return lambda: nk_cases.call_op(fn, case, t, "torch"), SPECS[op].OP


def _step_call(op: str):
    case = CASES[op]
    t = nk_cases.make_inputs(case)
    if op == "self_modifying_titans":
        _, state = nk_cases.call_op(smt_api.self_modifying_titans, case, t, "torch")
        state = state.detach()
        x, q = t["x"][:, 3], t["q"][:, 3]
        mu = case.kwargs["mu"]
        return (lambda: smt_api.self_modifying_titans_step(x, q, state=state, mu=mu, backend="torch"),
                smt_api.STEP_OP)
    state = step_check.prefix_state(case, t, 3)
    tok = step_check.tokens(case, t, 3)
    fn = step_check.step_function(op)
    if op == "fast_mlp":
        args = (tok["x"], tok["eta"])
        kw = dict(target=tok["target"], teach=tok["teach"])
    else:
        args = tuple(tok[n] for n in ("q", "k", "v", "eta", "log_alpha", "beta", "mu"))
        kw = {}
    return lambda: fn(*args, state=state, backend="torch", **kw), SPECS[op].STEP_OP


class _Swap:
    """Replace ``spec.backends['torch']``'s forward for the duration of a ``with`` block."""

    def __init__(self, spec, forward):
        self.spec, self.forward = spec, forward

    def __enter__(self):
        self.saved = self.spec.backends["torch"]
        self.spec.backends["torch"] = dataclasses.replace(self.saved, forward=self.forward)

    def __exit__(self, *exc):
        self.spec.backends["torch"] = self.saved


def _per_call_us(fn, calls: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the mean time of ``calls`` calls, in µs."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(runs)


def measure(name: str, call, spec, calls: int, repeat: int, profile: bool) -> dict:
    original = spec.backends["torch"].forward
    captured = {}

    def record(*args):
        captured["args"] = args
        captured["result"] = original(*args)
        return captured["result"]

    with _Swap(spec, record):
        call()
    args, result = captured["args"], captured["result"]
    public = _per_call_us(call, calls, repeat)
    forward = _per_call_us(lambda: original(*args), calls, repeat)
    with _Swap(spec, lambda *a: result):
        stubbed = _per_call_us(call, calls, repeat)
        if profile:
            _profile(name, call, calls)
    return dict(name=name, public=public, forward=forward, diff=public - forward, stubbed=stubbed)


def _profile(name: str, call, calls: int) -> None:
    """Print the cProfile of ``calls`` calls of ``call()``."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        call()
    prof.disable()
    _print_profile(name, prof, calls)


def _print_profile(name: str, prof: cProfile.Profile, calls: int, top: int = 14) -> None:
    stats = pstats.Stats(prof).stats
    rows = sorted(((tt, ct, nc, f) for f, (_, nc, tt, ct, _) in stats.items()), reverse=True)[:top]
    print(f"\n  {name}: own time per call under cProfile (µs), top {top}")
    for tt, ct, nc, (file, line, func) in rows:
        where = f"{os.path.basename(file)}:{line}" if line else file
        print(f"    {tt / calls * 1e6:7.1f} own {ct / calls * 1e6:7.1f} cum {nc / calls:5.1f}x  {func} ({where})")


class _NoLaunch:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` does nothing but count the launch in
    ``counts[name]`` (when given a dict)."""

    def __init__(self, name: str = "", counts: dict | None = None):
        self.name, self.counts = name, counts

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            if self.counts is not None:
                self.counts[self.name] = self.counts.get(self.name, 0) + 1
        return launch


def _triton_stub_calls() -> dict:
    """linear_memory's triton backend with every Triton kernel a no-op: {name: call} for a forward
    without gradients and a forward + backward (B4 T256 H16 K=V=128 C64 η only)."""
    from nested_kernels.ops.linear_memory import triton_bwd, triton_bwd_plain, triton_fwd
    for module in (triton_fwd, triton_bwd, triton_bwd_plain):
        for name in dir(module):
            if name.endswith("_kernel"):
                setattr(module, name, _NoLaunch())
    B, T, H, K = 4, 256, 16, 128
    g = torch.Generator().manual_seed(0)
    leaf = lambda *shape: torch.randn(*shape, generator=g).requires_grad_()  # noqa: E731
    q, k, v, eta = leaf(B, T, H, K), leaf(B, T, H, K), leaf(B, T, H, K), leaf(B, T, H)
    do = torch.randn(B, T, H, K, generator=g)

    def forward():
        with torch.no_grad():
            lm_api.linear_memory(q, k, v, eta, chunk_size=64, backend="triton")

    def forward_backward():
        torch.autograd.grad(lm_api.linear_memory(q, k, v, eta, chunk_size=64, backend="triton")[0],
                            (q, k, v, eta), do)
    return {"forward (no grad)": forward, "forward + backward": forward_backward}


def triton_stub(calls: int, repeat: int, profile: bool) -> None:
    print("linear_memory triton backend, kernels stubbed, B4 T256 H16 K=V=128 C64 η only, CPU host µs per call:")
    for name, fn in _triton_stub_calls().items():
        print(f"  {name:20s} {_per_call_us(fn, calls, repeat):8.1f}")
        if profile:
            _profile(name, fn, calls)


def _in_qsort(body) -> None:
    """Run ``body()`` inside libc's qsort (from its comparison callback), the one function that
    ``_collected``'s callgrind collects in: nothing else of the process calls it."""
    CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    done = []

    def compare(a, b):
        if not done:
            done.append(body())
        return 0
    pair = (ctypes.c_int * 2)(0, 1)
    ctypes.CDLL(None).qsort(pair, 2, ctypes.sizeof(ctypes.c_int), CMP(compare))


def _collected(name: str, calls: int) -> int:
    """Instructions valgrind's callgrind counts in ``calls`` stubbed calls of ``name`` (a child run
    of this script: set-up and 5 warm-up calls uncounted, then the calls inside ``_in_qsort``)."""
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=qsort*",
           "--callgrind-out-file=/dev/null", sys.executable, os.path.abspath(__file__), "--triton-stub",
           "--run-only", name, "--calls", str(calls)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def triton_stub_instructions(calls: int) -> None:
    """Instructions per stubbed call, counted by callgrind in ``calls`` calls (one child run per
    call, ≈ 1.5 min each on the 2-core CI machine): repeatable where timings on a shared CPU are
    not. They count Python and torch's CPU work; CPU allocations stand in for the CUDA caching
    allocator's."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind on PATH")
    print(f"linear_memory triton backend, kernels stubbed, B4 T256 H16 K=V=128 C64 η only, "
          f"instructions per call (callgrind, {calls} calls):")
    for name in _triton_stub_calls():
        print(f"  {name:20s} {_collected(name, calls) / calls:12,.0f}", flush=True)


def fast_mlp_stub(form: str, calls: int, repeat: int, profile: bool) -> None:
    """fast_mlp's triton backend in ``form`` (dual or materialized) with its Triton kernels
    stubbed: the host µs per call and per chunk (Python, torch dispatch and the tiny CPU products of
    B4 T256 D16 F32 C16 — the number of launches per chunk is that of any shape) and the stubbed
    launches per chunk of each kernel, each of which costs Triton's launch on a GPU on top."""
    from nested_kernels.ops.fast_mlp import api as fm_api, dual, triton_kernels
    counts = {}
    for name in dir(triton_kernels):
        if name.endswith("_kernel"):
            setattr(triton_kernels, name, _NoLaunch(name, counts))
    os.environ[dual.FORM_ENV] = form
    B, T, D, F, C = 4, 256, 16, 32, 16
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, D, generator=g).requires_grad_()
    w = tuple((0.1 * torch.randn(*s, generator=g)).requires_grad_() for s in ((F, D), (D, F)))

    def forward():
        with torch.no_grad():
            fm_api.fast_mlp(x, w, 0.1, chunk_size=C, target=x.detach(), backend="triton")

    def forward_backward():
        y = fm_api.fast_mlp(x, w, 0.1, chunk_size=C, target=x.detach(), backend="triton")[0]
        torch.autograd.grad(y, (x, *w), torch.ones_like(y))
    print(f"fast_mlp {form} form, Triton kernels stubbed, B{B} T{T} D{D} F{F} C{C} ({T // C} chunks), "
          f"CPU host µs per call / per chunk, stubbed launches per chunk:")
    for name, fn in (("forward (no grad)", forward), ("forward + backward", forward_backward)):
        counts.clear()
        fn()
        launches = ", ".join(f"{k} {v / (T // C):g}" for k, v in sorted(counts.items()))
        us = _per_call_us(fn, calls, repeat)
        print(f"  {name:20s} {us:8.1f} {us / (T // C):8.1f}   {launches}")
        if profile:
            _profile(name, fn, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated substrings of the call names")
    parser.add_argument("--triton-stub", action="store_true",
                        help="linear_memory's triton backend with its kernels stubbed (see the module docstring)")
    parser.add_argument("--instructions", action="store_true",
                        help="with --triton-stub: instructions per call counted by valgrind's callgrind "
                             "instead of times (deterministic)")
    parser.add_argument("--run-only", metavar="NAME", help=argparse.SUPPRESS)   # the callgrind child
    parser.add_argument("--fast-mlp-stub", choices=("dual", "materialized"),
                        help="fast_mlp's triton backend in one form with its Triton kernels stubbed "
                             "(host µs and launches per chunk)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.fast_mlp_stub:
        os.environ["TRITON_INTERPRET"] = "1"
        fast_mlp_stub(args.fast_mlp_stub, min(args.calls, 50), args.repeat, args.profile)
        return
    if args.triton_stub:
        os.environ["TRITON_INTERPRET"] = "1"        # Triton backends on CPU tensors (kernels stubbed)
        if args.run_only:
            fn = _triton_stub_calls()[args.run_only]
            for _ in range(5):
                fn()
            _in_qsort(lambda: [fn() for _ in range(args.calls)])
        elif args.instructions:
            triton_stub_instructions(min(args.calls, 50))
        else:
            triton_stub(min(args.calls, 100), args.repeat, args.profile)
        return
    rows = []
    for op in CASES:
        for name, make in ((f"{op}_step", _step_call), (op, _full_call)):
            if args.only and not any(s in name for s in args.only.split(",")):
                continue
            call, spec = make(op)
            rows.append(measure(name, call, spec, args.calls, args.repeat, args.profile))
    print(f"\n{'call (backend torch, CPU)':<28} {'public':>9} {'forward':>9} {'a − b':>9} {'stubbed':>9}  µs/call")
    for r in rows:
        print(f"{r['name']:<28} {r['public']:9.1f} {r['forward']:9.1f} {r['diff']:9.1f} {r['stubbed']:9.1f}")


if __name__ == "__main__":
    main()
