"""GPU check of the Triton backend of ``mlp_memory`` (needs CUDA; run on the GPU machine).

1. Correctness: realistic shapes (T ≈ 600–1500, odd and packed lengths, resumed states, K ∈ {32,
   64, 128}, F ∈ {K, 2K, 4K}, chunk sizes 16…128, both targets, every read, gelu and silu, gate
   sets) in bfloat16, float16 and float32 against the float64 reference (token loop, or the
   chunked torch backend with --ref torch) evaluated on the same rounded inputs: outputs, final
   states and the gradients of a random functional of all of them with respect to every
   floating-point input. SPEC §7 bounds: 2e-3 (float32), 2e-2 (bf16/fp16). Kernel outputs are
   NaN-poisoned (NESTED_KERNELS_POISON=1).
2. Timing (CUDA events, median after warm-up), issue shape B4 T4096 H8 K=V=64 F=256 bf16 chunk 64,
   read "chunk", target "self", β = η, α and μ on: forward and forward+backward of the triton and
   torch backends (triton also without the prep kernel, NESTED_KERNELS_MLP_TRITON_PREP=0, with fp16
   operands and with one program per head) and titans-pytorch ``NeuralMemory`` (depth 2, expansion 4, 8 heads × 64, chunk
   64, fp32, its own semantics) when importable, with the roofline floor of bench/roofline.py;
   then K=V=128, F=512 (throughput in tokens/s).

    python python/check_mlp_memory_triton.py                    # checks + timing (~3–6 min)
    python python/check_mlp_memory_triton.py --quick            # two check cases, bf16 only, no timing
    python python/check_mlp_memory_triton.py --no-check --json $OUT/mlp_triton.json

Each case runs in its own try/except: a failure prints its traceback and the script goes on.
Exit status 1 when any check fails or raises.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

os.environ.setdefault("NESTED_KERNELS_POISON", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench.roofline

import torch  # noqa: E402
import torch.nn.functional as Fn  # noqa: E402

from nested_kernels.ops.mlp_memory import MLPMemoryState, mlp_memory  # noqa: E402
from nested_kernels.testing import rel_error  # noqa: E402
from gpu_check_utils import TOL, import_peer, kernel_info, run_checks, time_fwd_bwd, write_json  # noqa: E402

F64 = torch.float64
ARGS = ("q", "k", "v", "eta", "w1", "w2", "log_alpha", "beta", "mu")
FIELDS = ("W1", "W2", "S1", "S2", "W1_chunk", "W2_chunk")


def make(B, T, H, K, V, F, gates, *, N=None, init=False, resume=None, beta_eta=False, seed=0, device="cuda",
         eta_max=0.1):
    """Inputs in the SPEC §7 range (‖k‖ = 1; unit-norm v for self targets; η = eta_max·U; α ∈ [0.9, 1];
    β ≤ 0.1 or β = η; μ ∈ [0, 0.9)) and optionally an initial state / a resumed state. Without α
    the cases take smaller steps: with η up to 0.1 they ran away (|o| to 1e20, then NaN in float64;
    tests/test_check_programs.py keeps every case bounded)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    ru = lambda *s: torch.rand(*s, generator=g, dtype=F64)  # noqa: E731
    N = B if N is None else N
    eta = eta_max * ru(B, T, H)
    x = dict(q=rn(B, T, H, K), k=Fn.normalize(rn(B, T, H, K), dim=-1),
             v=Fn.normalize(rn(B, T, H, K), dim=-1) if "self" in gates else rn(B, T, H, V), eta=eta,
             w1=rn(H, V, F) / F ** 0.5, w2=4 * rn(H, F, K) / K ** 0.5,
             log_alpha=(0.9 + 0.1 * ru(B, T, H)).log() if "a" in gates else None,
             beta=(eta.clone() if beta_eta else 0.1 * ru(B, T, H)) if "b" in gates else None,
             mu=0.9 * ru(B, T, H) if "m" in gates else None)
    st = {}
    if init or resume is not None:
        st = dict(W1=rn(N, H, V, F) / F ** 0.5, W2=4 * rn(N, H, F, K) / K ** 0.5)
        if "m" in gates:
            st.update(S1=0.1 * rn(N, H, V, F) / F ** 0.5, S2=0.1 * rn(N, H, F, K) / K ** 0.5)
    if resume is not None:
        st.update(W1_chunk=rn(N, H, V, F) / F ** 0.5, W2_chunk=4 * rn(N, H, F, K) / K ** 0.5,
                  position=torch.tensor(resume, dtype=torch.int64))
    mv = lambda d: {n: None if t is None else t.to(device) for n, t in d.items()}  # noqa: E731
    return mv(x), mv(st)


