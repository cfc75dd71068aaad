#!/usr/bin/env bash
# GPU call 6 of session 2026-11-26e: the full (non-quick) linear_memory verify with today's
# defaults (plain-tile kernels, kept factors, wgmma dK), the GPU tests of plain tiles, and C1
# beside both fla rules (the kept (I + A)⁻¹ and factors also spare the exact rule's backward prep).
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
bg verify 420 python3 -m nested_kernels.verify --ops linear_memory --backends triton --jobs 6
bg gpu_plain 300 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k "gpu_plain or gpu_realistic" -p no:cacheprovider
bg w_c1 250 $LM $W --C 1 --timed 0,5,3
wait
{
fg lm1 120 $LM --C 1 --timed 0,5,3
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/gpu_plain.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
