#!/usr/bin/env bash
# GPU call 2 of session 2026-11-26e: the plain-tile gradient kernels were slower than _grad_kernel
# in call 1 (η only: 804 + 614 µs vs 1270) with mma.sync and ptxas -O1; sweep wgmma (MMA auto) and
# ptxas -O3 against them, and verify the plain varlen case again (it had no initial state, so its
# self-target reference was identically zero).
. "$(dirname "$0")/lib.sh"
SW="python3 python/sweep_linear_memory_triton.py --block-plain 32,64 --mma v2,auto --ptxas=-O1,-O3"
SWA="python3 python/sweep_linear_memory_triton.py --gates a --block-plain 32 --mma v2,auto"
bg verify 200 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 2 --case "plain tiles"
bg w_sweep 200 $SW --gates "" --reps 1
bg w_sweepa 200 $SWA --reps 1
wait
{
fg sweep 120 $SW --gates "" --reps 5
fg sweepa 60 $SWA --reps 5
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
