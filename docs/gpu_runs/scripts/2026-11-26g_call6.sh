#!/usr/bin/env bash
# GPU call 6 of session 2026-11-26g: the descriptor update kernel gets None for the arguments a
# launch does not read (L2/R2 of one product, COPY without a copy): fewer descriptors to encode
# per launch (host time). The check script's cases with the descriptor kernel forced and with the
# default, verify --quick fast_mlp, the launch sweep (host µs), and the op timed three times.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
SW="python3 python/sweep_outer_fast_mlp.py --n 1024,512"
bg verify_fm 300 python3 -m nested_kernels.verify --quick --ops fast_mlp --backends triton --jobs 2
bg check_tma 300 env NESTED_KERNELS_FAST_MLP_OUTER=128,128,64,8,3,1 $FM --no-time
bg check 300 $FM --no-time
bg w_sweep 300 $SW --reps 1
bg w_fm 300 $FM --no-check
wait
{
fg sweep 60 $SW
fg fast_default 90 $FM --no-check
fg fast_default_2 90 $FM --no-check
fg fast_default_3 90 $FM --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify_fm.log "$OUT"/check_tma.log "$OUT"/check.log "$OUT"/time.log > "$OUT/all.txt"
