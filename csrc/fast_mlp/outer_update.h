// Fused per-chunk weight update of a fast-weight MLP (SPEC.md §4):
//
//   out[n] = retention * weight[n] - sum_t eta[n, t] * left[n, t, :]^T right[n, t, :]
//          = retention * W[n]      - left[n]^T diag(eta[n]) right[n]
//
//   weight, out : [N, P, Q] float32, contiguous (out == weight is allowed: in-place update)
//   left        : [N, n_tok, P]  float32 / bfloat16 / float16, contiguous
//   right       : [N, n_tok, Q]  same dtype as left, contiguous
//   eta         : [N, n_tok]     float32, contiguous
//
// Products and sums are accumulated in float32. Launches asynchronously on `stream`, on the
// current CUDA device; throws std::invalid_argument for bad arguments and std::runtime_error for
// CUDA errors.
#pragma once

#include <cuda_runtime_api.h>

#include "common/dtypes.h"

namespace nk {

struct OuterUpdateParams {
  float* out = nullptr;
  const float* weight = nullptr;
  const void* left = nullptr;
  const void* right = nullptr;
  const float* eta = nullptr;
  long long N = 0;
  long long n_tok = 0;
  long long P = 0;
  long long Q = 0;
  DType dtype = DType::kFloat32;  // of left and right
  float retention = 1.0f;
};

void outer_update(const OuterUpdateParams& params, cudaStream_t stream);

}  // namespace nk
