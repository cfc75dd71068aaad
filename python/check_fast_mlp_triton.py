"""GPU check of the ``triton`` backend of ``fast_mlp`` (needs CUDA; run on the GPU machine).

1. Correctness at D = 512 / 1024 (F = 4D, swiglu F = 8D/3 rounded to 64), T ≈ 300 with partial
   chunks, one piece per sequence (chunk ≥ T), packed sequences, a resumed state with a pending
   update, bf16 and fp32, every mlp, target and teach, against the float64 chunked torch backend (equal to the token-loop
   reference to 1e-10, tests/ops/test_fast_mlp.py) on the same rounded inputs: y, the final state
   and the gradients of a random functional of all of them w.r.t. every floating-point input.
   SPEC §7 bounds: 2e-3 (fp32), 2e-2 (bf16). Kernel outputs are NaN-poisoned.
2. Timing (CUDA events, median of repeats after warm-up), issue 5 shapes: B4 T4096 D2048 bf16,
   gelu F8192 and swiglu F5504, chunk 64 / 512 / 1024, forward and forward+backward (grads of x
   and the weights), beside the static MLP (cuBLAS, same weights, never updated) in the same run;
   a 3-level CMS (64/512/4096, gelu F8192) beside 3 chained static MLPs; ratios to the targets
   (C1024 ≤ 3.0×, C512 ≤ 3.5×, C64 ≤ 6× the static fwd+bwd; CMS ≤ 4×).
   Without the NaN poisoning of the checks (it adds a write pass over every new tensor).
3. D4096 F14336 swiglu B1 T8192 (a Llama-3-8B MLP as a CMS level): forward+backward at chunk
   512 and 64 with peak memory (chunk 64 exercises the checkpointed backward).

    python python/check_fast_mlp_triton.py                  # everything (~5 min on an H100)
    python python/check_fast_mlp_triton.py --no-check       # timing only
    python python/check_fast_mlp_triton.py --no-time        # checks only
    python python/check_fast_mlp_triton.py --json $OUT/fast_mlp_triton.json
    python python/check_fast_mlp_triton.py --no-check --chunks 128,256 --no-cms --no-big
    python python/check_fast_mlp_triton.py --no-check --queued   # + device and host ms per call
                                                                  #   launched back to back

NESTED_KERNELS_FAST_MLP_FORM=dual (or materialized) checks and times one form of the backend
everywhere it applies (docs/fast_mlp.md §1).

Every case runs in its own try/except; exit status 1 when any check fails or raises.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

os.environ.setdefault("NESTED_KERNELS_POISON", "1")

import torch  # noqa: E402
import torch.nn.functional as Fn  # noqa: E402

from nested_kernels.ops.fast_mlp import FastMLPState, fast_mlp  # noqa: E402
from nested_kernels.ops.fast_mlp.mlp import weight_shapes  # noqa: E402
from nested_kernels.testing import rel_error  # noqa: E402
from gpu_check_utils import TOL, cuda_time, queued_time, write_json  # noqa: E402

F64 = torch.float64
ROWS = []
QUEUED = []     # [True] with --queued


def hidden(D, mlp):
    return 64 * -(-8 * D // 3 // 64) if mlp == "swiglu" else 4 * D


# -- 1. correctness ---------------------------------------------------------------------------

def make(B, T, D, F, mlp, *, N=None, resume=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    shapes = weight_shapes(mlp, D, F)
    # η ∈ [0, 0.5/F): with 0.5/D (F = 4D) gelu's inner descent diverges (the weights grow 20× in
    # 4 chunks; varlen: 1e9×) and a 2^-9 input perturbation moves the float64 result by 5e-2–0.3,
    # so no bf16 computation can meet 2e-2 there (docs/fast_mlp.md §5).
    x = dict(x=rn(B, T, D), eta=0.5 / F * torch.rand(B, T, generator=g, dtype=F64), signal=rn(B, T, D),
             weights=[rn(*s) / s[1] ** 0.5 for s in shapes])
    st = None
    if resume is not None:
        N = B if N is None else N
        st = dict(w=[rn(N, *s) / s[1] ** 0.5 for s in shapes],
                  u=[0.01 * rn(N, *s) / s[1] ** 0.5 for s in shapes],
                  position=torch.tensor(resume, dtype=torch.int64))
    return x, st


def run(backend, x, st, dtype, *, C, mode, mlp, **kw):
    ref = backend == "torch"
    cast = lambda t: (t.to(dtype).to(F64) if ref else t.to(dtype)).cuda().requires_grad_(True)  # noqa: E731
    xs, sig, eta = cast(x["x"]), cast(x["signal"]), cast(x["eta"])
    ws = [cast(w) for w in x["weights"]]
    leaves = [xs, sig, eta]
    init = None
    if st is None:
        leaves += ws
    else:
        sdt = F64 if ref else torch.float32
        sw = [w.to(sdt).cuda().requires_grad_(True) for w in st["w"]]
        su = [u.to(sdt).cuda().requires_grad_(True) for u in st["u"]]
        leaves += sw + su
        pad = lambda ts: list(ts) + [None] * (3 - len(ts))  # noqa: E731
        init = FastMLPState(*pad(sw), *pad(su), st["position"].cuda(), C)
    y, fs = fast_mlp(xs, tuple(ws), eta, chunk_size=C, mlp=mlp, initial_state=init, output_final_state=True,
                     backend=backend, **{mode: sig}, **kw)
    outs = [y] + [t for t in fs.tensors().values() if t is not None and t.is_floating_point()]
    gen = torch.Generator().manual_seed(1)
    loss = sum((o.double() * torch.randn(o.shape, generator=gen, dtype=F64).cuda()).sum() for o in outs)
    grads = torch.autograd.grad(loss, leaves)
    return outs, grads


def check_case(label, dtype, x, st, **kw):
    got = run("triton", x, st, dtype, **kw)
    ref = run("torch", x, st, dtype, **kw)
    worst, what = 0.0, ""
    for kind, a_list, b_list in (("out", got[0], ref[0]), ("grad", got[1], ref[1])):
        for i, (a, b) in enumerate(zip(a_list, b_list)):
            err = rel_error(a, b)
            if err > worst:
                worst, what = err, f"{kind}{i}"
    ok = worst <= TOL[dtype]
    print(f"  {'PASS' if ok else 'FAIL'}  {label:58s} {str(dtype)[6:]:8s} worst {worst:.2e} ({what})", flush=True)
    ROWS.append(dict(kind="check", case=label, dtype=str(dtype), worst=worst, where=what, ok=ok))
    return ok


def checks() -> bool:
    print("== correctness vs float64 (torch backend) ==", flush=True)
    ok = True
    cases = []
    for D in (512, 1024):
        for mlp in ("gelu", "silu", "swiglu"):
            if D == 1024 and mlp == "silu":
                continue
            F = hidden(D, mlp)
            cases.append((f"B2 T301 D{D} F{F} {mlp} C64 target ret0.9", dict(B=2, T=301, D=D, F=F, mlp=mlp),
                          dict(C=64, mode="target", retention=0.9)))
    cases.append(("B2 T300 D512 F2048 gelu C16 teach nores", dict(B=2, T=300, D=512, F=2048, mlp="gelu"),
                  dict(C=16, mode="teach", residual=False)))
    cases.append(("B2 T260 D512 F1408 swiglu C128 resumed (5, 70) pending",
                  dict(B=2, T=260, D=512, F=1408, mlp="swiglu", resume=[5, 70]), dict(C=128, mode="target")))
    for label, dims, kw in cases:
        resume = dims.pop("resume", None)
        mlp = dims.pop("mlp")
        x, st = make(**dims, mlp=mlp, resume=resume)
        for dtype in (torch.bfloat16, torch.float32):
            try:
                ok &= check_case(label, dtype, x, st, mlp=mlp, **kw)
            except Exception:
                traceback.print_exc()
                ok = False
    try:   # one piece per sequence (chunk ≥ T), shared initial weights: their gradient is a sum over all tokens
        x, _ = make(2, 301, 512, 2048, "gelu", seed=4)
        for dtype in (torch.bfloat16, torch.float32):
            ok &= check_case("B2 T301 D512 F2048 gelu C512 one piece", dtype, x, None, C=512, mode="target",
                             mlp="gelu", retention=0.9)
    except Exception:
        traceback.print_exc()
        ok = False
    try:   # packed sequences
        x, _ = make(1, 700, 512, 2048, "gelu", seed=3)
        cu = torch.tensor([0, 100, 100, 357, 700], dtype=torch.int32).cuda()
        for dtype in (torch.bfloat16, torch.float32):
            ok &= check_case("varlen N4 [100,0,257,343] D512 F2048 gelu C64", dtype, x, None, C=64, mode="target",
                             mlp="gelu", cu_seqlens=cu)
    except Exception:
        traceback.print_exc()
        ok = False
    return ok


# -- 2. timing --------------------------------------------------------------------------------

def static_mlp(x, ws, mlp):
    if mlp == "swiglu":
        y = Fn.linear(Fn.silu(Fn.linear(x, ws[0])) * Fn.linear(x, ws[1]), ws[2])
    else:
        y = Fn.linear((Fn.gelu if mlp == "gelu" else Fn.silu)(Fn.linear(x, ws[0])), ws[1])
    return x + y


def fwd_and_train(call, leaves, gy, reps):
    def fwd():
        with torch.no_grad():
            call()

    def train():
        y = call()
        torch.autograd.backward(y, gy, inputs=leaves)
    t_fwd = cuda_time(fwd, 2, reps)
    before = _allocator_counts()
    t_train = cuda_time(train, 2, reps)
    churn = {k: v - before[k] for k, v in _allocator_counts().items() if v != before[k]}
    if churn:       # device mallocs/frees inside the timed loop: the caching allocator is thrashing
        print(f"    (allocator during fwd+bwd warm-up and timing: {churn})", flush=True)
    if QUEUED:      # host ms per call ≥ device ms: the host sets the pace even when queued ahead
        dev, host = queued_time(train, reps)
        print(f"    (fwd+bwd queued back to back: device {dev:.2f} ms, host {host:.2f} ms per call)", flush=True)
    return t_fwd, t_train


def _allocator_counts() -> dict:
    st = torch.cuda.memory_stats()
    return {k: st.get(k, 0) for k in ("num_device_alloc", "num_device_free", "num_alloc_retries")}


def record(label, fwd, train, base=None, target=None):
    extra = ""
    if base is not None:
        r = train / base[1]
        extra = f"   ratio fwd {fwd / base[0]:5.2f}x  fwd+bwd {r:5.2f}x" + (
            f"  (target <= {target}x: {'MET' if r <= target else 'not met'})" if target else "")
    print(f"  {label:46s} fwd {fwd:8.2f} ms   fwd+bwd {train:8.2f} ms{extra}", flush=True)
    ROWS.append(dict(kind="time", case=label, fwd_ms=fwd, fwd_bwd_ms=train,
                     ratio_fwd=None if base is None else fwd / base[0],
                     ratio_fwd_bwd=None if base is None else train / base[1], target=target))


def timing(chunks=(1024, 512, 64), cms=True, big=True):
    os.environ.pop("NESTED_KERNELS_POISON", None)      # the checks poison outputs; timings must not pay for it
    form = os.environ.get("NESTED_KERNELS_FAST_MLP_FORM", "auto")
    print(f"== timing on {torch.cuda.get_device_name()} (bf16, B4 T4096 D2048, form {form}) ==", flush=True)
    B, T, D = 4, 4096, 2048
    dt = torch.bfloat16
    targets = {1024: 3.0, 512: 3.5, 64: 6.0}
    for mlp, F in (("gelu", 8192), ("swiglu", 5504)):
        torch.manual_seed(0)
        x = torch.randn(B, T, D, device="cuda", dtype=dt, requires_grad=True)
        ws = [(torch.randn(*s, device="cuda", dtype=dt) / s[1] ** 0.5).requires_grad_(True)
              for s in weight_shapes(mlp, D, F)]
        target = torch.randn(B, T, D, device="cuda", dtype=dt)
        eta = torch.full((B, T), 1e-3 / D, device="cuda", dtype=dt)
        gy = torch.randn(B, T, D, device="cuda", dtype=dt)
        base = fwd_and_train(lambda: static_mlp(x, ws, mlp), [x, *ws], gy, reps=10)
        record(f"static MLP {mlp} F{F}", *base)
        for C in chunks:
            try:
                res = fwd_and_train(lambda: fast_mlp(x, ws, eta, chunk_size=C, target=target, mlp=mlp,
                                                     backend="triton")[0], [x, *ws], gy, reps=3)
                record(f"triton {mlp} F{F} C{C}", *res, base, targets.get(C))
            except Exception:
                traceback.print_exc()
        torch.cuda.empty_cache()
    if cms:
        cms_timing(B, T, D, 8192)
    if big:
        big_case()


def cms_timing(B, T, D, F):
    from nested_kernels.modules.cms import CMS
    torch.manual_seed(0)
    dt = torch.bfloat16
    levels = (64, 512, 4096)
    cms = CMS(D, F, levels=[(c, 1e-3) for c in levels], mlp="gelu", backend="triton", device="cuda", dtype=dt)
    params = list(cms.parameters())
    x = torch.randn(B, T, D, device="cuda", dtype=dt, requires_grad=True)
    gy = torch.randn(B, T, D, device="cuda", dtype=dt)

    def chain():
        y = x
        for level in cms.levels:
            y = static_mlp(y, level.weights, "gelu")
        return y
    base = fwd_and_train(chain, [x, *params], gy, reps=10)
    record("3 static MLPs gelu F8192", *base)
    for final, label in ((True, ""), (False, ", no state")):   # no state: each level's last update skipped
        try:
            res = fwd_and_train(lambda: cms(x, output_final_state=final)[0], [x, *params], gy, reps=3)
            record(f"triton CMS 64/512/4096{label}", *res, base, 4.0)
        except Exception:
            traceback.print_exc()
    torch.cuda.empty_cache()


def big_case():
    print("== D4096 F14336 swiglu B1 T8192 bf16 (Llama-3-8B MLP as a level) ==", flush=True)
    D, F, T = 4096, 14336, 8192
    dt = torch.bfloat16
    torch.manual_seed(0)
    x = torch.randn(1, T, D, device="cuda", dtype=dt, requires_grad=True)
    ws = [(torch.randn(*s, device="cuda", dtype=dt) / s[1] ** 0.5).requires_grad_(True)
          for s in weight_shapes("swiglu", D, F)]
    target = torch.randn(1, T, D, device="cuda", dtype=dt)
    gy = torch.randn(1, T, D, device="cuda", dtype=dt)
    for C in (512, 64):
        try:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            ms = cuda_time(lambda: torch.autograd.backward(
                fast_mlp(x, ws, 1e-4 / D, chunk_size=C, target=target, mlp="swiglu", backend="triton")[0],
                gy, inputs=[x, *ws]), 1, 1)
            peak = torch.cuda.max_memory_allocated() / 2 ** 30
            print(f"  C{C}: fwd+bwd {ms:8.1f} ms, peak memory {peak:.1f} GiB", flush=True)
            ROWS.append(dict(kind="big", case=f"D4096 F14336 swiglu B1 T8192 C{C}", fwd_bwd_ms=ms, peak_gib=peak))
        except Exception:
            traceback.print_exc()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--no-time", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--chunks", default="1024,512,64", help="chunk sizes timed at B4 T4096 D2048")
    ap.add_argument("--no-cms", action="store_true")
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--queued", action="store_true", help="also fwd+bwd calls launched back to back "
                    "(gpu_check_utils.queued_time): device and host ms per call")
    args = ap.parse_args()
    QUEUED[:] = [True] if args.queued else []
    ok = True
    if not args.no_check:
        ok = checks()
    if not args.no_time:
        timing(tuple(int(c) for c in args.chunks.split(",")), not args.no_cms, not args.no_big)
    if args.json:
        write_json(args.json, dict(device=torch.cuda.get_device_name(), torch=torch.__version__, rows=ROWS), None)
    print("checks:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
