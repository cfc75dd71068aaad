"""GPU check of the Triton decode steps (``linear_memory_step``, ``mlp_memory_step``,
``fast_mlp_step``; needs CUDA, run on the GPU machine from the repository root).

1. Correctness at realistic shapes: a prefix of the stream by the full op, then 10–12 tokens by
   the step (crossing a chunk boundary, sequences at different positions only through the prefix),
   against one float64 call of the full op over the whole stream: the step output and every final
   state field, for the triton step and, as the level to match, the torch step. SPEC §7 bounds
   (2e-3 float32, 2e-2 bf16/fp16). Outputs are NaN-poisoned.
2. Agreement and timing at the issue shapes (bench/bench_decode_step.py: N64 H16 K=V=128; N64 H8
   K=V=64 F256; N4 D2048 F8192 / F5504, bf16 inputs, float32 states): one step of the triton and
   the torch step from the same state (relative differences of the output and all state tensors),
   then the time per step over many steps (and of the cuda step where the op has one and the
   extension is built: linear_memory_step), two ways: an eager loop of Python-level calls (host
   overhead included) and CUDA-graph replays of one captured step (device time only), with the
   roofline floor of each case (float32 state bytes at 3.0 TB/s) and the ratio to it.

    python python/check_steps_triton.py                 # ~1-2 minutes on an H100
    python python/check_steps_triton.py --quick         # fewer correctness cases, fewer steps
    python python/check_steps_triton.py --json $OUT/steps.json

Exit status 1 when a check fails or raises.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

os.environ.setdefault("NESTED_KERNELS_POISON", "1")
os.environ.setdefault("NESTED_KERNELS_BENCH_SHAPES", "issue")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from nested_kernels.cases import STEP_OPS, step_cases  # noqa: E402
from nested_kernels.step_check import stream_errors  # noqa: E402
from nested_kernels.testing import rel_error, tolerance  # noqa: E402
from gpu_check_utils import write_json  # noqa: E402

def check_correctness(quick: bool, results: dict) -> bool:
    ok = True
    print("== correctness: prefix by the full op, then steps, vs one float64 call of the full op")
    for case, prefix in [cp for op in STEP_OPS for cp in step_cases(op, "cuda", quick)]:
        name = f"{case.op} {case.shape_str()} {case.options_str()} {case.dtype_name} (steps {prefix}..{case.dims['T']})"
        try:
            tol = tolerance("kernel", case.dtype)
            tri = stream_errors(case, "cuda", "triton", prefix)
            ref = stream_errors(case, "cuda", "torch", prefix)
            passed = all(e <= tol for e in tri.values())
            ok &= passed
            worst = max((n for n in tri), key=lambda n: tri[n])
            print(f"  {'PASS' if passed else 'FAIL'} {name}: worst triton {worst} {tri[worst]:.2e} "
                  f"(torch step {ref[worst]:.2e}, bound {tol:.0e})")
            if not passed:
                print(f"       triton {tri}\n       torch  {ref}")
            results["correctness"].append(dict(case=name, triton=tri, torch=ref, tol=tol, passed=passed))
        except Exception:  # noqa: BLE001 - report and go on
            ok = False
            print(f"  ERROR {name}")
            traceback.print_exc()
    return ok


def _events_per_step(fn, n: int) -> float:
    """Microseconds per call of ``fn`` over ``n`` calls (CUDA events around the whole loop)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(n):
        fn()
    end.record()
    end.synchronize()
    return 1e3 * start.elapsed_time(end) / n


def time_case(case, steps: int) -> dict:
    """Eager and CUDA-graph microseconds per step of one BenchCase (fresh state)."""
    dev = torch.device("cuda")
    w = case.build(dev, 0, False)
    step = lambda: w.forward(w.inputs)  # noqa: E731
    for _ in range(10):
        step()
    eager = min(_events_per_step(step, steps) for _ in range(3))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        step()
    for _ in range(10):
        graph.replay()
    replay = min(_events_per_step(graph.replay, steps) for _ in range(3))
    return dict(eager_us=eager, graph_us=replay)


