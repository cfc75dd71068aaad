#!/usr/bin/env bash
# GPU call 4 of session 2026-11-26g: (1) the backward without the unused −Ŵ₁ of a missing pending
# update and with x̂ written by the products (baddbmm into dX): verify --quick fast_mlp and the
# check script's cases, op timing with main's default; (2) persistent descriptor kernels, 2
# programs per SM with half of them started 0 / 5 / 10 / 20 µs later (so that one half's
# epilogues overlap the other's products), swept per launch and one of them timed in the op.
. "$(dirname "$0")/lib.sh"
SW="python3 python/sweep_outer_fast_mlp.py --n 1024,512"
FM="python3 python/check_fast_mlp_triton.py"
ST=128,128,64,8,3,1,2,10000
bg verify_fm 300 python3 -m nested_kernels.verify --quick --ops fast_mlp --backends triton --jobs 2
bg check 300 $FM --no-time
bg w_sweep 300 $SW --reps 1
bg w_fm_st 300 env NESTED_KERNELS_FAST_MLP_OUTER=$ST $FM --no-check
wait
{
fg sweep 90 $SW
fg fast_default 90 $FM --no-check
fg fast_stagger 90 env NESTED_KERNELS_FAST_MLP_OUTER=$ST $FM --no-check
fg fast_default_again 90 $FM --no-check
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify_fm.log "$OUT"/check.log "$OUT"/time.log > "$OUT/all.txt"
