#!/usr/bin/env bash
# GPU call 4 of session 2026-12-06b: mlp_memory at K=V=128, F=512 (the titans shape, B4 T4096 H4,
# bf16, chunk 64, self / chunk / β = η / α + μ) with the new defaults (tf32r, split backward) beside
# titans-pytorch. In call 1 ptxas (-O1) was still compiling `_bwd_kernel` after 150 s, so this
# gives the compile the whole call, once with the default ptxas -O1 and once with -O0 in parallel
# (compiles run on the CPU; the two timings may overlap on the GPU — each says when it ran).
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py --no-check --no-torch --only-large --variants '' --warmup 1 --reps 3"
bg large_O1 400 bash -c "$MLP --json $OUT/large_O1.json"
bg large_O0 400 env NESTED_KERNELS_MLP_TRITON_PTXAS=-O0 bash -c "$MLP --no-titans --json $OUT/large_O0.json"
wait
cat "$OUT"/large_*.log | grep -v "^\s*\(ld\|st\|mov\|add\|mul\|fma\|cvt\|\.\|//\|@\|\$L\)" | cut -c1-300 > "$OUT/summary.txt"
