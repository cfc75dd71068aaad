// Device helpers shared by the kernels (include from .cu files only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/dtypes.h"

namespace nk {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

// Element i of a buffer of element type dt (a gate of any supported dtype) as float32.
__device__ __forceinline__ float load_as_float(const void* p, long long i, DType dt) {
  switch (dt) {
    case DType::kBFloat16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::kFloat16:
      return __half2float(static_cast<const __half*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

// Load one element of any supported input type as float32.
__device__ __forceinline__ float load_as_float(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load_as_float(const __nv_bfloat16* p) {
  return __bfloat162float(__ldg(p));
}
__device__ __forceinline__ float load_as_float(const __half* p) { return __half2float(__ldg(p)); }

__host__ __device__ constexpr long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

}  // namespace nk
