#!/usr/bin/env bash
# GPU call 8 of session 2026-11-26g: bf16/fp16 initial weights are no longer converted to float32
# masters and back to compute-dtype copies in the triton backend (prepare(keep_exact): the kernels
# read them as they are; call 7 found 10 weight conversions per fwd+bwd). verify --quick
# fast_mlp, the check script's cases (default and descriptor kernel forced), the op timed three
# times, and the C1024 profile with gaps.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
bg verify_fm 300 python3 -m nested_kernels.verify --quick --ops fast_mlp --backends triton --jobs 2
bg check_tma 300 env NESTED_KERNELS_FAST_MLP_OUTER=128,128,64,8,3,1 $FM --no-time
bg check 300 $FM --no-time
bg w_fm 300 $FM --no-check
wait
{
fg fast_default 90 $FM --no-check
fg fast_default_2 90 $FM --no-check
fg fast_default_3 90 $FM --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
$TO 90 python3 python/profile_kernels.py fast_mlp --mlp gelu --reps 2 --gaps 12 --chunk 1024 > "$OUT/prof_c1024.log" 2>&1
cat "$OUT"/verify_fm.log "$OUT"/check_tma.log "$OUT"/check.log "$OUT"/time.log > "$OUT/all.txt"
