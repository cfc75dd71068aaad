#!/usr/bin/env bash
# 2026-12-06d call 4: fast_mlp's dual walk with token-major token tensors (every product with the
# shared W₀ one GEMM over all sequences' rows, no copies; Â formed in place of AF's rows). (1) the
# dual GPU tests and the GPU check in the dual form; (2) timing at C64 and the CMS (check script);
# (3) the eager profile by torch op and input shapes; (4) the bench suite's C64 / CMS / static rows.
# With LMSTEP=1 (branch wip/lm-step-cuda merged) first the CUDA linear_memory step: build, GPU
# tests, decode-bench rows, and check_steps_triton's graph timing.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
if [ "${LMSTEP:-0}" = 1 ]; then
fg build 200 env NESTED_KERNELS_CUDA_ARCHS=90a python3 -m pip install -q --no-build-isolation --no-deps -e .
fg steptest 100 python3 -m pytest -q -m gpu tests/ops/test_linear_memory_step_cuda.py -p no:cacheprovider
fg stepbench 90 python3 -m pytest bench/bench_decode_step.py -q -k linear_memory --bench-csv "$OUT/bench_step.csv" -p no:cacheprovider
fg stepgraph 120 python3 python/check_steps_triton.py --quick --no-check
fi
fg gputest 120 python3 -m pytest -q -m gpu tests/ops/test_fast_mlp_triton.py -p no:cacheprovider
fg check 170 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-time
fg time 80 $FM --no-check --no-big --chunks 64 --json "$OUT/time_c64.json"
fg prof 70 env NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=0 python3 python/profile_kernels.py fast_mlp --mlp gelu --chunk 64 --reps 2 --shapes 40
fg bench 120 python3 -m pytest bench -q -k "(fast_mlp or cms) and (triton or static) and (C64 or cms or static) and not bf16w" --bench-csv "$OUT/bench.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/call4.log" 2>&1
