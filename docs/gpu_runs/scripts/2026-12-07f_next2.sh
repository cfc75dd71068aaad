#!/usr/bin/env bash
# For a session after 2026-12-07f, after 2026-12-07f_next.sh (≤ 7 min, no build; carry .whl and
# .gpu_base): the cached launch configuration (merged in 2026-12-07f after callgrind counted −10 % /
# −12 % host instructions per forward / forward + backward; never GPU-timed) against the package of
# commit 5a53d16 (the same kernels, before it), carried as .gpu_base/nested_kernels (`git archive
# 5a53d16 nested_kernels | tar -x -C .gpu_base`). Separate processes, alternated twice; each runs the
# interleaved A/B beside fla with fast launch off and on, at issue 3's shape (η only). Since
# 2026-12-07g main's η-only tiles take PLAIN_D by default, which the base lacks: both runs set
# NESTED_KERNELS_LM_TRITON_PLAIN_D=0 (the base ignores it), leaving main's A without η (no device
# time change in 2026-12-07g call 2: 1.263 ms with the knob off, as in 2026-12-07f).
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
BASE="env PYTHONPATH=$PWD/.gpu_base:$PYTHONPATH"
{
for r in 1 2; do
  fg ab_main_$r 80 $AB NESTED_KERNELS_FAST_LAUNCH=0,1 NESTED_KERNELS_LM_TRITON_PLAIN_D=0,0 --rounds 2 --json "$OUT/ab_main_$r.json"
  fg ab_base_$r 80 $BASE $AB NESTED_KERNELS_FAST_LAUNCH=0,1 NESTED_KERNELS_LM_TRITON_PLAIN_D=0,0 --rounds 2 --json "$OUT/ab_base_$r.json"
done
echo "=== done ($(now))"
} > "$OUT/next2.log" 2>&1
