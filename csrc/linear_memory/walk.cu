// The sequential walks of linear_memory: see walk.h for the algebra, the layout and what is covered,
// and docs/linear_memory_cuda.md for the design.
//
// Fragments (PTX ISA, mma.sync m16n8k16 / m16n8k8): lane = 4 g + t. An accumulator tile (16 × 8)
// holds (row g, columns 2t, 2t + 1) in c0, c1 and row g + 8 in c2, c3. A warp keeps Mᵀ (16 columns
// of V × K) as K / 8 such tiles, so the columns of its tiles are the k index of the next product:
// an A fragment is built from accumulators without any exchange (bf16: two adjacent tiles make a
// k16 block; tf32: one tile makes a k8 block whose slots t, t + 4 hold k = 2t, 2t + 1 — every tf32
// fragment below, A or B, uses that same order of k, which leaves the products unchanged).
#include "linear_memory/walk.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common/cuda_check.h"
#include "common/device_utils.cuh"

// The sm_80 pass compiles the kernels to a trap (the walks run on sm_90 only), which leaves the
// device helpers below unreferenced there.
#pragma nv_diag_suppress 177

namespace nk {
namespace {

constexpr int kSmemLimit = 232448;  // opt-in shared memory of an sm_90 block
constexpr int kMaxStages = 3;
constexpr int kStageLd = 24;        // leading dimension of a warp's bf16 staging rows (16 columns + pad)

// The tile rows of one ring stage: keys, the K-wide factors, one or two V-wide row blocks (v or xu
// and yu forward, dO backward) and the tile-end scalars.
enum Buf { kBufK, kBufXw, kBufXz, kBufYw, kBufYz, kBufQw, kBufQz, kBufRowV, kBufRowU, kBufTsc, kNumBufs };

struct Layout {
  const void* src[kNumBufs];
  int off[kNumBufs];     // byte offset in a stage; -1: absent
  int ld[kNumBufs];      // leading dimension in shared memory, elements
  int elt[kNumBufs];     // bytes per element
  int shift[kNumBufs];   // log2 of the 16-byte chunks per row
  bool vcols[kNumBufs];  // rows of V (row stride V, this CTA's column block) rather than of K
  int stage_bytes;
  int stages;
  int warp_off;          // the per-warp region: bf16 staging rows of the stored states, then c
  int warp_bytes;
  int total_bytes;
};

struct OpBF16 {   // bfloat16 tokens, factors and stored states; bf16 operands
  using Tok = __nv_bfloat16;
  using Fac = __nv_bfloat16;
  static constexpr int KS = 16;
};

struct OpTF32 {   // float16 tokens, float32 factors and stored states; operands rounded to tf32
  using Tok = __half;
  using Fac = float;
  static constexpr int KS = 8;
};

// ------------------------------------------------------------------------------------------------
// fragments
// ------------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

__device__ __forceinline__ uint32_t tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mma(float* c, const uint32_t* a, const uint32_t* b, OpBF16) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mma(float* c, const uint32_t* a, const uint32_t* b, OpTF32) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// A fragment of k block kb from accumulator tiles whose columns are k.
template <int N>
__device__ __forceinline__ void a_acc(uint32_t* a, const float (&c)[N][4], int kb, OpBF16) {
  a[0] = pack_bf16(c[2 * kb][0], c[2 * kb][1]);
  a[1] = pack_bf16(c[2 * kb][2], c[2 * kb][3]);
  a[2] = pack_bf16(c[2 * kb + 1][0], c[2 * kb + 1][1]);
  a[3] = pack_bf16(c[2 * kb + 1][2], c[2 * kb + 1][3]);
}

template <int N>
__device__ __forceinline__ void a_acc(uint32_t* a, const float (&c)[N][4], int kb, OpTF32) {
  a[0] = tf32(c[kb][0]);
  a[1] = tf32(c[kb][2]);
  a[2] = tf32(c[kb][1]);
  a[3] = tf32(c[kb][3]);
}

// "P1": B[k][n] = R[n][k] of a row-major R (n: its rows), k block at k0, n tile at n0.
__device__ __forceinline__ void b_rows_t(uint32_t* b, const __nv_bfloat16* R, int ld, int k0, int n0, int g, int t) {
  const __nv_bfloat16* r = R + (n0 + g) * ld + k0 + 2 * t;
  b[0] = *reinterpret_cast<const uint32_t*>(r);
  b[1] = *reinterpret_cast<const uint32_t*>(r + 8);
}

__device__ __forceinline__ void b_rows_t(uint32_t* b, const float* R, int ld, int k0, int n0, int g, int t) {
  const float2 x = *reinterpret_cast<const float2*>(R + (n0 + g) * ld + k0 + 2 * t);
  b[0] = tf32(x.x);
  b[1] = tf32(x.y);
}

__device__ __forceinline__ void b_rows_t(uint32_t* b, const __half* R, int ld, int k0, int n0, int g, int t) {
  const float2 x = __half22float2(*reinterpret_cast<const __half2*>(R + (n0 + g) * ld + k0 + 2 * t));
  b[0] = __float_as_uint(x.x);   // a float16 value is a tf32 value
  b[1] = __float_as_uint(x.y);
}

// "P2": B[k][n] = R[k][n] of a row-major R (k: its rows), for the two n tiles n0, n0 + 8.
__device__ __forceinline__ void b_rows2(uint32_t* b0, uint32_t* b1, const __nv_bfloat16* R, int ld, int k0, int n0,
                                        int lane) {
  const int i = lane >> 3;
  uint32_t r[4];
  ldsm_x4_trans(r, R + (k0 + (lane & 7) + (i & 1) * 8) * ld + n0 + (i >> 1) * 8);
  b0[0] = r[0];
  b0[1] = r[1];
  b1[0] = r[2];
  b1[1] = r[3];
}

template <typename E>
__device__ __forceinline__ void b_rows2(uint32_t* b0, uint32_t* b1, const E* R, int ld, int k0, int n0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  const E* r = R + (k0 + 2 * t) * ld + n0 + g;
  b0[0] = tf32(to_float(r[0]));
  b0[1] = tf32(to_float(r[ld]));
  b1[0] = tf32(to_float(r[8]));
  b1[1] = tf32(to_float(r[ld + 8]));
}

// "P3": A[m][k] = R[k][m] of a row-major R (k: its rows), m rows m0.. m0 + 15, k block at k0.
__device__ __forceinline__ void a_rows_t(uint32_t* a, const __nv_bfloat16* R, int ld, int m0, int k0, int lane) {
  const int i = lane >> 3;
  ldsm_x4_trans(a, R + (k0 + (lane & 7) + (i >> 1) * 8) * ld + m0 + (i & 1) * 8);
}

__device__ __forceinline__ void a_rows_t(uint32_t* a, const __half* R, int ld, int m0, int k0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  const __half* r = R + (k0 + 2 * t) * ld + m0 + g;
  a[0] = __float_as_uint(__half2float(r[0]));
  a[1] = __float_as_uint(__half2float(r[8]));
  a[2] = __float_as_uint(__half2float(r[ld]));
  a[3] = __float_as_uint(__half2float(r[ld + 8]));
}

// ------------------------------------------------------------------------------------------------
// warp products (16 rows of the warp: its columns of V)
// ------------------------------------------------------------------------------------------------
// out += A Rᵀ: A the accumulators `a` (KA columns), R row-major [NO·8 rows][KA].
template <class Op, int KA, int NO, typename E>
__device__ __forceinline__ void mul_rows_t(float (&out)[NO][4], const float (&a)[KA / 8][4], const E* R, int ld,
                                           int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int kb = 0; kb < KA / Op::KS; ++kb) {
    uint32_t af[4];
    a_acc(af, a, kb, Op{});
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      uint32_t b[2];
      b_rows_t(b, R, ld, kb * Op::KS, n * 8, g, t);
      mma(out[n], af, b, Op{});
    }
  }
}

