#!/usr/bin/env bash
# 2026-12-07b: linear_memory's CUDA walks (csrc/linear_memory/walk.cu; backend "cuda" = the triton
# backend with its two sequential kernels replaced by them), never run on a GPU before. Build the
# extension with the device's nvcc; (1) the GPU tests
# against the float64 reference and the triton backend, bf16 and fp16 in two processes; (2) timing
# cuda vs triton at the issue shape (B4 T4096 H16 K=V=128 C64 bf16: η only, α+β+μ; fla
# chunk_delta_rule beside when its wheel is in .whl/); (3) per-kernel times of one η-only fwd+bwd
# per backend (the walks: _state_fwd_kernel / _state_bwd_kernel vs fwd_walk_kernel / bwd_walk_kernel).
. "$(dirname "$0")/lib.sh"
TESTS="python3 -m pytest -q -m gpu tests/ops/test_linear_memory_cuda.py -p no:cacheprovider"
{
fg build 200 env NVCC_THREADS=4 python3 -m pip install -q --no-build-isolation --no-deps -e .
bg tests_bf16 170 $TESTS -k "bf16 or triton_walks"
bg tests_fp16 170 $TESTS -k fp16
wait
cat "$OUT/tests_bf16.log" "$OUT/tests_fp16.log"
fg time 150 python3 python/check_linear_memory_triton.py --no-check --backends triton,cuda --timed 0,3 \
    --json "$OUT/time.json"
for b in triton cuda; do
  fg "profile_$b" 35 python3 python/profile_kernels.py linear_memory --gates "" --backend $b --json "$OUT/prof_$b.json"
done
echo "=== done ($(now))"
} > "$OUT/lm_cuda_walk.log" 2>&1
