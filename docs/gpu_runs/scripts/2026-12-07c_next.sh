#!/usr/bin/env bash
# For a session after 2026-12-07c (≤ 9.5 min, main; steps in priority order, a shorter limit cuts
# the last ones): (1) while the extension builds in the background, the default linear_memory
# triton verify with the fused outputs now the default (same sm_90 PTX as the 7/7 run of
# 2026-12-07a), then the C1 self check cases 10 (fp16 / fp32) and 11 (μ, refused on a GPU without
# NESTED_KERNELS_LM_TRITON_C1_SELF_MU=1: drop that refusal where it passes); (2) the experimental
# CUDA walks' whole GPU grid (6 of its tests passed in 2026-12-07c), alone; (3) their per-kernel
# profile beside the Triton walks (η only, issue shape).
. "$(dirname "$0")/lib.sh"
{
bg build 280 env NVCC_THREADS=4 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg verify 150 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton
fg c1self 140 env NESTED_KERNELS_LM_TRITON_C1_SELF_MU=1 python3 python/check_linear_memory_triton.py \
    --cases 10,11 --dtypes fp16,fp32,bf16 --no-timing
wait
tail -3 "$OUT/build.log"
fg cuda_tests 200 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_cuda.py -p no:cacheprovider -rfE --tb=line
for b in triton cuda; do
  fg "profile_$b" 35 python3 python/profile_kernels.py linear_memory --gates "" --backend $b --json "$OUT/prof_$b.json"
done
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