def run(backend, x, st, dtype, cfg, cu=None):
    """(outputs, grads) of a fixed random functional of o and the final state. The float64 run
    sees the inputs rounded to ``dtype``."""
    ref = backend != "triton"
    leaves = {n: (t.to(dtype).to(F64) if ref else t.to(dtype)).requires_grad_(True)
              for n, t in x.items() if t is not None}
    sl = {n: t.to(F64 if ref else torch.float32).requires_grad_(True) for n, t in st.items() if n != "position"}
    init = None
    if "position" in st:
        init = MLPMemoryState(sl["W1"], sl["W2"], sl.get("S1"), sl.get("S2"), sl["W1_chunk"], sl["W2_chunk"],
                              st["position"], cfg["chunk_size"])
    elif sl:
        init = (sl["W1"], sl["W2"], sl.get("S1"), sl.get("S2"))
    leaves.update({n + "0": t for n, t in sl.items()})
    o, fs = mlp_memory(*[leaves.get(n) for n in ARGS], initial_state=init, output_final_state=True,
                       backend=backend, cu_seqlens=cu, **cfg)
    outs = dict(o=o, **{n: getattr(fs, n) for n in FIELDS if getattr(fs, n) is not None})
    g = torch.Generator(device=o.device).manual_seed(123)
    loss = sum((t.double() * torch.randn(t.shape, generator=g, dtype=F64, device=o.device)).sum()
               for t in outs.values())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    outs["position"] = fs.position
    return outs, dict(zip(leaves, grads))


# name, (B, T, H, K, V, F), gates, cfg, extra
CASES = [
    ("issue: self chunk, beta=eta, abm, C64 K64 F256", (2, 1000, 2, 64, 64, 256), "abm self",
     dict(chunk_size=64, target="self", read="chunk"), dict(beta_eta=True, init=True)),
    ("ext after gelu ab C64 K=V=128 F512", (1, 600, 2, 128, 128, 512), "ab",
     dict(chunk_size=64, target="external", read="after"), {}),
    ("varlen+resume before silu abm C32 K64 F128", (1, 1517, 2, 64, 64, 128), "abm",
     dict(chunk_size=32, target="external", read="before", activation="silu", scale=0.125),
     dict(cu=[0, 1, 333, 333, 1000, 1517], resume=[3, 31, 0, 10, 0])),
    ("self after silu am C128 K64 F64 init", (2, 999, 2, 64, 64, 64), "am self",
     dict(chunk_size=128, target="self", read="after", activation="silu"), dict(init=True)),
    ("no residual K32 V64 F128 C16 m, after", (2, 1000, 3, 32, 64, 128), "m",
     dict(chunk_size=16, target="external", read="after", residual=False), dict(eta_max=0.03)),
    ("eta only, before, C64 K128 F256", (2, 777, 2, 128, 128, 256), "",
     dict(chunk_size=64, target="external", read="before"), dict(eta_max=0.03)),
]
QUICK = [0, 2]


def case_inputs(shape, gates, extra, device="cuda"):
    """(inputs, initial state) of a CASES entry."""
    B, T, H, K, V, F = shape
    cu = extra.get("cu")
    return make(B, T, H, K, V, F, gates, N=B if cu is None else len(cu) - 1, init=extra.get("init", False),
                resume=extra.get("resume"), beta_eta=extra.get("beta_eta", False),
                eta_max=extra.get("eta_max", 0.1), device=device)


def check_case(shape, gates, cfg, extra, dtype, ref_backend):
    cu = extra.get("cu")
    x, st = case_inputs(shape, gates, extra)
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32, device="cuda")
    t0 = time.perf_counter()
    got, dgot = run("triton", x, st, dtype, dict(cfg), cu_t)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    ref, dref = run(ref_backend, x, st, dtype, dict(cfg), cu_t)
    pos_ok = torch.equal(got.pop("position").cpu(), ref.pop("position").cpu())
    errs = {n: rel_error(got[n], ref[n]) for n in ref}
    errs.update({"d" + n: rel_error(dgot[n], dref[n]) for n in dref})
    worst = max(errs, key=lambda n: errs[n])
    ok = pos_ok and all(e <= TOL[dtype] for e in errs.values())
    return ok, errs, worst, pos_ok, t1 - t0


