#!/usr/bin/env bash
# GPU call 1 of session 2026-11-26e (≤ 10 min): verify linear_memory (new plain-tile gradient
# kernels, factors kept from the forward; two new quick cases exercise the plain path), then time
# C64 beside fla with the new defaults and with both changes off (GRAD_PLAIN=0 KEEP_FACTORS=0),
# and the per-kernel profile of η only and η+α.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
OLD="env NESTED_KERNELS_LM_TRITON_GRAD_PLAIN=0 NESTED_KERNELS_LM_TRITON_KEEP_FACTORS=0"
bg verify 230 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 4
bg w_lm 200 $LM $W --timed 0,6,3,1
bg w_old 200 $OLD $LM $W --no-fla --timed 0,6,3
wait
{
fg lm64 110 $LM --timed 0,6,3,1 --queued
fg lm64_old 80 $OLD $LM --timed 0,6,3 --no-fla --queued
fg prof 45 python3 python/profile_kernels.py linear_memory --gates "" --reps 5
fg prof_a 45 python3 python/profile_kernels.py linear_memory --gates a --reps 5
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
