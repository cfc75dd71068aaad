#!/usr/bin/env bash
# GPU call 2 of session 2026-11-26d (≤ 10 min): verify the changed linear_memory / mlp_memory
# backends (cached tile plans, exact tile grids, dq/dk/dv stored in the inputs' dtype, gradient
# split by default with β or μ); time C64 beside fla, synced and back to back, split vs fused;
# the host cProfile of the η-only forward; fast_mlp (forward residuals); C1 beside both fla rules.
# Every timeout sends KILL 10 s after its signal (call 1 hung past its timeout in a C1 warm-up).
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
bg verify 185 python3 -m nested_kernels.verify --quick --ops linear_memory,mlp_memory --backends triton --jobs 5
bg w_lm 170 $LM $W --timed 0,1,3,5
bg w_fused 170 env NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=0 $LM $W --no-fla --timed 1,3,5
bg w_c1 170 $LM $W --C 1 --timed 0,3
bg w_c1m 120 $LM $W --C 1 --timed 5 --no-fla
wait
{
fg lm64 90 $LM --timed 0,1,3,5 --queued
fg lm64_fused 45 env NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=0 $LM --timed 1,3,5 --no-fla --queued
fg host 30 python3 python/profile_kernels.py linear_memory --gates "" --reps 5 --host
fg fast 60 python3 python/check_fast_mlp_triton.py --no-check
fg lm1 70 $LM --C 1 --timed 0,3
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
