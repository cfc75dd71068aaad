#!/usr/bin/env bash
# For a session after 2026-12-08a (≤ 9 min, no build; main + docs/wip/nn_epilogue_split.patch applied on the
# device's copy only): the after-loop n×n algebra of linear_memory's split backward in two halves (_nn_read,
# _nn_solve), which NN_EPILOGUE=1 runs as two kernels (_grad_epilogue_read_kernel, _grad_epilogue_solve_kernel;
# wgmma by default, NESTED_KERNELS_LM_TRITON_MMA_EPILOGUE) and the default n×n kernel runs one after the
# other. sm_90 probe (α+β+μ C64 K=V=128 bf16, spill stores per thread): the one epilogue kernel of main
# 3692 B (4.08 ms on the H100) → 632 + 892 B; the default _grad_nn_kernel 4780 → 5132 B (the halves' order).
# (1) per-kernel sweep with main's code (the baseline, same machine); (2) the patch: defaults and
# NN_EPILOGUE 1 × MMA_EPILOGUE v2 / auto (α+β+μ), NN_EPILOGUE 0 / 1 (α+β); (3) checks with the patch, the
# defaults (cases 0, 1, 6 bf16) and NN_EPILOGUE=1 (cases 0, 1, 5 bf16 and fp16). Land the patch if the
# checks pass and NN_EPILOGUE=1 or the defaults are faster; then quick verify and the A/B beside fla.
. "$(dirname "$0")/lib.sh"
S="python3 python/sweep_linear_memory_triton.py"
C="python3 python/check_linear_memory_triton.py --no-timing"
{
fg sweep_main 90 $S --gates abm,ab --json "$OUT/sweep_main.json"
git apply docs/wip/nn_epilogue_split.patch && echo "=== patch applied ($(now))"
fg sweep_patch 200 $S --gates abm --nn-epilogue 0,1 --mma-epilogue v2,auto --json "$OUT/sweep_patch_abm.json"
fg sweep_patch_ab 80 $S --gates ab --nn-epilogue 0,1 --json "$OUT/sweep_patch_ab.json"
fg check_default 90 $C --cases 0,1,6 --dtypes bf16
fg check_epi 120 env NESTED_KERNELS_LM_TRITON_NN_EPILOGUE=1 $C --cases 0,1,5 --dtypes bf16,fp16
echo "=== done ($(now))"
} > "$OUT/epi.log" 2>&1
