#!/usr/bin/env bash
# GPU call 4 of session 2026-11-26b (one call, fresh machine): verify the new defaults (linear_memory
# bf16 operands for bf16 inputs, mlp_memory fp16 operands for 16-bit inputs, fallbacks counted as
# errors) and the merged fast_mlp bf16 fast weights, compile the timed kernels, then time them
# alone. Phase 1 in parallel (one verify process per case: compiles dominate), phase 2 sequential.
set -u
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NESTED_KERNELS_COMMIT=${NESTED_KERNELS_COMMIT:-unknown}
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export TRITON_CACHE_DIR=$PWD/.tcache PYTHONPATH=/tmp/site:$PWD:$PWD/python
T0=$(date +%s)
run() { local n=$1 cap=$2; shift 2; ( timeout -s ABRT $cap "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? $(( $(date +%s) - T0 )) s" >> "$OUT/$n.log" ) & }
V="python3 -m nested_kernels.verify --quick --backends triton"
i=0; for c in "T1000 H4 K128 V128 C64" "C1 +mu" "C16 self" "N6[" "T65"; do
  i=$((i+1)); run verify_lm$i 280 $V --ops linear_memory --case "$c" --json $OUT/verify_lm$i.json; done
i=0; for c in "T1000 H4 K64 V64 F256" "K128 V128 F256 C16" "N6[" "T65"; do
  i=$((i+1)); run verify_mlp$i 280 $V --ops mlp_memory --case "$c" --json $OUT/verify_mlp$i.json; done
run verify_fast 280 $V --ops fast_mlp --json $OUT/verify_fast.json
run lm_quick 280 python3 python/check_linear_memory_triton.py --quick --dtypes bf16
run mlp_quick 280 python3 python/check_mlp_memory_triton.py --quick
W="--no-check --T 256 --warmup 1 --reps 1"
run warm_lm64 280 python3 python/check_linear_memory_triton.py $W --timed 0,1,2,3,4,5 --no-fla
run warm_lm1 280 python3 python/check_linear_memory_triton.py $W --C 1 --timed 0,3,5 --no-fla
run warm_mlp 280 python3 python/check_mlp_memory_triton.py $W --no-large --no-torch --no-titans
wait
echo "phase 1 done $(( $(date +%s) - T0 )) s"
cat_logs() { for f in $OUT/*.log; do echo "=== $(basename $f)"; cat $f; done > $OUT/all_$1.txt; rm -f $OUT/*.log; }
cat_logs 4a
tm() { local n=$1; shift; timeout -s ABRT 100 "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? $(( $(date +%s) - T0 )) s" >> "$OUT/$n.log"; }
tm time_lm64 python3 python/check_linear_memory_triton.py --no-check --timed 0,1,2,3,4,5 --json $OUT/time_lm64.json
tm time_mlp python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --json $OUT/time_mlp.json
cat_logs 4b
tm time_lm1 python3 python/check_linear_memory_triton.py --no-check --C 1 --timed 0,3,5 --json $OUT/time_lm1.json
cat_logs 4c
