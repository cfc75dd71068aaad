"""2026-12-06h: why test_gpu_realistic[…bm-self-after-64-32-64…] gives non-finite outputs on the H100
(2026-12-06h call 1) with tf32x3 products for the self target without α (triton_backend.ill_conditioned),
while the interpreter run of the same case is finite. Prints each launch (kernel, grid NS, BF, PREC), the
warnings, and the relative errors / non-finite fields per dtype, precision and test fixture variant."""
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, "tests/ops")
import test_mlp_memory_triton as t  # noqa: E402
from nested_kernels.ops.mlp_memory import triton_backend as tb  # noqa: E402
from nested_kernels.testing import rel_error  # noqa: E402

_launch = tb._Args.launch


def launch(self, kernel, *args, **kw):
    c = {**self.consts, **kw}
    print(f"  launch {getattr(kernel, '__name__', kernel)} NS={self.NS} BF={c.get('BF')} PREC={c.get('PREC')}", flush=True)
    return _launch(self, kernel, *args, **kw)


tb._Args.launch = launch
VARIANTS = dict(prep0=("0", "0", "triton"), torchtok=("1", "1", "torch"))
for vname, (prep, split, tokens) in VARIANTS.items():
    for dtype, prec in ((torch.float32, None), (torch.bfloat16, None), (torch.bfloat16, "tf32r"), (torch.bfloat16, "ieee")):
        os.environ.update(NESTED_KERNELS_MLP_TRITON_PREP=prep, NESTED_KERNELS_MLP_TRITON_BWD_SPLIT=split,
                          NESTED_KERNELS_MLP_TRITON_TOKENS=tokens, NESTED_KERNELS_MLP_TRITON_PREP_ROWS=tokens)
        os.environ.pop("NESTED_KERNELS_MLP_TRITON_PRECISION", None)
        if prec:
            os.environ["NESTED_KERNELS_MLP_TRITON_PRECISION"] = prec
        print(f"== {vname} {dtype} precision env {prec}", flush=True)
        x, st = t.make(B=2, T=203, H=2, K=32, V=32, F=64, gates="bm", init=True, seed=11)
        t0 = time.time()
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            got, dgot = t.run("triton", x, st, dtype, chunk_size=64, target="self", read="after")
        for w in ws:
            print("  warning:", str(w.message)[:300])
        ref, dref = t.run("reference", x, st, dtype, chunk_size=64, target="self", read="after")
        errs = {n: rel_error(got[n], ref[n]) for n in got}
        errs.update({"d" + n: rel_error(dgot[n], dref[n]) for n in dgot})
        bad = [n for n, v in {**got, **{"d" + n: v for n, v in dgot.items()}}.items()
               if v is not None and not torch.isfinite(v).all()]
        print(f"  {time.time() - t0:.1f} s; non-finite: {bad}")
        print("  " + ", ".join(f"{n} {e:.2e}" for n, e in errs.items()), flush=True)
        if "o" in bad:
            o = got["o"].float()
            rows = (~torch.isfinite(o)).any(-1).any(-1)      # [B, T]
            print("  non-finite o rows per sequence:", [r.nonzero().flatten().tolist()[:8] + ["…"] for r in rows])
