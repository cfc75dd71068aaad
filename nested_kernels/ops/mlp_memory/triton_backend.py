"""The ``triton`` backend of ``mlp_memory``: launchers and the :class:`Backend` object.

Forward: ``_fwd_kernel`` (triton_fwd.py), NS programs per (sequence, head) (each owns F / NS hidden
units; cooperative launch when NS > 1, the frozen errors are exchanged once per tile), sequential
over the tiles of the sequence, two passes over the F blocks of the slice per tile; when a
gradient will be taken it also stores (``SAVE``) what the backward needs — per-tile checkpoints
of the weights, the frozen errors and B Aᵀ per token — as the op's residual output ``saved``
(``_residual_shapes``; without room for it the backward re-runs the forward with ``SAVE``).
Backward: ``_bwd_kernel`` (triton_bwd.py) walking the tiles backwards, in one walk or split into
the weight-adjoint chain and the token gradients (NESTED_KERNELS_MLP_TRITON_BWD_SPLIT); after the
chain the token gradients come by default from ``tile_grads`` (one autograd VJP of the torch tile
algebra over all tiles, NESTED_KERNELS_MLP_TRITON_TOKENS). See docs/mlp_memory_triton.md.

Supported: chunk_size ∈ {16, 32, 64, 128}; K, V ∈ {16, 32, 64, 128}; F a power of two in
[16, 512]; float32 / bfloat16 / float16 inputs (gates of any of them); every option of SPEC §3.
Anything else is refused by ``unsupported`` and runs on the next backend (torch).

Triton is imported only when a kernel first runs. Tuning knobs (environment, read at each call):
NESTED_KERNELS_MLP_TRITON_BF (F block), NESTED_KERNELS_MLP_TRITON_WARPS,
NESTED_KERNELS_MLP_TRITON_BWD_SPLIT ("1" default, "0": ``_bwd_split``),
NESTED_KERNELS_MLP_TRITON_TOKENS ("torch" default, "triton": ``_token_parts``),
NESTED_KERNELS_MLP_TRITON_PREP_ROWS ("torch" default, "triton": ``_prep_source``),
NESTED_KERNELS_MLP_TRITON_TOKENS_COMPILE ("1" default, "0": ``tile_grads._Tile``),
NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION (``_tokens_precision``), NESTED_KERNELS_MLP_BWD_BYTES
(the residuals' budget, ``_budget``),
NESTED_KERNELS_MLP_TRITON_PRECISION (product operands: "bf16", "fp16", "tf32", "tf32r", "tf32x3" or
"ieee"; default ``_precision``), NESTED_KERNELS_MLP_TRITON_SPLIT (most programs
per (sequence, head), default 8; a variant whose compile fails with NS > 1 is retried with NS
halved, see :func:`_fallback_on_resources`), NESTED_KERNELS_MLP_TRITON_PTXAS (default "-O1"),
NESTED_KERNELS_MLP_TRITON_MMA ("v2": mma.sync, default; "auto": Triton's choice),
NESTED_KERNELS_MLP_TRITON_PREP ("1", default: the state-independent per-tile work — gates,
(I + A_β)⁻¹, masked KKᵀ / QKᵀ — formed for all tiles at once, by batched torch ops or the
tile-parallel ``_prep_kernel`` (NESTED_KERNELS_MLP_TRITON_PREP_ROWS), once per forward and kept
with its residuals; "0": formed inside the sequential kernels). H100 2026-11-26d (issue shape B4 T4096 H8 K=V=64 F256 C64 self / chunk / β = η / α + μ,
bf16, docs/gpu_runs/2026-11-26d_call5): SPLIT 1 + PREP 0 70.6 / 419 ms fwd / fwd+bwd, SPLIT 8
56.9 / 289, SPLIT 8 + PREP 1 34.7 / 252; verify --quick passes with both (call 6).
"""
from __future__ import annotations

import json
import math
import warnings
from typing import Optional

import torch

from ...core.alloc import new_empty, residual_budget
from ...core.backends import Backend, BackendFallbackWarning, will_differentiate
from ...core.env import env_choice, getenv, knob_snapshot
from ...core.fast_launch import launch
from ...core.triton_launch import env_flag, env_int as _env_int, float64_unsupported, interpreting as _interpreting, \
    fixed_length, mma_sync, n_tiles, ptxas_options, tile_plan
from ...core.sequences import num_sequences
from .inputs import empty_outputs

SUPPORTED_CHUNK = (16, 32, 64, 128)
SUPPORTED_DIM = (16, 32, 64, 128)
SUPPORTED_HIDDEN = (16, 32, 64, 128, 256, 512)
_READ = {"after": 0, "before": 1, "chunk": 2}
_ACT = {"gelu": 0, "silu": 1}
_STATES = ("W1", "W2", "S1", "S2")
PREP_ROWS = ("pv", "pk", "qp", "qg", "pm")     # the prep rows the kernels take after their scalars
PREP_PV_COLS = 8                               # columns of the prep kernel's pv rows (triton_prep.NPV)


