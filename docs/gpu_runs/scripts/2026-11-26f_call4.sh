#!/usr/bin/env bash
# GPU call 4 of session 2026-11-26f: float16 inputs on tf32r products by default (and so on the
# split gradient kernels with β or μ): the "self target" verify cases of the full set and the
# float16 GPU tests; the launch cache's GPU test; timings: bf16 C64 beside fla with the launch
# cache on and off (NESTED_KERNELS_LAUNCH_CACHE=0), float16 C64 beside fla in float16, fast_mlp.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
bg verify_self 300 python3 -m nested_kernels.verify --ops linear_memory --backends triton --case "self target" --jobs 2
bg gpu16 320 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k float16 -p no:cacheprovider
bg pytest_launch 120 python3 -m pytest -q -m gpu tests/test_triton_launch.py -p no:cacheprovider
bg w_lm 200 $LM $W --timed 0,6
bg w_f16 300 $LM $W --timing-dtype fp16 --timed 0,3 --no-fla
wait
{
fg lm64 70 $LM --timed 0,6 --queued
fg lm64_nocache 50 env NESTED_KERNELS_LAUNCH_CACHE=0 $LM --timed 0 --queued --no-fla
fg f16 80 $LM --timing-dtype fp16 --timed 0,3
fg fast 90 python3 python/check_fast_mlp_triton.py --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/pytest_launch.log "$OUT"/verify_self.log "$OUT"/gpu16.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
