// Element types understood by the kernels, as the integer codes the Python side passes
// (nested_kernels/ops/*/cuda.py maps torch dtypes to these; the module exports them as
// _C.DTYPE_FLOAT32, _C.DTYPE_BFLOAT16, _C.DTYPE_FLOAT16).
#pragma once

#include <cstdint>

namespace nk {

enum class DType : int {
  kFloat32 = 0,
  kBFloat16 = 1,
  kFloat16 = 2,
};

inline bool is_valid_dtype(int code) { return code >= 0 && code <= 2; }

inline const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kFloat16:
      return "float16";
  }
  return "unknown";
}

// True when ptr is a multiple of `bytes` (vectorised loads/stores need 16-byte alignment).
inline bool is_aligned(const void* ptr, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(ptr) % bytes == 0;
}

}  // namespace nk
