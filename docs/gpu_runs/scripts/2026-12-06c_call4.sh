#!/usr/bin/env bash
# GPU call 4 of 2026-12-06c (call 3 ran 2026-12-06b_lm_nn.sh: check PASS, its timing cut by a peer
# compile): linear_memory's n×n hand-off (_grad_nn_kernel → _grad_dk_kernel) against main's split
# in the same run. old_lm/ is an untracked copy of main's package without the hand-off
# (git archive HEAD nested_kernels); the working tree has it. (1) per-kernel sweep of α+β+μ with
# the split, new then old; (2) the timing table's α+β+μ and α+β rows beside fla, new then old.
. "$(dirname "$0")/lib.sh"
NEW=$PYTHONPATH; OLD=/tmp/site:$PWD/old_lm:$PWD/python
SW="python3 python/sweep_linear_memory_triton.py --gates abm --grad-split 1"
TM="python3 python/check_linear_memory_triton.py --no-check --timed 1,3"
{
fg sweep_new 90 env PYTHONPATH=$NEW $SW --json "$OUT/sweep_new.json"
fg sweep_old 90 env PYTHONPATH=$OLD $SW --json "$OUT/sweep_old.json"
fg time_new 150 env PYTHONPATH=$NEW $TM --json "$OUT/time_new.json"
fg time_old 90 env PYTHONPATH=$OLD $TM --no-fla --json "$OUT/time_old.json"
echo "=== done ($(now))"
} > "$OUT/call4.log" 2>&1