def unsupported(inputs, cfg) -> Optional[str]:
    C = cfg["chunk_size"]
    if C not in SUPPORTED_CHUNK:
        return f"chunk_size={C}: the Triton kernels take chunk_size in {SUPPORTED_CHUNK}"
    K = inputs["q"].shape[-1]
    V, F = inputs["w1"].shape[-2:]
    for name, d, ok in (("K", K, SUPPORTED_DIM), ("V", V, SUPPORTED_DIM), ("F", F, SUPPORTED_HIDDEN)):
        if d not in ok:
            return f"{name}={d}: the Triton kernels take {name} in {ok}"
    return float64_unsupported(inputs)


def _block_f(F: int, least: int = 16) -> int:
    """F block: NESTED_KERNELS_MLP_TRITON_BF if set, else ``least`` (16, or larger when a launch
    at 16 ran out of shared memory, see :func:`_fallback_on_resources`)."""
    bf = _env_int("NESTED_KERNELS_MLP_TRITON_BF", least)
    if bf < 16 or bf > F or F % bf or bf & (bf - 1):
        raise ValueError(f"NESTED_KERNELS_MLP_TRITON_BF={bf} must be a power of two in [16, F={F}]")
    return bf


def _launch_options(C: int) -> dict:
    """num_warps, num_stages = 1 (software pipelining of the weight loads would multi-buffer them
    in shared memory, which these kernels need for their n×n dot operands) and, off the
    interpreter, ptxas options (-O1: ptxas -O3 squeezes large kernels into few registers with
    heavy spills, see docs/linear_memory_triton.md)."""
    return ptxas_options("NESTED_KERNELS_MLP_TRITON_PTXAS",
                         dict(num_warps=_env_int("NESTED_KERNELS_MLP_TRITON_WARPS", 4 if C <= 32 else 8), num_stages=1))


def _mma_mode():
    """Compile with mma.sync (Triton's DISABLE_MMA_V3, set only around these launches; Triton keys
    its cache on it) unless NESTED_KERNELS_MLP_TRITON_MMA=auto: with wgmma every dot operand stays
    in shared memory over its live range, which the long-lived tiles of these kernels exceed (as
    measured for the linear_memory backward)."""
    return mma_sync(env_choice("NESTED_KERNELS_MLP_TRITON_MMA", "v2", ("v2", "auto")) != "auto")


def _precision(dtype: torch.dtype, choice: str = "auto") -> tuple:
    """(operand precision of the state/token products, precision of the n×n gate products and of
    (I + A_β)⁻¹) for inputs of ``dtype`` and the op's ``precision`` ``choice``: "auto" — tf32r
    (operands rounded to nearest tf32, one tf32 dot) for bfloat16 / float16 inputs, tf32x3 for
    float32; "float32" — tf32x3; "tf32" — tf32r; the gate products always tf32x3. "float32" is
    for runaway dynamics (docs/semantics.md, ``precision``): where the outputs grow by orders of
    magnitude along the sequence, tf32's rounding grows with them
    (python/emulate_mlp_memory_conditioning.py: gradient errors up to 2.9e-1 where |o| grows from
    1e2 to 1e21 over 192 tokens).
    tf32r: CPU emulation of rounded operands (python/emulate_mlp_memory_precision.py) 8.1e-4 /
    1.8e-3 worst error after T = 1000 / 4096 against SPEC §7's 2e-2 for 16-bit inputs; H100
    (2026-12-06b_call1) quick check 2.6e-3; 3.8× faster forward than tf32x3, whose operand copies
    need 237568 B of shared memory at K = 64, F = 256, F block 16 (H100: 232448), so it launches at
    F block 64 with 19 KB of spills. float32 inputs keep tf32x3: tf32r's 1.8e-3 is at the float32
    bound (2e-3). Plain tf32 (truncated operands) gave 1.5e-2 to 2.2e-2; fp16 operands flush the
    decayed states (|W| ~ 1e-8 after T = 1000 with α ∈ [0.8, 1]) to zero; bf16 operands: emulation
    8.2e-3 / 1.8e-2 (docs/mlp_memory_triton.md, "Precision").
    NESTED_KERNELS_MLP_TRITON_PRECISION overrides the first (bf16, fp16, tf32, tf32r, tf32x3, ieee).
    Under the interpreter everything is ieee unless the variable is set (bf16 then rounds the
    operands and multiplies in float32: the interpreter's bfloat16 dot is wrong)."""
    env = _operand_env("NESTED_KERNELS_MLP_TRITON_PRECISION")
    if _interpreting():
        return env or "ieee", "ieee"
    if choice == "auto":
        choice = "float32" if dtype == torch.float32 else "tf32"
    return env or {"float32": "tf32x3", "tf32": "tf32r"}[choice], "tf32x3"


def _operand_env(name: str) -> Optional[str]:
    """An operand precision from the environment variable ``name`` (None when unset); a bad value
    is a ValueError naming it. Under the interpreter bf16 becomes "bf16_emu" (operands rounded,
    products in float32: the interpreter's bfloat16 dot is wrong)."""
    env = getenv(name)
    if env and env not in ("bf16", "fp16", "tf32", "tf32r", "tf32x3", "ieee"):
        raise ValueError(f"{name} must be bf16, fp16, tf32, tf32r, tf32x3 or ieee, got {env!r}")
    if env and _interpreting():
        return {"bf16": "bf16_emu"}.get(env, env)
    return env or None


