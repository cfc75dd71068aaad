#!/usr/bin/env bash
# Next GPU call after 2026-12-06h (on main; ≈ 9 min): (1) build; (2) at issue 4's shape the cuda
# backend (cooperative walk) against triton — output and gradients — and the timing of both beside
# titans-pytorch (the issue's ratio with the new walk); (3) the walk against the Triton walk (all
# three exchange / residual variants); (4) the runaway case with precision="float32" and the
# realistic rows on bounded data (bf16); (5) the torch.compile test (knobs in the op's config).
# If (2) and (3) pass, merge branch wip/h-auto-cuda (auto takes cuda where its walk runs in one
# cooperative round). Then `2026-12-06e_next.sh 2` (bench rows of mlp_memory / fast_mlp / CMS).
. "$(dirname "$0")/lib.sh"
T="python3 -m pytest -q -m gpu -p no:cacheprovider --tb=short"
{
fg build 120 python3 -m pip install -q --no-build-isolation --no-deps -e .
fg issue_shape 150 python3 python/check_mlp_memory_triton.py --no-check --no-large --no-torch --cuda --variants= \
  --json "$OUT/issue_shape.json"
fg walk 150 $T -v --durations=0 tests/ops/test_mlp_memory_cuda.py -k "walk_equals"
fg triton 160 $T tests/ops/test_mlp_memory_triton.py \
  -k "prep1-split-torchtok and (runaway or (realistic and dtype0) or torch_compile)"
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
