// linear_memory decode step (see step.h): one launch per call.
//
// Layout. The K×V state of sequence n, head h is cut into tiles of kCols = 32 columns; a 1-D grid
// of N·H·⌈V/32⌉ blocks (the tiles of one head adjacent), 256 threads each. In a block, lane % 8 = x
// of a warp owns the columns c0 = 32·tile + 4x … c0 + 3 (one 16-byte vector when V % 4 == 0 and
// the states are 16-byte aligned, else up to 4 scalars) and row group g = 4·warp + lane / 8 (32
// groups) the rows g, g + 32, g + 64, …: a warp's load covers 128 contiguous bytes of 4 rows.
//
// Phase 1 loads the thread's rows of M (and M_chunk inside a chunk, S with momentum) into
// registers and sums Mₛᵀk, kᵀM (with β), Mₛᵀv (target "self") and the "before" / "chunk" read over
// them; the sums of the 32 row groups are combined by shuffles inside a warp, then across the
// warps through shared memory, read back by every thread for its columns (e, kᵀM). Phase 2 writes
// S', M' and, at chunk boundaries, M_chunk from the registers, and reduces M'ᵀq (read "after") the
// same way. For K ≤ 256 the rows stay in registers between the phases (R = ⌈K/32⌉ ≤ 8 per thread),
// so every state element is read once; larger K is walked twice in slices of 128 rows, phase 2
// reading M again (from L2 while it is still there) and S.
//
// q·scale, k and v (the tile's columns, or all K entries for a self target) are staged in shared
// memory as float32. After the first barrier (every thread has read the position) thread 0 counts
// the block on counters[n]; the last block of the sequence writes the new position.
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

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kColGroups = 8;                        // 4-column groups of a tile (lanes of a row)
constexpr int kCols = 4 * kColGroups;                // columns of V per block
constexpr int kGroupsPerWarp = 32 / kColGroups;      // row groups per warp
constexpr int kRowGroups = kGroupsPerWarp * kWarps;  // row groups per block
constexpr int kMaxResidentRows = 8;                  // rows per thread kept in registers (K ≤ 256)
constexpr int kSliceRows = 4;                        // rows per thread per slice for larger K
constexpr int kMaxK = 4096;                          // q, k, v of one head: 48 KB of shared memory

// The phase-1 sums of a thread's columns: Mₛᵀk, kᵀM, Mₛᵀv (self target), Rᵀq (read before/chunk).
enum Sum { kE = 0, kKM, kTarget, kRead, kSums };

// Per-warp sums of each column group, exchanged through shared memory.
using WarpSums = float4[kWarps][kColGroups];
constexpr size_t kStaticSmem = (kSums + 1) * sizeof(WarpSums);

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

__device__ __forceinline__ float4 zero4() { return make_float4(0.0f, 0.0f, 0.0f, 0.0f); }

// acc += a · x per component.
__device__ __forceinline__ void fma4(float4& acc, float4 a, float x) {
  acc.x = fmaf(a.x, x, acc.x);
  acc.y = fmaf(a.y, x, acc.y);
  acc.z = fmaf(a.z, x, acc.z);
  acc.w = fmaf(a.w, x, acc.w);
}

// The first nv (1 … 4) of the 4 columns at p: one 16-byte access (kVec, where nv is always 4),
// else scalar ones, the columns past V read as 0 / not written.
template <bool kVec>
__device__ __forceinline__ float4 load4(const float* p, int nv) {
  if constexpr (kVec) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    float4 x = make_float4(p[0], 0.0f, 0.0f, 0.0f);
    if (nv > 1) x.y = p[1];
    if (nv > 2) x.z = p[2];
    if (nv > 3) x.w = p[3];
    return x;
  }
}

template <bool kVec>
__device__ __forceinline__ void store4(float* p, int nv, float4 x) {
  if constexpr (kVec) {
    *reinterpret_cast<float4*>(p) = x;
  } else {
    p[0] = x.x;
    if (nv > 1) p[1] = x.y;
    if (nv > 2) p[2] = x.z;
    if (nv > 3) p[3] = x.w;
  }
}

