// Python module nested_kernels._C.
//
// The bindings take raw device pointers as Python ints (tensor.data_ptr()), sizes, dtype codes
// (_C.DTYPE_*) and a cudaStream_t as an int (torch.cuda.current_stream().cuda_stream); they never
// touch torch's C++ API, so the module builds with nvcc alone, also where torch is a CPU build.
// Validation of tensors (shapes, dtypes, devices, contiguity) is the Python wrappers' job
// (nested_kernels/ops/*/cuda.py); the C++ side re-checks sizes and null pointers only.
// Errors: bad arguments raise ValueError, CUDA failures RuntimeError.
#include <pybind11/pybind11.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "common/cuda_check.h"
#include "common/dtypes.h"
#include "fast_mlp/outer_update.h"
#include "linear_memory/step.h"
#include "linear_memory/walk.h"
#include "mlp_memory/walk.h"

// Written by setup.py (build directory) with the architectures and nvcc of this build.
#if __has_include("nested_kernels_build_config.h")
#include "nested_kernels_build_config.h"
#endif
#ifndef NK_BUILD_CUDA_ARCHS
#define NK_BUILD_CUDA_ARCHS "unknown"
#endif
#ifndef NK_BUILD_GENCODE
#define NK_BUILD_GENCODE "unknown"
#endif
#ifndef NK_BUILD_NVCC_VERSION
#define NK_BUILD_NVCC_VERSION "unknown"
#endif

namespace py = pybind11;

