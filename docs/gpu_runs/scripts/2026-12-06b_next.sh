#!/usr/bin/env bash
# First GPU call of the session after 2026-12-06b (not run yet). (1) fast_mlp's dual form as on
# main after call 5 (forward products batched per sequence again, the Gram decay table): the GPU
# check and the timing (C128 / C64, CMS); (2) the benchmark suite's mlp_memory rows (the issue
# configuration since 8066fd9: self target, read chunk, β = η, α + μ; titans-pytorch beside) and
# fast_mlp / CMS rows, CSV.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
fg check 150 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-time
fg time_auto 60 $FM --no-check --no-big --chunks 128,64 --json "$OUT/time_auto.json"
fg bench 330 python3 -m pytest bench -q -k "mlp_memory or fast_mlp or cms" --bench-csv "$OUT/bench.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
