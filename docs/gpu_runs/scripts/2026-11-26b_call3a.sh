#!/usr/bin/env bash
# GPU call 3a of session 2026-11-26b: verify main (chunk_size 1 landed) and compile every kernel that
# call 3b times (T = 256 warm-ups: same specialisation as T = 4096), all in parallel; one Triton
# cache (.tcache) for both calls. All logs are concatenated into $OUT/all_3a.txt.
set -u
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NESTED_KERNELS_COMMIT=${NESTED_KERNELS_COMMIT:-unknown}
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export TRITON_CACHE_DIR=$PWD/.tcache
M=$PWD; T0=$(date +%s)
rm -rf /tmp/prep; mkdir -p /tmp/prep; cp -r nested_kernels python tests docs /tmp/prep/
(cd /tmp/prep && git apply $M/docs/wip/mlp_memory_prep.patch) || echo "PATCH FAIL prep"
run() { local n=$1 d=$2; shift 2; ( cd $d && PYTHONPATH=/tmp/site:$d:$d/python timeout -s ABRT 500 "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? $(( $(date +%s) - T0 )) s" >> "$OUT/$n.log" ) & }
run verify_lm $M python3 -m nested_kernels.verify --quick --backends triton --ops linear_memory --json $OUT/verify_lm.json
run verify_mlp $M python3 -m nested_kernels.verify --quick --backends triton --ops mlp_memory --json $OUT/verify_mlp.json
run verify_rest $M python3 -m nested_kernels.verify --quick --backends triton,torch --ops fast_mlp,self_modifying_titans --json $OUT/verify_rest.json
run verify_torch $M python3 -m nested_kernels.verify --quick --backends torch --ops linear_memory,mlp_memory --json $OUT/verify_torch.json
run steps $M python3 python/check_steps_triton.py --quick --no-timing
run lm_pytest $M python3 -m pytest -q -m gpu tests/ops/test_linear_memory_triton.py -k "realistic and bfloat16"
run lm_c1cases $M python3 python/check_linear_memory_triton.py --cases 8 --no-timing
run split8 $M env NESTED_KERNELS_MLP_TRITON_SPLIT=8 python3 python/check_mlp_memory_triton.py --quick
W="--no-check --T 256 --warmup 1 --reps 1"
run warm_lm64 $M python3 python/check_linear_memory_triton.py $W --timed 0,1,2,3,4,5 --no-fla
run warm_lm1 $M python3 python/check_linear_memory_triton.py $W --C 1 --timed 0,1,2,3,5 --no-fla
run warm_lmbf16 $M env NESTED_KERNELS_LM_TRITON_PRECISION=bf16 python3 python/check_linear_memory_triton.py $W --timed 0,1,3 --no-fla
run warm_lmbf16c $M env NESTED_KERNELS_LM_TRITON_PRECISION=bf16 python3 python/check_linear_memory_triton.py --quick --dtypes bf16
run warm_mlp $M python3 python/check_mlp_memory_triton.py $W --no-large --no-torch --no-titans
run warm_mlp8 $M env NESTED_KERNELS_MLP_TRITON_SPLIT=8 python3 python/check_mlp_memory_triton.py $W --no-large --no-torch --no-titans
run warm_mlpprep /tmp/prep python3 python/check_mlp_memory_triton.py $W --no-large --no-torch --no-titans
wait
echo "phase done $(( $(date +%s) - T0 )) s"
for f in $OUT/*.log; do echo "=== $(basename $f)"; cat $f; done > $OUT/all_3a.txt; rm -f $OUT/*.log
grep -h -A0 "^=== \|rc=" $OUT/all_3a.txt | paste - - 
