"""GPU check of the CUDA kernel fast_mlp outer_update (needs a CUDA device and a built _C).

    out[n] = retention * W[n] - left[n]^T diag(eta[n]) right[n]

For random inputs in float32 / bfloat16 / float16 and shapes that are and are not multiples of the
kernel's 128x128x8 tiles, compares against the same formula in float64 (on the same, already
rounded inputs) and against PyTorch in the input dtype; `out` is poisoned with NaN first. Also
checks in-place (out=weight), non-contiguous and stride-0 inputs, unaligned weight (scalar
epilogue), n_tok = 0 and N > 65535 (grid-stride over sequences). Then times
N=4, n_tok=512, P=8192, Q=2048 (bf16) with CUDA events, beside PyTorch baselines.

    python python/check_outer_update.py            # checks + timing
    python python/check_outer_update.py --quick    # checks only (e.g. under compute-sanitizer)
    python python/check_outer_update.py --json $OUT/outer_update.json

Exit status 1 when any check fails.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from nested_kernels.ops.fast_mlp.cuda import outer_update

TOL = {torch.float32: 2e-3, torch.bfloat16: 2e-2, torch.float16: 2e-2}  # SPEC.md §7


def reference(weight, left, right, eta, retention):
    """float64 result on the given (already rounded) inputs."""
    lt = left.double() * eta.double()[..., None]
    return retention * weight.double() - torch.einsum("ntp,ntq->npq", lt, right.double())


def torch_same_dtype(weight, left, right, eta, retention):
    """What PyTorch gets in the input dtype (the flash-attention tolerance rule's witness)."""
    lt = (left * eta.to(left.dtype)[..., None]).transpose(1, 2)
    return retention * weight - torch.bmm(lt, right).float()


def rel_err(x, ref, scale):
    """(‖x − ref‖ / ‖scale‖, max|x − ref| / max|scale|).

    scale is the update part ref − retention·W, not ref: the retention·W term is easy and large,
    and dividing by it would hide a wrong update."""
    diff = (x.double() - ref).abs()
    denom_norm = scale.norm().item() or 1.0
    denom_max = (scale.abs().max().item() if scale.numel() else 0.0) or 1.0
    return diff.norm().item() / denom_norm, (diff.max().item() if diff.numel() else 0.0) / denom_max


def make_inputs(N, n_tok, P, Q, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    weight = torch.randn(N, P, Q, device=device, generator=g)
    left = torch.randn(N, n_tok, P, device=device, generator=g).to(dtype)
    right = torch.randn(N, n_tok, Q, device=device, generator=g).to(dtype)
    eta = torch.rand(N, n_tok, device=device, generator=g)  # SPEC §7: 0 <= eta <= 1
    return weight, left, right, eta


class Checker:
    def __init__(self):
        self.rows = []
        self.failed = 0

    def record(self, name, out, ref, dtype, weight, retention, baseline=None):
        """Error of out against ref, relative to the update ref − retention·weight."""
        finite = bool(torch.isfinite(out).all())
        update = ref - retention * weight.double()
        if update.norm().item() == 0.0:  # n_tok = 0: nothing but retention·W
            update = ref
        norm_err, max_err = rel_err(out, ref, update)
        base = rel_err(baseline, ref, update)[0] if baseline is not None else float("nan")
        ok = finite and norm_err <= TOL[dtype]
        self.failed += not ok
        self.rows.append(dict(case=name, dtype=str(dtype).replace("torch.", ""), ok=ok, finite=finite,
                              rel_err=norm_err, max_rel_err=max_err, torch_same_dtype_rel_err=base))
        print(f"{'ok  ' if ok else 'FAIL'} {name:<44} {str(dtype):<15} rel {norm_err:.2e}  max {max_err:.2e}"
              f"  (torch {str(dtype).replace('torch.', '')}: {base:.2e}){'' if finite else '  NON-FINITE'}",
              flush=True)


def run_checks(device) -> Checker:
    c = Checker()
    shapes = [(1, 1, 1, 1), (2, 13, 100, 72), (3, 64, 128, 128), (2, 37, 257, 130), (4, 512, 256, 384),
              (1, 9, 129, 3), (2, 8, 64, 1000)]
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for (N, n_tok, P, Q) in shapes:
            w, left, right, eta = make_inputs(N, n_tok, P, Q, dtype, device)
            retention = 0.9
            out = torch.full((N, P, Q), float("nan"), device=device)
            outer_update(w, left, right, eta, retention, out=out)
            c.record(f"N{N} T{n_tok} P{P} Q{Q}", out, reference(w, left, right, eta, retention), dtype,
                     w, retention, torch_same_dtype(w, left, right, eta, retention))

        # In place: out = weight.
        w, left, right, eta = make_inputs(2, 13, 100, 72, dtype, device, seed=1)
        ref = reference(w, left, right, eta, 0.5)
        w2 = w.clone()
        res = outer_update(w2, left, right, eta, 0.5, out=w2)
        c.record("in place (out=weight)", w2, ref, dtype, w, 0.5)
        assert res.data_ptr() == w2.data_ptr()

        # Non-contiguous / stride-0 inputs, non-contiguous out.
        N, n_tok, P, Q = 3, 21, 70, 96
        w, left, right, eta = make_inputs(N, n_tok, P, Q, dtype, device, seed=2)
        left_nc = left.transpose(1, 2).contiguous().transpose(1, 2)   # same values, strided
        right_exp = right[:, :1].expand(N, n_tok, Q)                  # stride 0 along tokens
        eta_exp = torch.tensor(0.05, device=device).expand(N, n_tok)  # stride 0 everywhere
        out_nc = torch.full((N, Q, P), float("nan"), device=device).transpose(1, 2)
        outer_update(w, left_nc, right_exp, eta_exp, 1.0, out=out_nc)
        c.record("strided / stride-0 inputs, strided out", out_nc,
                 reference(w, left, right_exp, eta_exp, 1.0), dtype, w, 1.0)

        # Unaligned weight/out (storage offset 1: scalar epilogue) with Q % 4 == 0.
        N, n_tok, P, Q = 2, 19, 33, 64
        w, left, right, eta = make_inputs(N, n_tok, P, Q, dtype, device, seed=3)
        w_off = torch.empty(N * P * Q + 1, device=device)[1:].view(N, P, Q)
        w_off.copy_(w)
        out_off = torch.full((N * P * Q + 1,), float("nan"), device=device)[1:].view(N, P, Q)
        outer_update(w_off, left, right, eta, 0.75, out=out_off)
        c.record("unaligned weight and out", out_off, reference(w, left, right, eta, 0.75), dtype, w, 0.75)

    # n_tok = 0: out = retention * weight.
    w, left, right, eta = make_inputs(2, 0, 50, 60, torch.float32, device)
    out = outer_update(w, left, right, eta, 0.25)
    c.record("n_tok = 0", out, reference(w, left, right, eta, 0.25), torch.float32, w, 0.25)

    # N > 65535: the kernel loops over sequences beyond gridDim.z.
    w, left, right, eta = make_inputs(70000, 3, 5, 7, torch.bfloat16, device)
    out = outer_update(w, left, right, eta, 0.9)
    c.record("N = 70000 (grid-stride over N)", out, reference(w, left, right, eta, 0.9), torch.bfloat16, w, 0.9)
    torch.cuda.synchronize()
    return c


def time_ms(fn, iters=20, warmup=3):
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iters):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]  # median


