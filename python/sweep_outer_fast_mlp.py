"""GPU sweep of fast_mlp's update GEMM ``_outer_kernel`` (triton_kernels.py) at issue 5's shape.

    python python/sweep_outer_fast_mlp.py [--n 1024,512] [--configs "128,128,64,8,3,0;128,128,64,8,3,1"] [--parts]

Per chunk of n tokens and G = 4 sequences the forward updates W1 [F, D] and W2 [D, F] with
OUT = r·W − Σ_t L_tᵀ R_t (float32 masters read and written, a bfloat16 copy written), and the
backward accumulates the adjoints the same way (for W2 with two products). This times those three
launches (``_Consts.outer`` as the backend calls it, D 2048, F 8192, bf16 operands) for every
(BP, BQ, BK, warps, stages, tma) of ``--configs`` (NESTED_KERNELS_FAST_MLP_OUTER,
``triton_backend._outer_config``; tma 1: the tensor-descriptor kernel) beside cuBLAS ``torch.bmm``
of the same products without the epilogue, and prints TFLOP/s (2·G·n·P·Q per product), the
host's time to launch (µs, median, the GPU idle before each launch) and the largest difference of
the launch's bf16 copy from the first configuration's (relative to its largest element).
"""
from __future__ import annotations

import argparse
import os

import torch

from gpu_check_utils import queued_time
from nested_kernels.ops.fast_mlp.triton_backend import _Consts

DEFAULT_CONFIGS = "128,128,64,8,3,0;128,128,64,8,3,1;128,128,64,4,3,1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1024,512", help="tokens per chunk")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="';'-separated BP,BQ,BK,warps,stages,tma")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--parts", action="store_true", help="also the W1 update taken apart (``parts``)")
    args = ap.parse_args()
    G, D, F, bf = 4, 2048, 8192, torch.bfloat16
    torch.manual_seed(0)
    x = torch.empty(1, 8, D, dtype=bf, device="cuda")
    c = _Consts(dict(mlp="gelu", chunk_size=1024, residual=True, retention=0.9, output_final_state=False), x, F)
    print(f"{torch.cuda.get_device_name()}; G{G} D{D} F{F} bf16 operands, float32 masters; ms per launch")
    for n in (int(v) for v in args.n.split(",")):
        ed, X = torch.randn(G, n, F, dtype=bf, device="cuda"), torch.randn(G, n, D, dtype=bf, device="cuda")
        eg, a = torch.randn(G, n, D, dtype=bf, device="cuda"), torch.randn(G, n, F, dtype=bf, device="cuda")
        W1, W2 = torch.randn(G, F, D, device="cuda"), torch.randn(G, D, F, device="cuda")
        flop = 2 * G * n * F * D
        launches = {
            "fwd W1 update": (lambda: c.outer(ed, X, W=W1, alpha=0.9, beta=-1.0, copy=True), flop),
            "fwd W2 update": (lambda: c.outer(eg, a, W=W2, alpha=0.9, beta=-1.0, copy=True), flop),
            "bwd W2 adjoint (2 products)": (lambda: c.outer(eg, ed, L2=eg, R2=a, W=W2, alpha=0.9, copy=True),
                                            2 * flop),
        }
        ms = queued_time(lambda: torch.bmm(ed.transpose(1, 2), X), args.reps)[0]
        print(f"\nn = {n}: cuBLAS bmm LᵀR [F×n]·[n×D], bf16 out: {ms:.3f} ms = {flop / ms / 1e9:.0f} TFLOP/s")
        first = {}
        for cfg in args.configs.split(";"):
            os.environ["NESTED_KERNELS_FAST_MLP_OUTER"] = cfg
            row = []
            for name, (fn, fl) in launches.items():
                try:
                    out = fn()[1].float()          # the bf16 copy, against the first config's
                    diff = (out - first.setdefault(name, out)).abs().max().item() / out.abs().max().item()
                    t, host = queued_time(fn, args.reps)
                    row.append(f"{name} {t:.3f} ({fl / t / 1e9:.0f} TF/s, host {host * 1e3:.0f} µs, "
                               f"vs first {diff:.1e})")
                except Exception as e:  # noqa: BLE001
                    row.append(f"{name} ERROR {type(e).__name__}: {str(e)[:80]}")
            print(f"  {cfg:22s} " + " | ".join(row), flush=True)
        os.environ.pop("NESTED_KERNELS_FAST_MLP_OUTER", None)
        if args.parts:
            parts(c, ed, X, W1, flop, args.reps)


def parts(c, L, R, W, flop, reps):
    """The W1 update of the default configuration taken apart: what each of its passes adds to
    the product (the same launch with parts of the epilogue switched off) and a copy of the
    same bytes, to tell whether the product and the weight traffic overlap."""
    G, P, Q = W.shape
    cp = torch.empty(G, P, Q, dtype=L.dtype, device=L.device)
    rows = {
        "product, float32 out (no W, no copy)": lambda: c.outer(L, R, beta=-1.0),
        "product, bf16 copy only (no W, no float32 out)": lambda: c.outer(L, R, beta=-1.0, copy=True, store=False),
        "product + W read, float32 out": lambda: c.outer(L, R, W=W, alpha=0.9, beta=-1.0),
        "full update (W read, float32 out, bf16 copy)": lambda: c.outer(L, R, W=W, alpha=0.9, beta=-1.0, copy=True),
        "no product: torch W·0.9 and a bf16 copy of W (W read twice)": lambda: (torch.mul(W, 0.9), cp.copy_(W)),
    }
    print(f"  parts of the W1 update (G{G} P{P} Q{Q}, n = {L.shape[1]}):")
    for name, fn in rows.items():
        t = queued_time(fn, reps)[0]
        print(f"    {name:58s} {t:.3f} ms ({flop / t / 1e9:.0f} TF/s on the product)", flush=True)


if __name__ == "__main__":
    main()
