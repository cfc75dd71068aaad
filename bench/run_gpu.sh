#!/usr/bin/env bash
# One call on the GPU machine: build, verify, benchmark, plot; everything lands in $OUT (or ./gpu_out).
#
#   bash bench/run_gpu.sh [quick]       # quick: the short verification set
#
# Peers (flash-linear-attention, titans-pytorch) are installed from the wheels in .whl/ when that
# folder was carried (device tool: carry [".whl"]); without them their rows are skipped.
# Environment: VERIFY_ARGS (extra verify arguments), BENCH_ARGS (extra pytest arguments, e.g.
# "-k linear_memory"), NO_BUILD=1 (skip the CUDA extension build), NESTED_KERNELS_COMMIT=<hash>
# (the device copy of the tree has no .git: without it rows say "commit unknown"), SKIP_VERIFY=1,
# SKIP_BENCH=1 (one 10-minute call rarely holds both at the issue shapes: Triton JIT compiles took
# ~15 min of a serial quick verify on the H100; verify now spreads its cases over --jobs worker
# processes, min(8, CPUs) by default on CUDA, which brought the quick set to ~5 min).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ "${NO_BUILD:-0}" != 1 ]; then
  python3 -m pip install -q --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 || echo "build failed (see build.log)"
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > "$OUT/gpu.txt" 2>&1
QUICK=${1:-}
verify_rc=0
if [ "${SKIP_VERIFY:-0}" != 1 ]; then
start=$(date +%s)
python3 -m nested_kernels.verify ${QUICK:+--quick} --json "$OUT/verify.json" ${VERIFY_ARGS:-} 2>&1 | tee "$OUT/verify.log"
verify_rc=${PIPESTATUS[0]}
echo "verify: rc=$verify_rc in $(( $(date +%s) - start )) s"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
start=$(date +%s)
python3 -m pytest bench -q -p no:cacheprovider --bench-csv "$OUT/results.csv" \
  --benchmark-columns=median,iqr,rounds --benchmark-sort=name ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" | tail -n 60
echo "bench: in $(( $(date +%s) - start )) s"
fi
python3 bench/plot.py --csv "$OUT/results.csv" --out "$OUT" 2>&1 | tail -n 5
python3 - "$OUT/results.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]))) if __import__("os").path.exists(sys.argv[1]) else []
print(f"{'op':22s} {'provider':34s} {'mode':8s} {'shape':44s} {'median ms':>10s} {'floor':>8s} {'x floor':>8s}")
for r in rows:
    print(f"{r['op']:22s} {r['provider']:34s} {r['mode']:8s} {r['shape'][:44]:44s} {r['median_ms']:>10s} "
          f"{r['floor_ms'] or '-':>8s} {r['ratio_to_floor'] or '-':>8s}")
PY
exit $verify_rc
