#!/usr/bin/env bash
# GPU call 3 of session 2026-11-26d (≤ 10 min): verify the linear_memory / mlp_memory Triton
# backends after this session's kernel changes (η-only forward without the prep kernel, backward
# prep without offsets, gradients stored in the inputs' dtype, split gradient default with β or μ,
# cached tile plans); time C64 beside fla (synced and back to back); per-kernel sweep of the
# direct path (direct on/off × output V block); C1 beside both fla rules.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
bg verify 250 python3 -m nested_kernels.verify --quick --ops linear_memory,mlp_memory --backends triton --jobs 7
bg w_lm 200 $LM $W --timed 0,3
bg w_c1 200 $LM $W --C 1 --timed 0,3
wait
{
fg lm64 80 $LM --timed 0,3 --queued
fg sweep 100 python3 python/sweep_linear_memory_triton.py --gates "" --direct 0,1 --bv-out 32,64
fg lm1 90 $LM --C 1 --timed 0,3
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