def checks(args):
    return run_checks(args, CASES, QUICK, lambda case, dtype: check_case(*case[1:], dtype, args.ref),
                      empty_cache=True)


# -- timing ----------------------------------------------------------------------------------------

def time_pair(f, leaves, args):
    """(forward ms, forward+backward ms, peak GiB) of ``f()`` (one output tensor)."""
    return time_fwd_bwd(f, leaves, args.warmup, args.reps, allow_unused=True)   # titans: not every parameter is used


def _floor(B, T, H, K, F, C):
    try:
        from bench import roofline
    except Exception as e:  # noqa: BLE001
        print(f"(bench.roofline not importable: {e})")
        return None
    c = roofline.mlp_memory(B, T, H, K, K, F, C, ("log_alpha", "beta", "mu"), target="self", read="chunk")
    return c.floor_ms("fwd"), c.floor_ms("fwd+bwd")


def _titans(B, T, H, K, F, C):
    NeuralMemory = import_peer("titans_pytorch", "NeuralMemory", "titans-pytorch")
    if NeuralMemory is None:
        return None
    torch.manual_seed(0)
    mem = NeuralMemory(dim=H * K, chunk_size=C, heads=H, dim_head=K,
                       default_model_kwargs=dict(depth=2, expansion_factor=F / K)).cuda().float()
    x = torch.randn(B, T, H * K, device="cuda").requires_grad_(True)
    return (lambda: mem(x)[0]), [x, *mem.parameters()]


DEFAULT_VARIANTS = "no prep kernel:PREP=0;fp16 operands:PRECISION=fp16;1 program/head:SPLIT=1"


def variants(spec):
    """[(name, environment)] from "name:KNOB=v,KNOB=v;name:…" (KNOB = the part of a
    NESTED_KERNELS_MLP_TRITON_* variable after that prefix)."""
    out = []
    for item in filter(None, spec.split(";")):
        name, _, knobs = item.partition(":")
        env = dict(kv.split("=", 1) for kv in filter(None, knobs.split(",")))
        out.append((name, {"NESTED_KERNELS_MLP_TRITON_" + k: v for k, v in env.items()}))
    return out


def timing(args):
    rows = []
    shapes = ([] if args.only_large else [(args.B, args.T, args.H, 64, 256, 64)]) + \
        ([] if args.no_large else [(args.B, args.T, 4, 128, 512, 64)])
    backends = ["triton"] + (["cuda"] if args.cuda else []) + (["torch"] if not args.no_torch else [])
    for B, T, H, K, F, C in shapes:
        dtype = torch.bfloat16
        floor = _floor(B, T, H, K, F, C)
        print(f"\n== timing: B{B} T{T} H{H} K=V={K} F={F} bf16 chunk {C}, read chunk, self target, beta = eta, "
              f"alpha + mu; median of {args.reps} after {args.warmup} warm-up, {torch.cuda.get_device_name()}")
        if floor:
            print(f"roofline floor (bench/roofline.py): fwd {floor[0]:.3f} ms, fwd+bwd {floor[1]:.3f} ms")
        print(f"{'impl':30s} {'fwd ms':>9s} {'f+b ms':>9s} {'peak GiB':>9s} {'f+b/floor':>9s} {'Mtok/s f+b':>10s}")
        x, _ = make(B, T, H, K, K, F, "abm self", beta_eta=True, seed=1)
        x = {n: None if t is None else t.to(dtype) for n, t in x.items()}
        x["beta"] = x["eta"]
        leaves = [x[n].requires_grad_(True) for n in ("q", "k", "v", "eta", "w1", "w2", "log_alpha", "mu")]
        results = {}
        run_b = lambda b: (lambda: mlp_memory(*[x[n] for n in ARGS], chunk_size=C, target="self",  # noqa: E731
                                              read="chunk", backend=b)[0])
        impls = [(b, run_b(b), leaves, {}) for b in backends]
        # variants of the triton backend (environment knobs, read at each call)
        impls[1:1] = [("triton " + name, run_b("triton"), leaves, env) for name, env in variants(args.variants)]
        if K == 64 and not args.no_titans:
            tt = _titans(B, T, H, K, F, C)
            if tt is not None:
                impls.append(("titans NeuralMemory d2 (fp32)", tt[0], tt[1], {}))
        for name, f, lv, env in impls:
            old_env = {n: os.environ.get(n) for n in env}
            os.environ.update(env)
            try:
                t_f, t_fb, peak = time_pair(f, lv, args)
                results[name] = (t_f, t_fb)
                ratio = f"{t_fb / floor[1]:9.2f}" if floor else ""
                print(f"{name:30s} {t_f:9.3f} {t_fb:9.3f} {peak:9.2f} {ratio} {B * T / t_fb / 1e3:10.2f}")
                rows.append(dict(shape=(B, T, H, K, F, C), impl=name, fwd_ms=t_f, fwd_bwd_ms=t_fb, peak_gib=peak,
                                 floor_ms=floor))
            except Exception as e:  # noqa: BLE001
                print(f"{name:30s} ERROR {type(e).__name__}: {e}")
                traceback.print_exc()
                rows.append(dict(shape=(B, T, H, K, F, C), impl=name, error=f"{type(e).__name__}: {e}"))
            finally:
                for n, v in old_env.items():
                    if v is None:
                        del os.environ[n]
                    else:
                        os.environ[n] = v
            torch.cuda.empty_cache()
        tri = results.get("triton")
        for name, (t_f, t_fb) in results.items():
            if tri and name != "triton":
                print(f"speed-up of triton over {name}: fwd {t_f / tri[0]:.1f}x, fwd+bwd {t_fb / tri[1]:.1f}x")
        if "cuda" in results and tri:
            worst = agreement(run_b("cuda"), run_b("triton"), leaves)
            print(f"cuda against triton on these inputs (output and gradients, tf32 products both): worst "
                  f"{worst[1]:.2e} ({worst[0]}; limit 1e-2)")
            rows.append(dict(shape=(B, T, H, K, F, C), impl="cuda vs triton", worst=worst))
    return rows


