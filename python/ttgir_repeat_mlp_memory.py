"""Run Triton's TTIR -> TTGIR passes (make_ttgir, sm_90, mma.sync) on one ``mlp_memory`` kernel
variant N times in one process, each in a fresh MLIR context, and count failures. No GPU is used.

Written for the NS = 8 compile failure of 2026-11-26c (H100, triton 3.6.0: "PassManager::run
failed" in TritonGPURemoveLayoutConversions for the forward of check case 2, "varlen+resume before
silu abm C32 K64 F128" in bf16, BF = 16, 4 warps): the TTIR printed by that failure is identical to
the one built here, yet the passes succeed on the CPU machine (every run, python 3.11 wheel). Run it
on the GPU machine to see whether the failure is deterministic there:

    python python/ttgir_repeat_mlp_memory.py --repeat 5                 # case 2 forward, NS 8
    python python/ttgir_repeat_mlp_memory.py --repeat 5 --ns 4
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)
os.environ["DISABLE_MMA_V3"] = "1"

from compile_mlp_memory_triton import signature  # noqa: E402
from nested_kernels.ops.mlp_memory import triton_bwd as tb, triton_fwd as tf  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--which", default="fwd", choices=["fwd", "save", "bwd"])
    ap.add_argument("--ns", type=int, default=8)
    ap.add_argument("--bf", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import CUDABackend
    from triton.compiler import ASTSource
    # check case 2: external target, read before, silu, gates abm, C32 K=V=64 F128, varlen + resumed
    common = dict(K=64, V=64, F=128, BF=args.bf, NS=args.ns, BT=32, LOG2BT=5, ACT=1, RESIDUAL=True,
                  HAS_ALPHA=True, HAS_BETA=True, HAS_MU=True, SELF_TARGET=False, READ=1, HAS_POS=True,
                  IS_VARLEN=True, PREC="tf32x3", GPREC="tf32x3", PREP=False)
    fn, const = {"fwd": (tf._fwd_kernel, dict(common, OUTPUT_FINAL=True, SAVE=False, STORE_O=True)),
                 "save": (tf._fwd_kernel, dict(common, OUTPUT_FINAL=False, SAVE=True, STORE_O=False)),
                 "bwd": (tb._bwd_kernel, dict(common, HAS_DC=True))}[args.which]
    const = {n: v for n, v in const.items() if n in fn.arg_names}
    sig = signature(fn, const, o_bf16=args.ns == 1)
    names = fn.arg_names
    ptrs = [n for n in names if sig[n].startswith("*")]        # the JIT marks them 16-divisible
    be = CUDABackend(GPUTarget("cuda", 90, 32))
    opts = be.parse_options(dict(num_warps=4, num_stages=1))
    fails = 0
    for i in range(args.repeat):
        src = ASTSource(fn, sig, constexprs={(names.index(k),): v for k, v in const.items()},
                        attrs={(names.index(p),): [["tt.divisibility", 16]] for p in ptrs})
        ctx = ir.context()
        ir.load_dialects(ctx)
        be.load_dialects(ctx)
        mod = src.make_ir(be.target, opts, be.get_codegen_implementation(opts), be.get_module_map(), ctx)
        mod = be.make_ttir(mod, {}, opts, 90)
        t0 = time.perf_counter()
        try:
            be.make_ttgir(mod, {}, opts, 90)
            r = "ok"
        except RuntimeError as e:
            r, fails = f"FAILED: {e}", fails + 1
        print(f"{args.which} NS={args.ns} BF={args.bf} run {i}: make_ttgir {r} ({time.perf_counter() - t0:.1f} s)",
              flush=True)
    print(f"{fails} of {args.repeat} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
