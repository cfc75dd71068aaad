#!/usr/bin/env bash
# GPU call 1 of session 2026-12-05a: the dual form of fast_mlp (docs/fast_mlp.md §1), the default
# for chunks ≤ 64 on CUDA. (1) the GPU check (C64 / C16 cases and the varlen case now dual, the
# resumed C128 case materialised) against the float64 torch backend; (2) timing with the default
# forms (C64 and the CMS's 64-level dual) beside the static MLP; (3) the materialised form at C64
# and in the CMS in the same call; (4) both forms at C128 / C256 (gelu and swiglu).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
fg check 240 $FM --no-time
fg time_auto 200 $FM --no-check --json "$OUT/time_auto.json"
fg time_mat64 150 env NESTED_KERNELS_FAST_MLP_FORM=materialized $FM --no-check --chunks 64 --no-big
echo "=== done ($(now))"
} > "$OUT/call1.log" 2>&1
