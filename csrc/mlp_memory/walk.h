// Forward walk of mlp_memory (SPEC.md §3) over the tiles of each (sequence, head): the sequential
// part of the chunked forward, the CUDA counterpart of the Triton ``_fwd_kernel`` with its prep
// rows (nested_kernels/ops/mlp_memory/triton_fwd.py, triton_prep.py; docs/mlp_memory_triton.md).
//
// ns = F / 64 CTAs per (sequence, head); CTA j owns the hidden units [64 j, 64 j + 64): its columns
// of W1, S1 and rows of W2, S2 (W1, W2 slices kept in shared memory across the tiles, S1, S2 updated
// in place in global memory, L2-resident). Per tile of C tokens the CTAs sum their partial
// predictions P (the frozen errors E = Σ_j P_j + ...) and their partial outputs / B Aᵀ rows: when
// all CTAs fit the GPU at once, a cooperative launch exchanging them through a global scratch and
// meeting at global counters (two barriers per tile); else one thread-block cluster per (sequence,
// head) exchanging them through distributed shared memory (clusters must sit in one GPC, so fewer
// fit at once: on an H100 30 clusters of 4, where issue 4's shape needs 32).
// Products: tensor cores (WMMA m16n16k8, operands rounded to nearest tf32, float32 accumulation).
//
// Covered (the Python side checks, nested_kernels/ops/mlp_memory/cuda_walk.py): sm_90, K = V = D
// ∈ {32, 64}, F = 64·ns with ns ∈ {1, 2, 4, 8}, C ∈ {16, 32, 64}, fixed-length batches whose
// length is a multiple of C starting at chunk position 0 (every tile is a whole chunk), the prep
// rows present. Tensors (float32 unless said; rows = B·T, token row r = b·T + t):
//   q, k, v        : [rows, H, D]    token dtype
//   eta, beta      : [rows, H]       gate dtype each (beta null without β)
//   W1, S1         : [N, H, D, F]    states, updated in place (S null without μ)
//   W2, S2         : [N, H, F, D]
//   pv             : [rows, H, 8]    prep rows (γ, γ_prev, ν, ν_prev, m, Φ[n], Γ[n], D[n])
//   ai, pk         : [rows, H, C]    rows of (I + A_β)⁻¹ and strict(KKᵀ) ⊙ Φ_prev (β)
//   qp, pm, qg     : [rows, H, C]    rows of QKᵀ ⊙ Φ_m, Φ_m (reads after / before), QKᵀ ⊙ Γ_m (β, μ)
//   o              : [rows, H, D]    token dtype, or null
//   sv1, svs1      : [tiles, H, D, F] tile-start checkpoints (save); sv2, svs2 [tiles, H, F, D]
//   sv_e           : [rows, H, D]    frozen errors (save); sv_ba [rows, H, C] B Aᵀ (save, reads ≠ chunk)
//   tile_base      : [N] int64       first global tile of each sequence (save)
//   xp, xo, xba    : [B·H, F / kMlpWalkSlice, C, kMlpWalkLd] float32 scratch, sync [B·H] uint32
//                    (cooperative launch)
#pragma once

#include <cuda_runtime_api.h>

#include "common/dtypes.h"

namespace nk {

constexpr int kMlpWalkSlice = 64;                 // hidden units per CTA
constexpr int kMlpWalkLd = kMlpWalkSlice + 4;     // leading dimension of the shared buffers and the scratch

struct MlpWalkParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* eta = nullptr;
  const void* beta = nullptr;
  DType token_dtype = DType::kBFloat16, eta_dtype = DType::kFloat32, beta_dtype = DType::kFloat32;
  float* W1 = nullptr;
  float* W2 = nullptr;
  float* S1 = nullptr;
  float* S2 = nullptr;
  const float* pv = nullptr;
  const float* ai = nullptr;
  const float* pk = nullptr;
  const float* qp = nullptr;
  const float* pm = nullptr;
  const float* qg = nullptr;
  void* o = nullptr;
  float* sv1 = nullptr;
  float* sv2 = nullptr;
  float* svs1 = nullptr;
  float* svs2 = nullptr;
  float* sv_e = nullptr;
  float* sv_ba = nullptr;
  const long long* tile_base = nullptr;
  float* xp = nullptr;          // cooperative exchange scratch (shape above; null: clusters only)
  float* xo = nullptr;
  float* xba = nullptr;
  unsigned* sync = nullptr;     // [B·H] barrier counters (zeroed by the launcher)
  int B = 0, T = 0, H = 0, D = 0, F = 0, C = 0;
  float scale = 1.0f;
  int act = 0;        // 0 gelu, 1 silu
  bool residual = false, has_beta = false, has_mu = false, self_target = false;
  int read = 2;       // 0 after, 1 before, 2 chunk
  bool save = false;  // store the checkpoints, E and B Aᵀ rows
};

// Shared memory one CTA needs (bytes) for tiles of C tokens.
size_t mlp_walk_smem_bytes(int C);

void mlp_memory_walk(const MlpWalkParams& params, cudaStream_t stream);

}  // namespace nk
