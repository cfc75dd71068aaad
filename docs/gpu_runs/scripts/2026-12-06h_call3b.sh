#!/usr/bin/env bash
# 2026-12-06h call 3b, on main: call 3 cut to the last ≈ 5 minutes of device time — build, the CUDA
# walk against the Triton walk with the cooperative exchange (with / without kept residuals), the
# runaway case with precision="float32" (bf16, fp32).
. "$(dirname "$0")/lib.sh"
T="python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short"
{
fg build 100 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg walk 110 $T -v --durations=0 tests/ops/test_mlp_memory_cuda.py -k "walk_equals and auto"
fg runaway 70 $T tests/ops/test_mlp_memory_triton.py -k "runaway and prep1-split-torchtok"
echo "=== done ($(now))"
} > "$OUT/call3b.log" 2>&1
