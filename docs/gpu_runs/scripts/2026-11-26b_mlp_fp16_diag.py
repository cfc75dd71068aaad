"""Diagnosis of the mlp_memory Triton fp16-operand failure of call 4 (final states off by 100 % at
B2 T1000 H4 K64 F256 C64 +a+b+mu init bf16, while F128 and the interpreter pass): errors of every
output per (precision, F, T), and the largest |value| of the float64 reference's final states."""
import os
import sys

import torch

sys.path[:0] = ["tests/ops", "."]
import test_mlp_memory_triton as t  # noqa: E402
from nested_kernels.testing import rel_error  # noqa: E402

for prec in sys.argv[1].split(","):
    os.environ["NESTED_KERNELS_MLP_TRITON_PRECISION"] = prec
    for F, T, B, H in [(256, 130, 1, 1), (256, 1000, 1, 1), (128, 1000, 1, 1), (256, 1000, 2, 4)]:
        x, st = t.make(B=B, T=T, H=H, K=64, V=64, F=F, gates="abm", init=True, seed=3)
        got, dgot = t.run("triton", x, st, torch.bfloat16, chunk_size=64)
        ref, dref = t.run("reference", x, st, torch.bfloat16, chunk_size=64) if T < 1000 or B == 1 else (None, None)
        if ref is None:
            ref, dref = t.run("torch", {n: v for n, v in x.items()}, st, torch.float32, chunk_size=64)
        errs = {n: float(rel_error(got[n].float().cpu(), ref[n].float().cpu())) for n in got if n != "position"}
        big = {n: float(ref[n].abs().max()) for n in ("W1", "W2", "S1", "S2")}
        nan = {n: bool(torch.isnan(got[n]).any()) for n in got if got[n].is_floating_point()}
        print(f"{prec} F{F} T{T} B{B} H{H}: errors {({n: f'{e:.1e}' for n, e in errs.items()})} "
              f"ref max {({n: f'{v:.2g}' for n, v in big.items()})} nan {[n for n, v in nan.items() if v]}", flush=True)