// x summed over the kGroupsPerWarp row groups of the warp (lanes kColGroups apart), in every lane.
__device__ __forceinline__ float4 warp_sum(float4 x) {
#pragma unroll
  for (int lanes = kColGroups; lanes < 32; lanes *= 2) {
    x.x += __shfl_xor_sync(0xffffffffu, x.x, lanes);
    x.y += __shfl_xor_sync(0xffffffffu, x.y, lanes);
    x.z += __shfl_xor_sync(0xffffffffu, x.z, lanes);
    x.w += __shfl_xor_sync(0xffffffffu, x.w, lanes);
  }
  return x;
}

// The sum over the warps of column group x (after a barrier that follows the warps' stores).
__device__ __forceinline__ float4 block_sum(const WarpSums& sums, int x) {
  float4 s = sums[0][x];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) {
    s.x += sums[w][x].x;
    s.y += sums[w][x].y;
    s.z += sums[w][x].z;
    s.w += sums[w][x].w;
  }
  return s;
}

// What a thread knows of its head and columns. State pointers are at row 0, column c0.
struct Ctx {
  float* M;
  float* Mc;
  float* S;  // null without momentum
  const float* sq;  // staged q·scale, k, v (shared memory)
  const float* sk;
  const float* sv;
  int K, V;
  int g;   // row group: rows g + kRowGroups·j
  int nv;  // columns of the thread inside V (≤ 0: none)
  float eta, alpha, beta, mu;  // β = 0 and μ unused when absent
  bool has_beta, self_target, mid, at_end;
  int read;
};

// Rows r0 + g + kRowGroups·j (j < R) of the thread's columns of `state` (0 outside K × V).
template <int R, bool kVec>
__device__ __forceinline__ void load_rows(float4 (&x)[R], const float* state, const Ctx& c,
                                          int r0) {
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int r = r0 + c.g + kRowGroups * j;
    const bool in = c.nv > 0 && r < c.K;
    x[j] = in ? load4<kVec>(state + static_cast<long long>(r) * c.V, c.nv) : zero4();
  }
}

// Phase 1 over the rows from r0: the thread's partial sums (M = m, Mₛ = ms).
template <int R>
__device__ __forceinline__ void accumulate(float4 (&sum)[kSums], const float4 (&m)[R],
                                           const float4 (&ms)[R], const Ctx& c, int r0) {
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int r = r0 + c.g + kRowGroups * j;
    if (r >= c.K) continue;
    fma4(sum[kE], ms[j], c.sk[r]);
    if (c.has_beta) fma4(sum[kKM], m[j], c.sk[r]);
    if (c.self_target) fma4(sum[kTarget], ms[j], c.sv[r]);
    if (c.read != 0) fma4(sum[kRead], c.read == 1 ? m[j] : ms[j], c.sq[r]);
  }
}

// Phase 2 over the rows from r0 (M = m, S = s): writes S', M' and the chunk-start copy at
// boundaries, adds M'ᵀq to o.
template <int R, bool kVec>
__device__ __forceinline__ void update(float4& o, const float4 (&m)[R], const float4 (&s)[R],
                                       float4 e, float4 kM, const Ctx& c, int r0) {
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const int r = r0 + c.g + kRowGroups * j;
    if (c.nv <= 0 || r >= c.K) continue;
    const long long off = static_cast<long long>(r) * c.V;
    const float ek = -c.eta * c.sk[r];
    float4 s_new = make_float4(ek * e.x, ek * e.y, ek * e.z, ek * e.w);
    if (c.S) {
      fma4(s_new, s[j], c.mu);
      store4<kVec>(c.S + off, c.nv, s_new);
    }
    const float bk = c.beta * c.sk[r];
    const float4 m_new = make_float4(c.alpha * m[j].x - bk * kM.x + s_new.x,
                                     c.alpha * m[j].y - bk * kM.y + s_new.y,
                                     c.alpha * m[j].z - bk * kM.z + s_new.z,
                                     c.alpha * m[j].w - bk * kM.w + s_new.w);
    store4<kVec>(c.M + off, c.nv, m_new);
    fma4(o, m_new, c.sq[r]);
    if (c.at_end) {
      store4<kVec>(c.Mc + off, c.nv, m_new);
    } else if (!c.mid) {
      store4<kVec>(c.Mc + off, c.nv, m[j]);
    }
  }
}

