#!/usr/bin/env bash
# 2026-12-06g, the smallest form of call 3 for the last ~4 minutes of device time: build, the CUDA
# walk against the Triton walk (cooperative and cluster exchange, with and without kept residuals)
# and the issue configuration against the float64 reference, then the timing at issue 4's shape
# (cuda beside triton, no titans).
. "$(dirname "$0")/lib.sh"
{
fg build 100 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg cuda 80 python3 -m pytest -q -x -m gpu -p no:cacheprovider --tb=short tests/ops/test_mlp_memory_cuda.py \
  -k "walk_equals or dtype0"
fg time_coop 70 python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --no-titans --cuda \
  --variants= --reps 5 --json "$OUT/time_coop.json"
echo "=== done ($(now))"
} > "$OUT/call3b.log" 2>&1
