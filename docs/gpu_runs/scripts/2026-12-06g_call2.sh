#!/usr/bin/env bash
# 2026-12-06g, second call (no build: triton only): (1) the K=V=32 chunk-64 gradient failure of
# call 1 (triton backend too) under knob variants — F split off, eager tile VJP, PARTs 2+3, ieee
# products, one backward walk; (2) the torch.compile GPU test alone with its full report.
. "$(dirname "$0")/lib.sh"
{
fg k32_knobs 200 python3 docs/gpu_runs/scripts/2026-12-06g_walk_diag.py k32_knobs
fg compile_test 200 python3 -m pytest -q -m gpu -p no:cacheprovider --tb=long -x -W ignore \
  tests/ops/test_mlp_memory_triton.py -k torch_compile
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
