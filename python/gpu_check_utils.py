"""Helpers shared by the GPU check scripts (``python/check_*_triton.py``) and the CPU compile probes
(``python/compile_*_triton.py``): CUDA-event timing, optional peer implementations, the
correctness-check loop, compiled-kernel reports, JSON output and ptxas register / spill counts.

The scripts import it as ``gpu_check_utils`` (their own folder is first on ``sys.path``).
"""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import tempfile
import time
import traceback

import torch

TOL = {torch.float32: 2e-3, torch.bfloat16: 2e-2, torch.float16: 2e-2}     # SPEC §7, kernels vs float64
DT = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


# -- timing -----------------------------------------------------------------------------------

def cuda_time(fn, warmup, reps):
    """Median milliseconds of ``fn()`` over ``reps`` calls (CUDA events) after ``warmup`` calls.
    Timings never pay for the NaN fill of new outputs that the checks turn on: this drops
    NESTED_KERNELS_POISON for the rest of the process (the LM and mlp_memory check scripts timed
    with it on until 2026-11-26c)."""
    os.environ.pop("NESTED_KERNELS_POISON", None)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def time_fwd_bwd(f, leaves, warmup, reps, do=None, allow_unused=False):
    """(forward ms, forward+backward ms, peak GiB of the forward+backward) of ``f()`` (one output
    tensor) with output gradient ``do`` (None: a random tensor like the output)."""
    with torch.no_grad():
        t_f = cuda_time(f, warmup, reps)
    if do is None:
        out = f()
        do = torch.randn_like(out)
        del out

    def fb():
        torch.autograd.grad(f(), leaves, do, allow_unused=allow_unused)
    torch.cuda.reset_peak_memory_stats()
    t_fb = cuda_time(fb, warmup, reps)
    return t_f, t_fb, torch.cuda.max_memory_allocated() / 2**30


def queued_time(fn, reps):
    """(device ms, host ms) per call of ``fn()`` launched ``reps`` times back to back: the device
    time per call when the host keeps ahead of the device (as in a training loop, where the next
    layers' launches hide this one's host work), and the host's wall clock per call (Python,
    dispatch and launches). ``cuda_time`` instead syncs around every call, so a call's host work
    before its first kernel counts there."""
    os.environ.pop("NESTED_KERNELS_POISON", None)
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    host = time.perf_counter() - t0
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / reps, host * 1e3 / reps


def queued_fwd_bwd(f, leaves, reps, do):
    """``queued_time`` of the forward (no grad) and of forward+backward with output gradient
    ``do``: (fwd device ms, fwd+bwd device ms, fwd host ms, fwd+bwd host ms)."""
    with torch.no_grad():
        q_f, h_f = queued_time(f, reps)
    q_fb, h_fb = queued_time(lambda: torch.autograd.grad(f(), leaves, do), reps)
    return q_f, q_fb, h_f, h_fb


def host_profile(label, fn, reps, top=18):
    """Print the cProfile of ``reps`` calls of ``fn()`` launched back to back (after one call and a
    sync): the functions with the largest own time, in µs per call, and the host's wall clock per
    call without the profiler. cProfile inflates every Python call, so its times are shares."""
    import cProfile
    import pstats
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    wall = (time.perf_counter() - t0) / reps * 1e6
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(reps):
        fn()
    prof.disable()
    torch.cuda.synchronize()
    stats = pstats.Stats(prof).stats
    total = sum(tt for _, _, tt, _, _ in stats.values()) / reps * 1e6
    print(f"\n-- host profile: {label}: {wall:.0f} µs per call unprofiled, {total:.0f} µs profiled; top {top} own times")
    rows = sorted(((tt, ct, nc, f) for f, (_, nc, tt, ct, _) in stats.items()), reverse=True)[:top]
    for tt, ct, nc, (file, line, func) in rows:
        where = f"{os.path.basename(file)}:{line}" if line else file
        print(f"   {tt / reps * 1e6:8.1f} own {ct / reps * 1e6:8.1f} cum {nc / reps:6.1f}x  {func} ({where})")


def import_peer(module, name, label):
    """``module.name`` of an optional peer package, or None after printing why it is missing."""
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as e:  # noqa: BLE001
        print(f"({label} not importable: {type(e).__name__}: {e})")
        return None


# -- correctness loop and reports -------------------------------------------------------------

