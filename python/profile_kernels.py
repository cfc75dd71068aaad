"""Per-kernel GPU time of one op call (forward + backward) at an issue shape, by torch.profiler.

    python python/profile_kernels.py linear_memory --gates ab      # B4 T4096 H16 K=V=128 bf16 C64
    python python/profile_kernels.py mlp_memory --gates abm --target self --read chunk
    python python/profile_kernels.py fast_mlp --chunk 1024 --mlp gelu    # B4 T4096 D2048 F8192

Prints the kernels sorted by total CUDA time over the timed calls (after one warm-up call that
compiles), so a slow backend shows which of its kernels to work on. ``--json OUT`` also writes
{kernel name: mean time per op call in µs} (python/sweep_linear_memory_triton.py reads it);
``--B``/``--T`` shrink the shape (CPU smoke runs). ``--host`` also prints the cProfile of ``--reps``
forward calls (no grad): where the host's time per call goes (Python, torch dispatch, launches).
``--shapes N`` also records the host's torch ops and prints the N with the most device time per
(op, input shapes): which line of a walk of library calls (fast_mlp's dual form, eagerly) costs.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats

import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from nested_kernels import cases as nk_cases

SHAPES = {"linear_memory": dict(B=4, T=4096, H=16, K=128, V=128),
          "mlp_memory": dict(B=4, T=4096, H=8, K=64, V=64, F=256),
          "fast_mlp": dict(B=4, T=4096, D=2048, F=8192)}
FAST_MLP_F = {"gelu": 8192, "silu": 8192, "swiglu": 5504}      # issue 5's shapes
GATES = {"a": "log_alpha", "b": "beta", "m": "mu"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("op", choices=sorted(SHAPES))
    ap.add_argument("--gates", default="ab", help="subset of 'abm' (log_alpha, beta, mu)")
    ap.add_argument("--target", default="external")
    ap.add_argument("--read", default="after")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--backend", default="triton")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--B", type=int, default=None)
    ap.add_argument("--T", type=int, default=None)
    ap.add_argument("--json", default=None, metavar="OUT")
    ap.add_argument("--mlp", default="gelu", choices=sorted(FAST_MLP_F), help="fast_mlp: the MLP (and its F)")
    ap.add_argument("--weight-dtype", default=None, choices=("bfloat16",),
                    help="fast_mlp: keep the fast weights in this dtype (weight_dtype)")
    ap.add_argument("--host", action="store_true", help="also the cProfile of the forward's host work")
    ap.add_argument("--gaps", type=int, default=0, metavar="N",
                    help="also the GPU's idle time between kernels and its N longest gaps")
    ap.add_argument("--order", type=int, default=0, metavar="N",
                    help="also the last call's N longest device activities in launch order (kernels "
                         "that share a name, e.g. the parts of one Triton kernel, apart)")
    ap.add_argument("--synced", type=int, default=0, metavar="N",
                    help="also N calls each followed by a synchronize, as a benchmark times them: "
                         "per call where the device waited on the host (before its first kernel, "
                         "between kernels, while the backward was being set up)")
    ap.add_argument("--marks", type=int, default=0, metavar="N",
                    help="also N synced calls unprofiled, with the host's clock read around every "
                         "Triton launch and a CUDA event after it: medians per launch of when the host "
                         "began and returned from it and when the device finished it")
    ap.add_argument("--shapes", type=int, default=0, metavar="N",
                    help="also the N torch ops with the most device time, grouped by input shapes")
    args = ap.parse_args()
    shape = dict(SHAPES[args.op], **{n: getattr(args, n) for n in ("B", "T") if getattr(args, n)})
    if args.op == "fast_mlp":       # gradients of x and the weights, as python/check_fast_mlp_triton.py times
        shape["F"] = FAST_MLP_F[args.mlp]
        case = nk_cases.Case(args.op, shape, torch.bfloat16,
                             dict(chunk_size=args.chunk, mlp=args.mlp, output_final_state=False,
                                  **({"weight_dtype": getattr(torch, args.weight_dtype)} if args.weight_dtype else {})),
                             dict(signal="target"), "profile")
        wanted = lambda n: n == "x" or n.startswith("w_")  # noqa: E731
    else:
        gates = tuple(GATES[g] for g in args.gates)
        beta = "eta" if args.target == "self" and "beta" in gates else None
        case = nk_cases.Case(args.op, shape, torch.bfloat16,
                             dict(chunk_size=args.chunk, target=args.target, read=args.read),
                             dict(gates=gates, beta=beta) if beta else dict(gates=gates), "profile")
        wanted = lambda n: True  # noqa: E731
    fn, _ = nk_cases.load_op(args.op)
    t = nk_cases.make_inputs(case, args.device, 0)
    leaves = {n: x.requires_grad_() for n, x in t.items()
              if isinstance(x, torch.Tensor) and x.is_floating_point() and wanted(n)}

    def step(do=None, mark=lambda name: None):
        with record_function("nk_forward"):
            out = nk_cases.flatten_result(case, nk_cases.call_op(fn, case, t, args.backend))
            o = next(v for n, v in out.items() if not n.startswith("final."))
        mark("forward")
        with record_function("nk_backward"):
            torch.autograd.grad(o, list(leaves.values()), torch.randn_like(o) if do is None else do,
                                allow_unused=True)
        mark("backward")
        return o

    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    step()
    sync()
    acts = [ProfilerActivity.CUDA] if args.device == "cuda" else [ProfilerActivity.CPU]
    if args.shapes and ProfilerActivity.CPU not in acts:
        acts.append(ProfilerActivity.CPU)
    with profile(activities=acts, record_shapes=bool(args.shapes)) as prof:
        for _ in range(args.reps):
            step()
        sync()
    print(f"{args.op} {case} backend={args.backend}, {args.reps} calls (fwd+bwd):")
    events = prof.key_averages()
    print(events.table(sort_by="cuda_time_total" if args.device == "cuda" else "cpu_time_total", row_limit=25,
                       max_name_column_width=60))
    if args.shapes:
        print_shapes(prof, args.shapes, args.reps, args.device == "cuda")
    if args.gaps:
        print_gaps(prof, args.gaps, args.reps)
    if args.order:
        print_order(prof, args.order, args.reps)
    if args.synced and args.device == "cuda":
        print_synced(step, args.synced)
    if args.marks and args.device == "cuda":
        print_marks(step, args.marks)
    if args.host:
        prof_host = cProfile.Profile()
        with torch.no_grad():
            prof_host.runcall(lambda: [nk_cases.call_op(fn, case, t, args.backend) for _ in range(args.reps)])
        sync()
        print(f"host cProfile of {args.reps} forward calls (own time, largest first):")
        pstats.Stats(prof_host).sort_stats("tottime").print_stats(25)
    if args.json:
        total = "device_time_total" if args.device == "cuda" else "cpu_time_total"
        with open(args.json, "w") as f:
            json.dump({e.key: getattr(e, total) / args.reps for e in events}, f, indent=1)


def print_shapes(prof, n, reps, cuda: bool):
    """The ``n`` torch ops (aten::…) with the most device time (CPU time without a GPU) per call,
    one row per (op, input shapes), with their count per call."""
    key = "device_time_total" if cuda else "cpu_time_total"
    rows = [e for e in prof.key_averages(group_by_input_shape=True) if e.key.startswith("aten::")]
    rows.sort(key=lambda e: getattr(e, key), reverse=True)
    print(f"torch ops by input shapes ({'device' if cuda else 'CPU'} µs per call, calls per call):")
    for e in rows[:n]:
        print(f"  {getattr(e, key) / reps:10.1f}  {e.count / reps:6.1f}  {e.key:18s} {str(e.input_shapes)[:150]}")


def print_gaps(prof, n, reps):
    """The GPU's busy and idle time over the profiled calls and the ``n`` longest idle gaps
    between consecutive device activities (kernels, copies, memsets), with their neighbours:
    where the host, not the device, sets the pace."""
    acts = device_activities(prof)
    if not acts:
        return
    gaps, busy, end = idle_gaps(acts)
    span = end - acts[0][0]
    idle = sum(g for g, _, _ in gaps)
    print(f"device: {span / reps / 1e3:.3f} ms per call from first to last activity, busy "
          f"{busy / reps / 1e3:.3f} ms, idle {idle / reps / 1e3:.3f} ms in {len(gaps)} gaps; longest:")
    for g, a, b in sorted(gaps, reverse=True)[:n]:
        print(f"  {g:9.1f} µs  after {a[:50]:50s}  before {b[:50]}")


def idle_gaps(acts):
    """(gaps, busy, end) of device activities (start, end, name) in start order: the idle gaps
    between them as (length, activity before, activity after), the busy time, the last end."""
    gaps, busy, end, prev = [], 0.0, acts[0][0], acts[0][2]
    for a, b, name in acts:
        if a > end:
            gaps.append((a - end, prev, name))
        busy += max(0.0, b - max(a, end))
        if b > end:
            end, prev = b, name
    return gaps, busy, end


def device_activities(prof):
    """(start, end, name) of every device activity of the profile, in start order."""
    return sorted((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                  if e.device_type == torch.autograd.DeviceType.CUDA)


def print_synced(step, reps):
    """``reps`` calls, each fwd + bwd then a synchronize (the gradient dO made beforehand), first
    unprofiled (wall ms per call), then under torch.profiler: per call, in µs from its start, when
    the host finished the forward and the backward, when the device began and ended, and its idle
    time (waiting on the host) before the first kernel, in gaps, and the longest gap's neighbours."""
    do = torch.randn_like(step())
    torch.cuda.synchronize()
    walls = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step(do)
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - t0) * 1e3)
    print(f"synced calls: wall ms per call (unprofiled) median {sorted(walls)[reps // 2]:.3f}, "
          f"min {min(walls):.3f}")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            with record_function("nk_call"):
                step(do)
                torch.cuda.synchronize()
    marks = {}
    for e in prof.events():
        if e.name in ("nk_call", "nk_forward", "nk_backward") and e.device_type == torch.autograd.DeviceType.CPU:
            marks.setdefault(e.name, []).append((e.time_range.start, e.time_range.end))
    acts = device_activities(prof)
    print("profiled, µs from the call's start: host fwd done, bwd done | device first, last | idle "
          "before first, in gaps (longest: after → before)")
    for (c0, c1), (_, f1), (_, b1) in zip(*(sorted(marks[n]) for n in ("nk_call", "nk_forward", "nk_backward"))):
        mine = [a for a in acts if c0 <= a[0] <= c1]
        if not mine:
            continue
        gaps, _, end = idle_gaps(mine)
        g = max(gaps) if gaps else (0.0, "", "")
        print(f"  wall {c1 - c0:7.0f}: host {f1 - c0:6.0f} {b1 - c0:6.0f} | device {mine[0][0] - c0:6.0f} "
              f"{end - c0:6.0f} | idle {mine[0][0] - c0:5.0f} + {sum(x for x, _, _ in gaps):5.0f} in {len(gaps)} "
              f"(longest {g[0]:.0f}: {g[1][:30]} → {g[2][:30]})")


