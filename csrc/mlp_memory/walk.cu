// Forward walk of mlp_memory: see walk.h for the layout and what is covered, and
// nested_kernels/ops/mlp_memory/triton_fwd.py for the algebra of one tile (the same steps, in the
// same order, with the same names: Z, A, E, w2v, RHS, U, Hq, Bq, B Aᵀ, X).
#include "mlp_memory/walk.h"

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <string>
#include <type_traits>

#include "common/cuda_check.h"
#include "common/device_utils.cuh"

namespace nk {
namespace {

namespace cg = cooperative_groups;
namespace wmma = nvcuda::wmma;

constexpr int kThreads = 256;
constexpr int kSlice = kMlpWalkSlice;  // hidden units per CTA
constexpr int kLd = kMlpWalkLd;        // leading dimension of every shared buffer (padded: banks)
constexpr int kPv = 8;                 // columns of the pv prep rows
enum Pv { kG = 0, kGp = 1, kNu = 2, kNup = 3, kM = 4, kPhiL = 5, kGL = 6, kDL = 7 };

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }

__device__ __forceinline__ float act(float z, int kind) {
  if (kind == 0) return 0.5f * z * (1.0f + erff(z * 0.70710678118654752f));
  return z / (1.0f + __expf(-z));
}

__device__ __forceinline__ float act_grad(float z, int kind) {
  if (kind == 0) {
    return 0.5f * (1.0f + erff(z * 0.70710678118654752f)) + z * __expf(-0.5f * z * z) * 0.3989422804014327f;
  }
  const float s = 1.0f / (1.0f + __expf(-z));
  return s * (1.0f + z * (1.0f - s));
}

// C[M, N] (+)= A[M, Kd] · B[Kd, N] on the tensor cores, the warps of the CTA taking 16×16 tiles of C
// in turn. A_COL: A is stored column-major (A[m][k] at A[k·lda + m]); B_COL likewise for B
// (B[k][n] at B[n·ldb + k]). C is row-major. Operands are rounded to nearest tf32.
// M, N, KD are compile-time so that the k loop unrolls and every fragment load of a tile is issued
// before its products (operands in global memory / L2 then cost one latency per tile, not one per k
// step).
template <bool A_COL, bool B_COL, int M, int N, int KD>
__device__ void gemm(float* C, int ldc, const float* A, int lda, const float* B, int ldb, bool accumulate) {
  using LA = typename std::conditional<A_COL, wmma::col_major, wmma::row_major>::type;
  using LB = typename std::conditional<B_COL, wmma::col_major, wmma::row_major>::type;
  const int warp = threadIdx.x / 32;
  constexpr int tiles_n = N / 16;
  constexpr int tiles = (M / 16) * tiles_n;
  for (int t = warp; t < tiles; t += kThreads / 32) {
    const int m0 = (t / tiles_n) * 16;
    const int n0 = (t % tiles_n) * 16;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
    if (accumulate) {
      wmma::load_matrix_sync(c, C + m0 * ldc + n0, ldc, wmma::mem_row_major);
    } else {
      wmma::fill_fragment(c, 0.0f);
    }
#pragma unroll
    for (int k0 = 0; k0 < KD; k0 += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LA> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LB> b;
      wmma::load_matrix_sync(a, A_COL ? A + (long long)k0 * lda + m0 : A + (long long)m0 * lda + k0, lda);
      wmma::load_matrix_sync(b, B_COL ? B + (long long)n0 * ldb + k0 : B + (long long)k0 * ldb + n0, ldb);
#pragma unroll
      for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
#pragma unroll
      for (int i = 0; i < b.num_elements; ++i) b.x[i] = wmma::__float_to_tf32(b.x[i]);
      wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + m0 * ldc + n0, c, ldc, wmma::mem_row_major);
  }
}

// dst[r][c] = f(r, c) over a [rows, cols] shared buffer (leading dimension kLd).
template <typename Fn>
__device__ __forceinline__ void each(float* dst, int rows, int cols, Fn f) {
  for (int i = threadIdx.x; i < rows * cols; i += kThreads) {
    const int r = i / cols, c = i % cols;
    dst[r * kLd + c] = f(r, c);
  }
}

// Shared buffers: nine of [C, kLd] floats (token-major tiles; B Aᵀ reuses z's, dead by then), three
// of [64, kLd] (a weight-sized temporary and this CTA's W1 / W2 slices, resident across the tiles),
// nine vectors of C.
struct Smem {
  float *k, *q, *vu, *po, *e, *a, *z, *d, *t1, *ba, *t2, *w1, *w2;
  float *eta, *beta, *gp, *nup, *gm, *nm, *phil, *gl, *dl;
};

__host__ __device__ constexpr size_t smem_floats(int C) { return (size_t)(9 * C + 3 * kSlice) * kLd + 9 * C; }

__device__ Smem carve(float* base, int C) {
  Smem s;
  float** tiles[] = {&s.k, &s.q, &s.vu, &s.po, &s.e, &s.a, &s.z, &s.d, &s.t1};
  for (float** t : tiles) {
    *t = base;
    base += C * kLd;
  }
  s.ba = s.z;
  float** slices[] = {&s.t2, &s.w1, &s.w2};
  for (float** t : slices) {
    *t = base;
    base += kSlice * kLd;
  }
  float** vecs[] = {&s.eta, &s.beta, &s.gp, &s.nup, &s.gm, &s.nm, &s.phil, &s.gl, &s.dl};
  for (float** v : vecs) {
    *v = base;
    base += C;
  }
  return s;
}

// The ns CTAs of one (sequence, head) and how they exchange partial [C, kLd] buffers: a thread-block
// cluster reading each other's shared memory (CLUSTER), or a cooperative grid writing the partials
// to a global scratch [ns, C, kLd] and meeting at a counter in global memory (all CTAs of the grid
// are resident: a cooperative launch guarantees it).
template <bool CLUSTER, int C>
struct Group {
  int ns, j;
  unsigned* counter;   // global barrier counter of this (sequence, head) (cooperative)
  unsigned arrived;    // barriers passed so far (cooperative)

