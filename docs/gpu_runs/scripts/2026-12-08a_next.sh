#!/usr/bin/env bash
# For a session after 2026-12-08a (≈ 9 min, no build; main): (1) the quick linear_memory verify with the
# defaults committed after 2026-12-08a's GPU calls (GRAD_ROWS=1 for tiles with μ, the n×n kernel on V blocks of
# 16 with bf16 operands; 2026-12-08a ran them by environment); (2) per-kernel sweep of
# NESTED_KERNELS_LM_TRITON_MMA v2 / mixed / auto for α+β+μ and α+β (each configuration in its own process):
# the sm_90 probe now gives wgmma fewer spills in the prep (2172 → 2044 B), walks (928 → 408, 812 → 228 B)
# and rows kernel (352 → 0 B), and 2026-11-26e timed "mixed" at α+β+μ prep 2716 → 2011 µs but saw it fault
# for α+β — re-check both; (3) ncu of one `_grad_nn_kernel` and one `_grad_epilogue_kernel` launch (α+β+μ,
# NN_EPILOGUE=1): the after-loop n×n algebra costs ≈ 2.3 ms inside the n×n kernel and 4.1 ms as a kernel of
# its own, against well under a millisecond of arithmetic — which stalls is what to read.
. "$(dirname "$0")/lib.sh"
RUN='import torch
from nested_kernels.ops.linear_memory import linear_memory
torch.manual_seed(0)
B, T, H, K = 4, 4096, 16, 128
d = dict(device="cuda", dtype=torch.bfloat16)
q, k, v = (torch.randn(B, T, H, K, **d).requires_grad_() for _ in range(3))
k2 = torch.nn.functional.normalize(k.detach().float(), dim=-1).to(torch.bfloat16).requires_grad_()
eta = torch.full((B, T, H), 0.1, **d).requires_grad_()
la = (-0.05 * torch.rand(B, T, H, **d)).requires_grad_()
beta = torch.rand(B, T, H, **d).requires_grad_()
mu = (0.9 * torch.rand(B, T, H, **d)).requires_grad_()
for _ in range(3):
    o = linear_memory(q, k2, v, eta, log_alpha=la, beta=beta, mu=mu, chunk_size=64, backend="triton")[0]
    o.float().square().mean().backward()
torch.cuda.synchronize()'
{
fg verify 160 python3 -m nested_kernels.verify --quick --backends triton --ops linear_memory --jobs 8
fg sweep_mma 200 python3 python/sweep_linear_memory_triton.py --gates abm,ab --mma v2,mixed,auto \
    --json "$OUT/sweep_mma.json"
echo "=== ncu ($(now))"
$TO 170 env NESTED_KERNELS_LM_TRITON_NN_EPILOGUE=1 ncu --kernel-name regex:"_grad_nn_kernel|_grad_epilogue_kernel" \
  --launch-skip 2 --launch-count 2 --set full -f -o "$OUT/nn" python3 -c "$RUN" > "$OUT/ncu_run.log" 2>&1
echo "rc=$?"; tail -5 "$OUT/ncu_run.log"
ncu -i "$OUT/nn.ncu-rep" --page details > "$OUT/nn_details.txt" 2>&1; echo "details rc=$?"
grep -E "^  _grad|Duration|Registers Per|Achieved Occupancy|Local Memory|Stall|L2 Hit|Memory Throughput" \
  "$OUT/nn_details.txt" | head -60
echo "=== done ($(now))"
} > "$OUT/next.log" 2>&1
