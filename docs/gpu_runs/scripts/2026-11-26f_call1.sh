#!/usr/bin/env bash
# GPU call 1 of session 2026-11-26f: (1) differentiable eager calls through core.custom_op's
# _EagerAutograd instead of the registered op: verify the quick linear_memory set, time η only and
# η+α at C64 beside fla with host profiles; (2) the opt-in tf32r precision (docs/wip/README.md):
# verify "self target, all gates" (its fp16 and bf16 twins) and time float16 η only and α+β+μ,
# beside float16's default (tf32x3) for η only.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
W="--T 256 --warmup 1 --reps 1"
R="env NESTED_KERNELS_LM_TRITON_PRECISION=tf32r"
bg verify 300 python3 -m nested_kernels.verify --quick --ops linear_memory --backends triton --jobs 3
bg verify_tf32r 300 $R python3 -m nested_kernels.verify --ops linear_memory --backends triton --case "self target, all gates" --jobs 2
bg w_bf16 200 $LM $W --timed 0,6
bg w_r 250 $R $LM $W --timing-dtype fp16 --timed 0,3 --no-fla
bg w_f16 200 $LM $W --timing-dtype fp16 --timed 0 --no-fla
wait
{
fg lm64 120 $LM --timed 0,6 --queued --profile-host
fg tf32r 150 $R $LM --timing-dtype fp16 --timed 0,3
fg f16_default 60 $LM --timing-dtype fp16 --timed 0 --no-fla
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/verify*.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
