#!/usr/bin/env bash
# GPU call 3 of session 2026-12-06b: fast_mlp's dual form in segments (weights materialised every
# NESTED_KERNELS_FAST_MLP_DUAL_SEGMENT tokens, default 512; docs/fast_mlp.md §1). Model from call 2
# (dual time ≈ 13.4 ms + 2.7e-4 ms · Σ history, B4 T4096 D2048 gelu): C64 83.5 ms unsegmented,
# ≈ 30 ms in segments of 512. (1) the GPU check in the dual form with segments of 256 (two per
# sequence at T ≈ 300); (2) the benchmark suite's fast_mlp and CMS rows with the new defaults
# (auto: dual in segments of 512 for C ≤ 256), CSV; (3) segments of 256 / 1024 / whole at C64, C128.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
SEG=NESTED_KERNELS_FAST_MLP_DUAL_SEGMENT
{
fg check 200 env NESTED_KERNELS_FAST_MLP_FORM=dual $SEG=256 $FM --no-time
fg bench 240 python3 -m pytest bench -q -k "fast_mlp or cms" --bench-csv "$OUT/bench_fast_mlp_cms.csv" -p no:cacheprovider
for s in 256 1024 0; do
fg "seg$s" 45 env $SEG=$s $FM --no-check --no-big --no-cms --chunks 128,64
done
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
