#!/usr/bin/env bash
# GPU call 11 of session 2026-11-26g: pieces below 256 tokens now default to the pointer kernel on
# 64×128 tiles with 4 warps and 2 stages (call 10's sweep: 12–15 % faster per launch at n = 64
# than 128×128 / 8 warps). The check script's cases (their pieces are all < 256 tokens), verify
# --quick fast_mlp, and the op timed twice with the new default and twice with the old n = 64
# tile forced everywhere (128,128,64,8,2,0: only its C64 rows compare).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
OLD=128,128,64,8,2,0
bg verify_fm 300 python3 -m nested_kernels.verify --quick --ops fast_mlp --backends triton --jobs 2
bg check 300 $FM --no-time
bg w_fm 300 $FM --no-check
bg w_old 300 env NESTED_KERNELS_FAST_MLP_OUTER=$OLD $FM --no-check
wait
{
fg fast_new 100 $FM --no-check
fg fast_old 100 env NESTED_KERNELS_FAST_MLP_OUTER=$OLD $FM --no-check
fg fast_new_2 100 $FM --no-check
fg fast_old_2 100 env NESTED_KERNELS_FAST_MLP_OUTER=$OLD $FM --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify_fm.log "$OUT"/check.log "$OUT"/time.log > "$OUT/all.txt"
