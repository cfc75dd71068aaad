#!/usr/bin/env bash
# GPU call for the opt-in CUDA graphs of fast_mlp's dual walks (main since 2026-12-06b; not run yet): fast_mlp's dual walks as CUDA graphs
# (NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=1). Call 5 of 2026-12-06b: 47.8 ms of kernel time in a
# 75.8 ms gelu C64 fwd+bwd — the walk is launch-bound. (1) the GPU tests graph vs eager; (2) the GPU
# check with the graphs; (3) timing eager and graphed in the same call.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
fg test 240 python3 -m pytest -q -m gpu tests/ops/test_fast_mlp_triton.py -k "dual_graph" -p no:cacheprovider
fg check 150 env NESTED_KERNELS_FAST_MLP_FORM=dual NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=1 $FM --no-time
fg time_eager 60 $FM --no-check --no-big --chunks 128,64
fg time_graph 90 env NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=1 $FM --no-check --no-big --chunks 128,64
echo "=== done ($(now))"
} > "$OUT/dual_graph.log" 2>&1