// out += A R: A the accumulators `a` (KA columns), R row-major [KA][NO·8].
template <class Op, int KA, int NO, typename E>
__device__ __forceinline__ void mul_rows(float (&out)[NO][4], const float (&a)[KA / 8][4], const E* R, int ld,
                                         int lane) {
#pragma unroll
  for (int kb = 0; kb < KA / Op::KS; ++kb) {
    uint32_t af[4];
    a_acc(af, a, kb, Op{});
#pragma unroll
    for (int n = 0; n < NO; n += 2) {
      uint32_t b0[2], b1[2];
      b_rows2(b0, b1, R, ld, kb * Op::KS, n * 8, lane);
      mma(out[n], af, b0, Op{});
      mma(out[n + 1], af, b1, Op{});
    }
  }
}

// out += Aᵀ R: A row-major [KA][…] (its columns m0.. m0 + 15), R row-major [KA][NO·8].
template <class Op, int KA, int NO, typename EA, typename E>
__device__ __forceinline__ void mul_t_rows(float (&out)[NO][4], const EA* A, int lda, int m0, const E* R, int ld,
                                           int lane) {
#pragma unroll
  for (int kb = 0; kb < KA / Op::KS; ++kb) {
    uint32_t af[4];
    a_rows_t(af, A, lda, m0, kb * Op::KS, lane);
#pragma unroll
    for (int n = 0; n < NO; n += 2) {
      uint32_t b0[2], b1[2];
      b_rows2(b0, b1, R, ld, kb * Op::KS, n * 8, lane);
      mma(out[n], af, b0, Op{});
      mma(out[n + 1], af, b1, Op{});
    }
  }
}

// a (columns = tile slots) += rows R[slot][m0 + row] of a V-wide block.
template <int NT, typename E>
__device__ __forceinline__ void add_rows(float (&a)[NT][4], const E* R, int ld, int m0, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) a[n][e] += to_float(R[(n * 8 + 2 * t + (e & 1)) * ld + m0 + g + 8 * (e >> 1)]);
}

