#!/usr/bin/env bash
# GPU call 1 of session 2026-11-26d (≤ 10 min): verify the linear_memory gradient split; time the
# C64 defaults and the split beside fla with the calls also launched back to back (device time per
# call when the host keeps ahead, and the host's time per call); C1 with the current defaults;
# fast_mlp with its forward residuals; the host cProfile of the η-only forward.
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/.tcache
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/python
T0=$(date +%s)
now() { echo "$(( $(date +%s) - T0 )) s"; }
bg() { local n=$1 t=$2; shift 2; ( timeout -s ABRT "$t" "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? ($(now))" >> "$OUT/$n.log" ) & }
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
bg verify_split 230 env NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=1 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 5
bg w_lm 200 $LM $W --timed 0,3
bg w_split 200 env NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=1 $LM $W --no-fla --timed 0,3
bg w_c1 200 $LM $W --C 1 --timed 0,3,5
wait
fg() { local n=$1 t=$2; shift 2; echo "=== $n ($(now))"; timeout -s ABRT "$t" "$@" 2>&1 | grep -v "Warning\|warn(\|_kernel "; }
{
fg lm64 90 $LM --timed 0,3 --queued
fg lm64_split 45 env NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=1 $LM --timed 0,3 --no-fla --queued
fg host 40 python3 python/profile_kernels.py linear_memory --gates "" --reps 5 --host
fg fast 100 python3 python/check_fast_mlp_triton.py --no-check
fg lm1 70 $LM --C 1 --timed 0,3,5
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify_split.log "$OUT"/time.log > "$OUT/all.txt"
tail -5 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
