#!/usr/bin/env bash
# GPU call 2 of session 2026-11-26f: linear_memory C64 η only / η+α beside fla after the fast
# environment reads (core.env.getenv), with host profiles; per-kernel device times of fast_mlp
# gelu C1024 and C512 (issue 5's shape) by torch.profiler.
. "$(dirname "$0")/lib.sh"
LM="python3 python/check_linear_memory_triton.py --no-check"
bg w_lm 200 $LM --T 256 --warmup 1 --reps 1 --timed 0,6
fg fm1024 150 python3 python/profile_kernels.py fast_mlp --chunk 1024 --mlp gelu > "$OUT/fm.log"
fg fm512 120 python3 python/profile_kernels.py fast_mlp --chunk 512 --mlp gelu >> "$OUT/fm.log"
wait
{
fg lm64 150 $LM --timed 0,6 --queued --profile-host
echo "=== done ($(now))"
} > "$OUT/time.log"
cat "$OUT"/fm.log "$OUT"/time.log > "$OUT/all.txt"
tail -n 8 "$OUT"/w_*.log > "$OUT/warm_tails.txt"
