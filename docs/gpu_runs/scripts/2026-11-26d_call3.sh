#!/usr/bin/env bash
# GPU call 3 of session 2026-11-26d (≤ 10 min): verify the linear_memory / mlp_memory Triton
# backends after this session's kernel changes (η-only forward without the prep kernel, backward
# prep without offsets, gradients stored in the inputs' dtype, split gradient default with β or μ,
# cached tile plans); time C64 beside fla (synced and back to back); per-kernel sweep of the
# direct path (direct on/off × output V block); C1 beside both fla rules.
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/.tcache
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/python
T0=$(date +%s)
now() { echo "$(( $(date +%s) - T0 )) s"; }
TO="timeout -k 10 -s INT"
bg() { local n=$1 t=$2; shift 2; ( $TO "$t" "$@" > "$OUT/$n.log" 2>&1; echo "rc=$? ($(now))" >> "$OUT/$n.log" ) & }
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
bg verify 250 python3 -m nested_kernels.verify --quick --ops linear_memory,mlp_memory --backends triton --jobs 7
bg w_lm 200 $LM $W --timed 0,3
bg w_c1 200 $LM $W --C 1 --timed 0,3
wait
fg() { local n=$1 t=$2; shift 2; echo "=== $n ($(now))"; $TO "$t" "$@" 2>&1 | grep -v "Warning\|warn(\|_kernel "; }
{
fg lm64 80 $LM --timed 0,3 --queued
fg sweep 100 python3 python/sweep_linear_memory_triton.py --gates "" --direct 0,1 --bv-out 32,64
fg lm1 90 $LM --C 1 --timed 0,3
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
