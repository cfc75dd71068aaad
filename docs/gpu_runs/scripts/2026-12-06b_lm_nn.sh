#!/usr/bin/env bash
# GPU call for the linear_memory split gradient after 2026-12-06b (not run yet): _grad_nn_kernel
# hands the n×n shares of dq, dk to _grad_dk_kernel (sm_90 probe: α+β+μ C64 spill stores 7956 + 2320
# → 5908 + 2128 B per thread). (1) the quick GPU check in bf16 and fp16 (the split runs for 16-bit
# inputs with β or μ); (2) the per-kernel sweep of η only and α+β+μ, split against fused in the
# same run (2026-11-26c call 5 before this change: α+β+μ split 19.8 ms, fused 25.4 ms fwd+bwd);
# (3) the timing table beside fla.
. "$(dirname "$0")/lib.sh"
{
fg check 240 python3 python/check_linear_memory_triton.py --quick --dtypes bf16,fp16
fg sweep 240 python3 python/sweep_linear_memory_triton.py --gates ,abm --grad-split 0,1 --json "$OUT/sweep.json"
fg time 100 python3 python/check_linear_memory_triton.py --no-check --json "$OUT/time.json"
echo "=== done ($(now))"
} > "$OUT/lm_nn.log" 2>&1
