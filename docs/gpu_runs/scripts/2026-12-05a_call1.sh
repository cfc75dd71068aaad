#!/usr/bin/env bash
# GPU call 1 of session 2026-12-05a: the dual form of fast_mlp (docs/fast_mlp.md §1), forced by
# NESTED_KERNELS_FAST_MLP_FORM=dual. (1) the GPU check (every case dual except the resumed C128
# one, which has no dual form) against the float64 torch backend; (2) timing in the dual form
# (C1024/512/64, the CMS, the Llama-size level) beside the static MLP; (3) the materialised form
# at C64 and in the CMS in the same call.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
fg check 240 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-time
fg time_dual 200 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-check --json "$OUT/time_dual.json"
fg time_mat64 150 env NESTED_KERNELS_FAST_MLP_FORM=materialized $FM --no-check --chunks 64 --no-big
echo "=== done ($(now))"
} > "$OUT/call1.log" 2>&1