template <int NK>
__device__ __forceinline__ void axpby(float (&y)[NK][4], float b, const float (&x)[NK][4], float a, bool with_x) {
#pragma unroll
  for (int n = 0; n < NK; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) y[n][e] = b * y[n][e] + (with_x ? a * x[n][e] : 0.0f);
}

// ------------------------------------------------------------------------------------------------
// states in global memory ([.., K, V]; `at` = the warp's (k = 0, first column))
// ------------------------------------------------------------------------------------------------
template <int NK>
__device__ __forceinline__ void load_state(float (&a)[NK][4], const float* at, int V, int lane, bool add = false) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int n = 0; n < NK; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float x = at ? at[(long long)(n * 8 + 2 * t + (e & 1)) * V + g + 8 * (e >> 1)] : 0.0f;
      a[n][e] = add ? a[n][e] + x : x;
    }
}

template <int NK>
__device__ __forceinline__ void store_state(const float (&a)[NK][4], float* at, int V, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int n = 0; n < NK; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) at[(long long)(n * 8 + 2 * t + (e & 1)) * V + g + 8 * (e >> 1)] = a[n][e];
}

// A tile-start state (or tile-end adjoint) in the storage dtype: float32 straight from the
// accumulators (each store instruction writes whole 32-byte sectors), bfloat16 through the warp's
// staging rows (stmatrix transposes the accumulators, then 16-byte stores).
template <int NK>
__device__ __forceinline__ void store_tile(const float (&a)[NK][4], float* at, int V, float*, int lane) {
  store_state(a, at, V, lane);
}

template <int NK>
__device__ __forceinline__ void store_tile(const float (&a)[NK][4], __nv_bfloat16* at, int V, __nv_bfloat16* stage,
                                           int lane) {
  constexpr int K = NK * 8;
  const int i = lane >> 3;
  __syncwarp();
#pragma unroll
  for (int kb = 0; kb < K / 16; ++kb) {
    uint32_t r[4];
    a_acc(r, a, kb, OpBF16{});
    const __nv_bfloat16* dst = stage + (kb * 16 + (lane & 7) + (i >> 1) * 8) * kStageLd + (i & 1) * 8;
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1,%2,%3,%4};"
                 :: "r"(smem_addr(dst)), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3]) : "memory");
  }
  __syncwarp();
#pragma unroll
  for (int x = lane; x < 2 * K; x += 32) {
    const int row = x >> 1, half = x & 1;
    *reinterpret_cast<uint4*>(at + (long long)row * V + half * 8) =
        *reinterpret_cast<const uint4*>(stage + row * kStageLd + half * 8);
  }
}

// ------------------------------------------------------------------------------------------------
// the walk's frame, ring and gates
// ------------------------------------------------------------------------------------------------
struct Frame {
  int i_v, i_h, BV, warp, lane, v0;   // v0: the warp's first column of V
  int L, pos, nt, pf;                 // length, chunk position, tiles, position of the end in its chunk
  long long nh, row0, tb;             // sequence·head, first flat row, first global tile
};

__device__ __forceinline__ Frame frame(const LmWalkParams& p, int BT) {
  Frame f;
  f.i_v = blockIdx.x;
  f.nh = blockIdx.y;
  const int i_n = static_cast<int>(f.nh / p.H);
  f.i_h = static_cast<int>(f.nh % p.H);
  f.BV = p.V < 64 ? p.V : 64;
  f.warp = threadIdx.x >> 5;
  f.lane = threadIdx.x & 31;
  f.v0 = f.i_v * f.BV + 16 * f.warp;
  if (p.cu) {
    f.row0 = p.cu[i_n];
    f.L = static_cast<int>(p.cu[i_n + 1] - f.row0);
  } else {
    f.row0 = static_cast<long long>(i_n) * p.T;
    f.L = p.T;
  }
  f.pos = p.pos ? static_cast<int>(p.pos[i_n]) : 0;
  f.nt = f.L > 0 ? (f.L + f.pos + BT - 1) / BT : 0;
  f.pf = p.exact ? 0 : (f.pos + f.L) % BT;   // chunk_size 1: every token ends a chunk
  f.tb = p.tile_base[i_n];
  return f;
}

__device__ __forceinline__ int tile_start(const Frame& f, int i, int BT) { return max(0, i * BT - f.pos); }
__device__ __forceinline__ int tile_end(const Frame& f, int i, int BT) { return min((i + 1) * BT - f.pos, f.L); }

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

__device__ __forceinline__ void cp_async_wait(int pending) {
  if (pending >= 2) {
    asm volatile("cp.async.wait_group 2;" ::: "memory");
  } else if (pending == 1) {
    asm volatile("cp.async.wait_group 1;" ::: "memory");
  } else {
    asm volatile("cp.async.wait_group 0;" ::: "memory");
  }
}

