#!/usr/bin/env bash
# GPU call 5 of session 2026-11-26d (≤ 8 min): the mlp_memory F split (SPLIT=8) — check case 2
# (the varlen+resume case whose NS=8 compile failed in 2026-11-26c; call 4's run compiled it but
# its float64 token-loop reference ran out of time, so the chunked float64 torch witness here) and
# the issue-shape timing of the default (one program per head) and of SPLIT=8 in the same call.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
W="--no-check --no-large --no-torch --no-titans --T 256 --warmup 1 --reps 1"
bg case2 230 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP --cases 2 --dtypes bf16,fp32 --no-timing --ref torch
bg w_8 230 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP $W
bg w_1 230 $MLP $W
wait
{
fg mlp1 90 $MLP --no-check --no-large --no-torch
fg mlp8 60 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP --no-check --no-large --no-torch --no-titans
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/case2.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
