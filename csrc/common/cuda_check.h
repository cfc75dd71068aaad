// Error checking shared by every CUDA source of nested_kernels.
//
// NK_CUDA_CHECK(expr)  evaluates a CUDA runtime call and throws std::runtime_error
//                      "CUDA error at <file>:<line>: <call>: <name>: <message>" when it fails.
// NK_CUDA_CHECK_LAUNCH() checks the most recent kernel launch (cudaGetLastError); call it right
//                      after every <<<...>>>.
// NK_CHECK_ARG(cond, msg) throws std::invalid_argument (a ValueError in Python) with msg.
//
// Host-only header: safe to include from .cpp (bindings) and .cu files alike.
#pragma once

#include <cuda_runtime_api.h>

#include <sstream>
#include <stdexcept>
#include <string>

namespace nk {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file,
                                          int line) {
  std::ostringstream msg;
  msg << "CUDA error at " << file << ":" << line << ": " << what << ": " << cudaGetErrorName(err)
      << ": " << cudaGetErrorString(err);
  throw std::runtime_error(msg.str());
}

[[noreturn]] inline void throw_invalid_argument(const std::string& what, const char* file,
                                                int line) {
  std::ostringstream msg;
  msg << what << " (" << file << ":" << line << ")";
  throw std::invalid_argument(msg.str());
}

}  // namespace nk

#define NK_CUDA_CHECK(expr)                                          \
  do {                                                               \
    const cudaError_t nk_err_ = (expr);                              \
    if (nk_err_ != cudaSuccess) {                                    \
      ::nk::throw_cuda_error(nk_err_, #expr, __FILE__, __LINE__);    \
    }                                                                \
  } while (0)

#define NK_CUDA_CHECK_LAUNCH() NK_CUDA_CHECK(cudaGetLastError())

#define NK_CHECK_ARG(cond, msg)                                      \
  do {                                                               \
    if (!(cond)) {                                                   \
      ::nk::throw_invalid_argument((msg), __FILE__, __LINE__);       \
    }                                                                \
  } while (0)
