"""Interleaved A/B timing of ``NESTED_KERNELS_*`` knobs of ``linear_memory`` at issue 3's shape
(B4 T4096 H16 K=V=128 bf16, chunk 64), fla ``chunk_delta_rule`` (β = η) in the same process.

    python python/ab_knob_linear_memory.py NESTED_KERNELS_LM_TRITON_PLAIN_A=0,1 --gates "" --rounds 5
    python python/ab_knob_linear_memory.py NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=64,128 \
        NESTED_KERNELS_LM_TRITON_WARPS_PLAIN=4,8          # two knobs changed together

Each round times fla, then every variant in turn (the knobs are read at each call): synced
forward and forward+backward (median of ``--reps`` CUDA-event timings after warm-up), and the
device time of each — the sum of its kernels' durations in a torch.profiler trace,
which the host's speed cannot move (on a machine whose host is slower than the device, synced and
back-to-back timings measure the host). Prints the per-round numbers and, per value, the median
over the rounds and its ratio to fla's. Variant i sets every knob to its i-th value.
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch
from torch.profiler import ProfilerActivity, profile

from check_linear_memory_triton import _fla_delta_rule, make
from gpu_check_utils import time_fwd_bwd, write_json
from profile_kernels import device_activities
from nested_kernels.ops.linear_memory import linear_memory


def device_ms(fn, reps: int) -> float:
    """Milliseconds of device activity per call of ``fn()`` (kernels and copies, from a profile of
    ``reps`` calls after one)."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    return sum(end - start for start, end, _ in device_activities(prof)) / reps / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("knobs", nargs="+", metavar="NAME=V1,V2,...",
                    help="one or more knobs with as many values each: variant i sets every knob to its i-th value")
    ap.add_argument("--gates", default="", help="letters of log_alpha (a), beta (b), mu (m)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    knobs = [(name, values.split(",")) for name, values in (k.split("=", 1) for k in args.knobs)]
    if len({len(values) for _, values in knobs}) != 1:
        raise SystemExit("every knob needs the same number of values")
    variants = [{name: values[i] for name, values in knobs} for i in range(len(knobs[0][1]))]
    B, T, H, K, V = 4, 4096, 16, 128, 128
    dt = torch.bfloat16
    do = torch.randn(B, T, H, V, device="cuda", dtype=dt)
    fns = {}
    fla_fn = _fla_delta_rule()
    if fla_fn is not None:
        x, _ = make(B, T, H, K, V, "", seed=1)
        x = {n: None if t is None else t.to(dt).requires_grad_(True) for n, t in x.items()}
        fns["fla"] = (lambda: fla_fn(x["q"], x["k"], x["v"], x["eta"]), [x[n] for n in ("q", "k", "v", "eta")])
    y, _ = make(B, T, H, K, V, args.gates, seed=1)
    y = {n: None if t is None else t.to(dt).requires_grad_(True) for n, t in y.items()}
    y["eta"] = (y["eta"] * 0.1).detach().requires_grad_(True)
    ours = [y[n] for n in ("q", "k", "v", "eta", "log_alpha", "beta", "mu")]
    for variant in variants:
        fns[" ".join(f"{n}={v}" for n, v in variant.items())] = (
            lambda: linear_memory(*ours, chunk_size=64, backend="triton")[0], [t for t in ours if t is not None])
    print(f"{torch.cuda.get_device_name()}; B{B} T{T} H{H} K=V={K} bf16 C64 gates '{args.gates}'; "
          f"{args.rounds} rounds, median of {args.reps} synced calls each; ms: synced fwd, fwd+bwd; "
          "device fwd, fwd+bwd")
    rows = {label: [] for label in fns}
    for r in range(args.rounds):
        for label, (f, leaves) in fns.items():
            if "=" in label:
                os.environ.update(pair.split("=", 1) for pair in label.split())
            t_f, t_fb, _ = time_fwd_bwd(f, leaves, args.warmup, args.reps, do)
            with torch.no_grad():
                dev_f = device_ms(f, 5)
            dev_fb = device_ms(lambda: torch.autograd.grad(f(), leaves, do), 5)
            rows[label].append((t_f, t_fb, dev_f, dev_fb))
            print(f"round {r} {label:60s} {t_f:7.3f} {t_fb:7.3f}   device {dev_f:7.3f} {dev_fb:7.3f}")
    med = {label: tuple(statistics.median(x[i] for x in rs) for i in range(4)) for label, rs in rows.items()}
    print("\nmedians over rounds: synced fwd, fwd+bwd; device fwd, fwd+bwd (each as a ratio to fla's)")
    for label, m in med.items():
        ref = med.get("fla")
        ratios = "  ".join(f"{a:7.3f}" + (f" ({a / b:.2f}×)" if ref else "") for a, b in zip(m, ref or m))
        print(f"{label:60s} {ratios}")
    if args.json:
        write_json(args.json, dict(device=torch.cuda.get_device_name(), rounds=rows, medians=med))


if __name__ == "__main__":
    main()
