#!/usr/bin/env bash
# linear_memory: the split's n×n kernel from rows the dK kernel stores (NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1,
# 2026-12-06i, CPU-tested only; ≈ 8 min). (1) the quick GPU check with the knob, bf16 and fp16 (the split
# runs for 16-bit inputs with β or μ); (2) per-kernel sweep of α+β and α+β+μ (B4 T4096 H16 K=V=128 C64
# bf16) with the knob off and on in one run; (3) the timing table's α+β and α+β+μ rows beside fla, knob
# off (default) then on. Make it the default only if (1) passes and (2)/(3) are faster.
. "$(dirname "$0")/lib.sh"
TM="python3 python/check_linear_memory_triton.py --no-check --timed 1,3"
{
fg check 200 env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1 python3 python/check_linear_memory_triton.py --quick --dtypes bf16,fp16
fg sweep 150 python3 python/sweep_linear_memory_triton.py --gates ab,abm --grad-split 1 --grad-rows 0,1 --json "$OUT/sweep.json"
fg time 100 $TM --json "$OUT/time_split.json"
fg time_rows 80 env NESTED_KERNELS_LM_TRITON_GRAD_ROWS=1 $TM --no-fla --json "$OUT/time_rows.json"
echo "=== done ($(now))"
} > "$OUT/lm_rows.log" 2>&1
