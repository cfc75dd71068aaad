"""The ``triton`` backend of ``linear_memory``: launchers and the :class:`Backend` object.

Forward: ``_ainv_kernel`` ((I + A)⁻¹ of every tile, in parallel; only with β) then ``_fwd_kernel``
(sequential over the tiles of each sequence, parallel over sequences × heads × V blocks).
Backward: the same two kernels again, the second storing one (M, S) per tile (recomputation: the
op machinery saves only the op's inputs and outputs), then ``_bwd_kernel`` walking the tiles
backwards. See docs/linear_memory_triton.md.

Supported: chunk_size ∈ {16, 32, 64, 128}; K, V ∈ {16, 32, 64, 128}; float32 / bfloat16 / float16
inputs (gates of any of these dtypes); every option of SPEC §2 (targets, reads, optional gates,
cu_seqlens, initial states, resuming mid-chunk, final states). Anything else is refused by
``unsupported`` and runs on the next backend (torch).

Triton is imported only when a kernel first runs, so importing the package never needs it.
Tuning knobs (environment, read at each call): NESTED_KERNELS_LM_TRITON_BV (V block),
NESTED_KERNELS_LM_TRITON_WARPS, NESTED_KERNELS_LM_TRITON_PRECISION (tl.dot input precision:
"tf32", "tf32x3" or "ieee"; default tf32x3 for float32 inputs and tf32 otherwise).
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional

import torch

from ...core.alloc import new_empty
from ...core.backends import Backend
from .inputs import empty_outputs

SUPPORTED_CHUNK = (16, 32, 64, 128)
SUPPORTED_DIM = (16, 32, 64, 128)
_READ = {"after": 0, "before": 1, "chunk": 2}


def unsupported(inputs, cfg) -> Optional[str]:
    C = cfg["chunk_size"]
    if C not in SUPPORTED_CHUNK:
        return (f"chunk_size={C}: the Triton kernels take chunk_size in {SUPPORTED_CHUNK} "
                "(chunk_size 1, the exact online rule, and other sizes run on the torch backend)")
    q, v = inputs["q"], inputs["v"]
    K = q.shape[-1]
    V = K if cfg["target"] == "self" else v.shape[-1]
    for name, d in (("K", K), ("V", V)):
        if d not in SUPPORTED_DIM:
            return f"{name}={d}: the Triton kernels take K, V in {SUPPORTED_DIM}"
    for name, t in inputs.items():
        if t is not None and t.is_floating_point() and t.dtype == torch.float64:
            return f"{name} is float64: float64 runs on the reference and torch backends"
    return None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _block_v(K: int, V: int) -> int:
    env = os.environ.get("NESTED_KERNELS_LM_TRITON_BV")
    if env:
        bv = int(env)
        if bv < 16 or bv > V or V % bv or bv & (bv - 1):
            raise ValueError(f"NESTED_KERNELS_LM_TRITON_BV={bv} must be a power of two in [16, V={V}]")
        return bv
    return min(V, 64 if K <= 64 else 32)


def _warps(C: int) -> int:
    env = os.environ.get("NESTED_KERNELS_LM_TRITON_WARPS")
    return int(env) if env else (4 if C <= 32 else 8)


@contextlib.contextmanager
def _mma_mode(kernel: str):
    """Compile with Ampere-style MMA (mma.sync) instead of Hopper's wgmma.

    NESTED_KERNELS_LM_TRITON_MMA: "v2" (default: every kernel), "mixed" (wgmma for the forward
    kernels, mma.sync for the backward) or "auto" (Triton's choice). With wgmma every dot operand
    stays in shared memory for its whole live range, and the backward kernel then needs more than
    the 227 KB an H100 block may have (312 KB at C = 64, K = 128). Triton reads DISABLE_MMA_V3
    when it compiles (and keys its cache on it), so it is set only around these launches."""
    mode = os.environ.get("NESTED_KERNELS_LM_TRITON_MMA", "v2")
    if mode not in ("v2", "mixed", "auto"):
        raise ValueError(f"NESTED_KERNELS_LM_TRITON_MMA must be v2, mixed or auto, got {mode!r}")
    if _interpreting() or mode == "auto" or (mode == "mixed" and kernel != "bwd"):
        yield
        return
    old = os.environ.get("DISABLE_MMA_V3")
    os.environ["DISABLE_MMA_V3"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["DISABLE_MMA_V3"]
        else:
            os.environ["DISABLE_MMA_V3"] = old


def _launch_options(warps: int) -> dict:
    """num_warps, and ptxas options off the interpreter: ptxas -O3 (its default) gives the big
    kernels 32 registers and tens of KB of spills per thread, -O1 gives 255 registers and a
    quarter of the spills (measured with ptxas 12.8 and 13.0). NESTED_KERNELS_LM_TRITON_PTXAS
    overrides ("" for ptxas' default)."""
    opts = dict(num_warps=warps)
    if not _interpreting():
        ptx = os.environ.get("NESTED_KERNELS_LM_TRITON_PTXAS", "-O1")
        if ptx:
            opts["ptx_options"] = ptx
    return opts


def _precision(dtype: torch.dtype) -> str:
    env = os.environ.get("NESTED_KERNELS_LM_TRITON_PRECISION")
    if env:
        if env not in ("tf32", "tf32x3", "ieee"):
            raise ValueError(f"NESTED_KERNELS_LM_TRITON_PRECISION must be tf32, tf32x3 or ieee, got {env!r}")
        return env
    if _interpreting():
        return "ieee"
    return "tf32x3" if dtype == torch.float32 else "tf32"


class _Args:
    """Contiguous inputs, flags and the tile table shared by the forward and backward launchers."""

    def __init__(self, inputs, cfg):
        c = lambda t: None if t is None else t.contiguous()  # noqa: E731
        self.q, self.k, self.v, self.eta = (c(inputs[n]) for n in ("q", "k", "v", "eta"))
        self.la, self.beta, self.mu = c(inputs["log_alpha"]), c(inputs["beta"]), c(inputs["mu"])
        self.m0, self.s0, self.mc0 = c(inputs["m0"]), c(inputs["s0"]), c(inputs["m_chunk0"])
        if self.mu is None:
            self.s0 = None
        q = self.q
        self.device = q.device
        self.B, self.T, self.H, self.K = q.shape
        self.self_target = cfg["target"] == "self"
        self.V = self.K if self.self_target else self.v.shape[-1]
        self.C = cfg["chunk_size"]
        self.scale = float(cfg["scale"])
        self.read = _READ[cfg["read"]]
        cu = inputs["cu_seqlens"]
        self.cu = None if cu is None else cu.to(torch.int64).contiguous()
        self.N = self.B if cu is None else cu.numel() - 1
        pos = inputs["position0"]
        self.pos = None if pos is None or self.mc0 is None else pos.to(torch.int64).contiguous()
        if self.pos is None:
            self.mc0 = None
        if self.cu is None:
            self.lengths = torch.full((self.N,), self.T, dtype=torch.int64, device=self.device)
        else:
            self.lengths = self.cu[1:] - self.cu[:-1]
        p = torch.zeros_like(self.lengths) if self.pos is None else self.pos
        C = self.C
        nt = torch.where(self.lengths > 0, (self.lengths + p + C - 1) // C, 0)
        ends = torch.cumsum(nt, 0)
        self.tile_base = (ends - nt).contiguous()
        # upper bound on the number of tiles (no device sync): Σ ceil((L + p)/C) ≤ B·T/C + 2N
        self.n_tiles = (self.B * self.T) // C + 2 * self.N
        g = torch.arange(self.n_tiles, device=self.device)
        seq = torch.searchsorted(ends, g, right=True)
        valid = seq < self.N
        seqc = seq.clamp(max=max(self.N - 1, 0))
        self.tile_seq = torch.where(valid, seq, -1).to(torch.int32).contiguous()
        self.tile_idx = (g - self.tile_base[seqc]).to(torch.int32).contiguous() if self.N else g.int()
        self.final_pos = (p + self.lengths) % C
        self.BV = _block_v(self.K, self.V)
        self.NV = self.V // self.BV
        self.warps = _warps(C)
        self.prec = _precision(q.dtype)
        self.flags = dict(HAS_ALPHA=self.la is not None, HAS_BETA=self.beta is not None,
                          HAS_MU=self.mu is not None, SELF_TARGET=self.self_target, READ=self.read,
                          HAS_POS=self.pos is not None, IS_VARLEN=self.cu is not None)

    def ainv(self):
        """(I + A)⁻¹ rows of every tile [B·T, H, C] (float32), or None without β."""
        if self.beta is None:
            return None
        from .triton_fwd import _ainv_kernel
        out = new_empty(self.B * self.T, self.H, self.C, dtype=torch.float32, device=self.device)
        if self.n_tiles and self.H:
            with _mma_mode("ainv"):
                _ainv_kernel[(self.n_tiles, self.H)](
                    self.k, self.la, self.beta, out, self.tile_seq, self.tile_idx, self.cu, self.pos,
                    self.T, self.H, K=self.K, BT=self.C, LOG2BT=self.C.bit_length() - 1,
                    HAS_ALPHA=self.flags["HAS_ALPHA"], IS_VARLEN=self.flags["IS_VARLEN"],
                    HAS_POS=self.flags["HAS_POS"], PREC=self.prec, **_launch_options(self.warps))
        return out

    def run_forward(self, ainv, *, o=None, finals=None, saved=None):
        from .triton_fwd import _fwd_kernel
        m_out, s_out, mc_out = finals if finals is not None else (None, None, None)
        saved_m, saved_s = saved if saved is not None else (None, None)
        with _mma_mode("fwd"):
            _fwd_kernel[(self.NV, self.N * self.H)](
                self.q, self.k, self.v, self.eta, self.la, self.beta, self.mu, self.m0, self.s0, self.mc0,
                self.pos, self.cu, ainv, self.tile_base, o, m_out, s_out, mc_out, saved_m, saved_s,
                self.T, self.H, self.scale, K=self.K, V=self.V, BT=self.C, BV=self.BV,
                HAS_M0=self.m0 is not None, HAS_S0=self.s0 is not None,
                OUTPUT_FINAL=finals is not None, SAVE_STATES=saved is not None, STORE_O=o is not None,
                PREC=self.prec, **_launch_options(self.warps), **self.flags)


def forward(inputs, cfg):
    a = _Args(inputs, cfg)
    B, T, H, K, V, N = a.B, a.T, a.H, a.K, a.V, a.N
    o = new_empty(B, T, H, V, dtype=a.q.dtype, device=a.device)
    finals = None
    if cfg["output_final_state"]:
        st = lambda: new_empty(N, H, K, V, dtype=torch.float32, device=a.device)  # noqa: E731
        finals = (st(), st() if a.mu is not None else None, st())
    if N * H:
        a.run_forward(a.ainv(), o=o, finals=finals)
    if finals is None:
        return (o,) + empty_outputs(inputs["q"], V)
    M, S, Mc = finals
    return o, M, S if S is not None else M.new_empty(0), Mc, a.final_pos.clone()


def _grad_or_none(grads, name):
    g = grads.get(name)
    return None if g is None or g.numel() == 0 else g.contiguous()


def backward(inputs, outputs, grads, cfg):
    a = _Args(inputs, cfg)
    B, T, H, K, V, N, NV = a.B, a.T, a.H, a.K, a.V, a.N, a.NV
    dev = a.device
    f32 = torch.float32
    rows = B * T
    dO = _grad_or_none(grads, "o")
    if dO is None:
        dO = torch.zeros(B, T, H, V, dtype=a.q.dtype, device=dev)
    dMf, dSf, dMcf = (_grad_or_none(grads, n) for n in ("M", "S", "M_chunk"))
    if a.mu is None:
        dSf = None

    part = lambda *shape: new_empty(NV, *shape, dtype=f32, device=dev)  # noqa: E731
    dq, dk = part(rows, H, K), part(rows, H, K)
    dv = part(rows, H, K) if a.self_target else new_empty(rows, H, V, dtype=f32, device=dev)
    deta = part(rows, H)
    dla = part(rows, H) if a.la is not None else None
    dbeta = part(rows, H) if a.beta is not None else None
    dmu = part(rows, H) if a.mu is not None else None
    st = lambda: new_empty(N, H, K, V, dtype=f32, device=dev)  # noqa: E731
    dm0 = st()
    ds0 = st() if a.mu is not None else None
    dmc0 = st() if a.pos is not None else None

    if N * H:
        ainv = a.ainv()
        saved_m = torch.empty(a.n_tiles, H, K, V, dtype=f32, device=dev)
        saved_s = torch.empty_like(saved_m) if a.mu is not None else None
        a.run_forward(ainv, saved=(saved_m, saved_s))
        from .triton_bwd import _bwd_kernel
        with _mma_mode("bwd"):
            _bwd_kernel[(NV, N * H)](
                a.q, a.k, a.v, a.eta, a.la, a.beta, a.mu, a.mc0, a.pos, a.cu, ainv, a.tile_base,
                saved_m, saved_s, dO, dMf, dSf, dMcf,
                dq, dk, dv, deta, dla, dbeta, dmu, dm0, ds0, dmc0,
                T, H, rows * H, a.scale, K=K, V=V, BT=a.C, BV=a.BV,
                HAS_DMF=dMf is not None, HAS_DSF=dSf is not None, HAS_DMCF=dMcf is not None,
                STORE_DM0=True, PREC=a.prec, **_launch_options(a.warps), **a.flags)
    else:
        dm0.zero_()
        for t in (ds0, dmc0):
            if t is not None:
                t.zero_()

    red = lambda t: t.sum(0) if t.shape[0] > 1 else t[0]  # noqa: E731
    out = {}

    def put(name, g, shape):
        x = inputs[name]
        if x is not None and g is not None:
            out[name] = g.reshape(shape).to(x.dtype)

    put("q", red(dq), (B, T, H, K))
    put("k", red(dk), (B, T, H, K))
    put("v", red(dv) if a.self_target else dv, (B, T, H, K if a.self_target else V))
    put("eta", red(deta), (B, T, H))
    put("log_alpha", None if dla is None else red(dla), (B, T, H))
    put("beta", None if dbeta is None else red(dbeta), (B, T, H))
    put("mu", None if dmu is None else red(dmu), (B, T, H))
    put("m0", dm0, (N, H, K, V))
    if inputs["s0"] is not None and ds0 is not None:
        put("s0", ds0, (N, H, K, V))
    if dmc0 is not None:
        put("m_chunk0", dmc0, (N, H, K, V))
    return out


BACKEND = Backend(forward, backward, unsupported)
