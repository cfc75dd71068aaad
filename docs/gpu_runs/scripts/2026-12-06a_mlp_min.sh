#!/usr/bin/env bash
# The short form of 2026-12-06a_mlp.sh (for what was left of the device budget): warm-up compiles
# of the default and of tf32r + split in parallel with the quick checks of both (issue case +
# varlen/resume case, bf16, float64 torch witness), then the issue-shape timing of the default,
# tf32r and tf32r + split beside titans-pytorch in the same process.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
V1="tf32r:PRECISION=tf32r"
V2="tf32r split:PRECISION=tf32r,BWD_SPLIT=1"
W="--no-check --no-large --no-torch --no-titans --T 256 --warmup 1 --reps 1"
bg w_def 180 $MLP $W --variants ""
bg w_1 180 $MLP $W --variants "$V1"
bg w_2 180 $MLP $W --variants "$V2"
bg chk_tf 200 env NESTED_KERNELS_MLP_TRITON_PRECISION=tf32r NESTED_KERNELS_MLP_TRITON_BWD_SPLIT=1 $MLP --quick --ref torch --no-timing
bg chk_def 200 $MLP --quick --ref torch --no-timing
wait
{
fg time 120 $MLP --no-check --no-large --no-torch --variants "$V1;$V2" --warmup 1 --reps 5 --json "$OUT/time_mlp.json"
echo "=== done ($(now))"
} > "$OUT/time.log" 2>&1
cat "$OUT"/chk_*.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 6 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