  __device__ Group(const MlpWalkParams& p, int i_nh) : counter(nullptr), arrived(0) {
    if constexpr (CLUSTER) {
      cg::cluster_group cluster = cg::this_cluster();
      ns = static_cast<int>(cluster.num_blocks());
      j = static_cast<int>(cluster.block_rank());
    } else {
      ns = static_cast<int>(gridDim.x);
      j = static_cast<int>(blockIdx.x);
      counter = p.sync + i_nh;
    }
  }

  // Every CTA of the group has reached this point (and its writes before it are visible).
  __device__ void sync() {
    if constexpr (CLUSTER) {
      cg::this_cluster().sync();
    } else {
      __syncthreads();
      arrived += ns;
      if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(counter, 1u);
        unsigned seen;
        do {
          asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
        } while (seen < arrived);
        __threadfence();
      }
      __syncthreads();
    }
  }

  // Publish this CTA's partial buffer ``buf`` ([C, kLd] in shared memory) for ``sum`` after the
  // next sync; ``scratch``: this (sequence, head)'s global [ns, C, kLd] (cooperative).
  __device__ void publish(const float* buf, float* scratch) const {
    if constexpr (!CLUSTER) {
      float* dst = scratch + (size_t)j * C * kLd;
      for (int i = threadIdx.x; i < C * kLd; i += kThreads) dst[i] = buf[i];
    }
  }

  // Σ over the group's CTAs of their published buffer at element i (= t·kLd + c).
  __device__ float sum(float* buf, const float* scratch, int i) const {
    float acc = 0.0f;
#pragma unroll
    for (int r = 0; r < 8; ++r) {
      if (r < ns) {
        if constexpr (CLUSTER) {
          acc += cg::this_cluster().map_shared_rank(buf, r)[i];
        } else {
          acc += __ldcg(scratch + (size_t)r * C * kLd + i);
        }
      }
    }
    return acc;
  }
};