def print_marks(step, reps):
    """``reps`` synced fwd + bwd calls without a profiler; every Triton launch is wrapped to read the
    host's clock before and after it and to record a CUDA event after it (``JITFunction.run`` and
    the compiled kernel's launcher, which core.fast_launch calls directly). Prints, per launch in
    order, the medians over the calls of µs from the call's start: host launch begin / return,
    device done (its event), then when the host returned from the forward and the backward and when
    the synchronize returned. A kernel done about its own duration after its launch began kept the
    device waiting on the host."""
    from triton.compiler.compiler import CompiledKernel
    from triton.runtime.jit import JITFunction
    do = torch.randn_like(step())
    torch.cuda.synchronize()
    run, launcher, rows, calls, begun = JITFunction.run, CompiledKernel.run, [], [], []

    def timed_run(self, *a, **kw):      # Triton's path: the launch begins here
        begun.append(time.perf_counter())
        return run(self, *a, **kw)

    def timed_launcher(kernel):
        def call(*a, **kw):
            t = begun.pop() if begun else time.perf_counter()
            out = launcher.fget(kernel)(*a, **kw)
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            rows.append((kernel.name, t, time.perf_counter(), ev))
            return out
        return call

    JITFunction.run, CompiledKernel.run = timed_run, property(timed_launcher)
    try:
        for _ in range(reps + 1):       # the first call warms the wrappers' path
            rows.clear()
            marks = {}
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            t0 = time.perf_counter()
            step(do, lambda name: marks.__setitem__(name, time.perf_counter()))
            torch.cuda.synchronize()
            marks["synchronized"] = time.perf_counter()
            us = lambda t: (t - t0) * 1e6  # noqa: E731
            calls.append(([(n, us(a), us(b), start.elapsed_time(ev) * 1e3) for n, a, b, ev in rows],
                          {n: us(t) for n, t in marks.items()}))
    finally:
        JITFunction.run, CompiledKernel.run = run, launcher
    calls = calls[1:]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(f"unprofiled synced calls ({reps}), medians in µs from the call's start "
          "(host launch begin, return; device done):")
    for i, (name, *_rest) in enumerate(calls[0][0]):
        cols = [med([c[0][i][j] for c in calls]) for j in (1, 2, 3)]
        print(f"  {name[:40]:40s} {cols[0]:8.0f} {cols[1]:8.0f} {cols[2]:8.0f}")
    for name in calls[0][1]:
        print(f"  host: {name} returned at {med([c[1][name] for c in calls]):.0f}")


def print_order(prof, n, reps):
    """The last of the ``reps`` profiled calls: its ``n`` longest device activities, listed in
    launch order with their index in the call and their duration."""
    acts = device_activities(prof)
    per_call = len(acts) // reps
    last = acts[len(acts) - per_call:]
    keep = sorted(sorted(range(per_call), key=lambda i: last[i][0] - last[i][1])[:n])
    print(f"last call: {per_call} device activities; the {len(keep)} longest in launch order:")
    for i in keep:
        a, b, name = last[i]
        print(f"  #{i:<5d} {b - a:10.1f} µs  {name[:80]}")


if __name__ == "__main__":
    main()