// Start loading the rows of tile i into stage `sb` (rows past the tile's end are zero-filled).
__device__ __forceinline__ void issue_tile(const LmWalkParams& p, const Layout& lay, const Frame& f, int i,
                                           unsigned char* sb, int BT) {
  const int s = tile_start(f, i, BT), e = tile_end(f, i, BT);
#pragma unroll
  for (int b = 0; b < kBufTsc; ++b) {
    if (lay.off[b] < 0) continue;
    const int elt = lay.elt[b], shift = lay.shift[b];
    const long long stride = lay.vcols[b] ? p.V : p.K;
    const long long col = lay.vcols[b] ? static_cast<long long>(f.i_v) * f.BV : 0;
    const char* src = static_cast<const char*>(lay.src[b]);
    unsigned char* dst = sb + lay.off[b];
    for (int x = threadIdx.x; x < (BT << shift); x += blockDim.x) {
      const int r = x >> shift, c = x & ((1 << shift) - 1);
      const bool ok = s + r < e;
      const long long grow = (f.row0 + s + r) * p.H + f.i_h;
      cp_async16(dst + r * lay.ld[b] * elt + c * 16, ok ? src + (grow * stride + col) * elt + c * 16 : src, ok);
    }
  }
  if (threadIdx.x == 0) cp_async16(sb + lay.off[kBufTsc], p.tsc + ((f.tb + i) * p.H + f.i_h) * 4, true);
}

// η and log α of the slots lane, lane + 32 of tile i (plain_x), loaded one tile ahead.
struct Gates {
  float eta[2], la[2];
};

__device__ __forceinline__ Gates load_gates(const LmWalkParams& p, const Frame& f, int i, int BT) {
  Gates gt;
  const int s = tile_start(f, i, BT), n = tile_end(f, i, BT) - s;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int slot = f.lane + 32 * h;
    const long long grow = (f.row0 + s + slot) * p.H + f.i_h;
    const bool ok = slot < n;
    gt.eta[h] = ok ? load_as_float(p.eta, grow, p.eta_dtype) : 0.0f;
    gt.la[h] = ok && p.log_alpha ? load_as_float(p.log_alpha, grow, p.alpha_dtype) : 0.0f;
  }
  return gt;
}

// c = Φ[n]·η over the tile's slots (Φ[n]_t = Π_{l=t+1..n} α_l, n its last valid slot; 0 past the
// end), as triton_fwd.plain_x_rows forms it, into the warp's cw[BT].
__device__ __forceinline__ void plain_c(float* cw, const Gates& gt, int n_valid, bool has_alpha, int BT, int lane) {
  float c0 = gt.eta[0], c1 = gt.eta[1];
  if (has_alpha) {
    float s0 = gt.la[0], s1 = gt.la[1];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float y0 = __shfl_up_sync(0xffffffffu, s0, o);
      const float y1 = __shfl_up_sync(0xffffffffu, s1, o);
      if (lane >= o) {
        s0 += y0;
        s1 += y1;
      }
    }
    s1 += __shfl_sync(0xffffffffu, s0, 31);
    const int last = n_valid - 1;
    const float a0 = __shfl_sync(0xffffffffu, s0, last & 31);
    const float a1 = __shfl_sync(0xffffffffu, s1, last & 31);
    const float sn = last < 32 ? a0 : a1;
    c0 *= __expf(sn - s0);
    c1 *= __expf(sn - s1);
  }
  __syncwarp();
  if (lane < BT) cw[lane] = c0;
  if (lane + 32 < BT) cw[lane + 32] = c1;
  __syncwarp();
}

template <int NT>
__device__ __forceinline__ void scale_cols(float (&a)[NT][4], const float* cw, float sign, int lane) {
  const int t = lane & 3;
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) a[n][e] *= sign * cw[n * 8 + 2 * t + (e & 1)];
}

// What both walks share: the frame, the warp's place in an [N, H, K, V] state and its scratch (bf16
// staging rows, c), and the ring over the tiles in visiting order (forward 0, 1, …; backward
// nt − 1, nt − 2, …).
template <typename Fac, int BT>
struct Walk {
  Frame f;
  int lane, m0;       // m0: the warp's first column in the CTA's V block
  long long st;       // the warp's (k = 0, first column) in [N, H, K, V]
  Fac* stage;
  float* cw;
  bool reverse;

  __device__ Walk(const LmWalkParams& p, const Layout& lay, unsigned char* smem, bool rev)
      : f(frame(p, BT)), reverse(rev) {
    lane = f.lane;
    m0 = 16 * f.warp;
    st = f.nh * p.K * p.V + f.v0;
    unsigned char* wreg = smem + lay.warp_off + f.warp * lay.warp_bytes;
    stage = reinterpret_cast<Fac*>(wreg);
    cw = reinterpret_cast<float*>(wreg + lay.warp_bytes) - BT;
  }

  __device__ int tile(int j) const { return reverse ? f.nt - 1 - j : j; }

  // (k = 0, first column) of the warp in tile i of a [tiles, H, K, V] buffer
  __device__ long long tile_at(const LmWalkParams& p, int i) const { return ((f.tb + i) * p.H + f.i_h) * p.K * p.V + f.v0; }

  // the loads of the first stages − 1 visits
  __device__ void start(const LmWalkParams& p, const Layout& lay, unsigned char* smem) const {
    for (int j = 0; j < lay.stages - 1; ++j) {
      if (j < f.nt) issue_tile(p, lay, f, tile(j), smem + j * lay.stage_bytes, BT);
      cp_async_commit();
    }
  }