def run_timing(device) -> dict:
    N, n_tok, P, Q = 4, 512, 8192, 2048
    dtype = torch.bfloat16
    w, left, right, eta = make_inputs(N, n_tok, P, Q, dtype, device)
    out = torch.empty_like(w)
    flops = 2.0 * N * n_tok * P * Q
    bytes_min = N * P * Q * 4 * 2 + N * n_tok * (P + Q) * 2 + N * n_tok * 4
    results = {"shape": dict(N=N, n_tok=n_tok, P=P, Q=Q, dtype="bfloat16"), "device": torch.cuda.get_device_name(device)}

    results["ours_ms"] = time_ms(lambda: outer_update(w, left, right, eta, 0.9, out=out))
    results["ours_inplace_ms"] = time_ms(lambda: outer_update(w, left, right, eta, 1.0, out=w))

    lt32, r32 = (left.float() * eta[..., None]).transpose(1, 2), right.float()
    results["torch_fp32_baddbmm_ms"] = time_ms(lambda: torch.baddbmm(w, lt32, r32, beta=0.9, alpha=-1.0, out=out))
    lt16 = (left * eta.to(dtype)[..., None]).transpose(1, 2)
    results["torch_bf16_bmm_plus_axpy_ms"] = time_ms(
        lambda: torch.sub(w.mul(0.9), torch.bmm(lt16, right).float(), out=out))

    # Floors (GUIDE.md §2 ceilings of an H100): fp32 FMA 51 TFLOP/s, bf16 tensor cores 724,
    # memory 3.0 TB/s (fp32 W read + out write dominate).
    results["floor_ms"] = dict(fp32_simt=flops / 51e12 * 1e3, bf16_tensor_core=flops / 724e12 * 1e3,
                               memory=bytes_min / 3.0e12 * 1e3)
    results["ours_tflops"] = flops / (results["ours_ms"] * 1e-3) / 1e12
    for key, value in results.items():
        print(f"{key}: {value}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="correctness checks only, no timing")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    from nested_kernels.core.extension import cuda_extension

    info = cuda_extension().build_info()
    print("build_info:", info, "| device:", torch.cuda.get_device_name(device), flush=True)
    checks = run_checks(device)
    results = {"build_info": info, "checks": checks.rows, "failed": checks.failed}
    if not args.quick:
        results["timing"] = run_timing(device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    print(f"{len(checks.rows) - checks.failed}/{len(checks.rows)} checks passed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
