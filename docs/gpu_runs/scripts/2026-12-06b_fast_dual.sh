#!/usr/bin/env bash
# GPU call 2 of session 2026-12-06b: fast_mlp's dual form (docs/fast_mlp.md §1), the waiting
# 2026-12-05a_call1/2 scripts in one call. (1) the GPU check with NESTED_KERNELS_FAST_MLP_FORM=dual
# against the float64 torch backend; (2) timing in the dual form at C1024/512/256/128/64 and in the
# CMS beside the static MLP; (3) the materialised form at C256/128/64 in the same call (where the
# two forms cross sets dual.AUTO_MAX_CHUNK).
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
fg check 200 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-time
fg time_dual 200 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-check --no-big --chunks 1024,512,256,128,64 --json "$OUT/time_dual.json"
fg time_mat 110 env NESTED_KERNELS_FAST_MLP_FORM=materialized $FM --no-check --no-big --no-cms --chunks 256,128,64 --json "$OUT/time_mat.json"
echo "=== done ($(now))"
} > "$OUT/call2.log" 2>&1