  // visit j: start the loads of visit j + stages − 1, wait for those of visit j; its stage
  __device__ const unsigned char* visit(const LmWalkParams& p, const Layout& lay, unsigned char* smem, int j) const {
    const int nx = j + lay.stages - 1;
    if (nx < f.nt) issue_tile(p, lay, f, tile(nx), smem + (nx % lay.stages) * lay.stage_bytes, BT);
    cp_async_commit();
    cp_async_wait(lay.stages - 1);
    __syncthreads();
    return smem + (j % lay.stages) * lay.stage_bytes;
  }
};

// ------------------------------------------------------------------------------------------------
// the kernels
// ------------------------------------------------------------------------------------------------
template <class Op, int K, int BT>
__global__ void __launch_bounds__(128, 1) fwd_walk_kernel(const __grid_constant__ LmWalkParams p,
                                                          const __grid_constant__ Layout lay) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char smem[];
  using Tok = typename Op::Tok;
  using Fac = typename Op::Fac;
  constexpr int NK = K / 8, NT = BT / 8;
  const Walk<Fac, BT> w(p, lay, smem, false);
  const Frame& f = w.f;
  const int lane = w.lane, m0 = w.m0;
  const long long st = w.st;

  float M[NK][4], S[NK][4];
  load_state(M, p.m0 ? p.m0 + st : nullptr, p.V, lane);
  load_state(S, p.has_mu && p.s0 ? p.s0 + st : nullptr, p.V, lane);
  if (p.output_final && p.pos && f.pos > 0 && f.pos + f.L < BT) {   // the call ends inside the chunk it resumed
    float F[NK][4];
    load_state(F, p.mc0 + st, p.V, lane);
    store_state(F, p.mc_out + st, p.V, lane);
  }
  w.start(p, lay, smem);
  Gates gt{};
  if (p.plain_x && f.nt > 0) gt = load_gates(p, f, 0, BT);

  for (int i = 0; i < f.nt; ++i) {
    const unsigned char* sb = w.visit(p, lay, smem, i);
    const long long tile_at = w.tile_at(p, i);
    store_tile(M, static_cast<Fac*>(p.tiles_m) + tile_at, p.V, w.stage, lane);
    if (p.has_mu) store_tile(S, static_cast<Fac*>(p.tiles_s) + tile_at, p.V, w.stage, lane);
    if (p.output_final && i == f.nt - 1 && f.pf != 0 && (i > 0 || f.pos == 0))   // start of the last, partial chunk
      store_state(M, p.mc_out + st, p.V, lane);
    const Tok* Ks = reinterpret_cast<const Tok*>(sb + lay.off[kBufK]);
    const int ldk = lay.ld[kBufK];
    const float* ts = reinterpret_cast<const float*>(sb + lay.off[kBufTsc]);

    float X[NT][4] = {};
    if (p.plain_x) {     // X = diag(c)(V − K M0)
      plain_c(w.cw, gt, tile_end(f, i, BT) - tile_start(f, i, BT), p.log_alpha != nullptr, BT, lane);
      if (i + 1 < f.nt) gt = load_gates(p, f, i + 1, BT);
      mul_rows_t<Op, K, NT>(X, M, Ks, ldk, lane);
      const Tok* Vs = reinterpret_cast<const Tok*>(sb + lay.off[kBufRowV]);
      const int ldv = lay.ld[kBufRowV], g = lane >> 2, t = lane & 3;
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int slot = n * 8 + 2 * t + (e & 1);
          X[n][e] = w.cw[slot] * (to_float(Vs[slot * ldv + m0 + g + 8 * (e >> 1)]) - X[n][e]);
        }
    } else {             // X = Xw M0 + Xz S0 + xu
      mul_rows_t<Op, K, NT>(X, M, reinterpret_cast<const Fac*>(sb + lay.off[kBufXw]), lay.ld[kBufXw], lane);
      if (lay.off[kBufXz] >= 0)
        mul_rows_t<Op, K, NT>(X, S, reinterpret_cast<const Fac*>(sb + lay.off[kBufXz]), lay.ld[kBufXz], lane);
      if (lay.off[kBufRowV] >= 0)
        add_rows(X, reinterpret_cast<const Fac*>(sb + lay.off[kBufRowV]), lay.ld[kBufRowV], m0, lane);
    }
    if (p.has_mu) {      // Y = Yw M0 + Yz S0 + yu;  M ← γ M + ν S + Kᵀ X;  S ← m S + Kᵀ Y
      float Y[NT][4] = {};
      mul_rows_t<Op, K, NT>(Y, M, reinterpret_cast<const Fac*>(sb + lay.off[kBufYw]), lay.ld[kBufYw], lane);
      if (lay.off[kBufYz] >= 0)
        mul_rows_t<Op, K, NT>(Y, S, reinterpret_cast<const Fac*>(sb + lay.off[kBufYz]), lay.ld[kBufYz], lane);
      if (lay.off[kBufRowU] >= 0)
        add_rows(Y, reinterpret_cast<const Fac*>(sb + lay.off[kBufRowU]), lay.ld[kBufRowU], m0, lane);
      axpby(M, ts[0], S, ts[1], true);
      mul_rows<Op, BT, NK>(M, X, Ks, ldk, lane);
      axpby(S, ts[2], S, 0.0f, false);
      mul_rows<Op, BT, NK>(S, Y, Ks, ldk, lane);
    } else {             // M ← γ M + Kᵀ X
      axpby(M, ts[0], M, 0.0f, false);
      mul_rows<Op, BT, NK>(M, X, Ks, ldk, lane);
    }
    __syncthreads();     // every warp is done with this stage before it is refilled
  }
  cp_async_wait(0);
  if (p.output_final) {
    store_state(M, p.m_out + st, p.V, lane);
    if (p.has_mu) store_state(S, p.s_out + st, p.V, lane);
    if (f.pf == 0) store_state(M, p.mc_out + st, p.V, lane);
  }
