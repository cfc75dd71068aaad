#!/usr/bin/env bash
# 2026-12-06h call 2, on branch wip/h-coop (main + the cooperative CUDA walk): (1) the ill-conditioned
# case's non-finite outputs of call 1 (2026-12-06h_ill.py: launches, warnings, errors per dtype /
# precision / variant); (2) the CUDA walk's tests one by one, verbose, with a stack dump of any test
# running past 60 s (call 1's ran out of its 90 s after one test: a hang?).
. "$(dirname "$0")/lib.sh"
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
echo "=== ill ($(now))"; $TO 220 python3 docs/gpu_runs/scripts/2026-12-06h_ill.py 2>&1 | grep -v "_kernel \|warn("
fg cuda 200 python3 -m pytest -v -m gpu -p no:cacheprovider --tb=short -o faulthandler_timeout=60 --durations=0 \
  tests/ops/test_mlp_memory_cuda.py -k "walk_equals or matches_reference"
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
