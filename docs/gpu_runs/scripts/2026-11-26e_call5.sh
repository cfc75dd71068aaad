#!/usr/bin/env bash
# GPU call 5 of session 2026-11-26e: verify the quick linear_memory set with the split's dK kernel
# on wgmma (64-wide V blocks, bf16 operands) by default; sweep wgmma for the forward kernels
# (MMA mixed: prep, walk, outputs) for η only, α+β, α+β+μ; time C64 beside fla.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
SW="python3 python/sweep_linear_memory_triton.py --gates ,ab,abm --mma v2,mixed"
bg verify 240 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 4
bg w_sweep 230 $SW --reps 1
bg w_lm 220 $LM $W --timed 0,6,1,3,4
wait
{
fg sweep 150 $SW --reps 3
fg lm64 130 $LM --timed 0,6,1,3,4 --queued
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
