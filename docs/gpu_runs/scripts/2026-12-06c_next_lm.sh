#!/usr/bin/env bash
# GPU call after 2026-12-06c for linear_memory (not run yet): the timing table (η only, α+β, α+β+μ)
# beside fla with the split gradient's n×n hand-off (landed in 2026-12-06c after its quick check;
# call 4 lost its wall-time measurement to a compile timeout), then the verify --quick run of the
# triton backend.
. "$(dirname "$0")/lib.sh"
{
fg time 300 python3 python/check_linear_memory_triton.py --no-check --timed 0,1,3 --json "$OUT/time_lm.json"
fg verify 250 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton
echo "=== done ($(now))"
} > "$OUT/next_lm.log" 2>&1
