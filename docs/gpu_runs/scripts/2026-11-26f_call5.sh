#!/usr/bin/env bash
# GPU call 5 of session 2026-11-26f (main after the launch-cache revert): the float16 GPU tests of
# linear_memory (tf32r by default now; pytest ids dtype1); a sweep of the η-only walks (V block,
# warps); the C64 timings beside fla in bfloat16 (every timed case) and float16.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
SW="python3 python/sweep_linear_memory_triton.py --gates , --bv 32,64 --warps-state 4,8"
bg gpu16 280 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k dtype1 -p no:cacheprovider
bg w_lm 250 $LM $W --timed 0,6,1,3,4
bg w_f16 250 $LM $W --timing-dtype fp16 --timed 0,3
bg w_sweep 250 $SW --reps 1
wait
{
fg sweep 100 $SW --reps 3
fg lm64 110 $LM --timed 0,6,1,3,4 --queued
fg f16 80 $LM --timing-dtype fp16 --timed 0,3
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/gpu16.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
