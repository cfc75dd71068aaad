#!/usr/bin/env bash
# 2026-12-07h call 3 (≤ 9 min, no build): _plain_d_kernel's K block 128 (one program per tile and
# head, reading the kept D) against 64 beside fla at issue 3's shape — call 1 timed it without fla
# (.whl was missing: 1.151 vs 1.219 ms device) — then C64 α+β+μ and the HOPE case beside fla (cut
# by 2026-12-07g_next3.sh's step limit in call 2).
. "$(dirname "$0")/lib.sh"
AB="python3 python/ab_knob_linear_memory.py"
{
fg ab_block 250 $AB NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=64,128 --rounds 3 --json "$OUT/ab_block.json"
fg c64 280 python3 python/check_linear_memory_triton.py --no-check --timed 3,4 --json "$OUT/c64_gated.json"
echo "=== done ($(now))"
} > "$OUT/call3.log" 2>&1
