#!/usr/bin/env bash
# GPU call 3 of session 2026-11-26g: main's new default (the descriptor update GEMM for pieces of
# ≥ 256 tokens, the pointer kernel below) — verify --quick fast_mlp, the check script's cases with
# the descriptor kernel forced everywhere, the update-launch sweep with host launch times, the op
# timed with the default and with the pointer kernel forced (same call), and per-kernel profiles
# of C1024 and C512 gelu (written to files: fg's filter drops lines with "_kernel ").
. "$(dirname "$0")/lib.sh"
SW="python3 python/sweep_outer_fast_mlp.py --n 1024,512,64"
FM="python3 python/check_fast_mlp_triton.py"
PF="python3 python/profile_kernels.py fast_mlp --mlp gelu --reps 2"
bg verify_fm 300 python3 -m nested_kernels.verify --quick --ops fast_mlp --backends triton --jobs 2
bg check_tma 300 env NESTED_KERNELS_FAST_MLP_OUTER=128,128,64,8,3,1 $FM --no-time
bg w_sweep 300 $SW --reps 1
bg w_fm 300 $FM --no-check
wait
{
fg sweep 90 $SW
fg fast_default 90 $FM --no-check
fg fast_pointer 90 env NESTED_KERNELS_FAST_MLP_OUTER=128,128,64,8,3,0 $FM --no-check
fg fast_default_again 90 $FM --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
$TO 60 $PF --chunk 1024 > "$OUT/prof_c1024.log" 2>&1
$TO 60 $PF --chunk 512 > "$OUT/prof_c512.log" 2>&1
tail -n 5 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
cat "$OUT"/verify_fm.log "$OUT"/check_tma.log "$OUT"/time.log > "$OUT/all.txt"
