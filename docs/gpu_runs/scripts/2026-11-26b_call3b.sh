#!/usr/bin/env bash
# GPU call 3b (right after 3a, same warm machine and .tcache): timings, each alone on the GPU.
set -u
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export TRITON_CACHE_DIR=$PWD/.tcache
M=$PWD; T0=$(date +%s)
tm() { local n=$1 d=$2; shift 2; ( cd $d && PYTHONPATH=/tmp/site:$d:$d/python timeout -s ABRT 150 "$@" > "$OUT/$n.txt" 2>&1; echo "rc=$? $(( $(date +%s) - T0 )) s" >> "$OUT/$n.txt" ); }
tm time_lm64 $M python3 python/check_linear_memory_triton.py --no-check --timed 0,1,2,3,4,5 --json $OUT/time_lm64.json
tm time_lmbf16 $M env NESTED_KERNELS_LM_TRITON_PRECISION=bf16 python3 python/check_linear_memory_triton.py --no-check --timed 0,1,3 --json $OUT/time_lmbf16.json
tm time_mlp $M python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --json $OUT/time_mlp.json
tm time_mlp8 $M env NESTED_KERNELS_MLP_TRITON_SPLIT=8 python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --no-titans --json $OUT/time_mlp8.json
tm time_mlpprep /tmp/prep python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --no-titans --json $OUT/time_mlpprep.json
tm time_lm1 $M python3 python/check_linear_memory_triton.py --no-check --C 1 --timed 0,1,2,3,5 --json $OUT/time_lm1.json
echo "done $(( $(date +%s) - T0 )) s"
