#!/usr/bin/env bash
# GPU call 8 of session 2026-11-26f: fast_mlp with tile groups only for the update launches whose
# right operand is the wider one (W2's update and adjoint; W1's stay row-major), against
# row-major everywhere (NESTED_KERNELS_FAST_MLP_OUTER_GROUP=1), in the same call; checks and
# verify --quick fast_mlp first.
. "$(dirname "$0")/lib.sh"
FM="python3 python/check_fast_mlp_triton.py"
bg verify_fm 250 python3 -m nested_kernels.verify --quick --ops fast_mlp --backends triton --jobs 2
bg fast_check 250 $FM --no-time
bg w_fm1 250 env NESTED_KERNELS_FAST_MLP_OUTER_GROUP=1 $FM --no-check
wait
{
fg fast_group1 120 env NESTED_KERNELS_FAST_MLP_OUTER_GROUP=1 $FM --no-check
fg fast_mixed 120 $FM --no-check
fg fast_group1_again 120 env NESTED_KERNELS_FAST_MLP_OUTER_GROUP=1 $FM --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify_fm.log "$OUT"/fast_check.log "$OUT"/time.log > "$OUT/all.txt"
