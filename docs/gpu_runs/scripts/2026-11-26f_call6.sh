#!/usr/bin/env bash
# GPU call 6 of session 2026-11-26f: fast_mlp's update GEMM in groups of 8 row blocks (GROUP 8,
# the new default) against the row-major order (GROUP 1) — sweep of the launches alone, then the
# fast_mlp timing beside the static MLP (python/check_fast_mlp_triton.py, checks included: the
# kernel changed) and verify --quick fast_mlp.
. "$(dirname "$0")/lib.sh"
SW="python3 python/sweep_outer_fast_mlp.py --configs 128,128,64,8,3;128,256,64,8,3;128,128,32,4,4 --groups 1,4,8,16"
bg verify_fm 300 python3 -m nested_kernels.verify --quick --ops fast_mlp --backends triton --jobs 2
bg w_sweep 250 $SW --reps 1
bg fast_check 280 python3 python/check_fast_mlp_triton.py --no-time
wait
{
fg sweep 120 $SW
fg fast 120 python3 python/check_fast_mlp_triton.py --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify_fm.log "$OUT"/fast_check.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
