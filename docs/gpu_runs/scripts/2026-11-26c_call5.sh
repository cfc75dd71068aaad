#!/usr/bin/env bash
# GPU call 5 of session 2026-11-26c (≤ 4 min, the last of the device budget): the C64 defaults
# beside fla (call 4's run timed out in fla's first compile), and the mlp_memory F split (SPLIT=8)
# checked against the float64 reference in the default tf32x3 precision.
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/.tcache
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/python
T0=$(date +%s)
now() { echo "$(( $(date +%s) - T0 )) s"; }
LM="python3 python/check_linear_memory_triton.py --no-check --timed 0,3"
( timeout -s ABRT 170 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 python3 python/check_mlp_memory_triton.py --quick \
    > "$OUT/mlp_split8_check.log" 2>&1; echo "rc=$? ($(now))" >> "$OUT/mlp_split8_check.log" ) &
( timeout -s ABRT 170 $LM --T 256 --warmup 1 --reps 1 > /dev/null 2>&1 ) &
wait
{ echo "=== lm64 ($(now))"; timeout -s ABRT 60 $LM 2>&1 | grep -v "_kernel "; echo "=== done ($(now))"; } > "$OUT/lm64.log"
cat "$OUT/mlp_split8_check.log" "$OUT/lm64.log" > "$OUT/all.txt"
