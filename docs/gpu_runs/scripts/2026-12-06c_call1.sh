#!/usr/bin/env bash
# First GPU call of 2026-12-06c: the two scripts 2026-12-06b left waiting, overlapped where they
# only compile. (1) background: mlp_memory's quick check with the split backward's token parts in
# bf16 (NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION=bf16); (2) foreground: fast_mlp's dual walks as
# CUDA graphs (GPU tests graph vs eager, the GPU check with the graphs); (3) once both are done, the
# timings alone on the card: fast_mlp eager vs graphed (C128 / C64, CMS) and mlp_memory's
# issue shape (defaults, tokens bf16, bf16 everywhere) beside titans-pytorch.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
MLP="python3 python/check_mlp_memory_triton.py"
bg mlp_chk 300 env NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION=bf16 $MLP --quick --ref torch --no-timing
{
fg test 200 python3 -m pytest -q -m gpu tests/ops/test_fast_mlp_triton.py -k "dual_graph" -p no:cacheprovider
fg check 170 env NESTED_KERNELS_FAST_MLP_FORM=dual NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=1 $FM --no-time
wait; echo "=== mlp check over ($(now))"
fg time_eager 50 $FM --no-check --no-big --chunks 128,64 --json "$OUT/time_eager.json"
fg time_graph 60 env NESTED_KERNELS_FAST_MLP_DUAL_GRAPH=1 $FM --no-check --no-big --chunks 128,64 --json "$OUT/time_graph.json"
fg mlp_time 150 $MLP --no-check --no-large --no-torch --variants "tokens bf16:TOKENS_PRECISION=bf16;bf16 all:PRECISION=bf16"
echo "=== done ($(now))"
} > "$OUT/call1.log" 2>&1
