// Device helpers shared by the kernels (include from .cu files only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace nk {

// Load one element of any supported input type as float32.
__device__ __forceinline__ float load_as_float(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load_as_float(const __nv_bfloat16* p) {
  return __bfloat162float(__ldg(p));
}
__device__ __forceinline__ float load_as_float(const __half* p) { return __half2float(__ldg(p)); }

__host__ __device__ constexpr long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

}  // namespace nk
