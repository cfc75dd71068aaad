"""Per-kernel GPU time of the Triton ``linear_memory`` kernels over a grid of launch knobs, in one
GPU call: which V block and warp count each kernel should default to.

    python python/sweep_linear_memory_triton.py --gates ,abm --bv 16,32,64 --warps 4,8 --json $OUT/sweep.json
    python python/sweep_linear_memory_triton.py --gates ,ab,abm --grad-split 0,1 --warps-grad 4,8

Every configuration (gate set × the given values of NESTED_KERNELS_LM_TRITON_BV, _WARPS,
_BV_GRAD, _BV_OUT, _STAGES, _MMA, _GRAD_SPLIT, _GRAD_PLAIN, _BLOCK_PLAIN, _MMA_PLAIN, _MMA_GRAD_DK, _BV_GRAD_DK, _PTXAS, _PREP_MATRIX, _GRAD_ROWS, _BV_ROWS, _NN_EPILOGUE and the per-kernel
_WARPS_PREP / _STATE / _OUT / _GRAD / _PLAIN / _ROWS / _EPILOGUE) runs python/profile_kernels.py twice in its own process: first all configurations at once
with one call each (Triton's JIT compiles dominate and run on the CPU, so they overlap), then one after another with ``--reps`` profiled calls each (the GPU measured alone). Prints, per
gate set, a table of the mean time per op call (fwd+bwd, µs) of every kernel under every
configuration, and the fastest configuration per kernel. Off CUDA (``--device cpu``) the same
runs use the CPU profiler under the interpreter on a tiny shape (a smoke test of the script).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
KNOBS = {"bv": "NESTED_KERNELS_LM_TRITON_BV", "warps": "NESTED_KERNELS_LM_TRITON_WARPS",
         "bv_grad": "NESTED_KERNELS_LM_TRITON_BV_GRAD", "bv_out": "NESTED_KERNELS_LM_TRITON_BV_OUT",
         "stages": "NESTED_KERNELS_LM_TRITON_STAGES", "mma": "NESTED_KERNELS_LM_TRITON_MMA",
         "mma_plain": "NESTED_KERNELS_LM_TRITON_MMA_PLAIN", "mma_grad_dk": "NESTED_KERNELS_LM_TRITON_MMA_GRAD_DK",
         "bv_grad_dk": "NESTED_KERNELS_LM_TRITON_BV_GRAD_DK",
         "grad_split": "NESTED_KERNELS_LM_TRITON_GRAD_SPLIT", "grad_plain": "NESTED_KERNELS_LM_TRITON_GRAD_PLAIN",
         "block_plain": "NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", "ptxas": "NESTED_KERNELS_LM_TRITON_PTXAS",
         "prep_matrix": "NESTED_KERNELS_LM_TRITON_PREP_MATRIX", "grad_rows": "NESTED_KERNELS_LM_TRITON_GRAD_ROWS",
         "bv_rows": "NESTED_KERNELS_LM_TRITON_BV_ROWS", "nn_epilogue": "NESTED_KERNELS_LM_TRITON_NN_EPILOGUE",
         **{f"warps_{k}": f"NESTED_KERNELS_LM_TRITON_WARPS_{k.upper()}"
            for k in ("prep", "state", "out", "grad", "plain", "rows", "epilogue")}}
KERNELS = ("_prep_kernel", "_state_fwd_kernel", "_out_kernel", "_state_bwd_kernel", "_grad_kernel",
           "_grad_rows_kernel", "_grad_nn_kernel", "_grad_epilogue_kernel", "_grad_dk_kernel", "_plain_dv_kernel",
           "_plain_dqk_kernel")


def configs(args) -> list[dict]:
    """Every combination of the given knob values, as environment dicts ('' = the default)."""
    axes = [[(KNOBS[k], v) for v in getattr(args, k).split(",")] for k in KNOBS if getattr(args, k)]
    return [{n: v for n, v in combo if v} for combo in itertools.product(*axes)] or [{}]


def profile(gates: str, env: dict, reps: int, out: str, args, log) -> subprocess.Popen:
    cmd = [sys.executable, os.path.join(HERE, "profile_kernels.py"), "linear_memory", "--gates", gates,
           "--chunk", str(args.chunk), "--reps", str(reps), "--device", args.device, "--json", out]
    if args.device == "cpu":
        cmd += ["--B", "1", "--T", "40"]
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)


def label(env: dict) -> str:
    short = {v: k for k, v in KNOBS.items()}
    return " ".join(f"{short[n]}={v}" for n, v in sorted(env.items())) or "defaults"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gates", default=",abm", help="comma-separated gate sets (subsets of 'abm'; '' = η only)")
    for knob in KNOBS:
        ap.add_argument(f"--{knob.replace('_', '-')}", dest=knob, default="", help=f"values of {KNOBS[knob]}")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", default=None, metavar="OUT")
    args = ap.parse_args()
    runs = [(g, env) for g in args.gates.split(",") for env in configs(args)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = open(os.path.join(tmp, "log.txt"), "w+")
        warm = [profile(g, env, 1, os.path.join(tmp, f"warm{i}.json"), args, log) for i, (g, env) in enumerate(runs)]
        for p in warm:
            p.wait()
        for i, (g, env) in enumerate(runs):
            out = os.path.join(tmp, f"run{i}.json")
            rc = profile(g, env, args.reps, out, args, log).wait()
            results[(g, label(env))] = json.load(open(out)) if rc == 0 and os.path.exists(out) else None
        log.seek(0)
        failures = [line for line in log.read().splitlines() if "Error" in line]
    for g in args.gates.split(","):
        print(f"\nlinear_memory gates '{g or 'eta only'}' C{args.chunk}: mean time per fwd+bwd call, µs")
        rows = [(lab, res) for (gg, lab), res in results.items() if gg == g]
        print(f"{'configuration':28s}" + "".join(f"{k:>22s}" for k in KERNELS) + f"{'sum':>10s}")
        for lab, res in rows:
            if res is None:
                print(f"{lab:28s}  FAILED (see the errors below)")
                continue
            times = [res.get(k, float("nan")) for k in KERNELS]
            print(f"{lab:28s}" + "".join(f"{t:22.1f}" for t in times) + f"{sum(t for t in times if t == t):10.1f}")
        ok = [(lab, res) for lab, res in rows if res is not None]
        for k in KERNELS:
            timed = [(res[k], lab) for lab, res in ok if k in res]
            if timed:
                t, lab = min(timed)
                print(f"  fastest {k}: {lab} ({t:.1f} µs)")
    for line in failures[:10]:
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(gates=g, config=lab, times=res) for (g, lab), res in results.items()], f, indent=1)


if __name__ == "__main__":
    main()
