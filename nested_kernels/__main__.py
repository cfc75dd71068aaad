"""``python -m nested_kernels``: verify every backend against the float64 reference, then time the
benchmark suite, and print both tables. The exit code is non-zero when verification fails.

Off CUDA: the quick verification set and the tiny benchmark shapes (a few minutes at most).
On CUDA: the full verification set and the issue shapes (``--quick`` for the short set).
The benchmark suite lives in ``bench/`` of a source checkout; without it only verify runs.

    python -m nested_kernels [--quick | --full] [--device cuda] [--no-bench] [--ops a,b]
                             [--json VERIFY.json] [--csv RESULTS.csv]
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import torch

from . import verify


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m nested_kernels", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", default=None, help="quick verification set (default off CUDA)")
    size.add_argument("--full", action="store_true", help="full verification set (default on CUDA)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--ops", default=None, help="comma-separated ops to verify (default: all)")
    p.add_argument("--no-bench", action="store_true", help="verify only")
    p.add_argument("--json", default=None, metavar="OUT", help="write the verification rows as JSON")
    p.add_argument("--csv", default=None, metavar="OUT", help="append the benchmark rows to this CSV")
    return p.parse_args(argv)


def _load_bench():
    """``bench.suite`` from the source checkout holding this package, or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(root, "bench", "suite.py")):
        return None
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("bench.suite")


def main(argv=None) -> int:
    args = _parse(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    quick = args.quick if args.quick is not None else (device.type != "cuda" and not args.full)
    vargs = ["--device", str(device)] + (["--quick"] if quick else [])
    if args.ops:
        vargs += ["--ops", args.ops]
    if args.json:
        vargs += ["--json", args.json]
    print("=" * 100)
    print("1. Verification against the float64 reference")
    print("=" * 100)
    status = verify.main(vargs)
    if args.no_bench:
        return status
    print()
    print("=" * 100)
    print("2. Benchmarks")
    print("=" * 100)
    suite = _load_bench()
    if suite is None:
        print("benchmark suite not found (bench/ of a source checkout); skipped")
        return status
    os.environ.pop("NESTED_KERNELS_POISON", None)     # verify poisons outputs; timings must not pay for it
    start = time.perf_counter()
    shapes = suite.shape_set(device)
    env = verify.environment(device)
    print(f"shapes: {shapes}; timing: {'CUDA events' if device.type == 'cuda' else 'time.perf_counter'}, "
          f"median of repeats; device {env['device']}; commit {env['commit']}")
    if device.type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        rows = suite.run_summary(device=device, csv_path=args.csv)
    finally:
        if device.type == "cpu":
            torch.set_num_threads(threads)
    print()
    print(suite.format_rows(rows))
    print(f"\nbenchmarks: {len(rows)} timings in {time.perf_counter() - start:.1f} s"
          + ("" if device.type == "cuda" else " (CPU, tiny shapes: a smoke run, not a performance result)"))
    print(f"\nverification: {'FAILED' if status else 'OK'}")
    return status


if __name__ == "__main__":
    verify.reexec_with_interpreter("nested_kernels", sys.argv[1:])
    sys.exit(main())
