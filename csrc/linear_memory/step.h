// Decode step of linear_memory (SPEC.md §2, §6): one token per sequence, states updated in place.
//
// Per sequence n and head h, with p = position[n] and M_s = (p == 0 ? M : M_chunk):
//   e  = M_sᵀ k − target                 (target = v, or M_sᵀ v for target "self")
//   S' = μ S − η k eᵀ                     (−η k eᵀ without momentum)
//   M' = α M − β k (kᵀ M) + S'            (α = exp(log_alpha), 1 without it; β = 0 without it)
//   o  = Rᵀ (scale · q),  R = M', M or M_s for read after / before / chunk
// M_chunk is written at chunk boundaries only (M' when the token completes a chunk, M when it
// starts one) and position[n] becomes (p + 1) % chunk_size, by the last block of the sequence.
//
//   q, k           : [N, H, K]     token dtype, unit last stride, strides (n, h) in elements
//   v              : [N, H, V]     ([N, H, K] for target "self"), same
//   eta            : [N, H]        any supported dtype, strides (n, h); log_alpha, beta, mu likewise
//                                  or null (absent)
//   M, M_chunk     : [N, H, K, V]  float32, contiguous; S likewise (null without mu)
//   position       : [N] int64; counters: [≥ N] int32, zero, left zero
//   o              : [N, H, V]     token dtype, contiguous
#pragma once

#include <cuda_runtime_api.h>

#include "common/dtypes.h"

namespace nk {

struct GateArg {
  const void* ptr = nullptr;  // null: the gate is absent
  long long sn = 0, sh = 0;
  DType dtype = DType::kFloat32;
};

struct LinearMemoryStepParams {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  long long sqn = 0, sqh = 0, skn = 0, skh = 0, svn = 0, svh = 0;
  DType token_dtype = DType::kFloat32;  // of q, k, v and o
  GateArg eta, log_alpha, beta, mu;
  float* M = nullptr;
  float* S = nullptr;
  float* M_chunk = nullptr;
  long long* position = nullptr;
  int* counters = nullptr;
  void* o = nullptr;
  int N = 0, H = 0, K = 0, V = 0;
  long long chunk_size = 1;
  float scale = 1.0f;
  bool self_target = false;
  int read = 0;  // 0 after, 1 before, 2 chunk
};

void linear_memory_step(const LinearMemoryStepParams& params, cudaStream_t stream);

}  // namespace nk