#else
  __trap();  // built for an architecture the walks do not run on (the launcher asks for sm_90)
#endif
}

template <class Op, int K, int BT>
__global__ void __launch_bounds__(128, 1) bwd_walk_kernel(const __grid_constant__ LmWalkParams p,
                                                          const __grid_constant__ Layout lay) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char smem[];
  using Tok = typename Op::Tok;
  using Fac = typename Op::Fac;
  constexpr int NK = K / 8, NT = BT / 8;
  const Walk<Fac, BT> w(p, lay, smem, true);
  const Frame& f = w.f;
  const int lane = w.lane, m0 = w.m0;
  const long long st = w.st;

  float dM[NK][4], dS[NK][4];
  load_state(dM, p.dmf ? p.dmf + st : nullptr, p.V, lane);
  load_state(dS, p.has_mu && p.dsf ? p.dsf + st : nullptr, p.V, lane);
  // the final M_chunk is M_L at a chunk boundary, else the start of the last tile (unless that
  // tile resumed a chunk: then its gradient goes to the initial M_chunk)
  bool pending = p.dmcf != nullptr && f.pf != 0;
  if (p.dmcf && f.pf == 0) load_state(dM, p.dmcf + st, p.V, lane, true);

  w.start(p, lay, smem);    // visit j is tile nt − 1 − j
  Gates gt{};
  if (p.plain_x && f.nt > 0) gt = load_gates(p, f, f.nt - 1, BT);

  for (int j = 0; j < f.nt; ++j) {
    const int i = w.tile(j);
    const unsigned char* sb = w.visit(p, lay, smem, j);
    const long long tile_at = w.tile_at(p, i);
    store_tile(dM, static_cast<Fac*>(p.tiles_m) + tile_at, p.V, w.stage, lane);
    if (p.has_mu) store_tile(dS, static_cast<Fac*>(p.tiles_s) + tile_at, p.V, w.stage, lane);
    const Tok* Ks = reinterpret_cast<const Tok*>(sb + lay.off[kBufK]);
    const int ldk = lay.ld[kBufK];
    const Tok* dO = reinterpret_cast<const Tok*>(sb + lay.off[kBufRowV]);
    const int ldo = lay.ld[kBufRowV];
    const float* ts = reinterpret_cast<const float*>(sb + lay.off[kBufTsc]);

    float dX[NT][4] = {};   // dX = K dM
    mul_rows_t<Op, K, NT>(dX, dM, Ks, ldk, lane);
    if (p.has_mu) {         // dY = K dS;  dS0 = ν dM + m dS + Xzᵀ dX + Yzᵀ dY + Qzᵀ dO;  dM0 += Ywᵀ dY
      float dY[NT][4] = {};
      mul_rows_t<Op, K, NT>(dY, dS, Ks, ldk, lane);
      axpby(dS, ts[2], dM, ts[1], true);
      if (lay.off[kBufXz] >= 0)
        mul_rows<Op, BT, NK>(dS, dX, reinterpret_cast<const Fac*>(sb + lay.off[kBufXz]), lay.ld[kBufXz], lane);
      if (lay.off[kBufYz] >= 0)
        mul_rows<Op, BT, NK>(dS, dY, reinterpret_cast<const Fac*>(sb + lay.off[kBufYz]), lay.ld[kBufYz], lane);
      if (lay.off[kBufQz] >= 0)
        mul_t_rows<Op, BT, NK>(dS, dO, ldo, m0, reinterpret_cast<const Fac*>(sb + lay.off[kBufQz]),
                               lay.ld[kBufQz], lane);
      axpby(dM, ts[0], dM, 0.0f, false);
      mul_rows<Op, BT, NK>(dM, dY, reinterpret_cast<const Fac*>(sb + lay.off[kBufYw]), lay.ld[kBufYw], lane);
    } else {
      axpby(dM, ts[0], dM, 0.0f, false);
    }
    if (p.plain_x) {        // Xwᵀ dX = −Kᵀ(c ⊙ dX)
      plain_c(w.cw, gt, tile_end(f, i, BT) - tile_start(f, i, BT), p.log_alpha != nullptr, BT, lane);
      if (i > 0) gt = load_gates(p, f, i - 1, BT);
      scale_cols(dX, w.cw, -1.0f, lane);
      mul_rows<Op, BT, NK>(dM, dX, Ks, ldk, lane);
    } else {
      mul_rows<Op, BT, NK>(dM, dX, reinterpret_cast<const Fac*>(sb + lay.off[kBufXw]), lay.ld[kBufXw], lane);
    }
    mul_t_rows<Op, BT, NK>(dM, dO, ldo, m0, reinterpret_cast<const Fac*>(sb + lay.off[kBufQw]), lay.ld[kBufQw],
                           lane);
    if (pending && j == 0 && (i > 0 || f.pos == 0)) {
      load_state(dM, p.dmcf + st, p.V, lane, true);
      pending = false;
    }
    __syncthreads();
  }
  cp_async_wait(0);
  store_state(dM, p.dm0 + st, p.V, lane);
  if (p.has_mu) store_state(dS, p.ds0 + st, p.V, lane);
  if (p.pos) {
    float F[NK][4];
    load_state(F, pending ? p.dmcf + st : nullptr, p.V, lane);
    store_state(F, p.dmc0 + st, p.V, lane);
  }
