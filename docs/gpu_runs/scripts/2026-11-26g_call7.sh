#!/usr/bin/env bash
# GPU call 7 of session 2026-11-26g: where the host sets the pace in fast_mlp (wall 15.3 ms vs
# 13.9 ms of kernels at C1024): profile_kernels --gaps (the GPU's idle gaps between kernels and
# their neighbours) for gelu C1024 and C512, and --host (cProfile of the forward's host work).
. "$(dirname "$0")/lib.sh"
PF="python3 python/profile_kernels.py fast_mlp --mlp gelu --reps 2 --gaps 25"
$TO 120 $PF --chunk 1024 --host > "$OUT/prof_c1024.log" 2>&1
$TO 120 $PF --chunk 512 > "$OUT/prof_c512.log" 2>&1
echo "done ($(now))"
