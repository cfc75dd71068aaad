#!/usr/bin/env bash
# 2026-12-06d call 5: fast_mlp's dual walk with the second layer's weights materialised at the
# start of every block from ≈ F·D/(2(F+D)) tokens on (NESTED_KERNELS_FAST_MLP_DUAL_LAYER2; the
# chunks of those blocks read their sequence's W2_b instead of W2₀ and the earlier blocks'
# history; the backward carries W2_b's adjoint). (1) GPU tests and the GPU check in the dual form;
# (2) C64 + CMS timing with the default, C64 with LAYER2=off (the walk of call 4) in the same run;
# (3) the bench suite's C64 / CMS / static rows.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
fg gputest 120 python3 -m pytest -q -m gpu tests/ops/test_fast_mlp_triton.py -p no:cacheprovider
fg check 170 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-time
fg time 90 $FM --no-check --no-big --chunks 64 --json "$OUT/time_c64.json"
fg time_off 60 env NESTED_KERNELS_FAST_MLP_DUAL_LAYER2=off $FM --no-check --no-big --no-cms --chunks 64 --json "$OUT/time_c64_off.json"
fg bench 100 python3 -m pytest bench -q -k "(fast_mlp or cms) and (triton or static) and (C64 or cms or static) and not bf16w and not step" --bench-csv "$OUT/bench.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/call5.log" 2>&1
