#!/usr/bin/env bash
# Second GPU call of 2026-12-06c: fast_mlp's dual walks in blocks (products against other blocks'
# tokens once per block of ≈ √(L·C) tokens) with the CUDA graphs now default on CUDA. (1) GPU tests
# of the dual form; (2) the GPU check in the dual form; (3) timing with the defaults (C128 / C64,
# CMS), then C64 with one chunk per block (the walk before this session's blocks) and 1024-token
# blocks; (4) the benchmark suite's mlp_memory / fast_mlp / CMS rows (CSV).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
B=NESTED_KERNELS_FAST_MLP_DUAL_BLOCK
{
fg test 90 python3 -m pytest -q -m gpu tests/ops/test_fast_mlp_triton.py -k "dual" -p no:cacheprovider
fg check 160 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-time
fg time 60 $FM --no-check --no-big --chunks 128,64 --json "$OUT/time.json"
fg time_block64 40 env $B=64 $FM --no-check --no-big --no-cms --chunks 64 --json "$OUT/time_block64.json"
fg time_block1024 40 env $B=1024 $FM --no-check --no-big --no-cms --chunks 64 --json "$OUT/time_block1024.json"
fg bench 190 python3 -m pytest bench -q -k "mlp_memory or fast_mlp or cms" --bench-csv "$OUT/bench.csv" -p no:cacheprovider
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
