#!/usr/bin/env bash
# GPU call 9 of session 2026-11-26f: plain external tiles form Xw and xu in the walks (PLAIN_X):
# verify --quick linear_memory, the full set's plain-tile cases, pytest -m gpu -k gpu_plain;
# per-kernel sweep (η only, η+α) and the C64 timing beside fla.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
SW="python3 python/sweep_linear_memory_triton.py --gates ,a --bv 32"
bg verify 300 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 3
bg verify_plain 250 python3 -m nested_kernels.verify --ops linear_memory --backends triton --case "plain tiles" --jobs 2
bg gpu_plain 300 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k gpu_plain -p no:cacheprovider
bg w_lm 200 $LM --T 256 --warmup 1 --reps 1 --timed 0,6
bg w_sweep 200 $SW --reps 1
wait
{
fg sweep 90 $SW --reps 3
fg lm64 90 $LM --timed 0,6 --queued
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/verify_plain.log "$OUT"/gpu_plain.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
