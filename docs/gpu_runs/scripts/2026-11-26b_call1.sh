#!/usr/bin/env bash
# GPU call 1 of session 2026-11-26b: re-verify main (host-path changes since the last GPU run),
# GPU-check the docs/wip patches, profile the slow kernels, time the patches against main.
# Phase 1 runs the compile-bound checks in parallel (16 CPU cores, one Triton cache);
# phase 2 (call 2) runs every timing/profile alone on the GPU.
set -u
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NESTED_KERNELS_COMMIT=${NESTED_KERNELS_COMMIT:-unknown}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
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
run() {  # run NAME DIR CMD...: in DIR, log to $OUT/NAME.log, 420 s cap
  local n=$1 d=$2; shift 2
  ( cd $d && PYTHONPATH=/tmp/site:$d:$d/python timeout -s ABRT 480 "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? $(( $(date +%s) - T0 )) s" >> "$OUT/$n.log" ) &
}
M=$PWD
run verify_lm $M python3 -m nested_kernels.verify --quick --backends triton --ops linear_memory --json $OUT/verify_lm.json
run verify_mlp $M python3 -m nested_kernels.verify --quick --backends triton --ops mlp_memory --json $OUT/verify_mlp.json
run verify_rest $M python3 -m nested_kernels.verify --quick --backends triton,torch --ops fast_mlp,self_modifying_titans --json $OUT/verify_rest.json
run verify_torch $M python3 -m nested_kernels.verify --quick --backends torch --ops linear_memory,mlp_memory
run steps $M python3 python/check_steps_triton.py --quick --no-timing
run split8 $M env NESTED_KERNELS_MLP_TRITON_SPLIT=8 python3 python/check_mlp_memory_triton.py --quick
run c1_pytest /tmp/c1 python3 -m pytest -q -x -m gpu tests/ops/test_linear_memory_triton.py
run c1_quick /tmp/c1 python3 python/check_linear_memory_triton.py --quick --dtypes bf16,fp32
run c1_cases /tmp/c1 python3 python/check_linear_memory_triton.py --cases 6,7,8 --no-timing
run grad_quick /tmp/grad python3 python/check_linear_memory_triton.py --quick --dtypes bf16,fp32
run grad_cases /tmp/grad python3 python/check_linear_memory_triton.py --cases 6,7,8 --no-timing
run prep_quick /tmp/prep python3 python/check_mlp_memory_triton.py --quick
# compile warm-ups of phase 2 (short T: same specialisation)
for v in $M /tmp/c1 /tmp/grad; do
  run warm_lm_$(basename $v) $v python3 python/check_linear_memory_triton.py --no-check --timed 0,1,2,3,4 --T 256 --warmup 1 --reps 1 --no-fla
done
run warm_lm_c1_C1 /tmp/c1 python3 python/check_linear_memory_triton.py --no-check --C 1 --timed 0,1,2,3,5 --T 256 --warmup 1 --reps 1 --no-fla
run warm_mlp_main $M python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --no-titans --T 256 --warmup 1 --reps 1
run warm_mlp_prep /tmp/prep python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --no-titans --T 256 --warmup 1 --reps 1
wait
echo "phase 1 done $(( $(date +%s) - T0 )) s"; grep -h "rc=" $OUT/*.log
tar czf $OUT/tcache.tgz .tcache 2>/dev/null; du -sh .tcache
