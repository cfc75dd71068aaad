// out[n] = retention * W[n] - left[n]^T diag(eta[n]) right[n]   (see outer_update.h)
//
// A tiled SIMT (CUDA-core, float32 FMA) GEMM per sequence n with the token axis as the
// reduction axis:
//   * a block owns a kBM x kBN (128 x 128) tile of out[n] (rows p of P, columns q of Q);
//   * it walks the tokens kBK (8) at a time: the tile's slice of left (scaled by eta, converted
//     to float32) and of right goes to shared memory as As[k][m], Bs[k][n]; both operands are
//     already "k-major" in global memory (left is [n_tok, P], right is [n_tok, Q]), so loads are
//     coalesced and no transpose is needed;
//   * the next token slice is prefetched into registers while the current one is multiplied;
//   * each of the 256 threads accumulates an 8 x 8 register tile, made of two 4-row groups 64
//     rows apart and two 4-column groups 64 columns apart (conflict-free float4 shared loads and
//     contiguous float4 stores in the epilogue);
//   * epilogue: out = retention * weight - acc, element by element, so out may alias weight.
// Edges (P, Q, n_tok not multiples of the tile) are masked; loads of left/right are scalar, so
// no alignment is required of them; the epilogue uses float4 only when Q % 4 == 0 and out and
// weight are 16-byte aligned.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <sstream>

#include "common/cuda_check.h"
#include "common/device_utils.cuh"
#include "common/dtypes.h"
#include "fast_mlp/outer_update.h"

namespace nk {
namespace {

constexpr int kBM = 128;     // rows of out (P) per block
constexpr int kBN = 128;     // columns of out (Q) per block
constexpr int kBK = 8;       // tokens per shared-memory stage
constexpr int kThreads = 256;
constexpr int kThreadsN = 16;  // threads along Q; kThreads / kThreadsN = 16 along P
constexpr int kLoadsA = kBK * kBM / kThreads;  // elements of left each thread loads per stage
constexpr int kLoadsB = kBK * kBN / kThreads;  // elements of right each thread loads per stage
constexpr int kMaxGridYZ = 65535;

static_assert(kBM == 128 && kBN == 128 && kThreads == 256 && kThreadsN == 16,
              "the 8x8 register tiling below assumes 128x128 tiles and 16x16 threads");
static_assert(kBK * kBM % kThreads == 0 && kBK * kBN % kThreads == 0, "loads must divide evenly");

// Thread tid loads, for stage tokens t0 + k, the elements left[t, p0 + tid % kBM] (k = j * kRowsA
// + tid / kBM) and right[t, q0 + tid % kBN]: a warp reads 32 consecutive elements of one token
// row (coalesced), and each thread's column is fixed, so only the token advances with j.
constexpr int kRowsA = kThreads / kBM;  // token rows of left covered by one pass of the block
constexpr int kRowsB = kThreads / kBN;

template <typename T>
__device__ __forceinline__ void load_stage(const T* __restrict__ left, const T* __restrict__ right,
                                           const float* __restrict__ eta, long long t0,
                                           long long n_tok, long long P, long long Q,
                                           long long p, long long q, int tid,
                                           float (&ra)[kLoadsA], float (&rb)[kLoadsB]) {
  const bool p_ok = p < P;
  const bool q_ok = q < Q;
#pragma unroll
  for (int j = 0; j < kLoadsA; ++j) {
    const long long t = t0 + j * kRowsA + tid / kBM;
    ra[j] = (p_ok && t < n_tok) ? load_as_float(left + t * P + p) * __ldg(eta + t) : 0.0f;
  }
#pragma unroll
  for (int j = 0; j < kLoadsB; ++j) {
    const long long t = t0 + j * kRowsB + tid / kBN;
    rb[j] = (q_ok && t < n_tok) ? load_as_float(right + t * Q + q) : 0.0f;
  }
}

template <typename T, bool kVecEpilogue>
__global__ void __launch_bounds__(kThreads, 2)
    outer_update_kernel(float* out, const float* weight, const T* __restrict__ left,
                        const T* __restrict__ right, const float* __restrict__ eta, long long N,
                        long long n_tok, long long P, long long Q, float retention) {
  __shared__ __align__(16) float As[kBK][kBM];
  __shared__ __align__(16) float Bs[kBK][kBN];

  const int tid = threadIdx.x;
  const int tx = tid % kThreadsN;  // column group
  const int ty = tid / kThreadsN;  // row group
  const long long p0 = static_cast<long long>(blockIdx.x) * kBM;
  const long long q0 = static_cast<long long>(blockIdx.y) * kBN;
  const long long p_load = p0 + tid % kBM;  // the column of left this thread loads
  const long long q_load = q0 + tid % kBN;  // the column of right this thread loads

  for (long long n = blockIdx.z; n < N; n += gridDim.z) {
    const T* left_n = left + n * n_tok * P;
    const T* right_n = right + n * n_tok * Q;
    const float* eta_n = eta + n * n_tok;

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
    }

    float ra[kLoadsA];
    float rb[kLoadsB];
    if (n_tok > 0) load_stage(left_n, right_n, eta_n, 0, n_tok, P, Q, p_load, q_load, tid, ra, rb);

    for (long long t0 = 0; t0 < n_tok; t0 += kBK) {
#pragma unroll
      for (int j = 0; j < kLoadsA; ++j) {
        As[j * kRowsA + tid / kBM][tid % kBM] = ra[j];
      }
#pragma unroll
      for (int j = 0; j < kLoadsB; ++j) {
        Bs[j * kRowsB + tid / kBN][tid % kBN] = rb[j];
      }
      __syncthreads();

      // Prefetch the next token slice into registers while this one is multiplied.
      if (t0 + kBK < n_tok) {
        load_stage(left_n, right_n, eta_n, t0 + kBK, n_tok, P, Q, p_load, q_load, tid, ra, rb);
      }

#pragma unroll
      for (int k = 0; k < kBK; ++k) {
        const float4 a_lo = *reinterpret_cast<const float4*>(&As[k][ty * 4]);
        const float4 a_hi = *reinterpret_cast<const float4*>(&As[k][64 + ty * 4]);
        const float4 b_lo = *reinterpret_cast<const float4*>(&Bs[k][tx * 4]);
        const float4 b_hi = *reinterpret_cast<const float4*>(&Bs[k][64 + tx * 4]);
        const float a[8] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
        const float b[8] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
#pragma unroll
        for (int i = 0; i < 8; ++i) {
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
      }
      __syncthreads();  // everyone is done reading As/Bs before the next stage overwrites them
    }

    // Epilogue: out = retention * weight - acc. Row i of the register tile is
    // p0 + ty*4 + i (i < 4) or p0 + 64 + ty*4 + (i-4); column group g starts at q0 + g*64 + tx*4.
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const long long p = p0 + (i < 4 ? 0 : 64) + ty * 4 + (i % 4);
      if (p >= P) continue;
      const long long row = (n * P + p) * Q;
#pragma unroll
      for (int g = 0; g < 2; ++g) {
        const long long q = q0 + g * 64 + tx * 4;
        if (q >= Q) continue;
        const float* c = &acc[i][g * 4];
        if (kVecEpilogue) {  // Q % 4 == 0, q % 4 == 0 and q < Q, hence q + 3 < Q
          const float4 w = *reinterpret_cast<const float4*>(weight + row + q);
          float4 o;
          o.x = fmaf(retention, w.x, -c[0]);
          o.y = fmaf(retention, w.y, -c[1]);
          o.z = fmaf(retention, w.z, -c[2]);
          o.w = fmaf(retention, w.w, -c[3]);
          *reinterpret_cast<float4*>(out + row + q) = o;
        } else {
#pragma unroll
          for (int jj = 0; jj < 4; ++jj) {
            if (q + jj < Q) out[row + q + jj] = fmaf(retention, weight[row + q + jj], -c[jj]);
          }
        }
      }
    }
    // No shared-memory hazard across n: the loop above ended with __syncthreads().
  }
}

template <typename T>
void launch(const OuterUpdateParams& p, bool vec_epilogue, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(p.P, kBM)), static_cast<unsigned>(ceil_div(p.Q, kBN)),
                  static_cast<unsigned>(std::min<long long>(p.N, kMaxGridYZ)));
  const T* left = static_cast<const T*>(p.left);
  const T* right = static_cast<const T*>(p.right);
  if (vec_epilogue) {
    outer_update_kernel<T, true><<<grid, kThreads, 0, stream>>>(
        p.out, p.weight, left, right, p.eta, p.N, p.n_tok, p.P, p.Q, p.retention);
  } else {
    outer_update_kernel<T, false><<<grid, kThreads, 0, stream>>>(
        p.out, p.weight, left, right, p.eta, p.N, p.n_tok, p.P, p.Q, p.retention);
  }
  NK_CUDA_CHECK_LAUNCH();
}

}  // namespace

