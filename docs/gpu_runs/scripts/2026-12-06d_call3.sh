#!/usr/bin/env bash
# 2026-12-06d call 3, run on branch wip/lm-step-cuda rebased on main: (1) build the extension
# (sm_90a only) and run the CUDA linear_memory decode step's GPU tests and decode-bench rows
# (cuda / triton / torch steps, N64 H16 K=V=128 C64 bf16); (2) fast_mlp's dual gelu C64 fwd+bwd
# profiled eagerly by torch op and input shapes (which line of the walk costs); (3) gelu / swiglu
# C64 with blocks of 256 tokens (512 is the default; 64 and 1024 measured in 2026-12-06c).
. "$(dirname "$0")/lib.sh"
T="python3 python/check_fast_mlp_triton.py --no-check --no-big --no-cms"
{
fg build 200 env NESTED_KERNELS_CUDA_ARCHS=90a python3 -m pip install -q --no-build-isolation --no-deps -e .
fg test 100 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_step_cuda.py -p no:cacheprovider
fg bench 90 python3 -m pytest bench/bench_decode_step.py -q -k linear_memory --bench-csv "$OUT/bench_step.csv" -p no:cacheprovider
fg prof 90 env NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=0 python3 python/profile_kernels.py fast_mlp --mlp gelu --chunk 64 --reps 2 --shapes 50
fg block256 60 env NESTED_KERNELS_FAST_MLP_DUAL_BLOCK=256 $T --chunks 64 --json "$OUT/time_block256.json"
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
