#!/usr/bin/env bash
# GPU call 5 of session 2026-11-26d (≤ 8 min): the mlp_memory F split (SPLIT=8) — check case 2
# (the varlen+resume case whose NS=8 compile failed in 2026-11-26c; call 4's run compiled it but
# its float64 token-loop reference ran out of time, so the chunked float64 torch witness here) and
# the issue-shape timing of the default (one program per head) and of SPLIT=8 in the same call.
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
MLP="python3 python/check_mlp_memory_triton.py"
W="--no-check --no-large --no-torch --no-titans --T 256 --warmup 1 --reps 1"
bg case2 230 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP --cases 2 --dtypes bf16,fp32 --no-timing --ref torch
bg w_8 230 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP $W
bg w_1 230 $MLP $W
wait
fg() { local n=$1 t=$2; shift 2; echo "=== $n ($(now))"; $TO "$t" "$@" 2>&1 | grep -v "Warning\|warn(\|_kernel "; }
{
fg mlp1 90 $MLP --no-check --no-large --no-torch
fg mlp8 60 env NESTED_KERNELS_MLP_TRITON_SPLIT=8 $MLP --no-check --no-large --no-torch --no-titans
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/case2.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