#else
  __trap();
#endif
}

// ------------------------------------------------------------------------------------------------
// host
// ------------------------------------------------------------------------------------------------
int log2i(int x) {
  int s = 0;
  while ((1 << s) < x) ++s;
  return s;
}

Layout make_layout(const LmWalkParams& p, bool bwd) {
  Layout L{};
  const bool tf = p.token_dtype == DType::kFloat16;
  const int tok = 2, fac = tf ? 4 : 2;
  const int BV = p.V < 64 ? p.V : 64;
  int off = 0;
  for (int b = 0; b < kNumBufs; ++b) L.off[b] = -1;
  // float32 rows read as "P1" operands (the forward's factors: 8-byte loads) get a pad of 8 floats,
  // the others 4 (4-byte loads down columns); 16-bit rows 8 elements (16 bytes, ldmatrix rows)
  auto add = [&](Buf b, const void* src, int elt, int width, bool vcols, bool pair_loads) {
    L.src[b] = src;
    L.off[b] = off;
    L.elt[b] = elt;
    L.shift[b] = log2i(width * elt / 16);
    L.vcols[b] = vcols;
    L.ld[b] = width + (elt == 2 || pair_loads ? 8 : 4);
    off += p.BT * L.ld[b] * elt;
  };
  add(kBufK, p.k, tok, p.K, false, false);
  if (!p.plain_x) add(kBufXw, p.xw, fac, p.K, false, !bwd);
  if (p.has_mu && (p.has_beta || p.exact)) add(kBufXz, p.xz, fac, p.K, false, !bwd);
  if (p.has_mu) add(kBufYw, p.yw, fac, p.K, false, !bwd);
  if (p.has_mu && p.exact) add(kBufYz, p.yz, fac, p.K, false, !bwd);
  if (bwd) {
    add(kBufQw, p.qw, fac, p.K, false, false);
    if (p.has_mu && p.read != 2) add(kBufQz, p.qz, fac, p.K, false, false);
    add(kBufRowV, p.dO, tok, BV, true, false);
  } else {
    if (p.plain_x) add(kBufRowV, p.v, tok, BV, true, false);
    else if (p.has_off) add(kBufRowV, p.xu, fac, BV, true, false);
    if (p.has_mu && p.has_off) add(kBufRowU, p.yu, fac, BV, true, false);
  }
  L.src[kBufTsc] = p.tsc;
  L.off[kBufTsc] = off;
  off += 16;
  L.stage_bytes = off;
  const int warps = BV / 16;
  L.warp_bytes = (tf ? 0 : p.K * kStageLd * 2) + p.BT * 4;
  int stages = (kSmemLimit - warps * L.warp_bytes) / L.stage_bytes;
  L.stages = stages < 0 ? 0 : (stages > kMaxStages ? kMaxStages : stages);
  L.warp_off = L.stages * L.stage_bytes;
  L.total_bytes = L.warp_off + warps * L.warp_bytes;
  return L;
}

// Sizes, dtypes and options (no pointers).
void check_dims(const LmWalkParams& p) {
  const char* op = "linear_memory_walk";
  NK_CHECK_ARG(p.token_dtype == DType::kBFloat16 || p.token_dtype == DType::kFloat16,
               std::string(op) + ": token dtype must be bfloat16 or float16, got " + dtype_name(p.token_dtype));
  NK_CHECK_ARG(p.K == 64 || p.K == 128, std::string(op) + ": K must be 64 or 128, got " + std::to_string(p.K));
  NK_CHECK_ARG(p.V == 16 || p.V == 32 || p.V == 64 || p.V == 128,
               std::string(op) + ": V must be 16, 32, 64 or 128, got " + std::to_string(p.V));
  NK_CHECK_ARG(p.BT == 16 || p.BT == 32 || p.BT == 64,
               std::string(op) + ": the tile BT must be 16, 32 or 64, got " + std::to_string(p.BT));
  NK_CHECK_ARG(p.N >= 0 && p.H >= 0 && p.T >= 0, std::string(op) + ": N, H, T must be >= 0");
  NK_CHECK_ARG(static_cast<long long>(p.N) * p.H <= 65535,
               std::string(op) + ": N·H must be at most 65535, got " + std::to_string((long long)p.N * p.H));
  NK_CHECK_ARG(p.read >= 0 && p.read <= 2, std::string(op) + ": read must be 0, 1 or 2, got " + std::to_string(p.read));
  NK_CHECK_ARG(!(p.plain_x && p.has_mu), std::string(op) + ": plain_x tiles have no momentum");
}

