#!/usr/bin/env bash
# GPU call 2 of session 2026-12-05a: where the two forms cross. Both forms at C128 and C256 (gelu
# F8192 and swiglu F5504, B4 T4096 D2048 bf16, static MLP in the same run), then a per-kernel
# profile of the dual form's gelu C64 fwd+bwd (to a file).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py --no-check --chunks 128,256 --no-cms --no-big"
{
fg time_dual 200 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM
fg time_mat 200 env NESTED_KERNELS_FAST_MLP_FORM=materialized $FM
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
$TO 120 python3 python/profile_kernels.py fast_mlp --mlp gelu --chunk 64 --reps 2 > "$OUT/prof_dual_c64.log" 2>&1
