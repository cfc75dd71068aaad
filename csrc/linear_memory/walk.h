// The sequential walks of the chunked linear_memory (SPEC.md §2), the CUDA counterparts of the
// Triton ``_state_fwd_kernel`` (nested_kernels/ops/linear_memory/triton_fwd.py) and
// ``_state_bwd_kernel`` (triton_bwd.py): they read the tile factors of ``_prep_kernel`` and write
// exactly the buffers the Triton walks write (docs/linear_memory_cuda.md).
//
// Per tile of BT rows with start states (M0, S0) and the factors of the prep kernel:
//   forward   X = Xw M0 + Xz S0 + xu,  Y = Yw M0 + Yz S0 + yu,
//             M_n = γ_n M0 + ν_n S0 + Kᵀ X,  S_n = m_n S0 + Kᵀ Y
//             (PLAIN_X: X = diag(c)(V − K M0), c = Φ[n]·η formed from η and log α)
//   backward  dX = K dM,  dY = K dS,
//             dM0 = γ_n dM + Xwᵀ dX + Ywᵀ dY + Qwᵀ dO,  dS0 = ν_n dM + m_n dS + Xzᵀ dX + Yzᵀ dY + Qzᵀ dO
//
// One CTA per (V block of BV = min(V, 64) columns, sequence·head); BV / 16 warps, warp w owns the
// columns [16 w, 16 w + 16) of the block and keeps the transposed state slices Mᵀ, Sᵀ (16 × K,
// float32) as mma.sync accumulators: every product takes its A operand from registers (a state or
// an X / dX accumulator) and its B operand from shared memory, so the warps never exchange data.
// The tile rows arrive by cp.async in a ring of up to three stages (as many as fit 227 KB).
//
// Operands: OpBF16 (bfloat16 tokens and factors / stored states, mma m16n8k16 with bf16 operands
// rounded to nearest even — the Triton PREC "bf16") or OpTF32 (float16 tokens, float32 factors and
// stored states, mma m16n8k8 with operands rounded to nearest tf32 — PREC "tf32r").
//
// Tensors (rows = B·T token rows, flat row r·H + h; tiles = the tile table of the prep kernel):
//   k           [rows, H, K]     token dtype
//   v           [rows, H, V]     token dtype (forward, plain_x only)
//   eta, log_alpha [rows, H]     their own dtypes (plain_x only; log_alpha null without α)
//   xw, xz, yw, yz, qw, qz [rows, H, K]   factor dtype (null when absent)
//   xu, yu      [rows, H, V]     factor dtype (forward; null when absent)
//   tsc         [tiles, H, 4]    float32 (γ_n, ν_n, m_n)
//   dO          [rows, H, V]     token dtype (backward)
//   m0, s0, mc0 [N, H, K, V]     float32 (forward initial states; null: zeros / absent)
//   pos         [N] int64        chunk position of each sequence (null: 0)
//   cu          [N + 1] int64    cu_seqlens (null: fixed length T)
//   tile_base   [N] int64        first global tile of each sequence
//   m_out, s_out, mc_out [N, H, K, V] float32   final states (forward, output_final)
//   tiles_m, tiles_s [tiles, H, K, V]  factor dtype: forward the tile-start states, backward the
//                    tile-end adjoints
//   dmf, dsf, dmcf [N, H, K, V]  float32 final-state gradients (backward; null: zero)
//   dm0, ds0, dmc0 [N, H, K, V]  float32 initial-state gradients (backward)
#pragma once

#include <cuda_runtime_api.h>

#include "common/dtypes.h"

namespace nk {

struct LmWalkParams {
  const void* k = nullptr;
  const void* v = nullptr;
  const void* eta = nullptr;
  const void* log_alpha = nullptr;
  const void* xw = nullptr;
  const void* xz = nullptr;
  const void* yw = nullptr;
  const void* yz = nullptr;
  const void* qw = nullptr;
  const void* qz = nullptr;
  const void* xu = nullptr;
  const void* yu = nullptr;
  const float* tsc = nullptr;
  const void* dO = nullptr;
  const float* m0 = nullptr;
  const float* s0 = nullptr;
  const float* mc0 = nullptr;
  const long long* pos = nullptr;
  const long long* cu = nullptr;
  const long long* tile_base = nullptr;
  float* m_out = nullptr;
  float* s_out = nullptr;
  float* mc_out = nullptr;
  void* tiles_m = nullptr;
  void* tiles_s = nullptr;
  const float* dmf = nullptr;
  const float* dsf = nullptr;
  const float* dmcf = nullptr;
  float* dm0 = nullptr;
  float* ds0 = nullptr;
  float* dmc0 = nullptr;
  DType token_dtype = DType::kBFloat16, eta_dtype = DType::kFloat32, alpha_dtype = DType::kFloat32;
  int N = 0, T = 0, H = 0, K = 0, V = 0, BT = 0;
  bool has_beta = false, has_mu = false, exact = false, has_off = false, plain_x = false;
  bool output_final = false;
  int read = 0;  // 0 after, 1 before, 2 chunk
};

// Ring stages the walk would run with (1..3), or 0 when not even one stage fits a block's shared
// memory; ValueError for arguments the walks do not take.
int linear_memory_walk_stages(const LmWalkParams& params, bool backward);

// The forward walk (backward = false) or the backward walk (backward = true), asynchronously.
void linear_memory_walk(const LmWalkParams& params, bool backward, cudaStream_t stream);

}  // namespace nk
