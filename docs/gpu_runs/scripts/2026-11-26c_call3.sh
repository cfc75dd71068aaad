#!/usr/bin/env bash
# GPU call 3 of session 2026-11-26c: verify --quick linear_memory with the new walk defaults
# (2 stages fwd over bf16 factors, 4 warps), a sweep of prep/grad warps and the grad V block,
# then the issue-shape timings (C64, C1) with fla in the same run.
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/.tcache
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/python
T0=$(date +%s)
( timeout -s ABRT 400 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 5 \
    > "$OUT/verify.log" 2>&1; echo "rc=$? ($(( $(date +%s) - T0 )) s)" >> "$OUT/verify.log" ) &
( timeout -s ABRT 300 python3 python/check_linear_memory_triton.py --no-check --T 256 --warmup 1 --reps 1 --no-fla \
    > /dev/null 2>&1; timeout -s ABRT 300 python3 python/check_linear_memory_triton.py --no-check --T 256 --warmup 1 \
    --reps 1 --no-fla --C 1 --timed 0,3,5 > /dev/null 2>&1 ) &
timeout -s ABRT 330 python3 python/sweep_linear_memory_triton.py --gates ,abm --warps-prep 4,8 --warps-grad 4,8 \
    --bv-grad 16,32 --reps 5 > "$OUT/sweep.log" 2>&1
echo "sweep rc=$? ($(( $(date +%s) - T0 )) s)" >> "$OUT/sweep.log"
wait
fg() { echo "=== $1 ($(( $(date +%s) - T0 )) s)"; shift; timeout -s ABRT 120 "$@" 2>&1 | grep -v "^  \|Warning\|warn(\|_kernel "; }
{ fg time_lm64 python3 python/check_linear_memory_triton.py --no-check
  fg time_lm1 python3 python/check_linear_memory_triton.py --no-check --C 1 --timed 0,3,5; } > "$OUT/time.log"
cat "$OUT/verify.log" "$OUT/sweep.log" "$OUT/time.log" > "$OUT/all.txt"
