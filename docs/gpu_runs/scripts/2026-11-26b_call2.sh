#!/usr/bin/env bash
# GPU call 2 (right after call 1, same warm machine and Triton cache .tcache): profiles of the slow kernels
# and timings of main against the docs/wip patches, each alone on the GPU (compiles came from call 1).
set -u
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NESTED_KERNELS_COMMIT=${NESTED_KERNELS_COMMIT:-unknown}
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/python
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
mk() {  # mk NAME PATCH...: a copy of the tree with the patches applied
  rm -rf /tmp/$1; mkdir -p /tmp/$1; cp -r nested_kernels python tests docs /tmp/$1/
  shift0=$1; shift
  for p in "$@"; do (cd /tmp/$shift0 && git apply "$OLDPWD/docs/wip/$p") || echo "PATCH FAIL $p"; done
}
mk c1 linear_memory_c1.patch
mk grad linear_memory_c1_grad_split.patch
mk prep mlp_memory_prep.patch
T0=$(date +%s)
M=$PWD
tm() { local n=$1 d=$2; shift 2; ( cd $d && PYTHONPATH=/tmp/site:$d:$d/python timeout -s ABRT 150 "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? $(( $(date +%s) - T0 )) s" >> "$OUT/$n.log" ); }
tm prof_lm_eta $M python3 python/profile_kernels.py linear_memory --gates ""
tm prof_lm_abm $M python3 python/profile_kernels.py linear_memory --gates abm
tm prof_mlp $M python3 python/profile_kernels.py mlp_memory --gates abm --target self --read chunk
tm time_lm_main $M python3 python/check_linear_memory_triton.py --no-check --timed 0,1,2,3,4 --json $OUT/time_lm_main.json
tm time_lm_c1 /tmp/c1 python3 python/check_linear_memory_triton.py --no-check --timed 0,1,2,3,4 --json $OUT/time_lm_c1.json
tm time_lm_c1_C1 /tmp/c1 python3 python/check_linear_memory_triton.py --no-check --C 1 --timed 0,1,2,3,5 --json $OUT/time_lm_c1_C1.json
tm time_lm_grad /tmp/grad python3 python/check_linear_memory_triton.py --no-check --timed 0,1,2,3,4 --json $OUT/time_lm_grad.json
tm time_mlp_main $M python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --json $OUT/time_mlp_main.json
tm time_mlp_prep /tmp/prep python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --no-titans --json $OUT/time_mlp_prep.json
echo "all done $(( $(date +%s) - T0 )) s"
# main's verification again (call 1's logs did not come back: too many files); compiled in call 1
run() { local n=$1 d=$2; shift 2; ( cd $d && PYTHONPATH=/tmp/site:$d:$d/python timeout -s ABRT 200 "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? $(( $(date +%s) - T0 )) s" >> "$OUT/$n.log" ) & }
run verify_lm $M python3 -m nested_kernels.verify --quick --backends triton --ops linear_memory
run verify_mlp $M python3 -m nested_kernels.verify --quick --backends triton --ops mlp_memory
run verify_rest $M python3 -m nested_kernels.verify --quick --backends triton,torch --ops fast_mlp,self_modifying_titans
run verify_torch $M python3 -m nested_kernels.verify --quick --backends torch --ops linear_memory,mlp_memory
run steps $M python3 python/check_steps_triton.py --quick --no-timing
run split8 $M env NESTED_KERNELS_MLP_TRITON_SPLIT=8 python3 python/check_mlp_memory_triton.py --quick
wait
for f in $OUT/*.log; do echo "=== $(basename $f)"; cat $f; done > $OUT/all_2.txt; rm $OUT/*.log
