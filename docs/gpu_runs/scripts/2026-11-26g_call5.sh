#!/usr/bin/env bash
# GPU call 5 of session 2026-11-26g: the backward's last piece sums its weight adjoints over the
# sequences in the descriptor kernel (sum_g: no [G, P, Q] float32 write and no torch sum for
# shared initial weights); the persistent/staggered experiment removed. verify --quick fast_mlp,
# the check script's cases with the descriptor kernel forced everywhere and with the default,
# the op timed twice with the default, per-kernel profiles of C1024 and C512 gelu (to files).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
PF="python3 python/profile_kernels.py fast_mlp --mlp gelu --reps 2"
bg verify_fm 300 python3 -m nested_kernels.verify --quick --ops fast_mlp --backends triton --jobs 2
bg check_tma 300 env NESTED_KERNELS_FAST_MLP_OUTER=128,128,64,8,3,1 $FM --no-time
bg check 300 $FM --no-time
bg w_fm 300 $FM --no-check
wait
{
fg fast_default 90 $FM --no-check
fg fast_default_again 90 $FM --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
$TO 60 $PF --chunk 1024 > "$OUT/prof_c1024.log" 2>&1
$TO 60 $PF --chunk 512 > "$OUT/prof_c512.log" 2>&1
cat "$OUT"/verify_fm.log "$OUT"/check_tma.log "$OUT"/check.log "$OUT"/time.log > "$OUT/all.txt"
