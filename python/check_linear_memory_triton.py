"""GPU check of the Triton backend of ``linear_memory`` (needs CUDA; run on the GPU machine).

1. Correctness: realistic shapes (T ≈ 1000 with odd lengths, packed sequences, resumed states,
   K, V ∈ {32, 64, 128}, chunk sizes 1 (exact rule) and 16…128, every target / read, gate sets) in
   bfloat16, float16 and float32, against the float64 token-loop reference evaluated on the same (already rounded)
   inputs: outputs, final states and the gradients of a random functional of all of them with
   respect to every floating-point input. SPEC §7 bounds: 2e-3 (float32), 2e-2 (bf16/fp16).
   Outputs of the kernels are NaN-poisoned (NESTED_KERNELS_POISON=1).
2. Timing (CUDA events, median after warm-up) at B=4, T=4096, H=16, K=V=128, bf16, chunk 64
   (--C 1: the exact rule, with fla chunk_momentum_delta_rule beside it too):
   forward and forward+backward of several gate sets, beside the torch backend (--torch-baseline)
   and fla ``chunk_delta_rule`` when flash-linear-attention is importable (same q, k, v, β = η),
   with peak memory and the ratio to fla (issue 3 targets: fwd+bwd ≤ 0.7×, fwd ≤ 0.6×).
3. Registers, spills and shared memory of every compiled kernel variant.

    python python/check_linear_memory_triton.py                 # checks + timing
    python python/check_linear_memory_triton.py --quick         # fewer checks, no timing
    python python/check_linear_memory_triton.py --no-check      # timing only
    python python/check_linear_memory_triton.py --json $OUT/lm_triton.json
    NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=1 python python/check_linear_memory_triton.py --quick  # split grad
    python python/check_linear_memory_triton.py --no-check --backends triton,cuda   # timing beside the CUDA walks

Every case runs in its own try/except: a failure prints its traceback and the script goes on.
Exit status 1 when any check fails or raises.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

os.environ.setdefault("NESTED_KERNELS_POISON", "1")

import torch  # noqa: E402

from nested_kernels.ops.linear_memory import LinearMemoryState, linear_memory  # noqa: E402
from nested_kernels.testing import linear_memory_draw, rel_error  # noqa: E402
from gpu_check_utils import TOL, host_profile, import_peer, kernel_info, queued_fwd_bwd, run_checks, time_fwd_bwd, write_json  # noqa: E402

F64 = torch.float64


def make(B, T, H, K, V, gates, *, N=None, resume=None, seed=0, device="cuda"):
    """``testing.linear_memory_draw`` on ``device``."""
    x, st = linear_memory_draw(B, T, H, K, V, gates, N=N, resume=resume, seed=seed)
    mv = lambda d: {n: None if t is None else t.to(device) for n, t in d.items()}  # noqa: E731
    return mv(x), mv(st)


def run(backend, x, st, dtype, cfg, cu=None):
    """(outputs, grads) of a fixed random functional of o and the final state."""
    leaves = {n: t.to(dtype).requires_grad_(True) for n, t in x.items() if t is not None}
    xx = {n: leaves.get(n) for n in x}
    sdt = F64 if dtype == F64 else torch.float32
    sl = {n: t.to(sdt).requires_grad_(True) for n, t in st.items() if t is not None and n != "position"}
    leaves.update({n + "0": t for n, t in sl.items()})
    if "position" in st:
        init = LinearMemoryState(sl["M"], sl.get("S"), sl["M_chunk"], st["position"], cfg["chunk_size"])
    else:
        init = (sl["M"], sl.get("S"))
    o, fs = linear_memory(xx["q"], xx["k"], xx["v"], xx["eta"], xx["log_alpha"], xx["beta"], xx["mu"],
                          initial_state=init, output_final_state=True, backend=backend,
                          cu_seqlens=cu, **cfg)
    outs = dict(o=o, M=fs.M, M_chunk=fs.M_chunk)
    if fs.S is not None:
        outs["S"] = fs.S
    g = torch.Generator(device=o.device).manual_seed(123)
    loss = sum((t.double() * torch.randn(t.shape, generator=g, dtype=F64, device=o.device)).sum()
               for t in outs.values())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    outs["position"] = fs.position
    return outs, dict(zip(leaves, grads))


# name, shape (B, T, H, K, V), gates, cfg, extra
CASES = [
    ("abm ext after C64 K=V=64", (2, 1000, 2, 64, 64), "abm", dict(chunk_size=64, target="external", read="after"), {}),
    ("ab self before C64 K=V=128 varlen", (1, 1517, 2, 128, 128), "ab",
     dict(chunk_size=64, target="self", read="before"), dict(cu=[0, 333, 1000, 1517])),
    ("am ext chunk C32 K=64 V=128 resume", (2, 999, 2, 64, 128), "am",
     dict(chunk_size=32, target="external", read="chunk", scale=0.125), dict(resume=[7, 0])),
    ("abm self after C128 K=V=128", (1, 1001, 2, 128, 128), "abm", dict(chunk_size=128, target="self", read="after"), {}),
    ("none ext after C16 K=V=32", (2, 1000, 3, 32, 32), "", dict(chunk_size=16, target="external", read="after"), {}),
    ("bm ext before C64 K=128 V=16 varlen+resume", (1, 1003, 2, 128, 16), "bm",
     dict(chunk_size=64, target="external", read="before"), dict(cu=[0, 1, 500, 500, 1003], resume=[3, 63, 0, 10])),
    ("abm ext after C1 K=V=64", (2, 1000, 2, 64, 64), "abm", dict(chunk_size=1, target="external", read="after"), {}),
    ("bm ext chunk C1 K=64 V=128 varlen", (1, 1003, 2, 64, 128), "bm",
     dict(chunk_size=1, target="external", read="chunk"), dict(cu=[0, 1, 500, 500, 1003])),
    ("none ext before C1 K=V=128", (2, 777, 2, 128, 128), "", dict(chunk_size=1, target="external", read="before"), {}),
    # self targets at C1: these draws run away without α (|o| ~1e40 over 777 tokens) and with μ
    # (~1e6–1e17), and with α the memory decays (max |M| 4.5e-39 after 777 tokens, below float32's
    # normal range: the GPU flushes it), so short sequences
    ("ab self before C1 K=V=128 T=130", (2, 130, 2, 128, 128), "ab", dict(chunk_size=1, target="self", read="before"),
     {}),
    ("a self after C1 K=V=64 varlen", (1, 1003, 2, 64, 64), "a",
     dict(chunk_size=1, target="self", read="after"), dict(cu=[0, 1, 500, 500, 1003])),
    ("abm self after C1 K=V=128 T=65", (2, 65, 2, 128, 128), "abm", dict(chunk_size=1, target="self", read="after"),
     {}),
    # plain tiles (η, log α; external) at the K = V = 128, C64 (case 4 is the only other plain one, K = 32)
    ("none ext after C64 K=V=128", (2, 1000, 2, 128, 128), "", dict(chunk_size=64, target="external", read="after"),
     {}),
    ("a ext before C64 K=V=128 varlen", (1, 1517, 2, 128, 128), "a",
     dict(chunk_size=64, target="external", read="before"), dict(cu=[0, 333, 1000, 1000, 1517])),
    ("a ext chunk C32 K=64 V=128 scaled", (2, 999, 2, 64, 128), "a",
     dict(chunk_size=32, target="external", read="chunk", scale=0.125), {}),
]
QUICK = [0, 1]


def case_inputs(shape, gates, extra, device="cuda"):
    """(inputs, initial state) of a CASES entry."""
    B, T, H, K, V = shape
    cu = extra.get("cu")
    return make(B, T, H, K, V, gates, N=B if cu is None else len(cu) - 1, resume=extra.get("resume"), device=device)


def check_case(name, shape, gates, cfg, extra, dtype, ref_backend):
    cu = extra.get("cu")
    x, st = case_inputs(shape, gates, extra)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32, device="cuda")
    # the reference sees the same rounded inputs as the kernel
    xr = {n: None if t is None else t.to(dtype).to(F64) for n, t in x.items()}
    t0 = time.perf_counter()
    got, dgot = run("triton", x, st, dtype, dict(cfg), cu_t)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    ref, dref = run(ref_backend, xr, st, F64, dict(cfg), cu_t)
    errs = {n: rel_error(got[n], ref[n]) for n in ("o", "M", "S", "M_chunk") if n in ref}
    errs.update({"d" + n: rel_error(dgot[n], dref[n]) for n in dref})
    pos_ok = torch.equal(got["position"].cpu(), ref["position"].cpu())
    tol = TOL[dtype]
    worst = max(errs, key=lambda n: errs[n])
    ok = pos_ok and all(e <= tol for e in errs.values())
    return ok, errs, worst, pos_ok, t1 - t0


def checks(args):
    return run_checks(args, CASES, QUICK, lambda case, dtype: check_case(*case, dtype, args.ref))


# -- timing -----------------------------------------------------------------------------------

TIMED = [
    ("eta only (Titans, no decay)", "", "external"),
    ("alpha+beta, no momentum", "ab", "external"),
    ("momentum+beta (no alpha)", "bm", "external"),
    ("alpha+beta+momentum", "abm", "external"),
    ("HOPE: alpha+beta, self target", "ab", "self"),
    ("eta+momentum (momentum delta rule)", "m", "external"),
    ("eta+alpha (decay, no beta)", "a", "external"),
]


def _fla_delta_rule():
    chunk_delta_rule = import_peer("fla.ops.delta_rule", "chunk_delta_rule", "fla")
    if chunk_delta_rule is None:
        return None
    return lambda q, k, v, eta: chunk_delta_rule(q, k, v, eta, scale=1.0, use_qk_l2norm_in_kernel=False)[0]


def _fla_momentum_delta_rule():
    """fla chunk_momentum_delta_rule with the same η and μ (no decay, β = 0), as in bench/."""
    try:
        from fla.ops.momentum_delta_rule import chunk_momentum_delta_rule
    except Exception as e:  # noqa: BLE001
        print(f"(fla momentum delta rule not importable: {type(e).__name__}: {e})")
        return None
    return lambda q, k, v, eta, mu: chunk_momentum_delta_rule(
        q, k, v, torch.zeros_like(eta), mu.clamp_min(1e-6).log(), eta=eta, scale=1.0,
        use_qk_l2norm_in_kernel=False, chunk_size=64)[0]


def _time_pair(f, leaves, do, args, label):
    """(forward ms, forward+backward ms, peak GiB, queued line) of ``f()`` with output gradient
    ``do``, each call synced; with ``--profile-host`` the host profile of the forward+backward
    calls follows, headed ``label``; with ``--queued`` the line gives the same calls launched back to back
    (device ms per call) and the host's ms per call ("" without)."""
    t = time_fwd_bwd(f, leaves, args.warmup, args.reps, do)
    if args.profile_host:
        host_profile(f"{label} fwd+bwd", lambda: torch.autograd.grad(f(), leaves, do), args.reps)
    if not args.queued:
        return t + ("",)
    q = queued_fwd_bwd(f, leaves, args.reps, do)
    return t + (f"{'  back to back':34s} {'':8s} {q[0]:9.3f} {q[1]:11.3f}   host ms per call: fwd {q[2]:.3f}, "
                f"fwd+bwd {q[3]:.3f}",)