def run_checks(args, cases, quick, check_case, empty_cache=False):
    """Every case of ``cases`` (tuples whose first item is the name; the ``--cases`` indices, else
    ``quick`` with ``--quick``) in every dtype of ``--dtypes``: ``check_case(case, dtype)`` returns
    (ok, errors, worst, position ok, seconds); one PASS / FAIL / ERROR line each, SKIP where the
    backend refuses the case. Returns (failures, rows)."""
    failures, rows = 0, []
    idx = [int(i) for i in args.cases.split(",")] if args.cases else (quick if args.quick else range(len(cases)))
    dtypes = [DT[d] for d in args.dtypes.split(",")]
    print(f"== correctness vs float64 {args.ref} (tolerance: fp32 2e-3, bf16/fp16 2e-2)")
    for i in idx:
        for dtype in dtypes:
            label = f"{cases[i][0]} [{str(dtype).replace('torch.', '')}]"
            try:
                ok, errs, worst, pos_ok, secs = check_case(cases[i], dtype)
                print(f"{'PASS' if ok else 'FAIL'} {label}: worst {worst} {errs[worst]:.2e}"
                      f"{'' if pos_ok else ' (position mismatch)'}  (triton fwd+bwd {secs:.2f}s incl. compile)")
                if not ok or args.verbose:
                    print("      " + "  ".join(f"{n} {e:.1e}" for n, e in errs.items()))
                rows.append(dict(case=label, ok=ok, errors=errs))
                failures += not ok
            except Exception as e:  # noqa: BLE001
                if isinstance(e, RuntimeError) and "cannot run these inputs" in str(e):   # select_backend's refusal
                    print(f"SKIP {label}: {e}")
                    rows.append(dict(case=label, ok=True, skipped=str(e)))
                else:
                    failures += 1
                    print(f"ERROR {label}: {type(e).__name__}: {e}")
                    traceback.print_exc()
                    rows.append(dict(case=label, ok=False, error=f"{type(e).__name__}: {e}"))
            if empty_cache:
                torch.cuda.empty_cache()
    return failures, rows


def kernel_info(fns, header, name_width, key_chars, with_consts=False):
    """Registers, spills, shared memory and warps of every compiled variant of the Triton kernels
    ``fns`` in this process: one line each after ``== compiled kernels (header)``; the rows."""
    rows = []
    print(f"\n== compiled kernels ({header})")
    for fn in fns:
        for dev_cache in getattr(fn, "device_caches", {}).values():
            for key, kern in dev_cache[0].items():
                try:
                    kern._init_handles()
                    info = dict(name=fn.__name__, regs=kern.n_regs, spills=kern.n_spills,
                                shared=kern.metadata.shared, warps=kern.metadata.num_warps)
                    extra = {}
                    if with_consts:
                        consts = {k: v for k, v in getattr(kern.src, "constants", {}).items()} \
                            if hasattr(kern, "src") else {}
                        extra["consts"] = str(consts)[:400]
                    print(f"{info['name']:{name_width}s} regs {info['regs']:3d} spills {info['spills']:6d} "
                          f"shared {info['shared']:7d} warps {info['warps']} {str(key)[:key_chars]}")
                    rows.append(dict(info, key=str(key)[:400], **extra))
                except Exception as e:  # noqa: BLE001
                    print(f"{fn.__name__}: {type(e).__name__}: {e}")
    return rows


def write_json(path, obj, default=str):
    """``obj`` as indented JSON at ``path`` (``default`` converts what JSON cannot hold)."""
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1, default=default)


# -- compile probes (no GPU) ------------------------------------------------------------------

def ptxas_usage(ptx, opt=""):
    """(registers, spill-store bytes, spill-load bytes) per thread of ``ptx`` assembled by Triton's
    ptxas for sm_90a with the extra option ``opt``; None for a count ptxas did not report."""
    import triton
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.ptx")
        with open(path, "w") as fh:
            fh.write(ptx)
        r = subprocess.run([ptxas, "-arch=sm_90a", "-v"] + ([opt] if opt else []) + [path, "-o",
                           os.path.join(d, "k.cubin")], capture_output=True, text=True)
    text = r.stdout + r.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return (int(regs.group(1)) if regs else None,
            int(spill.group(1)) if spill else None, int(spill.group(2)) if spill else None)


def compile_sm90(fn, sig, const, options, attrs=None):
    """Triton's compile of the JIT function ``fn`` for sm_90 (no device needed): ``sig`` the
    signature by argument name, ``const`` the constexpr values by name, ``attrs`` the names of
    arguments specialised as divisible by 16."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    names = fn.arg_names
    src = ASTSource(fn, sig, constexprs={(names.index(k),): v for k, v in const.items()},
                    attrs=attrs and {(names.index(n),): [["tt.divisibility", 16]] for n in attrs})
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
