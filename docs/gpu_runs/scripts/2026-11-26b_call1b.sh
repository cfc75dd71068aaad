#!/usr/bin/env bash
# GPU call 1b: call 1's patch copies lacked docs/ so the patches did not apply; rerun the patch
# checks and warm-ups only (main's kernels are in the warm machine's .tcache). Logs → one file.
set -u
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
sed -n '/^export PYTHONUNBUFFERED/,/^M=\$PWD/p' docs/gpu_runs/scripts/2026-11-26b_call1.sh | grep -v '^nvidia-smi' > /tmp/pre.sh
source /tmp/pre.sh
for n in c1_pytest c1_quick c1_cases grad_quick grad_cases prep_quick warm_lm_c1 warm_lm_grad warm_lm_c1_C1 warm_mlp_prep; do
  grep "^run $n " docs/gpu_runs/scripts/2026-11-26b_call1.sh
done > /tmp/runs.sh
sed -i 's/\$(basename \$v) \$v/c1 \/tmp\/c1/' /tmp/runs.sh
grep -q warm_lm_c1 /tmp/runs.sh || echo 'run warm_lm_c1 /tmp/c1 python3 python/check_linear_memory_triton.py --no-check --timed 0,1,2,3,4 --T 256 --warmup 1 --reps 1 --no-fla' >> /tmp/runs.sh
echo 'run warm_lm_grad /tmp/grad python3 python/check_linear_memory_triton.py --no-check --timed 0,1,2,3,4 --T 256 --warmup 1 --reps 1 --no-fla' >> /tmp/runs.sh
cat /tmp/runs.sh
source /tmp/runs.sh
wait
for f in $OUT/*.log; do echo "=== $(basename $f)"; cat $f; done > $OUT/all_1b.txt