def timing(args):
    B, T, H, K, V, C = args.B, args.T, args.H, 128, 128, args.C
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.timing_dtype]
    print(f"\n== timing: B{B} T{T} H{H} K=V={K} {args.timing_dtype} chunk {C}, median of {args.reps} after {args.warmup} "
          f"warm-up, {torch.cuda.get_device_name()}")
    print(f"{'case':34s} {'backend':8s} {'fwd ms':>9s} {'fwd+bwd ms':>11s} {'peak GiB':>9s} {'fwd/fla':>8s} {'f+b/fla':>8s}")
    rows = []
    do = torch.randn(B, T, H, V, device="cuda", dtype=dtype)
    fla = None
    fla_fn = _fla_delta_rule() if not args.no_fla else None
    if fla_fn is not None:
        x, _ = make(B, T, H, K, V, "", seed=1)
        x = {n: None if t is None else t.to(dtype).requires_grad_(True) for n, t in x.items()}
        try:
            t_f, t_fb, peak, qline = _time_pair(lambda: fla_fn(x["q"], x["k"], x["v"], x["eta"]),
                                                [x[n] for n in ("q", "k", "v", "eta")], do, args,
                                                "fla chunk_delta_rule")
            fla = (t_f, t_fb)
            print(f"{'fla chunk_delta_rule (beta = eta)':34s} {'fla':8s} {t_f:9.3f} {t_fb:11.3f} {peak:9.2f}")
            if qline:
                print(qline)
            rows.append(dict(case="fla chunk_delta_rule", backend="fla", fwd_ms=t_f, fwd_bwd_ms=t_fb, peak_gib=peak))
        except Exception as e:  # noqa: BLE001
            print(f"fla chunk_delta_rule ERROR {type(e).__name__}: {e}")
            traceback.print_exc()
    fla_mom = _fla_momentum_delta_rule() if C == 1 and not args.no_fla else None
    if fla_mom is not None:   # chunk_size 1 target: ≥ 100× faster than this peer
        x, _ = make(B, T, H, K, V, "m", seed=1)
        x = {n: None if t is None else t.to(dtype).requires_grad_(True) for n, t in x.items()}
        try:
            t_f, t_fb, peak, qline = _time_pair(lambda: fla_mom(x["q"], x["k"], x["v"], x["eta"], x["mu"]),
                                                [x[n] for n in ("q", "k", "v", "eta", "mu")], do, args,
                                                "fla chunk_momentum_delta_rule")
            print(f"{'fla chunk_momentum_delta_rule':34s} {'fla':8s} {t_f:9.3f} {t_fb:11.3f} {peak:9.2f}")
            if qline:
                print(qline)
            rows.append(dict(case="fla chunk_momentum_delta_rule", backend="fla", fwd_ms=t_f, fwd_bwd_ms=t_fb,
                             peak_gib=peak))
        except Exception as e:  # noqa: BLE001
            print(f"fla chunk_momentum_delta_rule ERROR {type(e).__name__}: {e}")
            traceback.print_exc()
    backends = args.backends.split(",") + (["torch"] if args.torch_baseline else [])
    chosen = [TIMED[int(i)] for i in args.timed.split(",")] if args.timed else TIMED
    for label, gates, target in chosen:
        x, _ = make(B, T, H, K, V, gates, seed=1)
        x = {n: None if t is None else t.to(dtype).requires_grad_(True) for n, t in x.items()}
        x["eta"] = (x["eta"] * 0.1).detach().requires_grad_(True)
        args_ = [x[n] for n in ("q", "k", "v", "eta", "log_alpha", "beta", "mu")]
        for backend in backends:
            try:
                f = lambda: linear_memory(*args_, chunk_size=C, target=target, backend=backend)[0]  # noqa: E731
                t_f, t_fb, peak, qline = _time_pair(f, [a for a in args_ if a is not None], do, args,
                                                    f"{label} ({backend})")
                ratio = f"{t_f / fla[0]:8.2f} {t_fb / fla[1]:8.2f}" if fla else ""
                print(f"{label:34s} {backend:8s} {t_f:9.3f} {t_fb:11.3f} {peak:9.2f} {ratio}")
                if qline:
                    print(qline)
                rows.append(dict(case=label, backend=backend, fwd_ms=t_f, fwd_bwd_ms=t_fb, peak_gib=peak,
                                 fwd_over_fla=fla and t_f / fla[0], fwd_bwd_over_fla=fla and t_fb / fla[1]))
            except Exception as e:  # noqa: BLE001
                print(f"{label:34s} {backend:8s} ERROR {type(e).__name__}: {e}")
                traceback.print_exc()
                rows.append(dict(case=label, backend=backend, error=f"{type(e).__name__}: {e}"))
    return rows


