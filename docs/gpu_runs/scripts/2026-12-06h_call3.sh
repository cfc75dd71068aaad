#!/usr/bin/env bash
# 2026-12-06h call 3, on main (the cooperative CUDA walk merged): (1) build; (2) the CUDA
# walk against the Triton walk (cooperative with / without kept residuals, cluster) — call 2 ran out
# of time in the first, it was compiling (KeyboardInterrupt printed), not hung; (3) the runaway case
# with precision="float32" (bf16, fp32); (4) the realistic rows on bounded data (η ≤ 0.1), bf16.
. "$(dirname "$0")/lib.sh"
T="python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short"
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg walk 200 $T -v --durations=0 tests/ops/test_mlp_memory_cuda.py -k "walk_equals"
fg runaway 100 $T tests/ops/test_mlp_memory_triton.py -k "runaway and prep1-split-torchtok"
fg realistic 140 $T tests/ops/test_mlp_memory_triton.py -k "realistic and prep1-split-torchtok and dtype0"
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
