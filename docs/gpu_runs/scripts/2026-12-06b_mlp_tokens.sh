#!/usr/bin/env bash
# GPU call for mlp_memory after 2026-12-06b (not run yet): the split backward's token parts with
# bf16 operands (NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION=bf16; the chain and the forward stay
# tf32r). H100 2026-12-06b call 1: tf32r everywhere 66.4 ms fwd+bwd, bf16 everywhere 52.3 ms (not
# checked; emulated error 1.8e-2 at T = 4096, from the chain). (1) quick GPU check with the knob;
# (2) issue-shape timing of the defaults, the knob and bf16 everywhere beside titans-pytorch.
. "$(dirname "$0")/lib.sh"
MLP="python3 python/check_mlp_memory_triton.py"
{
fg chk 300 env NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION=bf16 $MLP --quick --ref torch --no-timing
fg time 200 $MLP --no-check --no-large --no-torch --variants "tokens bf16:TOKENS_PRECISION=bf16;bf16 all:PRECISION=bf16"
echo "=== done ($(now))"
} > "$OUT/mlp_tokens.log" 2>&1