template <typename TT, int D, int C, bool CLUSTER>
__global__ void __launch_bounds__(kThreads) walk_kernel(MlpWalkParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) float smem[];
  const int i_nh = blockIdx.y;
  Group<CLUSTER, C> group(p, i_nh);
  const int ns = group.ns, j = group.j;
  const size_t slot = (size_t)i_nh * ns * C * kLd;     // this (sequence, head)'s scratch [ns, C, kLd]
  float* xp = p.xp ? p.xp + slot : nullptr;            // partial predictions / outputs / B Aᵀ (cooperative)
  float* xo = p.xo ? p.xo + slot : nullptr;
  float* xb = p.xba ? p.xba + slot : nullptr;
  const int H = p.H, F = p.F, T = p.T;
  const int i_n = i_nh / H, i_h = i_nh % H;
  const int fs = j * kSlice;
  const int n_tiles = T / C;
  const long long rowC = (long long)H * C;   // row stride of the [rows, H, C] prep rows
  Smem s = carve(smem, C);
  const TT* q = static_cast<const TT*>(p.q);
  const TT* k = static_cast<const TT*>(p.k);
  const TT* v = static_cast<const TT*>(p.v);
  float* w1 = p.W1 + (long long)i_nh * D * F + fs;            // [D, 64] of a [D, F] matrix
  float* w2 = p.W2 + (long long)i_nh * F * D + (long long)fs * D;   // [64, D]
  float* s1 = p.has_mu ? p.S1 + (long long)i_nh * D * F + fs : nullptr;
  float* s2 = p.has_mu ? p.S2 + (long long)i_nh * F * D + (long long)fs * D : nullptr;
  const long long tb = p.save ? p.tile_base[i_n] : 0;
  const bool read_tok = p.read != 2;
  const float* pvb = p.pv;
  for (int x = threadIdx.x; x < D * kSlice; x += kThreads) {     // this CTA's weight slices, kept here
    const int r = x / kSlice, c = x % kSlice;
    s.w1[r * kLd + c] = w1[(long long)r * F + c];
    const int f = x / D, cc = x % D;
    s.w2[f * kLd + cc] = w2[x];
  }

  for (int i = 0; i < n_tiles; ++i) {
    const long long r0 = (long long)i_n * T + (long long)i * C;    // first token row of the tile
    const long long g0 = r0 * H + i_h;                              // its (row, head) index
    // --- tile inputs, checkpoints ---------------------------------------------------------------
    each(s.k, C, D, [&](int t, int c) { return to_float(k[(g0 + (long long)t * H) * D + c]); });
    each(s.q, C, D, [&](int t, int c) { return to_float(q[(g0 + (long long)t * H) * D + c]) * p.scale; });
    each(s.vu, C, D, [&](int t, int c) { return to_float(v[(g0 + (long long)t * H) * D + c]); });
    for (int t = threadIdx.x; t < C; t += kThreads) {
      const long long g = g0 + (long long)t * H;
      const float* pr = pvb + g * kPv;
      s.eta[t] = load_as_float(p.eta, g, p.eta_dtype);
      s.beta[t] = p.has_beta ? load_as_float(p.beta, g, p.beta_dtype) : 0.0f;
      s.gp[t] = pr[kGp];
      s.nup[t] = p.has_mu ? pr[kNup] : 0.0f;
      s.gm[t] = p.read == 0 ? pr[kG] : pr[kGp];
      s.nm[t] = p.has_mu ? (p.read == 0 ? pr[kNu] : pr[kNup]) : 0.0f;
      s.phil[t] = pr[kPhiL];
      s.gl[t] = pr[kGL];
      s.dl[t] = p.has_mu ? pr[kDL] : 0.0f;
    }
    const float* last = pvb + (g0 + (long long)(C - 1) * H) * kPv;
    const float gL = last[kG];
    const float nuL = p.has_mu ? last[kNu] : 0.0f;
    const float mL = p.has_mu ? last[kM] : 0.0f;
    if (p.save) {
      const long long t1 = ((tb + i) * H + i_h) * D * F + fs;
      const long long t2 = ((tb + i) * H + i_h) * F * D + (long long)fs * D;
      for (int x = threadIdx.x; x < D * kSlice; x += kThreads) {
        const int r = x / kSlice, c = x % kSlice;
        p.sv1[t1 + (long long)r * F + c] = s.w1[r * kLd + c];
        p.sv2[t2 + x] = s.w2[(x / D) * kLd + x % D];
        if (p.has_mu) {
          p.svs1[t1 + (long long)r * F + c] = s1[(long long)r * F + c];
          p.svs2[t2 + x] = s2[x];
        }
      }
    }
    __syncthreads();

    // --- pass 1: this slice's share of the prediction at the chunk-start weights ---------------
    gemm<false, true, C, kSlice, D>(s.z, kLd, s.k, kLd, s.w2, kLd, false);       // Z = K W2ᵀ
    __syncthreads();
    each(s.a, C, kSlice, [&](int t, int c) { return act(s.z[t * kLd + c], p.act); });   // A = φ(Z)
    __syncthreads();
    gemm<false, true, C, D, kSlice>(s.po, kLd, s.a, kLd, s.w1, kLd, false);      // P = A W1ᵀ
    if (p.self_target) {
      __syncthreads();
      gemm<false, true, C, kSlice, D>(s.t1, kLd, s.vu, kLd, s.w2, kLd, false);
      __syncthreads();
      each(s.t1, C, kSlice, [&](int t, int c) { return -act(s.t1[t * kLd + c], p.act); });
      __syncthreads();
      gemm<false, true, C, D, kSlice>(s.po, kLd, s.t1, kLd, s.w1, kLd, true);     // P −= φ(V W2ᵀ) W1ᵀ
    }
    __syncthreads();
    group.publish(s.po, xp);
    group.sync();
    // E = Σ_j P_j [+ K] − target
    each(s.e, C, D, [&](int t, int c) {
      float e = group.sum(s.po, xp, t * kLd + c);
      if (p.residual) e += s.k[t * kLd + c];
      if (!p.self_target || p.residual) e -= s.vu[t * kLd + c];
      return e;
    });
    if constexpr (CLUSTER) group.sync();    // the others have read this CTA's po
    else __syncthreads();
    if (p.save && j == 0) {
      for (int x = threadIdx.x; x < C * D; x += kThreads) {
        const int t = x / D, c = x % D;
        p.sv_e[(g0 + (long long)t * H) * D + c] = s.e[t * kLd + c];
      }
    }

    // --- pass 2: everything separable over the hidden units -------------------------------------
    gemm<false, false, C, kSlice, D>(s.d, kLd, s.e, kLd, s.w1, kLd, false);      // E W1
    __syncthreads();
    each(s.d, C, kSlice, [&](int t, int c) {                                       // w2v = −η (E W1) φ'(Z)
      return -s.eta[t] * s.d[t * kLd + c] * act_grad(s.z[t * kLd + c], p.act);
    });
    __syncthreads();
    if (p.has_beta) {           // DGD solve: U = −β (I + A_β)⁻¹ RHS, RHS = γ_prev Z + ν_prev K S2ᵀ + Pk w2v
      each(s.z, C, kSlice, [&](int t, int c) { return s.gp[t] * s.z[t * kLd + c]; });
      if (p.has_mu) {
        each(s.t1, C, D, [&](int t, int c) { return s.nup[t] * s.k[t * kLd + c]; });
        __syncthreads();
        gemm<false, true, C, kSlice, D>(s.z, kLd, s.t1, kLd, s2, D, true);
      }
      __syncthreads();
      gemm<false, false, C, kSlice, C>(s.z, kLd, p.pk + g0 * C, rowC, s.d, kLd, true);
      __syncthreads();
      gemm<false, false, C, kSlice, C>(s.vu, kLd, p.ai + g0 * C, rowC, s.z, kLd, false);
      __syncthreads();
      each(s.vu, C, kSlice, [&](int t, int c) { return -s.beta[t] * s.vu[t * kLd + c]; });
      __syncthreads();
    }
    // reads: this slice's partial output (po) and partial B Aᵀ (ba)
    const bool store_o = p.o != nullptr;
    if (!read_tok) {
      if (store_o) {
        gemm<false, true, C, kSlice, D>(s.t1, kLd, s.q, kLd, s.w2, kLd, false);
        __syncthreads();
        each(s.t1, C, kSlice, [&](int t, int c) { return act(s.t1[t * kLd + c], p.act); });
        __syncthreads();
        gemm<false, true, C, D, kSlice>(s.po, kLd, s.t1, kLd, s.w1, kLd, false);  // φ(Q W2ᵀ) W1ᵀ
      }
    } else {
      gemm<false, true, C, kSlice, D>(s.t1, kLd, s.q, kLd, s.w2, kLd, false);     // h = W2_t q_t
      __syncthreads();
      each(s.t1, C, kSlice, [&](int t, int c) { return s.gm[t] * s.t1[t * kLd + c]; });
      __syncthreads();
      gemm<false, false, C, kSlice, C>(s.t1, kLd, p.qp + g0 * C, rowC, s.d, kLd, true);
      if (p.has_beta) {
        __syncthreads();
        const float* qg = p.has_mu ? p.qg : p.qp;
        gemm<false, false, C, kSlice, C>(s.t1, kLd, qg + g0 * C, rowC, s.vu, kLd, true);
      }
      if (p.has_mu) {
        each(s.t2, C, D, [&](int t, int c) { return s.nm[t] * s.q[t * kLd + c]; });
        __syncthreads();
        gemm<false, true, C, kSlice, D>(s.t1, kLd, s.t2, kLd, s2, D, true);
      }
      __syncthreads();
      each(s.t1, C, kSlice, [&](int t, int c) { return act(s.t1[t * kLd + c], p.act); });   // Bq = φ(h)
      __syncthreads();
      gemm<false, true, C, C, kSlice>(s.ba, kLd, s.t1, kLd, s.a, kLd, false);       // Bq Aᵀ
      if (store_o) {
        each(s.t2, C, kSlice, [&](int t, int c) { return s.gm[t] * s.t1[t * kLd + c]; });
        __syncthreads();
        gemm<false, true, C, D, kSlice>(s.po, kLd, s.t2, kLd, s.w1, kLd, false);
        if (p.has_mu) {
          __syncthreads();
          each(s.t2, C, kSlice, [&](int t, int c) { return s.nm[t] * s.t1[t * kLd + c]; });
          __syncthreads();
          gemm<false, true, C, D, kSlice>(s.po, kLd, s.t2, kLd, s1, F, true);
        }
        __syncthreads();      // + (B Aᵀ ⊙ Φ_m) w1v, w1v = −η E (linear in this slice's B Aᵀ)
        each(s.t1, C, C, [&](int t, int c) { return s.ba[t * kLd + c] * p.pm[(g0 + (long long)t * H) * C + c]; });
        each(s.t2, C, D, [&](int t, int c) { return -s.eta[t] * s.e[t * kLd + c]; });
        __syncthreads();
        gemm<false, false, C, D, C>(s.po, kLd, s.t1, kLd, s.t2, kLd, true);
      }
    }
    __syncthreads();
    const bool save_ba = read_tok && p.save;
    if (store_o) group.publish(s.po, xo);
    if (save_ba) group.publish(s.ba, xb);
    group.sync();
    // sums over the slices: CTA j writes rows [j C / ns, (j + 1) C / ns) of o and of B Aᵀ
    const int rows = C / ns, t0 = j * rows;
    if (store_o) {
      TT* o = static_cast<TT*>(p.o);
      for (int x = threadIdx.x; x < rows * D; x += kThreads) {
        const int t = t0 + x / D, c = x % D;
        const float acc = (p.residual ? s.q[t * kLd + c] : 0.0f) + group.sum(s.po, xo, t * kLd + c);
        o[(g0 + (long long)t * H) * D + c] = from_float<TT>(acc);
      }
    }
    if (save_ba) {
      for (int x = threadIdx.x; x < rows * C; x += kThreads) {
        const int t = t0 + x / C, c = x % C;
        p.sv_ba[(g0 + (long long)t * H) * C + c] = group.sum(s.ba, xb, t * kLd + c);
      }
    }
    if constexpr (CLUSTER) group.sync();    // the others have read this CTA's po and ba
    else __syncthreads();

    // --- tile-end states of this slice ------------------------------------------------------------
    each(s.t1, C, kSlice, [&](int t, int c) {                                      // X = Φ[n] w2v + Γ[n] U
      const float x = s.phil[t] * s.d[t * kLd + c];
      return p.has_beta ? x + s.gl[t] * s.vu[t * kLd + c] : x;
    });
    __syncthreads();
    gemm<true, false, kSlice, D, C>(s.t2, kLd, s.t1, kLd, s.k, kLd, false);        // Xᵀ K  [64, D]
    __syncthreads();
    for (int x = threadIdx.x; x < kSlice * D; x += kThreads) {
      const int f = x / D, c = x % D;
      const float w = gL * s.w2[f * kLd + c] + (p.has_mu ? nuL * s2[x] : 0.0f);
      s.w2[f * kLd + c] = w + s.t2[f * kLd + c];
    }
    each(s.t1, C, D, [&](int t, int c) { return -s.phil[t] * s.eta[t] * s.e[t * kLd + c]; });
    __syncthreads();
    gemm<true, false, D, kSlice, C>(s.t2, kLd, s.t1, kLd, s.a, kLd, false);        // (Φ[n] w1v)ᵀ A  [D, 64]
    __syncthreads();
    for (int x = threadIdx.x; x < D * kSlice; x += kThreads) {
      const int r = x / kSlice, c = x % kSlice;
      const float w = gL * s.w1[r * kLd + c] + (p.has_mu ? nuL * s1[(long long)r * F + c] : 0.0f);
      s.w1[r * kLd + c] = w + s.t2[r * kLd + c];
    }
    if (p.has_mu) {
      each(s.t1, C, D, [&](int t, int c) { return -s.dl[t] * s.eta[t] * s.e[t * kLd + c]; });
      __syncthreads();
      gemm<true, false, D, kSlice, C>(s.t2, kLd, s.t1, kLd, s.a, kLd, false);      // (D[n] w1v)ᵀ A
      __syncthreads();
      for (int x = threadIdx.x; x < D * kSlice; x += kThreads) {
        const int r = x / kSlice, c = x % kSlice;
        const long long g = (long long)r * F + c;
        s1[g] = mL * s1[g] + s.t2[r * kLd + c];
      }
      each(s.t1, C, kSlice, [&](int t, int c) { return s.dl[t] * s.d[t * kLd + c]; });
      __syncthreads();
      gemm<true, false, kSlice, D, C>(s.t2, kLd, s.t1, kLd, s.k, kLd, false);      // (D[n] w2v)ᵀ K
      __syncthreads();
      for (int x = threadIdx.x; x < kSlice * D; x += kThreads) {
        const int f = x / D, c = x % D;
        s2[x] = mL * s2[x] + s.t2[f * kLd + c];
      }
    }
    __syncthreads();
  }
  for (int x = threadIdx.x; x < D * kSlice; x += kThreads) {     // the final states of this slice
    const int r = x / kSlice, c = x % kSlice;
    w1[(long long)r * F + c] = s.w1[r * kLd + c];
    w2[x] = s.w2[(x / D) * kLd + x % D];
  }
