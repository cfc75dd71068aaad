#!/usr/bin/env bash
# GPU call 12 of session 2026-11-26g: the check script's timing now prints the caching allocator's
# device mallocs / frees / retries during each fwd+bwd warm-up and timing — are the sporadic slow
# runs (one case per process 20–75 % slower) allocator churn? Three timing runs, nothing beside.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py --no-check"
bg w_fm 300 $FM
wait
{
fg fast_1 100 $FM
fg fast_2 100 $FM
fg fast_3 100 $FM
echo "=== done ($(now))"
} > "$OUT/time.log"
