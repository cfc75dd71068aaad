"""Compile the Triton kernels of ``linear_memory`` for sm_90 without a GPU and report ptxas'
registers, spills and shared memory per kernel variant (Triton ships ptxas; no device is used).

Catches compile errors and register-pressure regressions before GPU time is spent. The options
mirror the launchers' defaults: mma.sync (DISABLE_MMA_V3, NESTED_KERNELS_LM_TRITON_MMA=v2), ptxas
-O1, tf32 products, bf16 inputs and storage, C = 64, K = V = 128, BV = 32, BV_OUT = 64.

    python python/compile_linear_memory_triton.py [--gates abm] [--target self] [--read after]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from nested_kernels.ops.linear_memory import triton_bwd as tb, triton_fwd as tf  # noqa: E402

INT_ARGS = {"T", "H", "NRH"}
FLOAT_ARGS = {"scale"}
I64_PTRS = {"pos", "cu", "tile_base"}
I32_PTRS = {"tile_seq", "tile_idx"}
BF16_PTRS = {"q", "k", "v", "eta", "la_ptr", "beta_ptr", "mu_ptr", "do", "o", "xw", "xz", "yw", "qw", "qz",
             "xu", "yu", "ou", "saved_m", "saved_s", "adj_m", "adj_s"}


def signature(fn, const):
    sig = {}
    for name in fn.arg_names:
        if name in const:
            sig[name] = "constexpr"
        elif name in INT_ARGS:
            sig[name] = "i32"
        elif name in FLOAT_ARGS:
            sig[name] = "fp32"
        elif name in I64_PTRS:
            sig[name] = "*i64"
        elif name in I32_PTRS:
            sig[name] = "*i32"
        elif name in BF16_PTRS:
            sig[name] = "*bf16"
        else:
            sig[name] = "*fp32"
    return sig


def ptxas_info(ptx: str, opt: str) -> str:
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.ptx")
        with open(path, "w") as fh:
            fh.write(ptx)
        r = subprocess.run([ptxas, "-arch=sm_90a", "-v", opt, path, "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True)
    text = r.stdout + r.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return (f"regs {regs.group(1) if regs else '?'}, spill st/ld "
            f"{spill.group(1) + '/' + spill.group(2) if spill else '?'}")


def compile_one(fn, const, warps, opt):
    src = ASTSource(fn, signature(fn, const), constexprs={(fn.arg_names.index(k),): v for k, v in const.items()})
    ker = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps))
    return f"shared {ker.metadata.shared:6d}, {ptxas_info(ker.asm['ptx'], opt)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gates", default="ab", help="letters of log_alpha (a), beta (b), mu (m)")
    ap.add_argument("--target", default="external", choices=["external", "self"])
    ap.add_argument("--read", default="after", choices=["after", "before", "chunk"])
    ap.add_argument("--C", type=int, default=64)
    ap.add_argument("--K", type=int, default=128)
    ap.add_argument("--BV", type=int, default=32)
    ap.add_argument("--BV-out", type=int, default=64)
    ap.add_argument("--warps", type=int, default=8)
    ap.add_argument("--prec", default="tf32")
    ap.add_argument("--ptxas", default="-O1")
    ap.add_argument("--mma", default="v2", choices=["v2", "auto"])
    args = ap.parse_args()
    if args.mma == "v2":
        os.environ["DISABLE_MMA_V3"] = "1"
    K = V = args.K
    alpha, beta, mu = ("a" in args.gates), ("b" in args.gates), ("m" in args.gates)
    self_t = args.target == "self"
    read = {"after": 0, "before": 1, "chunk": 2}[args.read]
    has_off = not self_t
    common = dict(K=K, V=V, BT=args.C, HAS_BETA=beta, HAS_MU=mu, HAS_POS=False, IS_VARLEN=False, PREC=args.prec)
    variants = [
        (tf._prep_kernel, dict(common, BC=min(K, 32), LOG2BT=args.C.bit_length() - 1, HAS_ALPHA=alpha,
                               SELF_TARGET=self_t, READ=read, HAS_OFF=has_off, HAS_OU=has_off and read != 2,
                               STORE_AINV=beta)),
        (tf._state_fwd_kernel, dict(common, BV=args.BV, HAS_OFF=has_off, HAS_M0=True, HAS_S0=mu,
                                    OUTPUT_FINAL=True, SAVE_STATES=True)),
        (tf._out_kernel, {k: v for k, v in dict(common, BV=args.BV_out, READ=read, HAS_OU=has_off and read != 2).items()
                          if k != "HAS_BETA"}),
        (tb._state_bwd_kernel, dict(common, BV=args.BV, READ=read, HAS_DMF=True, HAS_DSF=mu, HAS_DMCF=True)),
        (tb._grad_kernel, dict(common, BV=args.BV, HAS_ALPHA=alpha, SELF_TARGET=self_t, READ=read)),
    ]
    print(f"sm_90, {args.warps} warps, ptxas {args.ptxas}, mma {args.mma}, prec {args.prec}: gates '{args.gates}' "
          f"{args.target} {args.read} C{args.C} K=V={K} BV={args.BV} BV_OUT={args.BV_out}")
    failed = 0
    for fn, const in variants:
        try:
            print(f"{fn.__name__:18s} {compile_one(fn, const, args.warps, args.ptxas)}", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"{fn.__name__:18s} FAILED {type(e).__name__}: {str(e)[:2000]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
