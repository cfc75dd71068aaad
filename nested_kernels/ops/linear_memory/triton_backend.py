"""The ``triton`` backend of ``linear_memory``: launchers and the :class:`Backend` object.

Forward: ``_prep_kernel`` ((I + A)⁻¹ and the state-independent factors of every tile, in
parallel), ``_state_fwd_kernel`` (sequential over the tiles of each sequence, only n×K·K×V
products; stores the tile-start states and, by default, writes every tile's outputs from them:
``_fuse_out``), else ``_out_kernel`` (outputs of every tile, in parallel).
Backward: the tile-start states
the forward kept (its residual outputs; recomputed when they did not come), the tile factors the
forward kept (or the prep kernel's coefficients, no offsets, when it did not: ``_keep_factors``),
``_state_bwd_kernel`` (sequential, carries the state adjoints backwards and stores them per tile),
then the token gradients of every tile, in parallel: ``_plain_d_kernel`` for PLAIN_A tiles
without log α (``_plain_d``), ``_plain_dv_kernel`` then ``_plain_dqk_kernel`` for the other tiles
without β and μ (``_grad_plain``), else ``_grad_kernel`` or
``_grad_nn_kernel`` then ``_grad_dk_kernel`` (the default for bf16 inputs with β or μ:
``_grad_split``). See docs/linear_memory_triton.md.

Supported: chunk_size ∈ {16, 32, 64, 128}, and chunk_size 1 (the exact online rule, DESIGN §4:
tiles of NESTED_KERNELS_LM_TRITON_EXACT_TILE tokens, half as many for self targets, errors solved
for; self targets solve the 2n×2n system in (r_t, s_t));
K, V ∈ {16, 32, 64, 128}; float32 / bfloat16 / float16 inputs (gates of any of these dtypes); every
option of SPEC §2 (targets, reads, optional gates, cu_seqlens, initial states, resuming mid-chunk,
final states). Anything else is refused by ``unsupported`` and runs on the next backend (torch).

Triton is imported only when a kernel first runs, so importing the package never needs it.
Tuning knobs (environment, read at each call; what they decide is kept per distinct set of knobs,
shapes and options: ``_config``): NESTED_KERNELS_LM_TRITON_BV (V block of the
sequential kernels), NESTED_KERNELS_LM_TRITON_BV_OUT (output kernel, default 64),
NESTED_KERNELS_LM_TRITON_BV_GRAD (gradient kernel, default the BV of the sequential kernels),
NESTED_KERNELS_LM_TRITON_BV_GRAD_DK (the split's dK kernel, default 64 with bf16 operands),
NESTED_KERNELS_LM_TRITON_BV_GRAD_NN (the split's n×n kernel, default 16 where BV_GRAD is 32 with bf16
operands and tiles ≤ 64),
NESTED_KERNELS_LM_TRITON_WARPS (and _WARPS_PREP, _STATE, _OUT, _GRAD per kernel),
NESTED_KERNELS_LM_TRITON_PRECISION (tl.dot input precision:
"tf32", "tf32r" (operands rounded to tf32), "tf32x3" or "ieee", or "bf16" / "fp16" operands; default
tf32x3 for float32 inputs, bf16 operands for bfloat16 and tf32r for float16; the (I + A)⁻¹
products stay at least tf32),
NESTED_KERNELS_LM_TRITON_STORE (dtype of the stored factors and per-tile states: "bf16" or
"fp32"; default bf16 for bfloat16 inputs, else fp32), NESTED_KERNELS_LM_TRITON_MMA,
NESTED_KERNELS_LM_TRITON_PTXAS, NESTED_KERNELS_LM_TRITON_EXACT_TILE (tokens per tile for chunk_size 1),
NESTED_KERNELS_LM_TRITON_GRAD_SPLIT (token gradients in one kernel or two; "0" or "1", default "1"
with β or μ; never split for float32 inputs or tf32x3 products), NESTED_KERNELS_LM_TRITON_GRAD_PLAIN,
_BLOCK_PLAIN, _WARPS_PLAIN, _MMA_PLAIN (the plain-tile gradient kernels), _PLAIN_D and _WARPS_PLAIN_D
(``_plain_d_kernel``), _PLAIN_D_FORM, _MMA_GRAD_DK, _PREP_MATRIX (``_prep_matrix``),
NESTED_KERNELS_LM_TRITON_KEEP_FACTORS (the forward keeps its factors for the backward).
"""
from __future__ import annotations

from typing import Optional

import torch

from ...core.alloc import new_empty, poison_enabled
from ...core.backends import Backend
from ...core.env import getenv, knob_key
from ...core.fast_launch import launch
from ...core.sequences import num_sequences
from ...core.triton_launch import env_flag, fixed_length, float64_unsupported, interpreting as _interpreting, \
    mma_sync, n_tiles, ptxas_options, tile_plan
from .inputs import empty_outputs

SUPPORTED_CHUNK = (1, 16, 32, 64, 128)
SUPPORTED_DIM = (16, 32, 64, 128)
_READ = {"after": 0, "before": 1, "chunk": 2}


EXACT_TILES = (16, 32, 64)


def unsupported(inputs, cfg) -> Optional[str]:
    C = cfg["chunk_size"]
    if C not in SUPPORTED_CHUNK:
        return (f"chunk_size={C}: the Triton kernels take chunk_size in {SUPPORTED_CHUNK} "
                "(other sizes run on the torch backend)")
    q, v = inputs["q"], inputs["v"]
    K = q.shape[-1]
    V = K if cfg["target"] == "self" else v.shape[-1]
    for name, d in (("K", K), ("V", V)):
        if d not in SUPPORTED_DIM:
            return f"{name}={d}: the Triton kernels take K, V in {SUPPORTED_DIM}"
    if C == 1 and cfg["target"] == "self":
        if inputs["beta"] is not None and _precision(q.dtype) == "bf16":
            # H100 2026-12-07c: "ab self before C1 K=V=128 T=130" final M 2.1e-2 from float64 on the
            # same rounded inputs (float16 with tf32r operands 3.2e-3, float32 1.5e-5)
            return ("chunk_size=1 with self targets and beta in bfloat16: the Triton kernels' bf16 operands "
                    "miss the 2e-2 bound on the final state (runs on the torch backend)")
        # H100 "abm self after C1 K=V=128 T=65": float16 PASS (4.7e-3, 2026-12-07d), float32 PASS
        # (9.6e-6, 2026-12-07e); bfloat16 without β has not run on a GPU
        if (inputs["mu"] is not None and q.is_cuda and q.dtype == torch.bfloat16
                and not env_flag("NESTED_KERNELS_LM_TRITON_C1_SELF_MU", False)):
            return ("chunk_size=1 with self targets and mu: the Triton kernels have been verified on a GPU in "
                    "float16 and float32 only (runs on the torch backend; NESTED_KERNELS_LM_TRITON_C1_SELF_MU=1 "
                    "runs them)")
    return float64_unsupported(inputs)


def _block_v(K: int, V: int, env_name: str = "NESTED_KERNELS_LM_TRITON_BV", default: int = 0) -> int:
    """V block: ``env_name`` if set, else ``default`` (0: 64 for K ≤ 64, else 32), at most V."""
    env = getenv(env_name)
    if env:
        bv = int(env)
        if bv < 16 or bv > V or V % bv or bv & (bv - 1):
            raise ValueError(f"{env_name}={bv} must be a power of two in [16, V={V}]")
        return bv
    return min(V, default or (64 if K <= 64 else 32))


def _bv_grad_nn(K: int, V: int, bv_grad: int, wide: bool) -> int:
    """V block of the split's ``_grad_nn_kernel``: NESTED_KERNELS_LM_TRITON_BV_GRAD_NN if set, else 16
    where BV_GRAD is 32 by default and the dK kernel is ``wide`` (bf16 operands, tiles ≤ 64), else
    BV_GRAD. H100 2026-12-08a (B4 T4096 H16 K=V=128 C64 bf16, µs per fwd+bwd call, 32 / 16): α+β
    1928 / 1484; α+β+μ with GRAD_ROWS 4441 / 4070 (device fwd+bwd 13.14 → 12.23 ms with both)."""
    narrow = wide and bv_grad == 32 and not getenv("NESTED_KERNELS_LM_TRITON_BV_GRAD")
    return _block_v(K, V, "NESTED_KERNELS_LM_TRITON_BV_GRAD_NN", 16 if narrow else bv_grad)


