#!/usr/bin/env bash
# GPU call 1 of session 2026-11-26e (≤ 10 min): verify linear_memory (new plain-tile gradient
# kernels, factors kept from the forward; two new quick cases exercise the plain path), then time
# C64 beside fla with the new defaults and with both changes off (GRAD_PLAIN=0 KEEP_FACTORS=0),
# and sweep the plain kernels' block and warps (η only, η+α). Phase 1 compiles everything in
# parallel (the sweep once with --reps 1 to fill the cache), phase 2 times serially.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
OLD="env NESTED_KERNELS_LM_TRITON_GRAD_PLAIN=0 NESTED_KERNELS_LM_TRITON_KEEP_FACTORS=0"
SW="python3 python/sweep_linear_memory_triton.py --gates ,a --block-plain 32,64 --warps-plain 4,8"
bg verify 230 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 4
bg w_lm 200 $LM $W --timed 0,6,3
bg w_old 200 $OLD $LM $W --no-fla --timed 0,3
bg w_sweep 200 $SW --reps 1
wait
{
fg lm64 90 $LM --timed 0,6,3 --queued
fg lm64_old 60 $OLD $LM --timed 0,3 --no-fla --queued
fg sweep 130 $SW --reps 5
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
