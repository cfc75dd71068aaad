#!/usr/bin/env bash
# For a session after 2026-12-07d (≤ 9.5 min, main; steps in priority order, a shorter limit cuts
# the last ones): (1) while the extension builds in the background: the quick linear_memory triton
# verify with PLAIN_A the default (its plain case passed in 2026-12-07d call 3, the other six
# cases do not take PLAIN_A), then C1 self case 11 (μ) in float32 (float16 passed in 2026-12-07d;
# float32 is refused on a GPU until it passes: drop it from the refusal in
# triton_backend.unsupported if it does); (2) the experimental CUDA walks' GPU tests (11 passed in
# 2026-12-07d call 1 before its limit); (3) mlp_memory K=V=128 F=512 throughput.
. "$(dirname "$0")/lib.sh"
{
bg build 280 env NVCC_THREADS=4 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg verify 170 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 4
fg c1self 100 env NESTED_KERNELS_LM_TRITON_C1_SELF_MU=1 python3 python/check_linear_memory_triton.py \
    --cases 11 --dtypes fp32 --no-timing
wait
tail -3 "$OUT/build.log"
fg cuda_tests 200 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_cuda.py -p no:cacheprovider -rfE --tb=line
fg large 100 python3 python/check_mlp_memory_triton.py --no-check --only-large --no-torch --json "$OUT/large.json"
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