// The pointers the options ask for (none are read when there is no work).
void check_pointers(const LmWalkParams& p, bool bwd) {
  const char* op = "linear_memory_walk";
  if (p.N == 0 || p.H == 0) return;
  NK_CHECK_ARG(p.k && p.tsc && p.tile_base && p.tiles_m && (!p.has_mu || p.tiles_s),
               std::string(op) + ": null pointer among k, tsc, tile_base, tiles_m (tiles_s with mu)");
  NK_CHECK_ARG(p.plain_x ? p.eta != nullptr : p.xw != nullptr,
               std::string(op) + ": plain_x needs eta, other tiles need xw (null pointer)");
  NK_CHECK_ARG(!p.has_mu || (p.yw && (!(p.has_beta || p.exact) || p.xz) && (!p.exact || p.yz)),
               std::string(op) + ": momentum needs yw (xz with beta or chunk_size 1, yz with chunk_size 1)");
  if (bwd) {
    NK_CHECK_ARG(p.qw && p.dO && p.dm0 && (!p.has_mu || p.ds0) && (!p.pos || p.dmc0),
                 std::string(op) + ": the backward walk needs qw, dO, dm0 (ds0 with mu, dmc0 with pos)");
    NK_CHECK_ARG(!(p.has_mu && p.read != 2) || p.qz, std::string(op) + ": momentum with reads after / before needs qz");
  } else {
    NK_CHECK_ARG(!p.plain_x || p.v, std::string(op) + ": plain_x needs v");
    NK_CHECK_ARG(p.plain_x || !p.has_off || (p.xu && (!p.has_mu || p.yu)),
                 std::string(op) + ": has_off needs xu (yu with mu)");
    NK_CHECK_ARG(!p.output_final || (p.m_out && p.mc_out && (!p.has_mu || p.s_out) && (!p.pos || p.mc0)),
                 std::string(op) + ": output_final needs m_out, mc_out (s_out with mu, mc0 with pos)");
  }
}

template <class Op, int K, int BT>
void launch(const LmWalkParams& p, const Layout& lay, bool bwd, cudaStream_t stream) {
  auto kernel = bwd ? bwd_walk_kernel<Op, K, BT> : fwd_walk_kernel<Op, K, BT>;
  NK_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, lay.total_bytes));
  const int BV = p.V < 64 ? p.V : 64;
  kernel<<<dim3(p.V / BV, p.N * p.H), dim3(BV / 16 * 32), lay.total_bytes, stream>>>(p, lay);
  NK_CUDA_CHECK_LAUNCH();
}

template <class Op, int K>
void launch_bt(const LmWalkParams& p, const Layout& lay, bool bwd, cudaStream_t stream) {
  switch (p.BT) {
    case 16:
      return launch<Op, K, 16>(p, lay, bwd, stream);
    case 32:
      return launch<Op, K, 32>(p, lay, bwd, stream);
    default:
      return launch<Op, K, 64>(p, lay, bwd, stream);
  }
}

template <class Op>
void launch_k(const LmWalkParams& p, const Layout& lay, bool bwd, cudaStream_t stream) {
  if (p.K == 64) return launch_bt<Op, 64>(p, lay, bwd, stream);
  return launch_bt<Op, 128>(p, lay, bwd, stream);
}

}  // namespace

int linear_memory_walk_stages(const LmWalkParams& p, bool backward) {
  check_dims(p);
  return make_layout(p, backward).stages;
}

void linear_memory_walk(const LmWalkParams& p, bool backward, cudaStream_t stream) {
  check_dims(p);
  check_pointers(p, backward);
  if (p.N == 0 || p.H == 0) return;
  const Layout lay = make_layout(p, backward);
  NK_CHECK_ARG(lay.stages > 0, "linear_memory_walk: one stage of tile rows needs more shared memory than a block has");
  int device = 0, major = 0;
  NK_CUDA_CHECK(cudaGetDevice(&device));
  NK_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  NK_CHECK_ARG(major >= 9, "linear_memory_walk: needs an sm_90 GPU, got compute capability " + std::to_string(major));
  if (p.token_dtype == DType::kBFloat16) return launch_k<OpBF16>(p, lay, backward, stream);
  return launch_k<OpTF32>(p, lay, backward, stream);
}

}  // namespace nk
