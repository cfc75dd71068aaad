#!/usr/bin/env bash
# GPU call 7 of session 2026-11-26f: the fast_mlp timing with the update GEMM's tile groups of 8
# (the default since call 6) and of 1 (row-major, the kernel before call 6) in the same call, and
# the update-launch sweep at n = 64 (C64's pieces), to settle the default.
. "$(dirname "$0")/lib.sh"
SW="python3 python/sweep_outer_fast_mlp.py --n 64,1024 --configs 128,128,64,8,3 --groups 1,4,8,16"
FM="python3 python/check_fast_mlp_triton.py --no-check"
bg w_sweep 200 $SW --reps 1
bg w_fm 200 env NESTED_KERNELS_FAST_MLP_OUTER_GROUP=1 $FM
wait
{
fg sweep 60 $SW
fg fast_group1 120 env NESTED_KERNELS_FAST_MLP_OUTER_GROUP=1 $FM
fg fast_group8 120 $FM
echo "=== done ($(now))"
} > "$OUT/time.log"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