def _tokens_precision(prec: str, dtype: torch.dtype) -> str:
    """Operand precision of the split backward's PART 2 and 3 (token and gate gradients, read
    chunk's dq): NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION; default bf16 for bfloat16 inputs on
    the GPU unless NESTED_KERNELS_MLP_TRITON_PRECISION chose the operands or ``prec`` is not tf32r
    (precision="float32"), else ``prec`` (the other parts'). Their errors do not travel along the
    tile chain (PART 1 carries the weight adjoints), which is what made bf16 operands everywhere
    miss the bound (emulated 1.8e-2 at T = 4096). H100 2026-12-06c call 1 (issue shape, bf16):
    quick check 4.1e-3 / 4.3e-3 (bound 2e-2), fwd+bwd 61.1 ms against 66.1 with tf32r token parts. float16
    inputs keep ``prec``: fp16 operands flush the decayed states (``_precision``)."""
    env = _operand_env("NESTED_KERNELS_MLP_TRITON_TOKENS_PRECISION")
    if env:
        return env
    explicit = getenv("NESTED_KERNELS_MLP_TRITON_PRECISION")
    return "bf16" if dtype == torch.bfloat16 and prec == "tf32r" and not (explicit or _interpreting()) else prec


def _prep_on() -> bool:
    """NESTED_KERNELS_MLP_TRITON_PREP: "1" (default) runs ``_prep_kernel``, "0" does not."""
    return env_flag("NESTED_KERNELS_MLP_TRITON_PREP", True)


def _bwd_split() -> bool:
    """NESTED_KERNELS_MLP_TRITON_BWD_SPLIT: "1" (default) runs the backward as walks of
    ``_bwd_kernel`` with smaller live sets than the one walk that does everything ("0"): PART 1 the
    chain of weight adjoints only, storing each tile's tile-end adjoints and dE; PART 2 the token
    and gate gradients from them; PART 3 (read chunk) its dq. By the sm_90 probe at the issue shape
    with tf32r operands: 2.4, 12.6 and 0 KB of spill stores per thread against 28 KB; H100
    (2026-12-06b_call1, bf16, tf32r) 66.4 ms fwd+bwd split against 102.2 ms in one walk."""
    return env_flag("NESTED_KERNELS_MLP_TRITON_BWD_SPLIT", True)


def _prep_source() -> str:
    """NESTED_KERNELS_MLP_TRITON_PREP_ROWS: what forms the prep rows — "torch" (default): batched
    torch ops over all tiles (``prep_torch``); "triton": ``_prep_kernel``. Anything else is a
    ValueError naming the variable. H100 2026-12-06e call 6 (issue 4's shape, bf16): forward 7.55
    ms with "torch" against 9.69 ms with "triton" (the kernel alone 3.46 ms, call 5), fwd+bwd
    41.16 / 41.76 ms (the backward reads the forward's rows either way)."""
    return env_choice("NESTED_KERNELS_MLP_TRITON_PREP_ROWS", "torch", ("torch", "triton"))


def _token_parts() -> str:
    """NESTED_KERNELS_MLP_TRITON_TOKENS: what computes the split backward's token and gate
    gradients after the chain — "torch" (default): one vector-Jacobian product of the torch tile
    algebra (compiled on CUDA) batched over all tiles (``tile_grads``); "triton": ``_bwd_kernel``'s
    PARTs 2 and 3, walking the tiles of each (sequence, head). Anything else is a ValueError naming
    the variable. H100 2026-12-06e call 4 (issue 4's shape, bf16, fwd+bwd of the op): 44.9 ms with
    "torch", 61.3 ms with "triton" (the PARTs spill: 32.7 + 0.7 ms of kernel time, call 1)."""
    return env_choice("NESTED_KERNELS_MLP_TRITON_TOKENS", "torch", ("torch", "triton"))


