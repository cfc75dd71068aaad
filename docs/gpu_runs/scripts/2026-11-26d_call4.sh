#!/usr/bin/env bash
# GPU call 4 of session 2026-11-26d (≤ 10 min, the last of the device budget): verify the
# linear_memory / mlp_memory Triton backends after this session's changes (verify now streams its
# workers' lines, so a cut run still shows what passed); the mlp_memory F split (SPLIT=8) check
# with the NS-halving compile retry, and its TTGIR determinism probe; then timings: mlp_memory
# SPLIT=8 beside titans, linear_memory C1 η+μ beside both fla rules, HOPE's self-target α+β at C64.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
MLP="python3 python/check_mlp_memory_triton.py"
bg verify 300 python3 -m nested_kernels.verify --quick --ops linear_memory,mlp_memory --backends triton --jobs 9
bg split8 300 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP --quick
bg ttgir 120 python3 python/ttgir_repeat_mlp_memory.py --repeat 3
bg w_c1m 200 $LM --T 256 --warmup 1 --reps 1 --C 1 --timed 5 --no-fla
bg w_hope 200 $LM --T 256 --warmup 1 --reps 1 --timed 4
wait
{
fg mlp8 70 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP --no-check --no-large --no-torch
fg lm1m 90 $LM --C 1 --timed 5
fg hope 80 $LM --timed 4 --queued
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/split8.log "$OUT"/ttgir.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