def agreement(tri_case, torch_case, dev=None) -> dict:
    """Relative differences after one step of each provider from the same state."""
    dev = dev or torch.device("cuda")
    wt, wr = tri_case.build(dev, 0, False), torch_case.build(dev, 0, False)
    out = {"out": rel_error(wt.forward(wt.inputs), wr.forward(wr.inputs))}
    for n, t in wt.inputs.items():
        if n.startswith("state.") and t.is_floating_point() and t.numel():
            out[n[6:]] = rel_error(t, wr.inputs[n])
        elif n == "state.position":
            out["position"] = 0.0 if torch.equal(t, wr.inputs[n]) else float("inf")
    return out


def check_timing(steps: int, results: dict) -> bool:
    from bench.bench_decode_step import cases
    ok = True
    print(f"\n== agreement and time per step at the issue shapes ({torch.cuda.get_device_name()}, {steps} steps)")
    all_cases = cases(torch.device("cuda"))
    pairs = {}
    for c in all_cases:
        pairs.setdefault((c.op, c.shape), {})[c.provider.split(".")[-1]] = c
    for (op, shape), by in pairs.items():
        try:
            agree = agreement(by["triton"], by["torch"])
            worst = max(agree.values())
            good = worst <= 1e-4
            ok &= good
            floor_us = 1e3 * by["triton"].cost.floor_ms("fwd")
            row = dict(op=op, shape=shape, floor_us=floor_us, agreement=agree)
            cuda = "cuda" in by and by["cuda"].available(torch.device("cuda")) is None
            if cuda:                                    # the CUDA step where the op has one (linear_memory)
                row["cuda_agreement"] = agreement(by["cuda"], by["torch"])
                good_cuda = max(row["cuda_agreement"].values()) <= 1e-4
                ok &= good_cuda
            for name in ("triton", "torch") + (("cuda",) if cuda else ()):
                row[name] = time_case(by[name], steps)
            t, r = row["triton"], row["torch"]
            print(f"  {op} {shape}: triton vs torch step max rel diff {worst:.1e} ({'ok' if good else 'TOO LARGE'})\n"
                  f"     triton: eager {t['eager_us']:8.1f} µs  graph {t['graph_us']:8.1f} µs  "
                  f"({t['graph_us'] / floor_us:.2f}× floor {floor_us:.1f} µs)\n"
                  f"     torch:  eager {r['eager_us']:8.1f} µs  graph {r['graph_us']:8.1f} µs  "
                  f"→ triton speedup {r['eager_us'] / t['eager_us']:.1f}× eager, {r['graph_us'] / t['graph_us']:.1f}× graph")
            if cuda:
                cu = row["cuda"]
                print(f"     cuda:   eager {cu['eager_us']:8.1f} µs  graph {cu['graph_us']:8.1f} µs  "
                      f"({cu['graph_us'] / floor_us:.2f}× floor); vs torch step max rel diff "
                      f"{max(row['cuda_agreement'].values()):.1e} ({'ok' if good_cuda else 'TOO LARGE'})")
            results["timing"].append(row)
        except Exception:  # noqa: BLE001
            ok = False
            print(f"  ERROR {op} {shape}")
            traceback.print_exc()
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer correctness cases and timed steps")
    p.add_argument("--no-check", action="store_true", help="timing only")
    p.add_argument("--no-timing", action="store_true", help="correctness only")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 200, quick 50)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("needs CUDA", file=sys.stderr)
        return 2
    results = {"device": torch.cuda.get_device_name(), "correctness": [], "timing": []}
    ok = True
    if not args.no_check:
        ok &= check_correctness(args.quick, results)
    if not args.no_timing:
        os.environ.pop("NESTED_KERNELS_POISON", None)       # timing without the NaN fill of outputs
        ok &= check_timing(args.steps or (50 if args.quick else 200), results)
    if args.json:
        write_json(args.json, results, float)
    print("\nALL PASSED" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
