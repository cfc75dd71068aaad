#!/usr/bin/env bash
# GPU call 10 of session 2026-11-26f: the plain walks with k's rows loaded once per product
# (call 9's walks shared one load between both products and were slower: forward walk 172 → 199
# µs): per-kernel sweep (η only, η+α), quick verify of the plain cases, C64 timing beside fla.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
SW="python3 python/sweep_linear_memory_triton.py --gates ,a --bv 32"
bg verify_plain 250 python3 -m nested_kernels.verify --ops linear_memory --backends triton --case "plain tiles" --jobs 2
bg verify 280 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --case "K128 V128 C64 init" --jobs 1
bg w_lm 200 $LM --T 256 --warmup 1 --reps 1 --timed 0,6
bg w_sweep 200 $SW --reps 1
wait
{
fg sweep 90 $SW --reps 3
fg lm64 90 $LM --timed 0,6 --queued
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify_plain.log "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
