#!/usr/bin/env bash
# GPU call 11 of session 2026-11-26e: what the float16 accuracy fix costs: C64 timing with float16
# inputs (fla in float16 too) on the new default (tf32x3 products, fused gradient kernel) and on
# the old one (NESTED_KERNELS_LM_TRITON_PRECISION=tf32, split gradient kernels with β or μ).
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check --timing-dtype fp16"
W="--T 256 --warmup 1 --reps 1"
OLD="env NESTED_KERNELS_LM_TRITON_PRECISION=tf32"
bg w_new 200 $LM $W --timed 0,3
bg w_old 200 $OLD $LM $W --no-fla --timed 0,3
wait
{
fg new 70 $LM --timed 0,3
fg old 50 $OLD $LM --timed 0,3 --no-fla
echo "=== done ($(now))"
} > "$OUT/time.log"
tail -n 6 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
