#!/usr/bin/env bash
# GPU call 4 of session 2026-11-26c (≤ 10 min): one phase of parallel CPU-bound work (verify of
# the changed ops, compile warm-ups of every timed configuration at T = 256, which shares the
# Triton specialisation of T = 4096), then the timings alone on the GPU, peers in the same run.
# Knob-gated variants (grad split, mlp prep ± F split) are timed beside the defaults; fast_mlp
# with its new forward residuals (default on when they fit).
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
MLP="python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch"
W="--T 256 --warmup 1 --reps 1"
bg verify 220 python3 -m nested_kernels.verify --quick --ops linear_memory,fast_mlp --backends triton --jobs 6
bg mlpcheck 220 env NESTED_KERNELS_MLP_TRITON_PREP=1 python3 python/check_mlp_memory_triton.py --quick
bg w_lm 200 $LM $W --no-fla
bg w_split 200 env NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=1 $LM $W --no-fla --timed 0,3
bg w_mlp 200 $MLP $W --no-titans
bg w_mlpps 200 env NESTED_KERNELS_MLP_TRITON_PREP=1 NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP $W --no-titans
wait
fg() { local n=$1 t=$2; shift 2; echo "=== $n ($(now))"; timeout -s ABRT "$t" "$@" 2>&1 | grep -v "^  \|Warning\|warn(\|_kernel "; }
{
fg lm64 80 $LM
fg fast 100 python3 python/check_fast_mlp_triton.py --no-check
fg mlp 60 $MLP
fg lm_long 45 $LM --B 1 --T 65536 --timed 0,3 --no-fla
fg lm64_split 35 env NESTED_KERNELS_LM_TRITON_GRAD_SPLIT=1 $LM --timed 0,3 --no-fla
fg mlp_prep_split8 35 env NESTED_KERNELS_MLP_TRITON_PREP=1 NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP --no-titans
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/*.log > "$OUT/all.txt"