#else
  __trap();  // compiled for an architecture without thread-block clusters: never launched there
#endif
}

// Whether the (F / 64)·B·H CTAs all fit the GPU at once (one per SM): then the cooperative kernel,
// else clusters (which need their CTAs in one GPC: fewer fit, H100 2026-12-06g: 30 clusters of 4).
template <typename TT, int D, int C>
bool fits_cooperative(const MlpWalkParams& p, size_t smem) {
  int device = 0, sms = 0, per_sm = 0, coop = 0;
  NK_CUDA_CHECK(cudaGetDevice(&device));
  NK_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  NK_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  NK_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, walk_kernel<TT, D, C, false>, kThreads, smem));
  return coop && p.xp && p.xo && p.xba && p.sync && (long long)per_sm * sms >= (long long)(p.F / kSlice) * p.B * p.H;
}

template <typename TT, int D, int C>
void launch(const MlpWalkParams& p, cudaStream_t stream) {
  const size_t smem = mlp_walk_smem_bytes(C);
  NK_CUDA_CHECK(cudaFuncSetAttribute(walk_kernel<TT, D, C, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  NK_CUDA_CHECK(cudaFuncSetAttribute(walk_kernel<TT, D, C, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  const bool coop = fits_cooperative<TT, D, C>(p, smem);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.F / kSlice, (unsigned)(p.B * p.H), 1);
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  if (coop) {
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
  } else {
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = p.F / kSlice;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
  }
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  if (coop) {
    NK_CUDA_CHECK(cudaMemsetAsync(p.sync, 0, sizeof(unsigned) * p.B * p.H, stream));
    NK_CUDA_CHECK(cudaLaunchKernelEx(&cfg, walk_kernel<TT, D, C, false>, p));
  } else {
    NK_CUDA_CHECK(cudaLaunchKernelEx(&cfg, walk_kernel<TT, D, C, true>, p));
  }
}

template <typename TT, int D>
void launch_c(const MlpWalkParams& p, cudaStream_t stream) {
  switch (p.C) {
    case 16:
      return launch<TT, D, 16>(p, stream);
    case 32:
      return launch<TT, D, 32>(p, stream);
    default:
      return launch<TT, D, 64>(p, stream);
  }
}

template <typename TT>
void launch_d(const MlpWalkParams& p, cudaStream_t stream) {
  if (p.D == 32) return launch_c<TT, 32>(p, stream);
  return launch_c<TT, 64>(p, stream);
}

}  // namespace

size_t mlp_walk_smem_bytes(int C) { return smem_floats(C) * sizeof(float); }

void mlp_memory_walk(const MlpWalkParams& p, cudaStream_t stream) {
  NK_CHECK_ARG(p.D == 32 || p.D == 64, "mlp_memory_walk: K = V must be 32 or 64, got " + std::to_string(p.D));
  NK_CHECK_ARG(p.C == 16 || p.C == 32 || p.C == 64,
               "mlp_memory_walk: chunk_size must be 16, 32 or 64, got " + std::to_string(p.C));
  const int ns = p.F / kSlice;
  NK_CHECK_ARG(p.F % kSlice == 0 && (ns == 1 || ns == 2 || ns == 4 || ns == 8),
               "mlp_memory_walk: F must be 64, 128, 256 or 512, got " + std::to_string(p.F));
  NK_CHECK_ARG(p.T > 0 && p.T % p.C == 0, "mlp_memory_walk: T must be a positive multiple of chunk_size");
  NK_CHECK_ARG(p.q && p.k && p.v && p.eta && p.W1 && p.W2 && p.pv, "mlp_memory_walk: null input");
  NK_CHECK_ARG(!p.has_mu || (p.S1 && p.S2), "mlp_memory_walk: momentum needs S1 and S2");
  NK_CHECK_ARG(!p.has_beta || (p.beta && p.ai && p.pk), "mlp_memory_walk: beta needs beta, ai and pk");
  NK_CHECK_ARG(p.read == 2 || (p.qp && p.pm && (!(p.has_beta && p.has_mu) || p.qg)),
               "mlp_memory_walk: reads after / before need the qp, pm (and qg) rows");
  NK_CHECK_ARG(!p.save || (p.sv1 && p.sv2 && p.sv_e && p.tile_base && (!p.has_mu || (p.svs1 && p.svs2)) &&
                           (p.read == 2 || p.sv_ba)),
               "mlp_memory_walk: save needs the checkpoint, E (and B Aᵀ) buffers");
  if (p.B == 0 || p.H == 0) return;
  switch (p.token_dtype) {
    case DType::kBFloat16:
      return launch_d<__nv_bfloat16>(p, stream);
    case DType::kFloat16:
      return launch_d<__half>(p, stream);
    default:
      return launch_d<float>(p, stream);
  }
}

}  // namespace nk