def agreement(f, g, leaves) -> tuple:
    """(name, relative error) of the worst-agreeing of the output and the gradients of a fixed random
    projection of it between ``f()`` and ``g()``."""
    res = []
    for fn in (f, g):
        o = fn()
        r = torch.randn(o.shape, generator=torch.Generator(device=o.device).manual_seed(7), device=o.device)
        grads = torch.autograd.grad((o.float() * r).sum(), leaves, allow_unused=True)
        res.append([("o", o)] + [(f"d{i}", d) for i, d in enumerate(grads) if d is not None])
    errs = [(n, rel_error(a, b)) for (n, a), (_, b) in zip(*res)]
    return max(errs, key=lambda e: e[1])


def kernels():
    """Registers, spills and shared memory of every compiled variant of the three kernels."""
    from nested_kernels.ops.mlp_memory import triton_bwd as tb, triton_fwd as tf, triton_prep as tp
    return kernel_info((tp._prep_kernel, tf._fwd_kernel, tb._bwd_kernel), "name, regs, spills, shared bytes, warps",
                       12, 140)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="two check cases in bf16, no timing")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--dtypes", default=None, help="default bf16,fp16,fp32 (bf16 with --quick)")
    ap.add_argument("--ref", default="reference", choices=["reference", "torch"],
                    help="float64 witness: the token loop (default) or the chunked torch backend")
    ap.add_argument("--no-torch", action="store_true", help="do not time the torch backend")
    ap.add_argument("--no-titans", action="store_true")
    ap.add_argument("--cuda", action="store_true",
                    help="also time the cuda backend (the CUDA forward walk) and compare it with triton there")
    ap.add_argument("--no-large", action="store_true", help="skip the K=V=128, F=512 timing")
    ap.add_argument("--only-large", action="store_true", help="time only K=V=128, F=512 (H4)")
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS,
                    help='triton variants timed beside the default: "name:KNOB=v,KNOB=v;…" '
                         '(KNOB = NESTED_KERNELS_MLP_TRITON_<KNOB>; "" for none)')
    ap.add_argument("--cases", default=None, help="comma-separated indices into CASES")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.dtypes is None:
        args.dtypes = "bf16" if args.quick else "bf16,fp16,fp32"
    if not torch.cuda.is_available():
        print("needs a CUDA device")
        return 2
    import triton
    knobs = {k: v for k, v in os.environ.items() if k.startswith("NESTED_KERNELS_MLP_TRITON")}
    print(f"torch {torch.__version__}, triton {triton.__version__}, {torch.cuda.get_device_name()}; knobs {knobs}")
    result = dict(device=torch.cuda.get_device_name(), knobs=knobs)
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
