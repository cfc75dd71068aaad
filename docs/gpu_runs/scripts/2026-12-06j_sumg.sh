#!/usr/bin/env bash
# For a session after 2026-12-06j (branch wip/j-sumg-cublas, ≈ 6 min): fast_mlp's sum over the
# sequences of the weight gradient (the backward's first piece with shared initial weights) as
# cuBLAS GEMMs over all G·n tokens with float32 output where the token operands are flat
# [G·n, W] matrices (a sequence's only piece: the CMS level of chunk 4096 at T = 4096), instead of
# the Triton update kernel's loop over the sequences. (1) its GPU test against the Triton kernel
# and float64; (2) the GPU check (now with a one-piece case, C512 at T = 301); (3) timing with it
# off (NESTED_KERNELS_FAST_MLP_SUM_CUBLAS=0) and on, one process each: C512 and the CMS
# (expected: ≈ 0.35 ms less per weight matrix at the CMS's top level, cuBLAS ≈ 600 against the
# kernel's ≈ 450 TFLOP/s on 2·16384·8192·2048 FLOPs).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
fg test 90 python3 -m pytest -q -m gpu -p no:cacheprovider tests/ops/test_fast_mlp_triton.py -k sum_g_on_cublas
fg check 200 $FM --no-time
fg time_off 100 env NESTED_KERNELS_FAST_MLP_SUM_CUBLAS=0 $FM --no-check --no-big --chunks 512 --json "$OUT/sumg_off.json"
fg time_on 100 $FM --no-check --no-big --chunks 512 --json "$OUT/sumg_on.json"
echo "=== done ($(now))"
} > "$OUT/sumg.log" 2>&1
