#!/usr/bin/env bash
# One GPU call for the Triton backends (what the 2026-11-26b calls did by hand, ≤ 10 minutes):
# 1. verify --quick (its cases spread over worker processes) and the decode-step stream check,
#    in parallel with compile warm-ups of the timed configurations (T = 256: the same Triton
#    specialisation as T = 4096), all sharing one Triton cache;
# 2. the issue-shape timings with their peers, each alone on the GPU.
# Every log ends up in ONE file, $OUT/all.txt (a call returns only a few files).
#
#   bash bench/gpu_triton_session.sh            # device tool: carry [".whl"] for the peers
#
# Environment: PHASE2 (space-separated subset of "lm64 lm1 mlp fast sweep", default "lm64 lm1 mlp").
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=$PWD/.tcache
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD:$PWD/python
T0=$(date +%s)
log() { echo "=== $1 ($(( $(date +%s) - T0 )) s)"; }
bg() { local n=$1; shift; ( timeout -s ABRT 420 "$@" > "$OUT/$n.log" 2>&1; echo "rc=$?" >> "$OUT/$n.log" ) & }
W="--no-check --T 256 --warmup 1 --reps 1"
bg verify python3 -m nested_kernels.verify --quick --backends triton --json "$OUT/verify.json"
bg steps python3 python/check_steps_triton.py --quick --no-timing
bg warm_lm64 python3 python/check_linear_memory_triton.py $W --no-fla
bg warm_lm1 python3 python/check_linear_memory_triton.py $W --C 1 --timed 0,3,5 --no-fla
bg warm_mlp python3 python/check_mlp_memory_triton.py $W --no-large --no-torch --no-titans
wait
for f in "$OUT"/*.log; do log "$(basename "$f" .log)"; cat "$f"; done > "$OUT/all.txt"; rm -f "$OUT"/*.log
fg() { local n=$1; shift; { log "$n"; timeout -s ABRT 150 "$@" 2>&1 | grep -v "Warning\|warn("; } >> "$OUT/all.txt"; }
for p in ${PHASE2:-lm64 lm1 mlp}; do
  case $p in
    lm64) fg time_lm64 python3 python/check_linear_memory_triton.py --no-check ;;
    lm1) fg time_lm1 python3 python/check_linear_memory_triton.py --no-check --C 1 --timed 0,3,5 ;;
    mlp) fg time_mlp python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch ;;
    fast) fg time_fast python3 python/check_fast_mlp_triton.py --no-check ;;
    sweep) fg sweep python3 python/sweep_linear_memory_triton.py --gates ,abm --bv 32,64 --warps-state 4,8 ;;
  esac
done
log done >> "$OUT/all.txt"