def kernels():
    """Registers, spills and shared memory of every compiled variant of the kernels (the split
    rows and epilogue kernels too, when NESTED_KERNELS_LM_TRITON_GRAD_SPLIT / _GRAD_ROWS / _NN_EPILOGUE
    ran them)."""
    from nested_kernels.ops.linear_memory import triton_bwd as tb, triton_bwd_plain as tp, triton_fwd as tf
    return kernel_info((tf._prep_kernel, tf._state_fwd_kernel, tf._out_kernel, tb._state_bwd_kernel, tb._grad_kernel,
                        tb._grad_rows_kernel, tb._grad_nn_kernel, tb._grad_epilogue_kernel, tb._grad_dk_kernel,
                        tp._plain_dv_kernel, tp._plain_dqk_kernel),
                       "name, regs, spills, shared bytes, constexprs", 17, 160, with_consts=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="two check cases, no timing")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--dtypes", default="bf16,fp16,fp32")
    ap.add_argument("--timing-dtype", default="bf16", choices=["bf16", "fp16"], help="input dtype of the timing")
    ap.add_argument("--ref", default="reference", choices=["reference", "torch"],
                    help="float64 witness: the token loop (default) or the chunked torch backend")
    ap.add_argument("--torch-baseline", action="store_true", help="also time the torch backend")
    ap.add_argument("--backends", default="triton",
                    help="comma-separated backends to time (e.g. triton,cuda: the cuda backend's CUDA walks)")
    ap.add_argument("--no-fla", action="store_true", help="skip the fla chunk_delta_rule peer")
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--H", type=int, default=16)
    ap.add_argument("--C", type=int, default=64, help="chunk size of the timing (1: the exact rule)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cases", default=None, help="comma-separated indices into CASES")
    ap.add_argument("--timed", default=None, help="comma-separated indices into TIMED (default all)")
    ap.add_argument("--queued", action="store_true",
                    help="also time every case with its calls back to back, and the host's time per call")
    ap.add_argument("--profile-host", action="store_true",
                    help="also print the cProfile of every timed case's forward+backward calls (host work)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA device")
        return 2
    import triton
    print(f"torch {torch.__version__}, triton {triton.__version__}, {torch.cuda.get_device_name()}; "
          f"precision env {os.environ.get('NESTED_KERNELS_LM_TRITON_PRECISION', 'default')}, "
          f"BV env {os.environ.get('NESTED_KERNELS_LM_TRITON_BV', 'default')}, "
          f"grad split env {os.environ.get('NESTED_KERNELS_LM_TRITON_GRAD_SPLIT', 'default')}")
    result = dict(device=torch.cuda.get_device_name())
    failures = 0
    if not args.no_check:
        failures, result["checks"] = checks(args)
    if not (args.quick or args.no_timing):
        result["timing"] = timing(args)
    result["kernels"] = kernels()
    if args.json:
        write_json(args.json, result)
    print(f"\n{failures} check(s) failed" if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
