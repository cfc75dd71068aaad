"""2026-12-06g: two diagnostics of mlp_memory's CUDA forward walk (run by 2026-12-06g_call1.sh).

``k32``: the K = V = 32, chunk 64 cases the backend refuses since 2026-12-06f's failure, run with the
refusal lifted: relative error of every output and gradient of the cuda and of the triton backend
against the float64 reference, per gate set / target / read, to tell the walk's fault from the
backward's. ``profile``: the forward at issue 4's shape (B4 T4096 H8 K=V=64 F256 C64, self target,
read chunk, β = η, α + μ, bf16) twice, for ncu to catch the second walk launch. ``k32_knobs``
(2026-12-06g call 2): the first failing case on the triton backend under knob variants.
"""
import dataclasses
import sys

import torch

sys.path.insert(0, "tests/ops")
sys.path.insert(0, "python")
from nested_kernels.ops.mlp_memory import api, cuda_walk  # noqa: E402
from nested_kernels.testing import rel_error  # noqa: E402


def k32():
    from test_mlp_memory_triton import make, run
    refuse = cuda_walk.unsupported
    lifted = lambda i, c: None if "K=32 with chunk_size=64" in (refuse(i, c) or "") else refuse(i, c)  # noqa: E731
    api.BACKENDS["cuda"] = dataclasses.replace(api.BACKENDS["cuda"], unsupported=lifted)
    cases = [("bm", "self", "after", 256), ("bm", "self", "after", 64), ("", "external", "chunk", 256),
             ("m", "self", "chunk", 128), ("b", "self", "chunk", 128), ("bm", "external", "before", 128)]
    for gates, target, read, F in cases:
        x, st = make(B=2, T=192, H=2, K=32, V=32, F=F, gates=gates, init=True, seed=21)
        kw = dict(chunk_size=64, target=target, read=read, activation="gelu")
        ref, dref = run("reference", x, st, torch.bfloat16, **kw)
        for b in ("triton", "cuda"):
            try:
                got, dgot = run(b, x, st, torch.bfloat16, **kw)
                errs = {n: rel_error(got[n].double().cpu(), ref[n].double()) for n in ref if n != "position"}
                errs.update({"d" + n: rel_error(dgot[n].double().cpu(), dref[n].double()) for n in dref})
                worst = max(errs, key=errs.get)
                print(f"{gates or '-':3s} {target:8s} {read:6s} F{F:<4d} {b:7s} worst {worst} {errs[worst]:.2e} | "
                      + " ".join(f"{n} {e:.1e}" for n, e in errs.items()), flush=True)
            except Exception as e:  # noqa: BLE001
                print(f"{gates} {target} {read} F{F} {b}: {type(e).__name__}: {e}", flush=True)


def k32_knobs():
    """The first failing K32 case on the triton backend under knob variants: which part fails."""
    import os
    from test_mlp_memory_triton import make, run
    x, st = make(B=2, T=192, H=2, K=32, V=32, F=64, gates="bm", init=True, seed=21)
    kw = dict(chunk_size=64, target="self", read="after", activation="gelu")
    ref, dref = run("reference", x, st, torch.bfloat16, **kw)
    variants = [("default", {}), ("F split off", {"NESTED_KERNELS_MLP_TRITON_SPLIT": "1"}),
                ("eager VJP", {"NESTED_KERNELS_MLP_TRITON_TOKENS_COMPILE": "0"}),
                ("PARTs 2+3", {"NESTED_KERNELS_MLP_TRITON_TOKENS": "triton"}),
                ("ieee", {"NESTED_KERNELS_MLP_TRITON_PRECISION": "ieee"}),
                ("one walk", {"NESTED_KERNELS_MLP_TRITON_BWD_SPLIT": "0"})]
    for name, env in variants:
        os.environ.update(env)
        try:
            got, dgot = run("triton", x, st, torch.bfloat16, **kw)
            errs = {"d" + n: rel_error(dgot[n].double().cpu(), dref[n].double()) for n in dref}
            print(f"{name:12s} o {rel_error(got['o'].double().cpu(), ref['o'].double()):.1e} | "
                  + " ".join(f"{n} {e:.1e}" for n, e in errs.items()), flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"{name}: {type(e).__name__}: {e}", flush=True)
        for n in env:
            del os.environ[n]


def profile():
    from check_mlp_memory_triton import ARGS, make
    from nested_kernels.ops.mlp_memory import mlp_memory
    x, _ = make(4, 4096, 8, 64, 64, 256, "abm self", beta_eta=True, seed=1)
    x = {n: None if t is None else t.to(torch.bfloat16) for n, t in x.items()}
    x["beta"] = x["eta"]
    with torch.no_grad():
        for _ in range(2):
            mlp_memory(*[x[n] for n in ARGS], chunk_size=64, target="self", read="chunk", backend="cuda")
    torch.cuda.synchronize()
    print("profile run done")


if __name__ == "__main__":
    {"k32": k32, "k32_knobs": k32_knobs, "profile": profile}[sys.argv[1]]()
