#!/usr/bin/env bash
# GPU call 13 of session 2026-11-26g: why is fast_mlp's C64 backward slower with bfloat16 fast
# weights (bench call 9: gelu fwd 26.7 vs 48.8 ms, fwd+bwd 115.5 vs 112.8 ms)? Per-kernel profiles
# (with gaps) of gelu C64 fwd+bwd with float32 and with bfloat16 masters, to files.
. "$(dirname "$0")/lib.sh"
PF="python3 python/profile_kernels.py fast_mlp --mlp gelu --chunk 64 --reps 2 --gaps 10"
$TO 150 $PF > "$OUT/prof_c64_fp32.log" 2>&1
$TO 150 $PF --weight-dtype bfloat16 > "$OUT/prof_c64_bf16w.log" 2>&1
echo "done ($(now))"