// The end of a block's use of position[n] (one thread, after a barrier that follows every
// thread's read of it): the last of the `total` blocks of sequence n writes the new position.
__device__ __forceinline__ void finish_position(const LinearMemoryStepParams& P, int n, long long p,
                                                int total) {
  __threadfence();
  if (atomicAdd(P.counters + n, 1) == total - 1) {
    P.position[n] = (p + 1) % P.chunk_size;
    P.counters[n] = 0;
  }
}

// R rows per thread per slice; kResident: one slice (K ≤ kRowGroups·R) kept in registers.
template <int R, bool kResident, bool kVec>
__global__ void __launch_bounds__(kThreads, R <= 4 ? 2 : 1)
    lm_step_kernel(const LinearMemoryStepParams P) {
  extern __shared__ float smem[];  // q·scale, k: K floats each; v: K (self target) or kCols
  __shared__ WarpSums partial[kSums];
  __shared__ WarpSums partial_o;

  const int K = P.K, V = P.V;
  const int tiles = static_cast<int>(ceil_div(V, kCols));
  const int nh = static_cast<int>(blockIdx.x) / tiles;
  const int tile = static_cast<int>(blockIdx.x) - nh * tiles;
  const int n = nh / P.H, h = nh % P.H;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int x = lane % kColGroups;
  const int c0 = tile * kCols + 4 * x;
  const long long base = static_cast<long long>(nh) * K * V + c0;
  const long long p = P.position[n];  // every thread reads it before the first barrier
  float* sq = smem;
  float* sk = smem + K;
  float* sv = smem + 2 * K;

  Ctx c;
  c.M = P.M + base;
  c.Mc = P.M_chunk + base;
  c.S = P.S ? P.S + base : nullptr;
  c.sq = sq;
  c.sk = sk;
  c.sv = sv;
  c.K = K;
  c.V = V;
  c.g = warp * kGroupsPerWarp + lane / kColGroups;
  c.nv = min(4, V - c0);
  c.eta = gate(P.eta, n, h, 0.0f);
  c.alpha = P.log_alpha.ptr ? expf(gate(P.log_alpha, n, h, 0.0f)) : 1.0f;
  c.beta = gate(P.beta, n, h, 0.0f);
  c.mu = gate(P.mu, n, h, 0.0f);
  c.has_beta = P.beta.ptr != nullptr;
  c.self_target = P.self_target;
  c.mid = p > 0;
  c.at_end = (p + 1) % P.chunk_size == 0;
  c.read = P.read;

  // Registers of the thread's rows (one slice): M, Mₛ (a copy of M at a chunk start), S.
  float4 m[R], ms[R], s[R];
  if constexpr (kResident) {  // loads in flight while q, k, v are staged
    load_rows<R, kVec>(m, c.M, c, 0);
    if (c.mid) {
      load_rows<R, kVec>(ms, c.Mc, c, 0);
    } else {
#pragma unroll
      for (int j = 0; j < R; ++j) ms[j] = m[j];
    }
    if (c.S) load_rows<R, kVec>(s, c.S, c, 0);
  }

  for (int i = threadIdx.x; i < K; i += kThreads) {
    sq[i] = load_any(P.q, P.token_dtype, n * P.sqn + h * P.sqh + i) * P.scale;
    sk[i] = load_any(P.k, P.token_dtype, n * P.skn + h * P.skh + i);
    if (P.self_target) sv[i] = load_any(P.v, P.token_dtype, n * P.svn + h * P.svh + i);
  }
  if (!P.self_target && threadIdx.x < kCols) {  // the tile's columns of v, 0 past V
    const int col = tile * kCols + threadIdx.x;
    sv[threadIdx.x] = col < V ? load_any(P.v, P.token_dtype, n * P.svn + h * P.svh + col) : 0.0f;
  }
  __syncthreads();
  if (threadIdx.x == 0) finish_position(P, n, p, tiles * P.H);

  // Phase 1: partial sums over the thread's rows, then over the block's row groups.
  float4 sum[kSums];
#pragma unroll
  for (int i = 0; i < kSums; ++i) sum[i] = zero4();
  if constexpr (kResident) {
    accumulate<R>(sum, m, ms, c, 0);
  } else {
    for (int r0 = 0; r0 < K; r0 += kRowGroups * R) {
      load_rows<R, kVec>(m, c.M, c, r0);
      if (c.mid) {
        load_rows<R, kVec>(ms, c.Mc, c, r0);
      } else {
#pragma unroll
        for (int j = 0; j < R; ++j) ms[j] = m[j];
      }
      accumulate<R>(sum, m, ms, c, r0);
    }
  }
  const bool used[kSums] = {true, c.has_beta, c.self_target, c.read != 0};
#pragma unroll
  for (int i = 0; i < kSums; ++i) {
    if (!used[i]) continue;
    sum[i] = warp_sum(sum[i]);
    if (lane < kColGroups) partial[i][warp][lane] = sum[i];
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kSums; ++i) {
    if (used[i]) sum[i] = block_sum(partial[i], x);
  }

  // e = Mₛᵀk − target for the thread's columns.
  float4 e = sum[kE];
  if (c.self_target) {
    e.x -= sum[kTarget].x;
    e.y -= sum[kTarget].y;
    e.z -= sum[kTarget].z;
    e.w -= sum[kTarget].w;
  } else {
    e.x -= sv[4 * x];
    e.y -= sv[4 * x + 1];
    e.z -= sv[4 * x + 2];
    e.w -= sv[4 * x + 3];
  }

  // Phase 2: S', M', M_chunk and the thread's part of M'ᵀq.
  float4 o_after = zero4();
  if constexpr (kResident) {
    update<R, kVec>(o_after, m, s, e, sum[kKM], c, 0);
  } else {
    for (int r0 = 0; r0 < K; r0 += kRowGroups * R) {
      load_rows<R, kVec>(m, c.M, c, r0);
      if (c.S) load_rows<R, kVec>(s, c.S, c, r0);
      update<R, kVec>(o_after, m, s, e, sum[kKM], c, r0);
    }
  }
  float4 o = sum[kRead];
  if (c.read == 0) {
    o_after = warp_sum(o_after);
    if (lane < kColGroups) partial_o[warp][lane] = o_after;
    __syncthreads();
    o = block_sum(partial_o, x);
  }

  const long long o0 = static_cast<long long>(nh) * V + c0;
  if (c.g == 0 && c.nv > 0) {
    store_any(P.o, P.token_dtype, o0, o.x);
    if (c.nv > 1) store_any(P.o, P.token_dtype, o0 + 1, o.y);
    if (c.nv > 2) store_any(P.o, P.token_dtype, o0 + 2, o.z);
    if (c.nv > 3) store_any(P.o, P.token_dtype, o0 + 3, o.w);
  }
}

