"""Compile the Triton kernels of ``mlp_memory`` for sm_90 without a GPU and report ptxas'
registers, spills and shared memory per kernel (Triton ships ptxas; no device is used). Catches
compile errors, shared-memory overflows (an H100 block may use 227 KB) and register-pressure
regressions before GPU time is spent. Options mirror the launcher's defaults: mma.sync
(DISABLE_MMA_V3), ptxas -O1, tf32x3 gate products and (I + A)⁻¹, bf16 inputs, BF = 16,
num_stages = 1, 8 warps for C ≥ 64; ``--prec`` the operands of the other products (the launcher's
default is tf32x3); ``--ns`` F slices per (sequence, head); ``--prep 0`` the kernels of
NESTED_KERNELS_MLP_TRITON_PREP=0 (default 1, as the launcher: with ``_prep_kernel``). Reported:
the forward (outputs), the SAVE forward (the backward's re-run), the forward keeping residuals
(both), the one-walk backward and the split backward's parts (chain, tokens, read chunk's dq).

    python python/compile_mlp_memory_triton.py [--gates abm --target self --read chunk --C 64
        --K 64 --F 256 --ns 4 --bf 16 --prec tf32|tf32x3|fp16|bf16 --prep 0|1 --resume --act gelu]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.pop("TRITON_INTERPRET", None)

from gpu_check_utils import compile_sm90, ptxas_usage  # noqa: E402
from nested_kernels.ops.mlp_memory import triton_bwd as tb, triton_fwd as tf, triton_prep as tp  # noqa: E402

SHARED_LIMIT = 232448
INT_ARGS = {"T", "R", "H"}
I64_PTRS = {"pos", "cu", "tile_base"}
I32_PTRS = {"ctr", "tile_seq", "tile_idx"}
BF16_PTRS = {"q", "k", "v", "eta", "la_ptr", "beta_ptr", "mu_ptr", "do"}


def signature(fn, const, o_bf16):
    sig = {}
    for name in fn.arg_names:
        if name in const:
            sig[name] = "constexpr"
        elif name in INT_ARGS:
            sig[name] = "i32"
        elif name == "scale":
            sig[name] = "fp32"
        elif name in I64_PTRS:
            sig[name] = "*i64"
        elif name in I32_PTRS:
            sig[name] = "*i32"
        elif name in BF16_PTRS or (name == "o" and o_bf16):
            sig[name] = "*bf16"
        else:
            sig[name] = "*fp32"
    return sig


def compile_one(fn, const, warps, opt, o_bf16=True):
    const = {n: v for n, v in const.items() if n in fn.arg_names}
    ker = compile_sm90(fn, signature(fn, const, o_bf16), const, dict(num_warps=warps, num_stages=1))
    regs, st, ld = ptxas_usage(ker.asm["ptx"], opt)
    regs, spill = ("?" if regs is None else regs), ("?" if st is None else f"{st}/{ld}")
    shared = ker.metadata.shared
    over = "  OVER 227 KB" if shared > SHARED_LIMIT else ""
    return f"shared {shared / 1024:6.1f} KB, regs {regs}, spill st/ld {spill}{over}", shared <= SHARED_LIMIT


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gates", default="abm", help="letters of log_alpha (a), beta (b), mu (m)")
    ap.add_argument("--target", default="self", choices=["external", "self"])
    ap.add_argument("--read", default="chunk", choices=["after", "before", "chunk"])
    ap.add_argument("--act", default="gelu", choices=["gelu", "silu"])
    ap.add_argument("--C", type=int, default=64)
    ap.add_argument("--K", type=int, default=64)
    ap.add_argument("--F", type=int, default=256)
    ap.add_argument("--bf", type=int, default=16)
    ap.add_argument("--ns", type=int, default=4)
    ap.add_argument("--warps", type=int, default=0, help="0: the launcher's default")
    ap.add_argument("--prec", default="tf32")
    ap.add_argument("--ptxas", default="-O1")
    ap.add_argument("--prep", type=int, default=1, choices=[0, 1], help="NESTED_KERNELS_MLP_TRITON_PREP")
    ap.add_argument("--resume", action="store_true", help="resumed state and cu_seqlens")
    args = ap.parse_args()
    os.environ["DISABLE_MMA_V3"] = "1"
    K = V = args.K
    warps = args.warps or (4 if args.C <= 32 else 8)
    common = dict(K=K, V=V, F=args.F, BF=args.bf, NS=args.ns, BT=args.C, LOG2BT=args.C.bit_length() - 1,
                  ACT={"gelu": 0, "silu": 1}[args.act], RESIDUAL=True, HAS_ALPHA="a" in args.gates,
                  HAS_BETA="b" in args.gates, HAS_MU="m" in args.gates, SELF_TARGET=args.target == "self",
                  READ={"after": 0, "before": 1, "chunk": 2}[args.read], HAS_POS=args.resume,
                  IS_VARLEN=args.resume, PREC=args.prec, GPREC="tf32x3", PREP=bool(args.prep))
    variants = [("_prep_kernel", tp._prep_kernel, common, True)] if args.prep else []
    variants += [
        ("_fwd_kernel (forward)", tf._fwd_kernel, dict(common, OUTPUT_FINAL=True, SAVE=False, STORE_O=True),
         args.ns == 1),
        ("_fwd_kernel (SAVE)", tf._fwd_kernel, dict(common, OUTPUT_FINAL=False, SAVE=True, STORE_O=False), True),
        ("_fwd_kernel (fwd+SAVE)", tf._fwd_kernel, dict(common, OUTPUT_FINAL=False, SAVE=True, STORE_O=True),
         args.ns == 1),
        ("_bwd_kernel", tb._bwd_kernel, dict(common, HAS_DC=True, PART=0), True),
        ("_bwd_kernel (chain)", tb._bwd_kernel, dict(common, HAS_DC=True, PART=1), True),
        ("_bwd_kernel (tokens)", tb._bwd_kernel, dict(common, HAS_DC=True, PART=2), True),
    ]
    if args.read == "chunk":      # the split backward's third part exists for read chunk only
        variants.append(("_bwd_kernel (read dq)", tb._bwd_kernel, dict(common, HAS_DC=True, PART=3), True))
    print(f"sm_90, {warps} warps, ptxas {args.ptxas}, mma.sync, prec {args.prec}: gates '{args.gates}' "
          f"{args.target} {args.read} {args.act} C{args.C} K=V={K} F={args.F} BF={args.bf} NS={args.ns}"
          f"{' resumed+varlen' if args.resume else ''} PREP={args.prep}")
    bad = 0
    for label, fn, const, o_bf16 in variants:
        try:
            line, fits = compile_one(fn, const, warps, args.ptxas, o_bf16)
            bad += not fits
            print(f"{label:24s} {line}", flush=True)
        except Exception as e:  # noqa: BLE001
            bad += 1
            print(f"{label:24s} FAILED {type(e).__name__}: {str(e)[:3000]}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