def _store_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the stored factors and per-tile states: NESTED_KERNELS_LM_TRITON_STORE ("bf16" or
    "fp32"), by default bfloat16 for bfloat16 inputs (their rounding error is that of the inputs)
    and float32 otherwise (float16's range is too small for unnormalised states)."""
    env = getenv("NESTED_KERNELS_LM_TRITON_STORE")
    if env:
        if env not in ("bf16", "fp32"):
            raise ValueError(f"NESTED_KERNELS_LM_TRITON_STORE must be bf16 or fp32, got {env!r}")
        return torch.bfloat16 if env == "bf16" else torch.float32
    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float32


def _exact_tile(self_target: bool = False) -> int:
    """Tokens per tile for chunk_size 1: NESTED_KERNELS_LM_TRITON_EXACT_TILE (16, 32 or 64; default 64)
    for external targets; half of it, at least 16, for self targets, whose tile solves a system of
    twice its tokens (r_t and s_t, DESIGN §4): the default 64 gives 32 tokens, a 64×64 system."""
    bt = int(getenv("NESTED_KERNELS_LM_TRITON_EXACT_TILE", "64"))
    if bt not in EXACT_TILES:
        raise ValueError(f"NESTED_KERNELS_LM_TRITON_EXACT_TILE={bt} must be one of {EXACT_TILES}")
    return max(16, bt // 2) if self_target else bt


def _ainv_width(BT: int, exact: bool, self_target: bool) -> int:
    """Floats of (I + A)⁻¹ stored per token: a row of BT, or for self targets with chunk_size 1 two
    rows (r_t, s_t) of the 2BT×2BT system."""
    return 4 * BT if exact and self_target else BT


def _resume_pos(inputs, cfg):
    """position0 when the call resumes mid-chunk (with an M_chunk; never for chunk_size 1, whose
    every token is a chunk boundary), else None."""
    pos = inputs["position0"]
    return None if pos is None or inputs["m_chunk0"] is None or cfg["chunk_size"] == 1 else pos


def _read_mode(cfg) -> int:
    """The kernels' READ constexpr: 0 "after", 1 "before", 2 "chunk" — "before" for chunk_size 1,
    where every token is a chunk boundary and the "chunk" read is the "before" read."""
    read = _READ[cfg["read"]]
    return 1 if cfg["chunk_size"] == 1 and read == 2 else read


# the K-wide factor slots of _prep_kernel, in its argument order
_FACTOR_SLOTS = ("xw", "xz", "yw", "yz", "qw", "qz")
_NO_FACTORS = dict.fromkeys(_FACTOR_SLOTS)


def _plain(inputs, cfg) -> bool:
    """Whether the tiles are plain: no β, no μ, chunk_size > 1, no resumed chunk (their token
    gradients may take the plain kernels, ``_grad_plain``)."""
    return (inputs["beta"] is None and inputs["mu"] is None and cfg["chunk_size"] != 1
            and _resume_pos(inputs, cfg) is None)


def _plain_x(inputs, cfg) -> bool:
    """Whether the tiles' Xw and xu are formed in the walks from k, v, η and log α instead of stored
    (``_prep_kernel``'s PLAIN_X): plain tiles with external targets."""
    return cfg["target"] == "external" and _plain(inputs, cfg)


def _plain_a(inputs, cfg, walk: str) -> bool:
    """Whether the forward walk writes the outputs of ``_plain_x`` tiles as diag(a) Q M0 + A diag(η)(V − K M0)
    from the tile's n×n A = QKᵀ⊙Φ_m (``_prep_kernel``'s PLAIN_A, kept for the backward
    walk) instead of from per-token Qw and ou: the prep reads q, k, η, log α and writes n² values
    per tile instead of n(K + V). Triton walks with fused outputs (``_fuse_out``) and chunk_size ≤ 64
    only (at 128 the 128×128 A makes both walks spill: sm_90 probe, α read "before" K=V=128 bf16,
    752 / 924 B of spill stores per thread in the forward / backward walk against 392 / 180 B);
    NESTED_KERNELS_LM_TRITON_PLAIN_A "1" (default) or "0". H100 2026-12-07d call 3 (B4 T4096 H16
    K=V=128 C64 bf16, η only, µs of device time per fwd+bwd call): prep 209 → 63, forward walk
    249 → 281, backward walk 286 → 324, all kernels 1368 → 1286; forward 0.775 → 0.499 ms synced."""
    return (walk == "triton" and _plain_x(inputs, cfg) and cfg["chunk_size"] <= 64 and _fuse_out()
            and env_flag("NESTED_KERNELS_LM_TRITON_PLAIN_A", True))


def _plain_d(has_alpha: bool) -> bool:
    """Whether ``_plain_a`` tiles whose forward keeps its factors take their token gradients from
    rows the two walks store — D = V − K M0 (forward, kept with A) and the steps' adjoint dW
    (backward walk) — in one ``_plain_d_kernel`` instead of ``_plain_dv_kernel`` recomputing them
    from M0 and dMe and handing W, dE to ``_plain_dqk_kernel`` (``_plain_grads``):
    NESTED_KERNELS_LM_TRITON_PLAIN_D "1" or "0"; by default on without log α. H100 2026-12-07g
    (B4 T4096 H16 K=V=128 C64 bf16, device time per fwd+bwd call beside fla chunk_delta_rule):
    η only 1.263 → 1.228 ms (fla 1.796; per kernel, µs: forward walk 285 → 303 and backward walk
    294 → 313 for the rows they store, 306 + 326 → 551 for the token gradients); with log α
    1.746 → 2.599 ms (the kernel's d log α algebra spills: 620 B per thread at 8 warps). The
    forward keeps D until the backward: one V-wide row per token in the storage dtype."""
    return env_flag("NESTED_KERNELS_LM_TRITON_PLAIN_D", not has_alpha)


def _factor_names(mu: bool, solve: bool, exact: bool, read: int, plain_x: bool = False) -> tuple:
    """The K-wide factors that ``_prep_kernel`` writes for these options (triton_fwd.py)."""
    if plain_x:
        return ("qw",)
    names = ("xw", "qw")
    if mu:
        names += ("yw",) + (("xz",) if solve else ()) + (("yz",) if exact else ()) + (("qz",) if read != 2 else ())
    return names


def _keep_factors() -> bool:
    """Whether the forward keeps its tile factors (and (I + A)⁻¹) for the backward, which then
    skips ``_prep_kernel``: NESTED_KERNELS_LM_TRITON_KEEP_FACTORS "1" (default) or "0" (the backward
    recomputes them; the memory held between forward and backward is then only the tile states)."""
    return env_flag("NESTED_KERNELS_LM_TRITON_KEEP_FACTORS", True)


def residuals(inputs, cfg, walk: Optional[str] = None) -> tuple:
    """Empty stand-ins of the forward's residual outputs (OpSpec ``residuals``), which the backward
    reuses instead of running the recurrence and the prep kernel again: the tile-start states M and
    S [tiles, H, K, V] in the storage dtype (S empty without mu) and, when a gradient will be taken
    (cfg["keep_factors"], set by the API) and NESTED_KERNELS_LM_TRITON_KEEP_FACTORS is not "0", the
    tile factors [n_factors, B·T, H, K] (storage
    dtype; with ``_plain_a`` the tiles' A [1, tiles, H, BT·BT]), (I + A)⁻¹ rows [B·T, H, BT] float32
    (empty without a solve) and the tile-end scalars [tiles, H, 4] float32 — all O(T·K) or per
    tile, no per-token state (SPEC §7). ``walk``: the forward's (None: "cuda" for the cuda
    backend's config, else "triton")."""
    if walk is None:
        walk = "cuda" if cfg.get("backend") == "cuda" else "triton"
    return _config(inputs, cfg, walk).residuals(inputs["q"].device)


def _warps(BT: int, kernel: str, heavy: bool = False) -> int:
    """num_warps of ``kernel`` ("prep", "state": both sequential kernels, "out", "grad", "plain",
    ``_plain_grads``' kernels, "plain_d", ``_plain_d_kernel``, "rows", ``_grad_rows_kernel``, or
    "epilogue", ``_grad_epilogue_kernel``):
    NESTED_KERNELS_LM_TRITON_WARPS_<KERNEL> if set, else NESTED_KERNELS_LM_TRITON_WARPS, else 4 for
    tiles of at most 32 tokens; above, 8 for "out", "plain_d", "rows", "epilogue" (sm_90 probe, C64
    K=V=128 bf16, spill stores per thread at 4 / 8 warps: η only 84 / 0 B, read "before" with log α
    1708 / 620 B) and
    the gradient kernel of tiles that are not ``heavy`` (β or μ), 4 for the rest. H100 sweeps 2026-11-26c (B4 T4096 H16
    K=V=128 C64 bf16, µs per fwd+bwd call, 8 → 4 warps): prep 858 → 522 (η only), 8430 → 5420
    (α+β+μ); both walks faster; grad 1317 → 1879 (η only) but 19228 → 16054 (α+β+μ)
    (python/sweep_linear_memory_triton.py, docs/gpu_runs/2026-11-26c_call*)."""
    env = getenv(f"NESTED_KERNELS_LM_TRITON_WARPS_{kernel.upper()}") or \
        getenv("NESTED_KERNELS_LM_TRITON_WARPS")
    if env:
        return int(env)
    return 8 if BT > 32 and kernel in ("out", "grad", "plain_d", "rows", "epilogue") and \
        not (kernel == "grad" and heavy) else 4


def _stages(kernel: str, store: torch.dtype, plain_a: bool = False) -> int:
    """Software-pipelining depth of a sequential tile walk (``STAGES`` of _state_fwd_kernel,
    ``kernel == "state"``, or _state_bwd_kernel, ``"adjoint"``): NESTED_KERNELS_LM_TRITON_STAGES_<KERNEL>
    if set, else NESTED_KERNELS_LM_TRITON_STAGES, else 2 for the forward walk over bfloat16 factors
    and for the backward walk of ``plain_a`` tiles (``_plain_a``) over bfloat16, 0 otherwise (H100
    sweep 2026-11-26c, B4 T4096 H16 K=V=128 C64 bf16, 4 warps: forward walk 363 → 172 µs η only,
    700 → 338 µs α+β+μ; the backward walk was slower pipelined then; with PLAIN_A's loads of q and
    A it is faster: 2026-12-07d call 5, η only, device time per fwd+bwd call 1.274 → 1.248 ms,
    check cases 12–14 bf16 PASS; float32 factors need more shared memory than an H100 block
    has). 0 is a while loop, which Triton does
    not pipeline; 1..4 a ``tl.range`` loop of that depth (the next tiles' rows load while the
    current one computes). The interpreter always takes the while loop: it cannot run ``range``
    over a bound loaded from memory."""
    env = getenv(f"NESTED_KERNELS_LM_TRITON_STAGES_{kernel.upper()}") or \
        getenv("NESTED_KERNELS_LM_TRITON_STAGES")
    stages = int(env) if env else (2 if (kernel == "state" or plain_a) and store == torch.bfloat16 else 0)
    if not 0 <= stages <= 4:
        raise ValueError(f"NESTED_KERNELS_LM_TRITON_STAGES[_{kernel.upper()}]={stages} must be in 0..4")
    return 0 if _interpreting() else stages


def _fuse_out() -> bool:
    """Whether the forward walk writes the outputs of each tile from the start states it holds
    (``FUSE_OUT``) instead of ``_out_kernel`` reading them back: NESTED_KERNELS_LM_TRITON_FUSE_OUT
    "1" (default) or "0". H100 2026-12-07c call 1 (B4 T4096 H16 K=V=128 C64 bf16, η only, ms
    fwd / fwd+bwd): 0.597 / 1.665 fused against 0.698 / 1.812 (fla chunk_delta_rule 0.728 /
    2.086 in the same call); GPU verify 7/7 with it (2026-12-07a call 1, the same sm_90 PTX)."""
    return env_flag("NESTED_KERNELS_LM_TRITON_FUSE_OUT", True)


def _mma_v2(kernel: str) -> bool:
    """Whether ``kernel`` compiles with Ampere-style MMA (mma.sync, ``mma_sync``) instead of Hopper's wgmma.

    NESTED_KERNELS_LM_TRITON_MMA: "v2" (default: every kernel), "mixed" (wgmma for the forward
    kernels, ``kernel == "fwd"``) or "auto" (Triton's choice) — except for the gradient kernel
    (``kernel == "grad"``), which always gets mma.sync: with wgmma every dot operand stays in
    shared memory for its whole live range and its n×n operands need more than the 227 KB an H100
    block may have (the CPU probe python/compile_linear_memory_triton.py reports both). Triton
    reads DISABLE_MMA_V3 when it compiles (and keys its disk cache on it), so it is set only around
    these launches. The plain-tile gradient kernels (``kernel == "plain"``) have their own knob,
    NESTED_KERNELS_LM_TRITON_MMA_PLAIN: "auto" (default; wgmma: H100 2026-11-26e η only C64 K=V=128
    bf16, µs per call, dv + dqk 807 + 614 with mma.sync, 340 + 337 with wgmma) or "v2". wgmma is
    used only with blocks of 64 (K, V ≥ 64): with NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN=32 the
    wgmma kernels hit illegal memory accesses on the H100 in 5 of 7 runs (Triton 3.6.0), never
    with 64 or with mma.sync. NESTED_KERNELS_LM_TRITON_MMA_GRAD_DK does the same for the split's
    ``_grad_dk_kernel`` ("auto" default, used with 64-wide V blocks; wgmma with 32 faulted for α+β+μ).
    The other gradient kernels always get mma.sync (the fused one does not fit with wgmma, the n×n
    one is slower)."""
    if kernel in ("plain", "grad_dk"):
        name = f"NESTED_KERNELS_LM_TRITON_MMA_{kernel.upper()}"
        mode = getenv(name, "auto")
        if mode not in ("v2", "auto"):
            raise ValueError(f"{name} must be v2 or auto, got {mode!r}")
        return mode == "v2"
    mode = getenv("NESTED_KERNELS_LM_TRITON_MMA", "v2")
    if mode not in ("v2", "mixed", "auto"):
        raise ValueError(f"NESTED_KERNELS_LM_TRITON_MMA must be v2, mixed or auto, got {mode!r}")
    return kernel == "grad" or not (mode == "auto" or (mode == "mixed" and kernel == "fwd"))


def _grad_split(dtype: torch.dtype, prec: str, heavy: bool) -> bool:
    """Whether the backward's token gradients run as two kernels, ``_grad_nn_kernel`` (n×n
    adjoints, gate gradients) then ``_grad_dk_kernel`` (dk, dq, dv), each with about half the live
    set of the fused ``_grad_kernel`` but both recomputing the per-block chain:
    NESTED_KERNELS_LM_TRITON_GRAD_SPLIT "1" or "0" (fused); by default split for ``heavy`` tiles (β
    or μ), fused otherwise. H100 2026-11-26c, B4 T4096 H16 K=V=128 C64 bf16, fwd+bwd: α+β+μ 25.36 →
    19.79 ms split, η only 4.28 → 5.21 ms (docs/gpu_runs/2026-11-26c_call4_all.txt, _call5_all.txt).

    Never for float32 inputs, whatever the knob says: with their float32 dot operands (tf32x3 /
    ieee) ``_grad_dk_kernel`` needs more shared memory than an H100 block has (319488 B > 232448 B
    for a self target, read "before", C64, K = V = 128, varlen), so float32 always runs the fused
    kernel, and so do 16-bit inputs with tf32x3 products (``prec``; float16's default until
    2026-11-26f)."""
    return env_flag("NESTED_KERNELS_LM_TRITON_GRAD_SPLIT", heavy) and dtype != torch.float32 and prec != "tf32x3"


def _grad_rows(has_mu: bool) -> int:
    """Which of the split's kernels take the products of a tile with its states (K M0, K S0, V M0,
    V S0, K dMe, K dSe, and the read's Σ dO ⊙ Q M0, Σ dO ⊙ Q S0) from rows that
    ``_grad_rows_kernel`` stores first ([B·T, H, 2–6, V] float32): NESTED_KERNELS_LM_TRITON_GRAD_ROWS
    "0" (neither), "1" (``_grad_nn_kernel``, which then loads no state and runs no K-deep product;
    the default for tiles with μ) or "2" (both; ``_grad_dk_kernel`` still loads the states for its
    dK, dQ products). Not for resumed tiles (their errors are taken at the chunk-start memory). H100
    2026-12-07i (B4 T4096 H16 K=V=128 C64 bf16, µs per fwd+bwd call, rows + n×n + dK kernels):
    α+β+μ 0 / 1 / 2: 5896 + 2488 / 928 + 4435 + 2473 / 990 + 4445 + 2730 (device fwd+bwd 13.16 →
    12.65 ms with 1); α+β 1925 + 1005 / 491 + 1597 + 1005 (slower: no μ, fewer products saved).
    2026-12-08a: quick verify 7/7 and check cases 0, 6 (bf16, fp16) pass with "1"."""
    value = getenv("NESTED_KERNELS_LM_TRITON_GRAD_ROWS") or ("1" if has_mu else "0")
    if value not in ("0", "1", "2"):
        raise ValueError(f"NESTED_KERNELS_LM_TRITON_GRAD_ROWS must be 0, 1 or 2, got {value!r}")
    return int(value)


def _nn_epilogue() -> bool:
    """Whether the split's after-loop n×n algebra (``_nn_adjoints``: dη, dβ, d log α, dμ and the n×n
    shares of dq, dk) runs in a kernel of its own, ``_grad_epilogue_kernel``, between
    ``_grad_nn_kernel`` (then its V-block loop only, which hands over its four n×n accumulators and
    row sums, [tiles, H, 5, n, n] float32) and ``_grad_dk_kernel``:
    NESTED_KERNELS_LM_TRITON_NN_EPILOGUE "1" or "0" (default, until a GPU has timed it). sm_90 probe
    (α+β+μ C64 K=V=128 bf16, GRAD_ROWS 1, 4 warps): the n×n kernel's spill stores 5316 B per thread
    with the algebra, 2404 B without. Not for self targets with chunk_size 1 (a 2n×2n system)."""
    return env_flag("NESTED_KERNELS_LM_TRITON_NN_EPILOGUE", False)


def _grad_plain(plain: bool) -> bool:
    """Whether the token gradients of ``plain`` tiles (no β, no μ, chunk_size > 1, no resumed
    chunk) run as ``_plain_dv_kernel`` then ``_plain_dqk_kernel`` (triton_bwd_plain.py) instead of
    ``_grad_kernel``: NESTED_KERNELS_LM_TRITON_GRAD_PLAIN "1" (default) or "0"."""
    return env_flag("NESTED_KERNELS_LM_TRITON_GRAD_PLAIN", True) and plain


def _launch_options(warps: int, light: bool = False) -> dict:
    """num_warps, and ptxas options off the interpreter: ptxas -O3 (its default) gives the big
    kernels 32 registers and tens of KB of spills per thread, -O1 gives 255 registers and a
    quarter of the spills (measured with ptxas 12.8 and 13.0); ``light`` kernels (the plain-tile
    gradients and their backward walk) keep -O3 (H100 2026-11-26e, η only C64 K=V=128 bf16, µs per
    call: backward walk 315 → 276, dv 343 → 307, dqk 337 → 327). NESTED_KERNELS_LM_TRITON_PTXAS
    overrides ("" for ptxas' default)."""
    return ptxas_options("NESTED_KERNELS_LM_TRITON_PTXAS", dict(num_warps=warps), "" if light else "-O1")


def _kernel_options(BT: int, kernel: str, heavy: bool = False, light: bool = False) -> dict:
    """``_launch_options`` with the ``_warps`` of ``kernel``."""
    return _launch_options(_warps(BT, kernel, heavy), light)


# tl.dot input precisions of float32 operands, or "bf16" / "fp16": both operands rounded to that type
_PRECISIONS = ("tf32", "tf32r", "tf32x3", "ieee", "bf16", "fp16")


def _precision(dtype: torch.dtype) -> str:
    """Operand precision of the products (the (I + A)⁻¹ products stay at least tf32): bf16 operands
    for bfloat16 inputs (H100, B4 T4096 H16 K=V=128 C64: 1.6x faster forward+backward than tf32,
    spills halved, worst error 1.0e-2 against the 2e-2 bound; docs/performance.md), tf32r for
    float16 and tf32x3 for float32. float16 was on tf32 until 2026-11-26e, when its products
    drifted: "self target, all gates" C16 T1000 K=V=128 (H100 2026-11-26e call 8) ended with a
    final M_chunk error of 3.0e-2 in float16 (2.6e-2 in bfloat16) with tf32 — float32 operands
    reach the tensor cores truncated to tf32, not rounded, a bias that self targets feed back chunk
    after chunk — 3.4e-4 with tf32x3 (3.1× slower), 1.8e-3 with tf32r (operands rounded to nearest
    first; 2026-11-26f call 1, at tf32's speed: η only C64 fwd+bwd 3.55 vs 10.32 ms with tf32x3)."""
    env = getenv("NESTED_KERNELS_LM_TRITON_PRECISION")
    if env:
        if env not in _PRECISIONS:
            raise ValueError(f"NESTED_KERNELS_LM_TRITON_PRECISION must be one of {_PRECISIONS}, got {env!r}")
        return env
    if _interpreting():
        return "ieee"
    return {torch.bfloat16: "bf16", torch.float16: "tf32r"}.get(dtype, "tf32x3")


class _Config:
    """What the launches of a call take from its shapes, dtypes, options and knobs, not from
    tensor values: dimensions, tiles, flags and block sizes (read here, as every call did before the
    cache), and the knob reads of single launches (``knob``). One per distinct set (``_config``)."""

    def __init__(self, inputs, cfg, walk: str):
        self.walk = walk      # what runs the two sequential walks: "triton" or "cuda" (cuda_walk.py)
        q, v, mu, beta = inputs["q"], inputs["v"], inputs["mu"], inputs["beta"]
        self.B, self.T, self.H, self.K = q.shape
        self.self_target = cfg["target"] == "self"
        self.V = self.K if self.self_target else v.shape[-1]
        self.C = cfg["chunk_size"]
        # chunk_size 1 (exact rule, DESIGN §4): tiles of BT tokens, errors solved for; every token
        # is a chunk boundary, so a resumed state has position 0 and its M_chunk is unused, and the
        # "chunk" read is the "before" read
        self.exact = self.C == 1
        self.BT = _exact_tile(self.self_target) if self.exact else self.C
        self.read = _read_mode(cfg)
        cu = inputs["cu_seqlens"]
        self.N = num_sequences(self.B, cu)
        self.resumed = _resume_pos(inputs, cfg) is not None
        self.fixed = fixed_length(cu, inputs["position0"] if self.resumed else None, self.T)
        self.n_tiles = n_tiles(self.B, self.T, self.BT, self.N, self.fixed)
        self.BV = _block_v(self.K, self.V)
        self.NV = self.V // self.BV
        self.BV_OUT = _block_v(self.K, self.V, "NESTED_KERNELS_LM_TRITON_BV_OUT", 64)
        self.BV_GRAD = _block_v(self.K, self.V, "NESTED_KERNELS_LM_TRITON_BV_GRAD", self.BV)
        self.BC = min(self.K, self.V, 32)
        self.prec = _precision(q.dtype)
        self.wide_dk = self.prec == "bf16" and self.BT <= 64     # the split's dK kernel fits wgmma
        self.BV_GRAD_NN = _bv_grad_nn(self.K, self.V, self.BV_GRAD, self.wide_dk)
        self.grad_split = _grad_split(q.dtype, self.prec, beta is not None or mu is not None)
        self.grad_rows = _grad_rows(mu is not None) if self.grad_split and not self.resumed else 0
        self.nn_epilogue = self.grad_split and not (self.exact and self.self_target) and _nn_epilogue()
        plain = _plain(inputs, cfg)
        self.grad_plain = _grad_plain(plain)
        self.store = _store_dtype(q.dtype)
        self.poison = poison_enabled()
        # W / dE (plain kernels) and dW (PLAIN_D) between kernels: bfloat16 where the products round to it anyway
        self.scratch = torch.bfloat16 if self.prec == "bf16" else torch.float32
        # the forward keeps its factors: a gradient will be taken (the API's cfg) and the knob allows it
        self.keep_factors = bool(cfg.get("keep_factors")) and _keep_factors()
        self.has_off = not self.self_target or self.resumed
        self.has_ou = self.has_off and (self.read != 2 or self.resumed)
        self.solve = beta is not None or self.exact      # a tile has an (I + A)⁻¹
        self.plain_x = plain and not self.self_target      # _plain_x
        self.plain_a = _plain_a(inputs, cfg, walk)
        has_alpha = inputs["log_alpha"] is not None
        self.plain_d = self.plain_a and self.keep_factors and _plain_d(has_alpha)
        self.BK_D = _plain_d_block(self.K, self.V, has_alpha) if self.plain_d else 0
        self.keep_d = self.plain_d and (self.BK_D < self.K or not _plain_d_forms())
        self.matrix = (beta is not None and not self.exact and not self.resumed and not self.self_target
                       and _prep_matrix())
        self.factor_names = _factor_names(mu is not None, self.solve, self.exact, self.read, self.plain_x)
        self.flags = dict(HAS_BETA=beta is not None, HAS_MU=mu is not None, EXACT=self.exact,
                          HAS_POS=self.resumed, IS_VARLEN=cu is not None)
        self.memo = {}

    def knob(self, fn, *args):
        """``fn(*args)``, a knob read of one launch (its warps, stages, MMA, blocks), kept for the
        next calls of this configuration: the key of ``_config`` holds every knob's value."""
        try:
            return self.memo[fn, args]
        except KeyError:
            value = self.memo[fn, args] = fn(*args)
            return value

    def residuals(self, device) -> tuple:
        """``residuals`` of this configuration, on ``device``."""
        n, H, K, V, BT = self.n_tiles, self.H, self.K, self.V, self.BT
        empty = lambda *shape, dtype=self.store: new_empty(  # noqa: E731
            *shape, dtype=dtype, device=device, poison=self.poison)
        mu = self.flags["HAS_MU"]
        tiles = (empty(n, H, K, V), empty(n, H, K, V) if mu else empty(0))
        if not self.keep_factors:
            return tiles + (empty(0), empty(0), empty(0))
        rows = self.B * self.T
        if self.plain_a:    # the tiles' A, then with keep_d the rows D (``kept``)
            factors = empty(n * H * BT * BT + (rows * H * self.V if self.keep_d else 0))
        else:
            factors = empty(len(self.factor_names), rows, H, K)
        # the scalars are zeroed: the prep kernel writes 1–3 of each tile's 4 slots and no unused tile
        return tiles + (factors,
                        empty(rows, H, _ainv_width(BT, self.exact, self.self_target), dtype=torch.float32)
                        if self.solve else empty(0),
                        torch.zeros(n, H, 4, dtype=torch.float32, device=device))


def _config(inputs, cfg, walk: str) -> _Config:
    """The ``_Config`` of a call, made once per key: the walk, the options it reads, the knobs
    (``knob_key``) and TRITON_INTERPRET, and every input's shape and dtype (None when absent).
    Symbolic shapes (a fake forward under torch.compile) get a fresh one."""
    knobs = knob_key()
    key = (walk, knobs, _interpreting(), cfg["chunk_size"], cfg["target"], cfg["read"], cfg.get("keep_factors"),
           *[(n, None if t is None else (t.shape, t.dtype)) for n, t in inputs.items()])
    try:
        return _CONFIGS[key]
    except KeyError:
        config = _Config(inputs, cfg, walk)
    except TypeError:       # unhashable symbolic sizes
        return _Config(inputs, cfg, walk)
    if knob_key() is knobs:     # no knob changed while it was made
        if len(_CONFIGS) >= 256:
            _CONFIGS.clear()
        _CONFIGS[key] = config
    return config


_CONFIGS: dict = {}


class _Args(_Config):
    """A call's tensors (contiguous; cu_seqlens and position0 int64), tile table and scale, with the
    attributes of its cached ``_Config`` (copied, not recomputed; the ``knob`` memo is shared) and
    the launchers shared by forward and backward."""

    def __init__(self, inputs, cfg, walk: str = "triton"):
        self.__dict__.update(_config(inputs, cfg, walk).__dict__)
        self.scale = float(cfg["scale"])
        c = lambda t: None if t is None else t.contiguous()  # noqa: E731
        self.q, self.k, self.v, self.eta = (c(inputs[n]) for n in ("q", "k", "v", "eta"))
        self.la, self.beta, self.mu = c(inputs["log_alpha"]), c(inputs["beta"]), c(inputs["mu"])
        self.m0 = c(inputs["m0"])
        self.s0 = c(inputs["s0"]) if self.mu is not None else None
        self.mc0 = c(inputs["m_chunk0"]) if self.resumed else None
        self.device = self.q.device
        cu = inputs["cu_seqlens"]
        self.cu = None if cu is None else cu.to(torch.int64).contiguous()
        self.pos = inputs["position0"].to(torch.int64).contiguous() if self.resumed else None
        plan = tile_plan(self.B, self.T, self.BT, self.C, self.cu, self.pos, self.device)
        self.tile_base, self.tile_seq, self.tile_idx = plan.tile_base, plan.tile_seq, plan.tile_idx
        self.final_pos = plan.final_pos

    def empty(self, *shape, dtype: torch.dtype) -> torch.Tensor:
        """A new output on the call's device (``core.alloc.new_empty``)."""
        return new_empty(*shape, dtype=dtype, device=self.device, poison=self.poison)

    def _rows(self, width, cond=True):
        return self.empty(self.B * self.T, self.H, width, dtype=self.store) if cond else None

    def prep(self, store_ainv: bool, offsets: bool = True, keep=None):
        """Factors of every tile (dict of per-token [B·T, H, ·] tensors, tile-end scalars) and,
        with ``store_ainv`` and a solve (β or chunk_size 1), (I + A)⁻¹ rows [B·T, H, BT] float32.
        Without ``offsets`` no xu, yu, ou (the backward's walk needs only the coefficients). With
        ``keep`` (the residuals (factors, ainv, scalars)) the factors, (I + A)⁻¹ and scalars are
        written there."""
        from .triton_fwd import _prep_kernel
        K, V, mu = self.K, self.V, self.mu is not None
        has_off = self.has_off and offsets and not self.plain_a     # PLAIN_A: no offsets
        has_ou = self.has_ou and has_off
        f = dict(xu=self._rows(V, has_off and not self.plain_x), yu=self._rows(V, mu and has_off),
                 ou=self._rows(V, has_ou))
        f.update(self.kept(*keep) if keep is not None else self._new_factors(store_ainv))
        with mma_sync(self.knob(_mma_v2, "fwd")):
            launch(_prep_kernel, (self.n_tiles, self.H),
                self.q, self.k, self.v, self.eta, self.la, self.beta, self.mu, self.mc0, self.tile_seq,
                self.tile_idx, self.cu, self.pos, f["ainv"], f["xw"], f["xz"], f["yw"], f["yz"], f["qw"],
                f["qz"], f["xu"], f["yu"], f["ou"], f["tsc"], self.T, self.H, self.scale,
                K=K, V=V, BT=self.BT, BC=self.BC, LOG2BT=self.BT.bit_length() - 1,
                HAS_ALPHA=self.la is not None, SELF_TARGET=self.self_target, READ=self.read,
                HAS_OFF=has_off, HAS_OU=has_ou, STORE_AINV=f["ainv"] is not None, PLAIN_X=self.plain_x,
                PLAIN_A=self.plain_a, MATRIX=self.matrix, PREC=self.prec, **self.knob(_kernel_options, self.BT, "prep"),
                **self.flags)
        return f

    def _new_factors(self, store_ainv: bool) -> dict:
        f = {n: self._rows(self.K, n in self.factor_names) for n in _FACTOR_SLOTS}
        if self.plain_a:
            f["qw"] = self.empty(self.n_tiles, self.H, self.BT * self.BT, dtype=self.store)
        f["tsc"] = self.empty(self.n_tiles, self.H, 4, dtype=torch.float32)
        f["ainv"] = self.empty(self.B * self.T, self.H, _ainv_width(self.BT, self.exact, self.self_target),
                               dtype=torch.float32) if store_ainv and self.solve else None
        return f

    def kept(self, factors, ainv, scalars) -> dict:
        """The factor dict over the residuals (factors [n_factors, B·T, H, K], or PLAIN_A's flat A
        [tiles, H, BT·BT] and, with keep_d, D [B·T, H, V] after it, both flat; ainv, scalars)."""
        if self.plain_a:    # the kernels index A and D from their first element
            f = dict(_NO_FACTORS, qw=factors)
            if self.keep_d:
                f["d"] = factors[self.n_tiles * self.H * self.BT * self.BT:]
        else:
            names = self.factor_names
            f = {n: (factors[names.index(n)] if n in names else None) for n in _FACTOR_SLOTS}
        return dict(f, tsc=scalars, ainv=ainv if self.solve else None)

    def states(self, f, finals, tiles, o=None):
        """Run the recurrence from the factors ``f``, writing the tile-start states into ``tiles``
        (M, S: [tiles, H, K, V]; S empty without mu), the final states into ``finals`` (M, S,
        M_chunk) when given, and the outputs into ``o`` when given (``outputs``' work, fused; Triton
        walk only). With ``walk`` "cuda" the CUDA walk runs instead (``cuda_walk.state_walk``)."""
        if self.walk == "cuda":
            from .cuda_walk import state_walk
            return state_walk(self, f, finals, tiles)
        from .triton_fwd import _state_fwd_kernel
        m_out, s_out, mc_out = finals if finals is not None else (None, None, None)
        saved_m, saved_s = tiles[0], tiles[1] if self.mu is not None else None
        with mma_sync(self.knob(_mma_v2, "fwd")):
            launch(_state_fwd_kernel, (self.NV, self.N * self.H),
                self.q, self.k, f["xw"], f["xz"], f["yw"], f["yz"], f["xu"], f["yu"], self.v, self.eta, self.la, f["tsc"],
                self.m0, self.s0, self.mc0, self.pos, self.cu, self.tile_base, m_out, s_out, mc_out, saved_m,
                saved_s, f["qw"], f["qz"], f["ou"], o, f.get("d"),
                self.T, self.H, self.scale, K=self.K, V=self.V, BT=self.BT, BV=self.BV, HAS_OFF=self.has_off,
                HAS_ALPHA=self.la is not None, PLAIN_X=self.plain_x, PLAIN_A=self.plain_a and o is not None,
                HAS_M0=self.m0 is not None, HAS_S0=self.s0 is not None, OUTPUT_FINAL=finals is not None,
                SAVE_STATES=True, FUSE_OUT=o is not None, READ=self.read, HAS_OU=self.has_ou,
                SAVE_D=f.get("d") is not None and o is not None, PREC=self.prec,
                STAGES=self.knob(_stages, "state", self.store),
                **self.knob(_kernel_options, self.BT, "state"), **self.flags)

    def adjoints(self, f, dO, final_grads, adj, init_grads, dw=None):
        """The backward walk from the factors ``f`` and dO: the tile-end adjoints into ``adj`` (dM, dS:
        [tiles, H, K, V] in the storage dtype; dS None without mu) and the gradients of the initial
        states into ``init_grads`` (dM0, dS0, dM_chunk0; None where absent), from those of the final
        states ``final_grads`` (dM, dS, dM_chunk; None: zero); PLAIN_A tiles' dW rows into ``dw``
        when given. With ``walk`` "cuda" the CUDA walk runs (``cuda_walk.adjoint_walk``), else
        ``_state_bwd_kernel``."""
        if self.walk == "cuda":
            from .cuda_walk import adjoint_walk
            return adjoint_walk(self, f, dO, final_grads, adj, init_grads)
        from .triton_bwd import _state_bwd_kernel
        (dMf, dSf, dMcf), (adj_m, adj_s), (dm0, ds0, dmc0) = final_grads, adj, init_grads
        with mma_sync(self.knob(_mma_v2, "bwd")):
            launch(_state_bwd_kernel, (self.NV, self.N * self.H),
                self.q, self.k, f["xw"], f["xz"], f["yw"], f["yz"], f["qw"], f["qz"], self.eta, self.la, f["tsc"],
                dO, self.pos, self.cu, self.tile_base, dMf, dSf, dMcf, adj_m, adj_s, dm0, ds0, dmc0, dw, self.T,
                self.H, self.scale, HAS_ALPHA=self.la is not None, PLAIN_X=self.plain_x, PLAIN_A=self.plain_a,
                K=self.K, V=self.V, BT=self.BT, BV=self.BV, HAS_DMF=dMf is not None, HAS_DSF=dSf is not None,
                HAS_DMCF=dMcf is not None, STORE_DW=dw is not None, PREC=self.prec, STAGES=self.knob(_stages, "adjoint", self.store, self.plain_a),
                **self.knob(_kernel_options, self.BT, "state", False, self.grad_plain), READ=self.read, **self.flags)

    def outputs(self, f, tiles, o):
        from .triton_fwd import _out_kernel
        with mma_sync(self.knob(_mma_v2, "fwd")):
            launch(_out_kernel, (self.n_tiles, self.H, self.V // self.BV_OUT),
                f["qw"], f["qz"], f["ou"], tiles[0], tiles[1] if self.mu is not None else None, o,
                self.tile_seq, self.tile_idx, self.cu, self.pos, self.T, self.H, K=self.K, V=self.V, BT=self.BT,
                BV=self.BV_OUT,
                HAS_MU=self.mu is not None, READ=self.read, HAS_OU=self.has_ou,
                HAS_POS=self.pos is not None, IS_VARLEN=self.cu is not None, PREC=self.prec,
                **self.knob(_kernel_options, self.BT, "out"))


def forward(inputs, cfg, walk: str = "triton"):
    """The op's forward; ``walk``: what runs the sequential state walk ("triton" or "cuda")."""
    a = _Args(inputs, cfg, walk)
    B, T, H, K, V, N = a.B, a.T, a.H, a.K, a.V, a.N
    res = a.residuals(a.device)     # the tile-start states (and tile factors), kept for the backward
    tiles, keep = res[:2], res[2:]
    if not a.fixed:     # slots past the last tile (at most 2N, all after the first B·T // BT) stay 0
        for t in tiles:
            t[(B * T) // a.BT:].zero_()
    f = a.prep(store_ainv=False, keep=keep if keep[0].numel() else None) if N * H else None
    # the outputs are allocated after the first launch, which the device waits for
    o = a.empty(B, T, H, V, dtype=a.q.dtype)
    finals = None
    if cfg["output_final_state"]:
        st = lambda: a.empty(N, H, K, V, dtype=torch.float32)  # noqa: E731
        finals = (st(), st() if a.mu is not None else None, st())
    if N * H:
        if a.knob(_fuse_out) and walk == "triton":
            a.states(f, finals, tiles, o)
        else:
            a.states(f, finals, tiles)
            a.outputs(f, tiles, o)
    if finals is None:
        return (o,) + empty_outputs(inputs["q"], V) + res
    M, S, Mc = finals
    return (o, M, S if S is not None else M.new_empty(0), Mc, a.final_pos.clone()) + res


def _grad_or_none(grads, name):
    g = grads.get(name)
    return None if g is None or g.numel() == 0 else g.contiguous()


def _grads(a, f, saved_m, saved_s, adj_m, adj_s, dO, dq, dk, dv, deta, dla, dbeta, dmu, dmc0):
    """Token gradients by ``_grad_kernel`` (V blocks of BV_GRAD), or by ``_grad_nn_kernel`` (mma.sync,
    V blocks of BV_GRAD_NN, ``_bv_grad_nn``; it leaves the n×n shares of dq, dk — dQK and the
    symmetrised dKK, [tiles, H, 2, BT, BT] float32 — to the second kernel, which applies them with the
    keys and queries it loads anyway) then ``_grad_dk_kernel``: with bf16 operands and tiles of at
    most 64 tokens its V blocks are NESTED_KERNELS_LM_TRITON_BV_GRAD_DK (default 64) and, at 64, it
    runs on wgmma (H100 2026-11-26e, C64 K=V=128 bf16, µs per call: α+β 1956 → 1154, α+β+μ 4135 →
    3457; the n×n kernel is slower on wgmma; float32 operands need more than an H100 block's shared
    memory); otherwise BV_GRAD and mma.sync."""
    from .triton_bwd import _grad_dk_kernel, _grad_kernel, _grad_nn_kernel
    nn_buf = dmc0      # unused by the fused kernel
    rows = rsum = tsum = dmc0   # unused without GRAD_ROWS
    if a.grad_rows:
        rows, rsum, tsum = _state_rows(a, saved_m, saved_s, adj_m, adj_s, dO)
    if a.grad_split:   # the n×n shares of dq, dk, handed from the first kernel to the second
        from .triton_bwd import _nn_slots
        slots = _nn_slots(a.exact and a.self_target, a.nn_epilogue)
        nn_buf = a.empty(a.n_tiles, a.H, slots, a.BT, a.BT, dtype=torch.float32)
        bv_dk = a.knob(_block_v, a.K, a.V, "NESTED_KERNELS_LM_TRITON_BV_GRAD_DK", 64 if a.wide_dk else a.BV_GRAD)
        launches = ((_grad_nn_kernel, a.BV_GRAD_NN, "grad"),
                    (_grad_dk_kernel, bv_dk, "grad_dk" if a.wide_dk and bv_dk == 64 else "grad"))
    else:
        launches = ((_grad_kernel, a.BV_GRAD, "grad"),)
    options = a.knob(_kernel_options, a.BT, "grad", a.beta is not None or a.mu is not None)
    for kernel, bv, mma in launches:     # _grad_dk_kernel adds to the dq, dk of _grad_nn_kernel
        with mma_sync(a.knob(_mma_v2, mma)):
            launch(kernel, (a.n_tiles, a.H),
                a.q, a.k, a.v, a.eta, a.la, a.beta, a.mu, a.mc0, a.tile_seq, a.tile_idx, a.cu, a.pos,
                f["ainv"], saved_m, saved_s, adj_m, adj_s, dO,
                dq, dk, dv, deta, dla, dbeta, dmu, dmc0, nn_buf, rows, rsum, tsum,
                a.T, a.H, a.scale, K=a.K, V=a.V, BT=a.BT, BV=bv, HAS_ALPHA=a.la is not None,
                SELF_TARGET=a.self_target, PREC=a.prec, READ=a.read,
                ROWS=a.grad_rows == 2 or (a.grad_rows == 1 and kernel is _grad_nn_kernel), EPI=a.nn_epilogue,
                **options, **a.flags)
        if kernel is _grad_nn_kernel and a.nn_epilogue:
            _epilogue(a, nn_buf, deta, dla, dbeta, dmu)


def _epilogue(a, nn_buf, deta, dla, dbeta, dmu):
    """``_grad_epilogue_kernel`` (NN_EPILOGUE): the after-loop n×n algebra of every tile, from the
    accumulators ``_grad_nn_kernel`` left in ``nn_buf``; NESTED_KERNELS_LM_TRITON_WARPS_EPILOGUE
    (default 8 above 32-token tiles)."""
    from .triton_bwd import _grad_epilogue_kernel
    f = a.flags
    with mma_sync(a.knob(_mma_v2, "grad")):
        launch(_grad_epilogue_kernel, (a.n_tiles, a.H),
            a.q, a.k, a.v, a.eta, a.la, a.beta, a.mu, a.tile_seq, a.tile_idx, a.cu, a.pos, deta, dla, dbeta, dmu,
            nn_buf, a.T, a.H, a.scale, K=a.K, BT=a.BT, HAS_ALPHA=a.la is not None, HAS_BETA=f["HAS_BETA"],
            HAS_MU=f["HAS_MU"], EXACT=a.exact, SELF_TARGET=a.self_target, READ=a.read, HAS_POS=f["HAS_POS"],
            IS_VARLEN=f["IS_VARLEN"], PREC=a.prec, **a.knob(_kernel_options, a.BT, "epilogue"))


def _state_rows(a, saved_m, saved_s, adj_m, adj_s, dO):
    """``_grad_rows_kernel`` (GRAD_ROWS): the products of every tile with its states and their
    adjoints, for ``_grad_nn_kernel``. Returns (rows, rsum, tsum) as its docstring describes them;
    V blocks of NESTED_KERNELS_LM_TRITON_BV_ROWS (default 64: H100 2026-12-07i call 2, C64 K=V=128
    bf16, µs per fwd+bwd call at 64 / 32: α+β+μ 928 / 990, α+β 491 / 585)."""
    from .triton_bwd import _grad_rows_kernel, row_slots
    mu, exact, self_target = a.mu is not None, a.exact, a.self_target
    rows = a.empty(a.B * a.T, a.H, row_slots(mu, exact, self_target), a.V, dtype=torch.float32)
    rsum = a.empty(a.B * a.T, a.H, 2, dtype=torch.float32)
    tsum = a.empty(a.n_tiles, a.H, 4, dtype=torch.float32)
    bv = a.knob(_block_v, a.K, a.V, "NESTED_KERNELS_LM_TRITON_BV_ROWS", 64)
    with mma_sync(a.knob(_mma_v2, "fwd")):
        launch(_grad_rows_kernel, (a.n_tiles, a.H),
            a.q, a.k, a.v, a.tile_seq, a.tile_idx, a.cu, saved_m, saved_s, adj_m, adj_s, dO, rows, rsum, tsum,
            a.T, a.H, a.scale, K=a.K, V=a.V, BT=a.BT, BV=bv, HAS_MU=mu, EXACT=exact, SELF_TARGET=self_target,
            READ=a.read, IS_VARLEN=a.cu is not None, PREC=a.prec, **a.knob(_kernel_options, a.BT, "rows"))
    return rows, rsum, tsum


def _plain_grads(a, saved_m, adj_m, dO, dq, dk, dv, deta, dla):
    """Token gradients of plain tiles by ``_plain_dv_kernel`` then ``_plain_dqk_kernel``: W and dE
    pass between them in a [B·T, H, 2, V] scratch (bfloat16 when the products round their operands
    to bfloat16 anyway), the row partials in [V/BV, B·T·H, NP] float32. Blocks BV of V and BK of K:
    NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN (default 64, at most V and K)."""
    from .triton_bwd_plain import _plain_dqk_kernel, _plain_dv_kernel
    K, V, H = a.K, a.V, a.H
    BV = a.knob(_block_v, K, V, "NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", 64)
    BK = a.knob(_block_v, V, K, "NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", 64)
    n_rows = a.B * a.T * H
    NP = 4 if a.la is not None else 1
    wde = a.empty(a.B * a.T, H, 2, V, dtype=a.scratch)
    part = a.empty(V // BV, n_rows, NP, dtype=torch.float32)
    common = dict(K=K, V=V, BT=a.BT, HAS_ALPHA=a.la is not None, SELF_TARGET=a.self_target, READ=a.read, NP=NP,
                  IS_VARLEN=a.cu is not None, PREC=a.prec, **a.knob(_kernel_options, a.BT, "plain", False, True))
    with mma_sync(a.knob(_mma_v2, "plain" if BV == BK == 64 else "bwd")):
        launch(_plain_dv_kernel, (V // BV, a.n_tiles, H),
            a.q, a.k, a.v, a.eta, a.la, a.tile_seq, a.tile_idx, a.cu, saved_m, adj_m, dO,
            dv, wde, part, a.T, H, n_rows, a.scale, BV=BV, **common)
        launch(_plain_dqk_kernel, (K // BK, a.n_tiles, H),
            a.q, a.k, a.v, a.eta, a.la, a.tile_seq, a.tile_idx, a.cu, saved_m, adj_m, dO,
            dq, dk, dv, deta, dla, wde, part, a.T, H, n_rows, a.scale, BK=BK, NV=V // BV, **common)


def _plain_d_block(K: int, V: int, has_alpha: bool) -> int:
    """K block of ``_plain_d_kernel``: NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN, at most K; by default 128
    without log α (one program per tile and head reads dW, dO, q and k once: 1.151 against 1.228 ms
    at 64, H100 2026-12-07h call 3) and 64 with it. With log α at least K/2: its d log α gets one
    atomic share per K block, and two shares added to zero in either order give the same sum. At K
    the program holds all of M0 and can form D = V − K M0 itself (``_plain_d_forms``)."""
    BK = _block_v(V, K, "NESTED_KERNELS_LM_TRITON_BLOCK_PLAIN", 64 if has_alpha else 128)
    return max(BK, K // 2) if has_alpha else BK


def _prep_matrix() -> bool:
    """Whether ``_prep_kernel`` forms the factors of tiles with external targets and β (not
    resumed, chunk_size > 1) from n×n matrices (``triton_fwd._matrix_factors``: one product per
    factor and column block instead of two to four): NESTED_KERNELS_LM_TRITON_PREP_MATRIX "1" or
    "0" (default). GPU (H100 2026-12-07i call 1): check case 0 (abm external C64 bf16) passes with it;
    α+β+μ prep 2691 against 2707 µs per fwd+bwd call without it — no gain worth the default.
    sm_90 probe, C64 K=V=128 bf16, 4 warps, spill stores per thread: see docs/linear_memory_triton.md."""
    return env_flag("NESTED_KERNELS_LM_TRITON_PREP_MATRIX", False)


def _plain_d_forms() -> bool:
    """Whether ``_plain_d_kernel`` with one K block (BK = K: it holds all of M0) forms D = V − K M0
    itself instead of reading the rows the forward walk kept (then not kept):
    NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM "1" or "0" (default): forming D saves the forward's D
    rows but spills (sm_90 probe, η only C64 K=V=128 bf16, 8 warps: 892 B of spill stores per
    thread against 200 B reading D) and was slower on an H100: 1.606 against 1.151 ms per fwd+bwd
    call (2026-12-07h call 1)."""
    return env_flag("NESTED_KERNELS_LM_TRITON_PLAIN_D_FORM", False)


def _plain_d_grads(a, d_rows, dw, saved_m, adj_m, dO, dq, dk, dv, deta, dla):
    """Token gradients of PLAIN_A tiles by ``_plain_d_kernel`` (grid K/BK_D, tiles, H) from the rows
    D the forward kept (None: formed by the kernel, BK_D = K) and dW the backward walk stored
    (``_plain_d``); d log α is zeroed here for the kernel's atomic shares."""
    from .triton_bwd_plain import _plain_d_kernel
    K, V, BK = a.K, a.V, a.BK_D
    if a.la is not None:
        dla.zero_()
    with mma_sync(a.knob(_mma_v2, "plain" if BK >= 64 and V >= 64 else "bwd")):
        launch(_plain_d_kernel, (K // BK, a.n_tiles, a.H),
            a.q, a.k, a.v, a.eta, a.la, a.tile_seq, a.tile_idx, a.cu, saved_m, adj_m, dO, d_rows, dw,
            dq, dk, dv, deta, dla, a.T, a.H, a.scale, K=K, V=V, BT=a.BT, BK=BK, HAS_ALPHA=a.la is not None,
            READ=a.read, IS_VARLEN=a.cu is not None, KEEP_D=d_rows is not None, PREC=a.prec,
            **a.knob(_kernel_options, a.BT, "plain_d", False, True))


def backward(inputs, outputs, grads, cfg, walk: str = "triton"):
    """The op's backward; ``walk``: what runs the sequential adjoint walk ("triton" or "cuda")."""
    a = _Args(inputs, cfg, walk)
    B, T, H, K, V, N = a.B, a.T, a.H, a.K, a.V, a.N
    f32 = torch.float32
    dO = _grad_or_none(grads, "o")
    if dO is None:
        dO = torch.zeros(B, T, H, V, dtype=a.q.dtype, device=a.device)
    dMf, dSf, dMcf = (_grad_or_none(grads, n) for n in ("M", "S", "M_chunk"))
    if a.mu is None:
        dSf = None

    st = lambda: a.empty(N, H, K, V, dtype=f32)  # noqa: E731
    dm0 = st()
    ds0 = st() if a.mu is not None else None
    dmc0 = st() if a.pos is not None else None
    # the token gradients are allocated after the walk's launch, which the device waits for
    row = lambda *shape, dtype=f32: a.empty(B, T, H, *shape, dtype=dtype)  # noqa: E731

    def token_grads():
        # the kernels store dv once, and dq, dk once unless split (the second kernel adds to the
        # first's float32 shares), so these come out in the inputs' dtype with no conversion pass
        dq, dk = (row(K, dtype=f32 if a.grad_split else inputs[n].dtype) for n in "qk")
        dv = row(K if a.self_target else V, dtype=(inputs["v"] if inputs["v"] is not None else a.q).dtype)
        return (dq, dk, dv, row(), row() if a.la is not None else None, row() if a.beta is not None else None,
                row() if a.mu is not None else None)

    if N * H:
        tiles = (outputs["tile_m"], outputs["tile_s"])
        recompute = tiles[0].numel() == 0   # the forward's residuals did not come (e.g. another backend ran it)
        factors_kept = bool(outputs["tile_factors"].numel()) and not recompute
        if factors_kept:
            f = a.kept(outputs["tile_factors"], outputs["tile_ainv"], outputs["tile_scalars"])
        else:
            f = a.prep(store_ainv=True, offsets=recompute)
        if recompute:
            tiles = a.residuals(a.device)[:2]
            a.states(f, None, tiles)
        saved_m, saved_s = tiles[0], tiles[1] if a.mu is not None else None
        adj_m = torch.empty_like(saved_m)
        adj_s = torch.empty_like(saved_m) if a.mu is not None else None
        # plain_d: the walk stores dW (and the forward kept D unless the kernel forms it)
        plain_d = factors_kept and a.plain_d
        dw = a.empty(B * T, H, V, dtype=a.scratch) if plain_d else None
        a.adjoints(f, dO, (dMf, dSf, dMcf), (adj_m, adj_s), (dm0, ds0, dmc0), dw)
        dq, dk, dv, deta, dla, dbeta, dmu = token_grads()
        if plain_d:
            _plain_d_grads(a, f.get("d"), dw, saved_m, adj_m, dO, dq, dk, dv, deta, dla)
        elif a.grad_plain:
            _plain_grads(a, saved_m, adj_m, dO, dq, dk, dv, deta, dla)
        else:
            _grads(a, f, saved_m, saved_s, adj_m, adj_s, dO, dq, dk, dv, deta, dla, dbeta, dmu, dmc0)
    else:
        dq, dk, dv, deta, dla, dbeta, dmu = token_grads()
        dm0.zero_()
        for t in (ds0, dmc0):
            if t is not None:
                t.zero_()

    # each allocated in the shape of its input
    got = dict(q=dq, k=dk, v=dv, eta=deta, log_alpha=dla, beta=dbeta, mu=dmu, m0=dm0, s0=ds0, m_chunk0=dmc0)
    return {n: g.to(inputs[n].dtype) for n, g in got.items() if inputs[n] is not None and g is not None}


BACKEND = Backend(forward, backward, unsupported, residuals)