template <int R, bool kResident>
void launch(const LinearMemoryStepParams& P, bool vec, unsigned blocks, size_t smem,
            cudaStream_t stream) {
  const auto kernel =
      vec ? lm_step_kernel<R, kResident, true> : lm_step_kernel<R, kResident, false>;
  if (smem + kStaticSmem > 48 * 1024) {  // large K with a self target
    NK_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  }
  kernel<<<blocks, kThreads, smem, stream>>>(P);
  NK_CUDA_CHECK_LAUNCH();
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
  const long long blocks = static_cast<long long>(P.N) * P.H * ceil_div(P.V, kCols);
  NK_CHECK_ARG(blocks <= 0x7fffffffLL,
               "linear_memory_step: N * H * ceil(V / 32) must fit a grid dimension");
  const bool vec = P.V % 4 == 0 && is_aligned(P.M, 16) && is_aligned(P.M_chunk, 16) &&
                   (P.S == nullptr || is_aligned(P.S, 16));
  const size_t smem =
      (2 * static_cast<size_t>(P.K) + (P.self_target ? P.K : kCols)) * sizeof(float);
  const auto b = static_cast<unsigned>(blocks);
  if (P.K <= kRowGroups) {
    launch<1, true>(P, vec, b, smem, stream);
  } else if (P.K <= 2 * kRowGroups) {
    launch<2, true>(P, vec, b, smem, stream);
  } else if (P.K <= 4 * kRowGroups) {
    launch<4, true>(P, vec, b, smem, stream);
  } else if (P.K <= kMaxResidentRows * kRowGroups) {
    launch<kMaxResidentRows, true>(P, vec, b, smem, stream);
  } else {
    launch<kSliceRows, false>(P, vec, b, smem, stream);
  }
}

}  // namespace nk
