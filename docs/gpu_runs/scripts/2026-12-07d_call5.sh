#!/usr/bin/env bash
# 2026-12-07d call 5 (≤ 6 min, no build), linear_memory's host work per call: the tree with the
# cached launch configuration (main) against the package of commit 7ed5d3c (the same kernels,
# before it), carried as .gpu_base/nested_kernels (`git archive 7ed5d3c nested_kernels | tar -x -C
# .gpu_base`), on the same machine: (1) interleaved A/B with fla in each process
# (python/ab_knob_linear_memory.py; main with NESTED_KERNELS_LM_TRITON_STAGES_ADJOINT=0 (default)
# and 2 (the backward walk pipelined), the base with its default); (2) the host's ms per call
# launched back to back (check_linear_memory_triton.py --queued), main then the base.
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
BASE="env PYTHONPATH=$PWD/.gpu_base:$PYTHONPATH"
Q="python3 python/check_linear_memory_triton.py --no-check --timed 0 --queued --no-fla"
{
fg ab_main 140 $AB NESTED_KERNELS_LM_TRITON_STAGES_ADJOINT=0,2 --rounds 3 --json "$OUT/ab_main.json"
fg ab_base 100 $BASE $AB NESTED_KERNELS_LM_TRITON_PLAIN_A=1 --rounds 3 --json "$OUT/ab_base.json"
fg queued_main 40 $Q
fg queued_base 40 $BASE $Q
echo "=== done ($(now))"
} > "$OUT/call5.log" 2>&1
