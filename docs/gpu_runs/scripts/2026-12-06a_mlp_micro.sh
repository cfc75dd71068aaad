#!/usr/bin/env bash
# The shortest form of 2026-12-06a_mlp.sh (≈ 4 min of device budget left): the quick check with
# the defaults (now keeping the forward's residuals; B Aᵀ summed over F slices) in the background,
# and the issue-shape timing of the default and of tf32r + split beside titans-pytorch.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
bg chk_def 200 $MLP --quick --ref torch --no-timing
{
fg time 200 $MLP --no-check --no-large --no-torch --variants "tf32r split:PRECISION=tf32r,BWD_SPLIT=1" --warmup 1 --reps 3 --json "$OUT/time_mlp.json"
echo "=== done ($(now))"
} > "$OUT/time.log" 2>&1
wait
cat "$OUT"/chk_*.log "$OUT"/time.log > "$OUT/all.txt"