void outer_update(const OuterUpdateParams& p, cudaStream_t stream) {
  NK_CHECK_ARG(p.N >= 0 && p.n_tok >= 0 && p.P >= 0 && p.Q >= 0,
               "outer_update: sizes N, n_tok, P, Q must be non-negative");
  NK_CHECK_ARG(ceil_div(p.P, kBM) <= 0x7fffffffLL, "outer_update: P is too large");
  NK_CHECK_ARG(ceil_div(p.Q, kBN) <= kMaxGridYZ, "outer_update: Q is too large (at most 65535*128)");
  if (p.N == 0 || p.P == 0 || p.Q == 0) return;  // nothing to write
  NK_CHECK_ARG(p.out != nullptr && p.weight != nullptr, "outer_update: out and weight must be non-null");
  if (p.n_tok > 0) {
    NK_CHECK_ARG(p.left != nullptr && p.right != nullptr && p.eta != nullptr,
                 "outer_update: left, right and eta must be non-null when n_tok > 0");
  }
  const bool vec_epilogue = p.Q % 4 == 0 && is_aligned(p.out, 16) && is_aligned(p.weight, 16);
  switch (p.dtype) {
    case DType::kFloat32:
      launch<float>(p, vec_epilogue, stream);
      break;
    case DType::kBFloat16:
      launch<__nv_bfloat16>(p, vec_epilogue, stream);
      break;
    case DType::kFloat16:
      launch<__half>(p, vec_epilogue, stream);
      break;
    default: {
      std::ostringstream msg;
      msg << "outer_update: unsupported dtype code " << static_cast<int>(p.dtype);
      NK_CHECK_ARG(false, msg.str());
    }
  }
}

}  // namespace nk
