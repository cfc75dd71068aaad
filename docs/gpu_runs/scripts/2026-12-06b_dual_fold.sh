#!/usr/bin/env bash
# GPU call 5 of session 2026-12-06b: fast_mlp's dual form after (a) products with the shared
# initial weights folded into one GEMM over all sequences' rows, (b) the input gradient after the
# backward walk, (c) the final state's adjoint terms read once; segments back as an opt-in knob.
# (1) the GPU check in the dual form; (2) timing C128 / C64 and the CMS (auto: dual, whole
# sequences); (3) C64 in segments of 512; (4) per-kernel profile of gelu C64 fwd+bwd.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
{
fg check 150 env NESTED_KERNELS_FAST_MLP_FORM=dual $FM --no-time
fg time_auto 60 $FM --no-check --no-big --chunks 128,64 --json "$OUT/time_auto.json"
fg time_seg512 40 env NESTED_KERNELS_FAST_MLP_DUAL_SEGMENT=512 $FM --no-check --no-big --no-cms --chunks 64
echo "=== done ($(now))"
} > "$OUT/call5.log" 2>&1
$TO 45 python3 python/profile_kernels.py fast_mlp --mlp gelu --chunk 64 --reps 2 > "$OUT/prof_dual_c64.log" 2>&1