def _tile_group(a) -> int:
    """Tiles per autograd call of ``tile_grads``: as many as keep its intermediates (≈ 40 [C, F],
    16 weight-sized and 64 [C, max(C, K, V)] float32 tensors per tile and head, an estimate) within
    the residual budget (``_budget``), at most 4 GiB."""
    C, K, V, F = a.C, a.K, a.V, a.F
    per_tile = 4 * a.H * (40 * C * F + 8 * (V * F + F * K) + 64 * C * max(C, K, V))
    return max(1, min(a.n_tiles, min(_budget(a.device), 4 << 30) // per_tile))


def _slices(F: int, BF: int, NH: int, device: torch.device) -> int:
    """Number NS of programs per (sequence, head), each owning F / NS hidden units: the largest
    power of two with F / NS ≥ BF and N·H·NS ≤ the number of SMs (one resident program per SM,
    so the cooperative launch that NS > 1 requires always fits), capped by
    NESTED_KERNELS_MLP_TRITON_SPLIT. 1 under the interpreter (it runs programs one after another,
    so programs cannot wait for each other)."""
    cap = _env_int("NESTED_KERNELS_MLP_TRITON_SPLIT", 8)
    if _interpreting() or device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    ns = 1
    while ns * 2 <= min(cap, F // BF) and NH * ns * 2 <= sms:
        ns *= 2
    return ns


class _SplitCompileError(RuntimeError):
    """Triton failed to compile a kernel variant with NS > 1 F slices (``_Args.launch``); the
    launcher has recorded a smaller NS for the variant in ``_NS_CAPS`` and retries the call."""


# (constexprs but NS, input dtypes, knobs) -> the largest NS to use: recorded when Triton 3.6 failed
# to compile a variant with more slices (TritonGPURemoveLayoutConversions, "PassManager::run
# failed", on the H100 for the varlen forward of the check at NS = 8, 2026-11-26c)
_NS_CAPS: dict = {}


BUDGET_ENV = "NESTED_KERNELS_MLP_BWD_BYTES"


def _budget(device: torch.device) -> int:
    """Bytes the forward may keep for the backward: ``core.alloc.residual_budget`` with
    NESTED_KERNELS_MLP_BWD_BYTES."""
    return residual_budget(device, BUDGET_ENV)


_budget._dynamo_marked_constant = True      # torch.compile: evaluated once while tracing


def _prep_shapes(rows: int, H: int, C: int, beta: bool, read: bool, mom: bool) -> dict:
    """float32 shapes of the prep kernel's rows (``triton_prep``) in a configuration: pv always;
    Ai and pk with β; qp and pm for reads after / before (``read``); qg with both and μ."""
    mat = (rows, H, C)
    out = dict(pv=(rows, H, PREP_PV_COLS))
    if beta:
        out.update(Ai=mat, pk=mat)
    if read:
        out.update(qp=mat, pm=mat)
        if beta and mom:
            out["qg"] = mat
    return out


def _residual_shapes(inputs, cfg) -> dict:
    """What the backward needs of the forward (SAVE), by name and float32 shape, from the input
    shapes alone (the API and the fake forward use it too): the tile-start checkpoints W1, W2
    (S1, S2 with momentum), one per tile of the tile table's bound; the frozen errors E per token;
    B Aᵀ per token (reads after / before; summed over the F slices); with the prep kernel its rows
    (``_prep_shapes``: the backward reads them instead of running it again; 2 × 33.5 MB at issue
    4's shape, 3.5 ms of kernel time on an H100), else (I + A_β)⁻¹ per token (with β)."""
    q, w1 = inputs["q"], inputs["w1"]
    B, T, H, K = q.shape
    V, F = w1.shape[-2:]
    C, cu = cfg["chunk_size"], inputs["cu_seqlens"]
    resumed = inputs["position0"] is not None and inputs["w1_chunk0"] is not None
    nt = n_tiles(B, T, C, num_sequences(B, cu), fixed_length(cu, inputs["position0"] if resumed else None, T))
    shapes = dict(W1=(nt, H, V, F), W2=(nt, H, F, K))
    if inputs["mu"] is not None:
        shapes.update(S1=(nt, H, V, F), S2=(nt, H, F, K))
    shapes["E"] = (B * T, H, V)
    if cfg["read"] != "chunk":
        shapes["BA"] = (B * T, H, C)
    if _prep_on():
        shapes.update(_prep_shapes(B * T, H, C, inputs["beta"] is not None, cfg["read"] != "chunk",
                                   inputs["mu"] is not None))
    elif inputs["beta"] is not None:
        shapes["Ai"] = (B * T, H, C)
    return shapes


def _numel(shapes: dict) -> int:
    return sum(math.prod(s) for s in shapes.values())


def _carve(flat: torch.Tensor, shapes: dict) -> dict:
    """Views of ``flat`` with the ``_residual_shapes``, in order."""
    out, at = {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        out[name] = flat[at:at + n].view(shape)
        at += n
    return out


def keeps_residuals(inputs, cfg) -> bool:
    """Whether the forward should store what the backward needs (cfg["keep_residuals"], set by
    the API so that the fake and the real forward agree): only when a gradient will be taken and
    the bytes fit ``_budget``; else the backward re-runs the forward with SAVE."""
    if not will_differentiate(inputs):
        return False
    return 4 * _numel(_residual_shapes(inputs, cfg)) <= _budget(inputs["q"].device)


def residuals(inputs, cfg) -> tuple:
    """The forward's residual output, empty in size (OpSpec ``residuals``): one flat float32
    buffer holding the ``_residual_shapes`` (no elements unless cfg["keep_residuals"])."""
    n = _numel(_residual_shapes(inputs, cfg)) if cfg.get("keep_residuals") else 0
    return (new_empty(n, dtype=torch.float32, device=inputs["q"].device),)


def _fresh(x: torch.Tensor, shape) -> torch.Tensor:
    """A new contiguous float32 tensor of ``shape`` holding x (broadcast)."""
    out = torch.empty(shape, dtype=torch.float32, device=x.device)
    out.copy_(x)
    return out


class _Args:
    """Contiguous inputs, flags, start states and the tile table shared by both launchers."""

    def __init__(self, inputs, cfg, bf: int = 16, walk: str = "triton"):
        c = lambda t: None if t is None else t.contiguous()  # noqa: E731
        self.walk = walk          # what runs the forward walk: "triton" (_fwd_kernel) or "cuda" (cuda_walk)
        self.q, self.k, self.v, self.eta = (c(inputs[n]) for n in ("q", "k", "v", "eta"))
        self.la, self.beta, self.mu = c(inputs["log_alpha"]), c(inputs["beta"]), c(inputs["mu"])
        q = self.q
        self.device = dev = q.device
        self.B, self.T, self.H, self.K = q.shape
        self.V, self.F = inputs["w1"].shape[-2:]
        self.C = C = cfg["chunk_size"]
        self.scale = float(cfg["scale"])
        self.mom = self.mu is not None
        cu = inputs["cu_seqlens"]
        self.cu = None if cu is None else cu.to(torch.int64).contiguous()
        self.N = N = self.B if cu is None else cu.numel() - 1
        self.resumed = inputs["position0"] is not None and inputs["w1_chunk0"] is not None
        self.pos = inputs["position0"].to(torch.int64).contiguous() if self.resumed else None
        self.plan = plan = tile_plan(self.B, self.T, C, C, self.cu, self.pos, dev)
        self.tile_base, self.n_tiles, self.final_pos = plan.tile_base, plan.n_tiles, plan.final_pos
        self.prep = _prep_on()
        if self.prep:
            self.tile_seq, self.tile_idx = plan.tile_seq, plan.tile_idx
        self.at_boundary = (self.final_pos == 0).view(N, 1, 1, 1)
        self.in_first = ((plan.pos > 0) & (plan.pos + plan.lengths < C)).view(N, 1, 1, 1)
        self.BF = _block_f(self.F, bf)
        self.prec, self.gprec = _precision(q.dtype, cfg.get("precision", "auto"))
        self.dummy = torch.empty(1, dtype=torch.float32, device=dev)
        self.flags = dict(ACT=_ACT[cfg["activation"]], RESIDUAL=bool(cfg["residual"]),
                          HAS_ALPHA=self.la is not None, HAS_BETA=self.beta is not None,
                          HAS_MU=self.mom, SELF_TARGET=cfg["target"] == "self",
                          READ=_READ[cfg["read"]], HAS_POS=self.resumed, IS_VARLEN=self.cu is not None)
        consts = dict(K=self.K, V=self.V, F=self.F, BF=self.BF, BT=C, LOG2BT=C.bit_length() - 1,
                      PREC=self.prec, GPREC=self.gprec, PREP=self.prep, **_launch_options(C), **self.flags)
        self.NS = _slices(self.F, self.BF, N * self.H, dev)
        if self.NS > 1 and _NS_CAPS:      # no key work until a compile failure was recorded
            self.NS = min(self.NS, _NS_CAPS.get(self._ns_key(consts), self.NS))
        self.consts = dict(consts, NS=self.NS)
        H, K, V, F = self.H, self.K, self.V, self.F
        self.shapes = dict(W1=(N, H, V, F), W2=(N, H, F, K), S1=(N, H, V, F), S2=(N, H, F, K))
        # start states (float32 copies: the kernels update them in place)
        w1_0, w2_0 = inputs["w1_0"], inputs["w2_0"]
        self.start = dict(W1=inputs["w1"] if w1_0 is None else w1_0, W2=inputs["w2"] if w2_0 is None else w2_0,
                          S1=inputs["s1_0"], S2=inputs["s2_0"])
        self.chunk0 = (c(inputs["w1_chunk0"].float()), c(inputs["w2_chunk0"].float())) if self.resumed else None

    def d(self, t):
        return self.dummy if t is None else t

    def launch(self, kernel, *args, **kw):
        """Run ``kernel`` (``_fwd_kernel`` or ``_bwd_kernel``) on the grid (N·H, NS) both assume:
        program (i, j) is F slice j of (sequence, head) i, and the NS slices of i wait for each
        other once per tile (``triton_common.exchange``), so all NS must be launched and co-resident
        (cooperative launch when NS > 1). Every launch goes through here: the backward once ran on
        (N·H,) with NS = 8, and slice 0 waited forever for the other seven (the H100 hang of
        2026-11-26, docs/mlp_memory_triton.md)."""
        coop = dict(launch_cooperative_grid=True) if self.NS > 1 else {}
        with _mma_mode():
            try:
                launch(kernel, (self.N * self.H, self.NS), *args, **{**self.consts, **kw}, **coop)
            except RuntimeError as e:
                if self.NS == 1 or "PassManager::run failed" not in str(e):
                    raise
                _NS_CAPS[self._ns_key({n: v for n, v in self.consts.items() if n != "NS"})] = self.NS // 2
                raise _SplitCompileError(f"{getattr(kernel, '__name__', kernel)} with NS={self.NS} F slices: "
                                         f"{e}") from e

    def _ns_key(self, consts: dict) -> tuple:
        """Key of ``_NS_CAPS``: the constexprs but NS, the input dtypes and the knobs."""
        dts = tuple(None if t is None else t.dtype for t in (self.q, self.k, self.v, self.eta, self.la, self.beta,
                                                             self.mu))
        return tuple(sorted(consts.items())), dts, _knobs()

    def prep_rows(self, into: Optional[dict] = None) -> dict:
        """With PREP the rows of ``triton_prep._prep_kernel`` (``_prep_shapes``: pv, Ai, pk, qp, qg,
        pm as the configuration has them), from one launch on the grid (tiles, H) or by batched
        torch ops (``prep_torch``, ``_prep_source``), written into the buffers of ``into`` where it
        has them (the forward's residuals); else {}."""
        if not self.prep:
            return {}
        H, C, f = self.H, self.C, self.flags
        shapes = _prep_shapes(self.B * self.T, H, C, f["HAS_BETA"], f["READ"] != 2, self.mom)
        pr = {n: (into or {}).get(n) for n in shapes}
        pr = {n: new_empty(*shapes[n], dtype=torch.float32, device=self.device) if t is None else t
              for n, t in pr.items()}
        if _prep_source() == "torch":
            from .prep_torch import prep_rows
            prep_rows(self, pr)
            return pr
        from .triton_prep import _prep_kernel
        d = self.d
        with _mma_mode():
            launch(_prep_kernel, (self.n_tiles, H),
                self.q, self.k, d(self.la), d(self.beta), d(self.mu), self.tile_seq, self.tile_idx,
                d(self.cu), d(self.pos), *(d(pr.get(n)) for n in ("pv", "Ai", "pk", "qp", "qg", "pm")),
                self.T, H, self.scale, K=self.K, BT=C, LOG2BT=C.bit_length() - 1, PREC=self.prec,
                GPREC=self.gprec, **{n: f[n] for n in ("HAS_ALPHA", "HAS_BETA", "HAS_MU", "READ", "HAS_POS",
                                                      "IS_VARLEN")}, **_launch_options(C))
        return pr

    def exchange_buffers(self):
        """(xch, ctr) of ``triton_common.exchange`` for one launch (placeholders when NS = 1)."""
        if self.NS == 1:
            return self.dummy, self.dummy
        NH = self.N * self.H
        return (torch.empty(NH, 2, self.NS, self.C, self.V, dtype=torch.float32, device=self.device),
                torch.zeros(NH, dtype=torch.int32, device=self.device))

    def partial(self, *shape) -> torch.Tensor:
        """A float32 [NS, *shape] buffer of per-slice partial sums (every element is written)."""
        return new_empty(self.NS, *shape, dtype=torch.float32, device=self.device)

    def start_states(self) -> dict:
        out = {}
        for n in _STATES:
            if n in ("S1", "S2") and not self.mom:
                out[n] = None
            elif self.start[n] is None:
                out[n] = torch.zeros(self.shapes[n], dtype=torch.float32, device=self.device)
            else:
                out[n] = _fresh(self.start[n], self.shapes[n])
        return out

    def chunk_start(self, name: str, st: dict, written: torch.Tensor) -> torch.Tensor:
        """Final chunk-start weights: the final weights at a chunk boundary, the initial chunk-start
        copy when the call ends inside the chunk it resumed, else the start weights of the last
        tile (``written`` by the kernel)."""
        i = 0 if name == "W1" else 1
        first = self.chunk0[i] if self.resumed else written    # (in_first is all False then)
        return torch.where(self.at_boundary, st[name], torch.where(self.in_first, first, written))

    def run_forward(self, st: dict, pr: dict, *, o=None, chunk_out=None, saved=None):
        """``_fwd_kernel`` on the states ``st`` (updated in place) with the prep rows ``pr``
        (``prep_rows``): outputs into ``o``, final chunk-start weights into ``chunk_out``,
        checkpoints into ``saved`` (views of ``_residual_shapes``; B Aᵀ summed over the slices).
        With ``walk`` "cuda" the CUDA kernel runs instead (``cuda_walk.run_walk``)."""
        if self.walk == "cuda":
            from .cuda_walk import run_walk
            return run_walk(self, st, pr, o=o, chunk_out=chunk_out, saved=saved)
        from .triton_fwd import _fwd_kernel
        d = self.d
        c1, c2 = chunk_out if chunk_out is not None else (None, None)
        sv = dict(pr, **(saved or {}))
        ba = sv.get("BA")
        if ba is not None and self.NS > 1:      # per-slice partial sums of B Aᵀ, added below
            sv["BA"] = self.partial(*ba.shape)
        wc1, wc2 = self.chunk0 if self.resumed else (None, None)
        part = self.partial(*o.shape) if o is not None and self.NS > 1 else o
        self.launch(_fwd_kernel,
                    self.q, self.k, self.v, self.eta, d(self.la), d(self.beta), d(self.mu),
                    st["W1"], st["W2"], d(st["S1"]), d(st["S2"]), d(wc1), d(wc2), d(self.pos), d(self.cu),
                    self.tile_base, d(part), d(c1), d(c2),
                    *(d(sv.get(n)) for n in ("W1", "W2", "S1", "S2", "E", "BA", "Ai")), *self.exchange_buffers(),
                    self.T, self.B * self.T, self.H, self.scale, *(d(sv.get(n)) for n in PREP_ROWS),
                    OUTPUT_FINAL=chunk_out is not None,
                    SAVE=saved is not None, STORE_O=o is not None)
        if part is not o:
            o.copy_(part.sum(0))
        if sv.get("BA") is not ba:
            torch.sum(sv["BA"], 0, out=ba)


# (launcher, config, dtype, F, the NESTED_KERNELS_MLP_TRITON_* knobs) -> the F block that launched after
# OutOfResources at smaller ones (the knobs change the kernels: one process may time several)
_F_BLOCKS: dict = {}


def _knobs() -> tuple:
    return knob_snapshot("NESTED_KERNELS_MLP_TRITON_")


def _fallback_on_resources(kernel_fn, torch_fn):
    """Run ``kernel_fn`` with F blocks of 16; when Triton refuses to launch a kernel for lack of
    shared memory or registers (OutOfResources; with tf32x3 operands the forward at K = 64, F = 256
    needs 237568 B at BF = 16, 164 KB at BF = 64 by the sm_90 probe), retry with the block doubled
    up to F, remembering the block that launched for the configuration. Only when every block
    fails (or NESTED_KERNELS_MLP_TRITON_BF pins one), warn with a BackendFallbackWarning and run
    ``torch_fn`` (the torch backend, same mathematics).

    When Triton fails to compile a kernel with NS > 1 F slices (``_SplitCompileError``: Triton
    3.6's TritonGPURemoveLayoutConversions failed on the H100 for one varlen forward at NS = 8,
    2026-11-26c), the variant's NS is halved (remembered in ``_NS_CAPS``) and the call runs again,
    down to NS = 1 (the default, which compiled there); a RuntimeWarning says so. Nothing has been
    written to the call's outputs or inputs before a compile fails (each call builds its buffers
    afresh), so the retry starts clean."""
    def run(*args):
        from triton.runtime.errors import OutOfResources
        inputs, cfg = args[0], args[-1]
        F = inputs["w1"].shape[-1]
        key = lambda: (kernel_fn.__name__, json.dumps(cfg, sort_keys=True), inputs["q"].dtype, F,  # noqa: E731
                       _knobs())
        first = bf = _F_BLOCKS.get(key(), 16) if _F_BLOCKS else 16   # no key work until a retry happened
        while True:
            try:
                out = kernel_fn(*args, bf=bf)
                if bf != first:
                    _F_BLOCKS[key()] = bf
                return out
            except _SplitCompileError as e:
                warnings.warn(f"mlp_memory triton: compile failed for {e}; retrying with fewer F slices",
                              RuntimeWarning, stacklevel=2)
            except OutOfResources as e:
                if bf * 2 > F or getenv("NESTED_KERNELS_MLP_TRITON_BF"):
                    warnings.warn(f"mlp_memory triton: {e}; using the torch backend for this call",
                                  BackendFallbackWarning, stacklevel=2)
                    return torch_fn(*args)
                bf *= 2
    return run


def _forward(inputs, cfg, bf: int = 16, walk: str = "triton"):
    a = _Args(inputs, cfg, bf, walk)
    B, T, H, V, N = a.B, a.T, a.H, a.V, a.N
    o = new_empty(B, T, H, V, dtype=a.q.dtype, device=a.device)
    st = a.start_states()
    final = cfg["output_final_state"]
    chunk_out = (new_empty(*a.shapes["W1"], dtype=torch.float32, device=a.device),
                 new_empty(*a.shapes["W2"], dtype=torch.float32, device=a.device)) if final else None
    kept = residuals(inputs, cfg)       # with cfg["keep_residuals"]: what the backward needs
    saved = _carve(kept[0], _residual_shapes(inputs, cfg)) if kept[0].numel() else None
    if N * H and B * T:
        a.run_forward(st, a.prep_rows(into=saved), o=o, chunk_out=chunk_out, saved=saved)
    if not final:
        return (o,) + empty_outputs(inputs["q"]) + kept
    W1c = a.chunk_start("W1", st, chunk_out[0])
    W2c = a.chunk_start("W2", st, chunk_out[1])
    empty = lambda: st["W1"].new_empty(0)  # noqa: E731
    S1 = st["S1"] if a.mom else empty()
    S2 = st["S2"] if a.mom else empty()
    return (o, st["W1"], st["W2"], S1, S2, W1c, W2c, a.final_pos.clone()) + kept


def _grad_or_none(grads, name):
    g = grads.get(name)
    return None if g is None or g.numel() == 0 else g.contiguous()


def _backward(inputs, outputs, grads, cfg, bf: int = 16, walk: str = "triton"):
    a = _Args(inputs, cfg, bf, walk)
    B, T, H, K, V, F, N, C = a.B, a.T, a.H, a.K, a.V, a.F, a.N, a.C
    dev, f32, rows = a.device, torch.float32, a.B * a.T
    self_target = a.flags["SELF_TARGET"]
    dO = _grad_or_none(grads, "o")
    if dO is None:
        dO = torch.zeros(B, T, H, V, dtype=a.q.dtype, device=dev)
    g = {n: _grad_or_none(grads, n) for n in ("W1", "W2", "S1", "S2", "W1_chunk", "W2_chunk")}
    # carried adjoints, entering as those of the final states
    dst = {}
    for n in _STATES:
        if n in ("S1", "S2") and not a.mom:
            dst[n] = None
        else:
            dst[n] = torch.zeros(a.shapes[n], dtype=f32, device=dev) if g[n] is None else _fresh(g[n], a.shapes[n])
    dc = {n: g[n + "_chunk"] for n in ("W1", "W2")}
    has_dc = any(t is not None for t in dc.values())
    dwc = {}
    for n in ("W1", "W2"):
        if has_dc and dc[n] is None:
            dc[n] = torch.zeros(a.shapes[n], dtype=f32, device=dev)
        if dc[n] is not None:
            dst[n] += torch.where(a.at_boundary, dc[n], 0.0)
        if a.resumed:
            dwc[n] = (torch.zeros(a.shapes[n], dtype=f32, device=dev) if dc[n] is None
                      else torch.where(a.in_first, dc[n], 0.0))
    dq, dk, dv = a.partial(rows, H, K), a.partial(rows, H, K), a.partial(rows, H, K if self_target else V)
    scal = lambda present: a.partial(rows, H) if present else None  # noqa: E731
    deta, dla, dbeta, dmu = scal(True), scal(a.la is not None), scal(a.beta is not None), scal(a.mom)

    if N * H and rows:
        ck = lambda n: torch.empty(a.n_tiles, H, *a.shapes[n][2:], dtype=f32, device=dev)  # noqa: E731
        shapes = _residual_shapes(inputs, cfg)
        kept = outputs.get("saved")
        if kept is not None and kept.numel():        # the forward kept them (keep_residuals)
            saved = _carve(kept, shapes)
        else:                                        # re-run the forward with SAVE
            saved = _carve(torch.empty(_numel(shapes), dtype=f32, device=dev), shapes)
            a.run_forward(a.start_states(), a.prep_rows(into=saved), saved=saved)
        from .triton_bwd import _bwd_kernel
        d = a.d
        stash = torch.empty(N * H, 2, C, F, dtype=f32, device=dev)
        wc1, wc2 = a.chunk0 if a.resumed else (None, None)
        dO = dO.contiguous()
        # split: PART 1 walks the adjoint chain only and stores every tile's tile-end adjoints
        # (one per tile, like the checkpoints), PART 2 the token and gate gradients from them
        adj = {n: ck(n) for n in (_STATES if a.mom else ("W1", "W2"))} if _bwd_split() else {}
        if adj:       # and the adjoint of the frozen errors, per token (PART 1 writes, PART 2 reads)
            adj["dE"] = torch.empty(rows, H, V, dtype=f32, device=dev)
        tok_prec = _tokens_precision(a.prec, a.q.dtype)
        torch_tokens = bool(adj) and _token_parts() == "torch"
        parts = (1,) if torch_tokens else ((1, 2, 3) if cfg["read"] == "chunk" else (1, 2)) if adj else (0,)
        for part in parts:
            a.launch(_bwd_kernel,
                     a.q, a.k, a.v, a.eta, d(a.la), d(a.beta), d(a.mu), d(wc1), d(wc2), d(a.pos), d(a.cu),
                     a.tile_base, *(d(saved.get(n)) for n in ("W1", "W2", "S1", "S2")), d(adj.get("dE")),
                     *(d(saved.get(n)) for n in ("E", "BA", "Ai")),
                     dO, d(dc["W1"]), d(dc["W2"]), dst["W1"], dst["W2"], d(dst["S1"]), d(dst["S2"]),
                     d(dwc.get("W1")), d(dwc.get("W2")), stash, *(d(adj.get(n)) for n in _STATES),
                     *a.exchange_buffers(), dq, dk, dv, deta, d(dla), d(dbeta), d(dmu), T, rows, H, a.scale,
                     *(d(saved.get(n)) for n in PREP_ROWS), HAS_DC=has_dc, PART=part,
                     PREC=tok_prec if part in (2, 3) else a.prec)
        if torch_tokens:
            from .tile_grads import tile_grads
            tg = tile_grads(a, cfg, saved, adj, dO, _tile_group(a))
            dq, dk, dv, deta = tg["q"], tg["k"], tg["v"], tg["eta"]
            dla, dbeta, dmu = tg.get("log_alpha"), tg.get("beta"), tg.get("mu")

    out = {}

    def put(name, grad, shape):
        if inputs[name] is not None and grad is not None:
            out[name] = grad.reshape(shape).to(inputs[name].dtype)

    def put_sum(name, part, shape):     # per-slice partial sums
        if part is not None:
            put(name, part[0] if len(part) == 1 else part.sum(0), shape)

    put_sum("q", dq, (B, T, H, K))
    put_sum("k", dk, (B, T, H, K))
    put_sum("v", dv, (B, T, H, K if self_target else V))
    for name, grad in (("eta", deta), ("log_alpha", dla), ("beta", dbeta), ("mu", dmu)):
        put_sum(name, grad, (B, T, H))
    for n, lo in (("W1", "w1"), ("W2", "w2")):
        if inputs[lo + "_0"] is not None:
            put(lo + "_0", dst[n], a.shapes[n])
        else:
            put(lo, dst[n].sum(0), a.shapes[n][1:])
        if a.resumed:
            put(lo + "_chunk0", dwc[n], a.shapes[n])
    if a.mom:
        put("s1_0", dst["S1"], a.shapes["S1"])
        put("s2_0", dst["S2"], a.shapes["S2"])
    return out


def _torch_backward(inputs, outputs, grads, cfg):
    """Autograd through the torch backend's forward (recomputed)."""
    from ...core.custom_op import autograd_backward
    from . import api, chunk
    return autograd_backward(chunk.forward, api.INPUTS, inputs, [grads[n] for n in api.OUTPUTS], cfg)


def _torch_forward(inputs, cfg):
    from . import chunk
    return chunk.forward(inputs, cfg)


forward = _fallback_on_resources(_forward, _torch_forward)
backward = _fallback_on_resources(_backward, _torch_backward)
BACKEND = Backend(forward, backward, unsupported, residuals)