namespace {

template <typename T>
T* as_ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void outer_update_py(std::uintptr_t out, std::uintptr_t weight, std::uintptr_t left,
                     std::uintptr_t right, std::uintptr_t eta, long long N, long long n_tok,
                     long long P, long long Q, int dtype, double retention, std::uintptr_t stream) {
  NK_CHECK_ARG(nk::is_valid_dtype(dtype),
               "outer_update: dtype must be one of _C.DTYPE_FLOAT32, _C.DTYPE_BFLOAT16, "
               "_C.DTYPE_FLOAT16, got " + std::to_string(dtype));
  nk::OuterUpdateParams params;
  params.out = as_ptr<float>(out);
  params.weight = as_ptr<const float>(weight);
  params.left = as_ptr<const void>(left);
  params.right = as_ptr<const void>(right);
  params.eta = as_ptr<const float>(eta);
  params.N = N;
  params.n_tok = n_tok;
  params.P = P;
  params.Q = Q;
  params.dtype = static_cast<nk::DType>(dtype);
  params.retention = static_cast<float>(retention);
  nk::outer_update(params, reinterpret_cast<cudaStream_t>(stream));
}

// The DType of a code passed for argument ``what`` of binding ``op`` (a ValueError naming both if bad).
nk::DType checked_dtype(int code, const char* op, const char* what) {
  NK_CHECK_ARG(nk::is_valid_dtype(code),
               std::string(op) + ": " + what + " dtype code must be one of _C.DTYPE_*, got " +
                   std::to_string(code));
  return static_cast<nk::DType>(code);
}

// A gate as (address or 0, stride n, stride h, dtype code).
nk::GateArg gate_arg(const py::tuple& g, const char* what) {
  NK_CHECK_ARG(g.size() == 4, std::string("linear_memory_step: ") + what +
                                  " must be (address, stride_n, stride_h, dtype)");
  nk::GateArg arg;
  arg.ptr = as_ptr<const void>(g[0].cast<std::uintptr_t>());
  arg.sn = g[1].cast<long long>();
  arg.sh = g[2].cast<long long>();
  arg.dtype = checked_dtype(g[3].cast<int>(), "linear_memory_step", what);
  return arg;
}

void linear_memory_step_py(std::uintptr_t q, std::uintptr_t k, std::uintptr_t v,
                           py::tuple token_strides, int token_dtype, py::tuple eta,
                           py::tuple log_alpha, py::tuple beta, py::tuple mu, std::uintptr_t M,
                           std::uintptr_t S, std::uintptr_t M_chunk, std::uintptr_t position,
                           std::uintptr_t counters, std::uintptr_t o, int N, int H, int K, int V,
                           long long chunk_size, double scale, bool self_target, int read,
                           std::uintptr_t stream) {
  NK_CHECK_ARG(token_strides.size() == 6,
               "linear_memory_step: token_strides must be (sqn, sqh, skn, skh, svn, svh)");
  nk::LinearMemoryStepParams params;
  params.q = as_ptr<const void>(q);
  params.k = as_ptr<const void>(k);
  params.v = as_ptr<const void>(v);
  long long* strides[6] = {&params.sqn, &params.sqh, &params.skn, &params.skh, &params.svn, &params.svh};
  for (int i = 0; i < 6; ++i) *strides[i] = token_strides[i].cast<long long>();
  params.token_dtype = checked_dtype(token_dtype, "linear_memory_step", "token");
  params.eta = gate_arg(eta, "eta");
  params.log_alpha = gate_arg(log_alpha, "log_alpha");
  params.beta = gate_arg(beta, "beta");
  params.mu = gate_arg(mu, "mu");
  params.M = as_ptr<float>(M);
  params.S = as_ptr<float>(S);
  params.M_chunk = as_ptr<float>(M_chunk);
  params.position = as_ptr<long long>(position);
  params.counters = as_ptr<int>(counters);
  params.o = as_ptr<void>(o);
  params.N = N;
  params.H = H;
  params.K = K;
  params.V = V;
  params.chunk_size = chunk_size;
  params.scale = static_cast<float>(scale);
  params.self_target = self_target;
  params.read = read;
  nk::linear_memory_step(params, reinterpret_cast<cudaStream_t>(stream));
}

// The arguments of a walk binding passed by name: ``ptrs`` dict name -> device address (absent: 0),
// ``dims`` dict of integer / flag fields, each required (a missing one is a ValueError naming ``op``).
struct NamedArgs {
  const py::dict& ptrs;
  const py::dict& dims;
  const char* op;
  std::uintptr_t ptr(const char* name) const { return ptrs.contains(name) ? ptrs[name].cast<std::uintptr_t>() : 0; }
  long long dim(const char* name) const {
    NK_CHECK_ARG(dims.contains(name), std::string(op) + ": dims lacks " + name);
    return dims[name].cast<long long>();
  }
};

// The forward walk of mlp_memory (csrc/mlp_memory/walk.h). ``ptrs``: dict name -> device address
// (0 for absent); ``dims``: dict of the integer / flag fields of MlpWalkParams.
void mlp_memory_walk_py(py::dict ptrs, py::dict dims, double scale, std::uintptr_t stream) {
  const NamedArgs args{ptrs, dims, "mlp_memory_walk"};
  auto ptr = [&](const char* name) { return args.ptr(name); };
  auto dim = [&](const char* name) { return args.dim(name); };
  nk::MlpWalkParams p;
  p.q = as_ptr<const void>(ptr("q"));
  p.k = as_ptr<const void>(ptr("k"));
  p.v = as_ptr<const void>(ptr("v"));
  p.eta = as_ptr<const void>(ptr("eta"));
  p.beta = as_ptr<const void>(ptr("beta"));
  p.token_dtype = checked_dtype(static_cast<int>(dim("token_dtype")), "mlp_memory_walk", "token");
  p.eta_dtype = checked_dtype(static_cast<int>(dim("eta_dtype")), "mlp_memory_walk", "eta");
  p.beta_dtype = checked_dtype(static_cast<int>(dim("beta_dtype")), "mlp_memory_walk", "beta");
  p.W1 = as_ptr<float>(ptr("W1"));
  p.W2 = as_ptr<float>(ptr("W2"));
  p.S1 = as_ptr<float>(ptr("S1"));
  p.S2 = as_ptr<float>(ptr("S2"));
  p.pv = as_ptr<const float>(ptr("pv"));
  p.ai = as_ptr<const float>(ptr("Ai"));
  p.pk = as_ptr<const float>(ptr("pk"));
  p.qp = as_ptr<const float>(ptr("qp"));
  p.pm = as_ptr<const float>(ptr("pm"));
  p.qg = as_ptr<const float>(ptr("qg"));
  p.o = as_ptr<void>(ptr("o"));
  p.sv1 = as_ptr<float>(ptr("sv_W1"));
  p.sv2 = as_ptr<float>(ptr("sv_W2"));
  p.svs1 = as_ptr<float>(ptr("sv_S1"));
  p.svs2 = as_ptr<float>(ptr("sv_S2"));
  p.sv_e = as_ptr<float>(ptr("sv_E"));
  p.sv_ba = as_ptr<float>(ptr("sv_BA"));
  p.tile_base = as_ptr<const long long>(ptr("tile_base"));
  p.xp = as_ptr<float>(ptr("xp"));
  p.xo = as_ptr<float>(ptr("xo"));
  p.xba = as_ptr<float>(ptr("xba"));
  p.sync = as_ptr<unsigned>(ptr("sync"));
  p.B = static_cast<int>(dim("B"));
  p.T = static_cast<int>(dim("T"));
  p.H = static_cast<int>(dim("H"));
  p.D = static_cast<int>(dim("D"));
  p.F = static_cast<int>(dim("F"));
  p.C = static_cast<int>(dim("C"));
  p.scale = static_cast<float>(scale);
  p.act = static_cast<int>(dim("act"));
  p.residual = dim("residual") != 0;
  p.has_beta = dim("has_beta") != 0;
  p.has_mu = dim("has_mu") != 0;
  p.self_target = dim("self_target") != 0;
  p.read = static_cast<int>(dim("read"));
  p.save = dim("save") != 0;
  nk::mlp_memory_walk(p, reinterpret_cast<cudaStream_t>(stream));
}

// LmWalkParams of linear_memory_walk (csrc/linear_memory/walk.h). ``ptrs``: dict name -> device
// address (absent or 0: none; unknown names are a ValueError); ``dims``: dict of the integer / flag
// fields, each required.
nk::LmWalkParams lm_walk_params(const py::dict& ptrs, const py::dict& dims) {
  static const char* kPtrs[] = {"k", "v", "eta", "log_alpha", "xw", "xz", "yw", "yz", "qw", "qz", "xu", "yu", "tsc",
                                "dO", "m0", "s0", "mc0", "pos", "cu", "tile_base", "m_out", "s_out", "mc_out",
                                "tiles_m", "tiles_s", "dmf", "dsf", "dmcf", "dm0", "ds0", "dmc0"};
  for (const auto& item : ptrs) {
    const std::string name = item.first.cast<std::string>();
    bool known = false;
    for (const char* n : kPtrs) known = known || name == n;
    NK_CHECK_ARG(known, "linear_memory_walk: unknown pointer " + name);
  }
  const NamedArgs args{ptrs, dims, "linear_memory_walk"};
  auto ptr = [&](const char* name) { return args.ptr(name); };
  auto dim = [&](const char* name) { return args.dim(name); };
  nk::LmWalkParams p;
  p.k = as_ptr<const void>(ptr("k"));
  p.v = as_ptr<const void>(ptr("v"));
  p.eta = as_ptr<const void>(ptr("eta"));
  p.log_alpha = as_ptr<const void>(ptr("log_alpha"));
  p.xw = as_ptr<const void>(ptr("xw"));
  p.xz = as_ptr<const void>(ptr("xz"));
  p.yw = as_ptr<const void>(ptr("yw"));
  p.yz = as_ptr<const void>(ptr("yz"));
  p.qw = as_ptr<const void>(ptr("qw"));
  p.qz = as_ptr<const void>(ptr("qz"));
  p.xu = as_ptr<const void>(ptr("xu"));
  p.yu = as_ptr<const void>(ptr("yu"));
  p.tsc = as_ptr<const float>(ptr("tsc"));
  p.dO = as_ptr<const void>(ptr("dO"));
  p.m0 = as_ptr<const float>(ptr("m0"));
  p.s0 = as_ptr<const float>(ptr("s0"));
  p.mc0 = as_ptr<const float>(ptr("mc0"));
  p.pos = as_ptr<const long long>(ptr("pos"));
  p.cu = as_ptr<const long long>(ptr("cu"));
  p.tile_base = as_ptr<const long long>(ptr("tile_base"));
  p.m_out = as_ptr<float>(ptr("m_out"));
  p.s_out = as_ptr<float>(ptr("s_out"));
  p.mc_out = as_ptr<float>(ptr("mc_out"));
  p.tiles_m = as_ptr<void>(ptr("tiles_m"));
  p.tiles_s = as_ptr<void>(ptr("tiles_s"));
  p.dmf = as_ptr<const float>(ptr("dmf"));
  p.dsf = as_ptr<const float>(ptr("dsf"));
  p.dmcf = as_ptr<const float>(ptr("dmcf"));
  p.dm0 = as_ptr<float>(ptr("dm0"));
  p.ds0 = as_ptr<float>(ptr("ds0"));
  p.dmc0 = as_ptr<float>(ptr("dmc0"));
  p.token_dtype = checked_dtype(static_cast<int>(dim("token_dtype")), "linear_memory_walk", "token");
  p.eta_dtype = checked_dtype(static_cast<int>(dim("eta_dtype")), "linear_memory_walk", "eta");
  p.alpha_dtype = checked_dtype(static_cast<int>(dim("alpha_dtype")), "linear_memory_walk", "log_alpha");
  p.N = static_cast<int>(dim("N"));
  p.T = static_cast<int>(dim("T"));
  p.H = static_cast<int>(dim("H"));
  p.K = static_cast<int>(dim("K"));
  p.V = static_cast<int>(dim("V"));
  p.BT = static_cast<int>(dim("BT"));
  p.has_beta = dim("has_beta") != 0;
  p.has_mu = dim("has_mu") != 0;
  p.exact = dim("exact") != 0;
  p.has_off = dim("has_off") != 0;
  p.plain_x = dim("plain_x") != 0;
  p.output_final = dim("output_final") != 0;
  p.read = static_cast<int>(dim("read"));
  return p;
}

void linear_memory_walk_py(py::dict ptrs, py::dict dims, bool backward, std::uintptr_t stream) {
  nk::linear_memory_walk(lm_walk_params(ptrs, dims), backward, reinterpret_cast<cudaStream_t>(stream));
}

int linear_memory_walk_stages_py(py::dict dims, bool backward) {
  return nk::linear_memory_walk_stages(lm_walk_params(py::dict(), dims), backward);
}

py::dict build_info() {
  py::dict info;
  info["cuda_archs"] = NK_BUILD_CUDA_ARCHS;
  info["gencode"] = NK_BUILD_GENCODE;
  info["nvcc_version"] = NK_BUILD_NVCC_VERSION;
  info["cuda_runtime_compiled"] = CUDART_VERSION;  // e.g. 13000; cudart is linked statically
#if defined(__VERSION__)
  info["host_compiler"] = __VERSION__;
#endif
  // Queried at call time; both work without a GPU. Driver version 0 means no driver found.
  int runtime_version = 0;
  int driver_version = 0;
  if (cudaRuntimeGetVersion(&runtime_version) != cudaSuccess) runtime_version = -1;
  if (cudaDriverGetVersion(&driver_version) != cudaSuccess) driver_version = -1;
  cudaGetLastError();  // clear any error these queries recorded, so no later launch check sees it
  info["cuda_runtime"] = runtime_version;
  info["cuda_driver"] = driver_version;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "CUDA kernels of nested_kernels (raw-pointer bindings; use nested_kernels.ops.*)";

  m.attr("DTYPE_FLOAT32") = static_cast<int>(nk::DType::kFloat32);
  m.attr("DTYPE_BFLOAT16") = static_cast<int>(nk::DType::kBFloat16);
  m.attr("DTYPE_FLOAT16") = static_cast<int>(nk::DType::kFloat16);
  m.attr("MLP_WALK_SLICE") = nk::kMlpWalkSlice;   // hidden units per CTA of mlp_memory_walk
  m.attr("MLP_WALK_LD") = nk::kMlpWalkLd;         // last dim of its cooperative exchange scratch

  m.def("outer_update", &outer_update_py, py::call_guard<py::gil_scoped_release>(),
        py::arg("out"), py::arg("weight"), py::arg("left"), py::arg("right"), py::arg("eta"),
        py::arg("N"), py::arg("n_tok"), py::arg("P"), py::arg("Q"), py::arg("dtype"),
        py::arg("retention"), py::arg("stream"),
        R"doc(out[n] = retention * weight[n] - left[n]^T diag(eta[n]) right[n], asynchronously.

All tensors are given as device addresses (int) of contiguous buffers on the current device:
out, weight [N, P, Q] float32 (out == weight allowed), left [N, n_tok, P] and right
[N, n_tok, Q] of dtype code `dtype` (DTYPE_FLOAT32/BFLOAT16/FLOAT16), eta [N, n_tok] float32.
`stream` is a cudaStream_t as an int (0: the legacy default stream). Raises ValueError for bad
sizes/dtype codes and RuntimeError for CUDA errors. Use nested_kernels.ops.fast_mlp.cuda.outer_update
from Python.)doc");

  m.def("linear_memory_step", &linear_memory_step_py, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("token_strides"), py::arg("token_dtype"), py::arg("eta"), py::arg("log_alpha"),
        py::arg("beta"), py::arg("mu"), py::arg("M"), py::arg("S"), py::arg("M_chunk"),
        py::arg("position"), py::arg("counters"), py::arg("o"), py::arg("N"), py::arg("H"),
        py::arg("K"), py::arg("V"), py::arg("chunk_size"), py::arg("scale"), py::arg("self_target"),
        py::arg("read"), py::arg("stream"),
        R"doc(One decode token of linear_memory for N sequences, states updated in place (csrc/linear_memory/step.h).

q, k, v, M, S (0 without momentum), M_chunk, position (int64 [N]), counters (int32 [>= N], zero)
and o ([N, H, V], token dtype) are device addresses (int) on the current device; token_strides =
(sqn, sqh, skn, skh, svn, svh) in elements (unit last stride); each gate is (address or 0,
stride_n, stride_h, dtype code); read: 0 after, 1 before, 2 chunk. Raises ValueError for bad
arguments and RuntimeError for CUDA errors. Use linear_memory_step(backend="cuda") from Python.)doc");

  m.def("mlp_memory_walk", &mlp_memory_walk_py, py::arg("ptrs"), py::arg("dims"), py::arg("scale"),
        py::arg("stream"),
        R"doc(The forward walk of mlp_memory over all tiles, F / MLP_WALK_SLICE CTAs per (sequence, head):
one cooperative launch when all fit the GPU and the scratch is given, else thread-block clusters
(csrc/mlp_memory/walk.h).

ptrs: dict of device addresses (q, k, v, eta, beta, W1, W2, S1, S2, pv, Ai, pk, qp, pm, qg, o,
sv_W1, sv_W2, sv_S1, sv_S2, sv_E, sv_BA, tile_base, xp, xo, xba, sync; absent or 0: none; xp, xo,
xba float32 [B*H, F / MLP_WALK_SLICE, C, MLP_WALK_LD], sync int32 [B*H]); dims: dict of B, T, H, D,
F, C, act, residual, has_beta, has_mu, self_target, read, save, token_dtype, eta_dtype, beta_dtype.
States are updated in place. Raises ValueError for bad arguments and RuntimeError for CUDA errors.
Use mlp_memory(backend="cuda") from Python.)doc");

  m.def("linear_memory_walk", &linear_memory_walk_py, py::arg("ptrs"), py::arg("dims"), py::arg("backward"),
        py::arg("stream"),
        R"doc(A sequential walk of the chunked linear_memory over all tiles: the forward state walk or
(backward=True) the state-adjoint walk, one CTA per (V block, sequence·head) (csrc/linear_memory/walk.h).

ptrs: dict of device addresses (k, v, eta, log_alpha, xw, xz, yw, yz, qw, qz, xu, yu, tsc, dO, m0, s0,
mc0, pos, cu, tile_base, m_out, s_out, mc_out, tiles_m, tiles_s, dmf, dsf, dmcf, dm0, ds0, dmc0; absent
or 0: none); dims: dict of token_dtype, eta_dtype, alpha_dtype, N, T, H, K, V, BT, has_beta, has_mu,
exact, has_off, plain_x, output_final, read. Raises ValueError for bad arguments (unknown pointer
names, sizes the walks do not take, missing pointers) and RuntimeError for CUDA errors. Use
linear_memory(backend="cuda") from Python.)doc");

  m.def("linear_memory_walk_stages", &linear_memory_walk_stages_py, py::arg("dims"), py::arg("backward"),
        "Ring stages (1..3) linear_memory_walk would use for these dims, 0 when one stage does not fit a "
        "block's shared memory; ValueError for dims the walks do not take.");

  m.def("build_info", &build_info,
        "dict: CUDA architectures compiled, -gencode flags, nvcc version, CUDA runtime version "
        "compiled against and found, driver version (0: no driver), host compiler");
}
