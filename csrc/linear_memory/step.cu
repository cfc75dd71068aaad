// linear_memory decode step (see step.h): one launch per call.
//
// Grid (N·H, ⌈V / 128⌉), 128 threads; thread j of block (nh, b) owns column c = 128·b + j of the
// K×V state of sequence n = nh / H, head h = nh % H: every formula of the rule is separable over
// the columns of V (for target "self", M_sᵀv too), so threads never exchange values. q·scale, k
// (and v for self targets) are staged in shared memory as float32. Two passes down the column:
// the first reads M (and M_chunk inside a chunk) for e, kᵀM and the "before" / "chunk" reads; the
// second writes S', M', the chunk-start copy at boundaries and reads M'ᵀq. Loads of a row of M are
// coalesced across the block's threads. The last block of a sequence (an atomic count on
// counters[n]) writes its new position after every block has read the old one.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "common/cuda_check.h"
#include "common/device_utils.cuh"
#include "common/dtypes.h"
#include "linear_memory/step.h"

namespace nk {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxK = 4096;  // q, k, v of one head in 48 KB of shared memory

__device__ __forceinline__ float load_any(const void* p, DType dtype, long long i) {
  switch (dtype) {
    case DType::kBFloat16:
      return load_as_float(static_cast<const __nv_bfloat16*>(p) + i);
    case DType::kFloat16:
      return load_as_float(static_cast<const __half*>(p) + i);
    default:
      return load_as_float(static_cast<const float*>(p) + i);
  }
}

__device__ __forceinline__ void store_any(void* p, DType dtype, long long i, float x) {
  switch (dtype) {
    case DType::kBFloat16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(x);
      break;
    case DType::kFloat16:
      static_cast<__half*>(p)[i] = __float2half(x);
      break;
    default:
      static_cast<float*>(p)[i] = x;
  }
}

// The gate of (n, h), or `absent` when the gate is not given.
__device__ __forceinline__ float gate(const GateArg& g, int n, int h, float absent) {
  return g.ptr ? load_any(g.ptr, g.dtype, n * g.sn + h * g.sh) : absent;
}

__global__ void __launch_bounds__(kThreads) lm_step_kernel(const LinearMemoryStepParams P) {
  extern __shared__ float smem[];
  const int K = P.K, V = P.V;
  const int nh = blockIdx.x;
  const int n = nh / P.H, h = nh % P.H;
  float* sq = smem;
  float* sk = smem + K;
  float* sv = smem + 2 * K;
  for (int i = threadIdx.x; i < K; i += kThreads) {
    sq[i] = load_any(P.q, P.token_dtype, n * P.sqn + h * P.sqh + i) * P.scale;
    sk[i] = load_any(P.k, P.token_dtype, n * P.skn + h * P.skh + i);
    if (P.self_target) sv[i] = load_any(P.v, P.token_dtype, n * P.svn + h * P.svh + i);
  }
  const long long p = P.position[n];  // every thread reads it before its block counts itself
  __syncthreads();

  const int c = blockIdx.y * kThreads + threadIdx.x;
  if (c < V) {
    const bool mid = p > 0;
    const long long base = static_cast<long long>(nh) * K * V + c;
    float* M = P.M + base;
    float* Mc = P.M_chunk + base;
    float* S = P.S ? P.S + base : nullptr;
    const float eta = gate(P.eta, n, h, 0.0f);
    const float alpha = P.log_alpha.ptr ? expf(gate(P.log_alpha, n, h, 0.0f)) : 1.0f;
    const float beta = gate(P.beta, n, h, 0.0f);
    const float mu = gate(P.mu, n, h, 0.0f);

    float e = 0.0f, target = 0.0f, kM = 0.0f, o_before = 0.0f, o_chunk = 0.0f;
    for (int i = 0; i < K; ++i) {
      const long long off = static_cast<long long>(i) * V;
      const float m = M[off];
      const float ms = mid ? Mc[off] : m;
      e += ms * sk[i];
      kM += m * sk[i];
      if (P.self_target) target += ms * sv[i];
      o_before += m * sq[i];
      o_chunk += ms * sq[i];
    }
    if (!P.self_target) target = load_any(P.v, P.token_dtype, n * P.svn + h * P.svh + c);
    e -= target;

    const bool at_end = (p + 1) % P.chunk_size == 0;
    float o_after = 0.0f;
    for (int i = 0; i < K; ++i) {
      const long long off = static_cast<long long>(i) * V;
      const float m = M[off];
      float s = -eta * sk[i] * e;
      if (S) {
        s += mu * S[off];
        S[off] = s;
      }
      const float m_new = alpha * m - beta * sk[i] * kM + s;
      M[off] = m_new;
      o_after += m_new * sq[i];
      if (at_end) {
        Mc[off] = m_new;
      } else if (!mid) {
        Mc[off] = m;
      }
    }
    const float o = P.read == 0 ? o_after : (P.read == 1 ? o_before : o_chunk);
    store_any(P.o, P.token_dtype, static_cast<long long>(nh) * V + c, o);
  }

  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    const int total = static_cast<int>(gridDim.y) * P.H;
    if (atomicAdd(P.counters + n, 1) == total - 1) {
      P.position[n] = (p + 1) % P.chunk_size;
      P.counters[n] = 0;
    }
  }
}

}  // namespace

void linear_memory_step(const LinearMemoryStepParams& params, cudaStream_t stream) {
  const auto& P = params;
  NK_CHECK_ARG(P.N >= 0 && P.H >= 0 && P.K >= 0 && P.V >= 0,
               "linear_memory_step: N, H, K, V must be >= 0");
  if (static_cast<long long>(P.N) * P.H * P.K * P.V == 0) return;
  NK_CHECK_ARG(P.K <= kMaxK, "linear_memory_step: K must be <= " + std::to_string(kMaxK) +
                                 ", got " + std::to_string(P.K));
  NK_CHECK_ARG(P.chunk_size >= 1, "linear_memory_step: chunk_size must be >= 1");
  NK_CHECK_ARG(P.read >= 0 && P.read <= 2, "linear_memory_step: read must be 0, 1 or 2");
  NK_CHECK_ARG(P.q && P.k && P.v && P.eta.ptr && P.M && P.M_chunk && P.position && P.counters && P.o,
               "linear_memory_step: null pointer for a required tensor");
  NK_CHECK_ARG((P.S != nullptr) == (P.mu.ptr != nullptr),
               "linear_memory_step: S and mu must be given together");
  const long long nh = static_cast<long long>(P.N) * P.H;
  NK_CHECK_ARG(nh <= 0x7fffffffLL, "linear_memory_step: N * H must fit a grid dimension");
  const dim3 grid(static_cast<unsigned>(nh), static_cast<unsigned>(ceil_div(P.V, kThreads)));
  const size_t smem = static_cast<size_t>(P.self_target ? 3 : 2) * P.K * sizeof(float);
  lm_step_kernel<<<grid, kThreads, smem, stream>>>(P);
  NK_CUDA_CHECK_LAUNCH();
}

}  // namespace nk
