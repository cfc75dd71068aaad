#!/usr/bin/env bash
# GPU call 3 of session 2026-11-26f: the launch cache (core.triton_launch.launch) under every op:
# its GPU test, verify --quick of linear_memory, fast_mlp and mlp_memory, the step checks; then
# linear_memory C64 timings beside fla with host profiles, the decode-step timings, and the
# fast_mlp update-GEMM sweep (python/sweep_outer_fast_mlp.py).
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
SW="python3 python/sweep_outer_fast_mlp.py"
bg verify_lm 300 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 3
bg verify_fm 330 python3 -m nested_kernels.verify --quick --ops fast_mlp,mlp_memory --backends triton --jobs 3
bg steps 250 python3 python/check_steps_triton.py --quick --no-timing
bg pytest_launch 200 python3 -m pytest -q -m gpu tests/test_triton_launch.py
bg w_lm 220 $LM --T 256 --warmup 1 --reps 1 --timed 0,6,3
bg w_sweep 330 $SW --reps 1
wait
{
fg lm64 150 $LM --timed 0,6,3 --queued --profile-host
fg sweep 90 $SW
fg steps_time 80 python3 python/check_steps_triton.py --quick --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/pytest_launch.log "$OUT"/verify*.log "$OUT"/steps.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
