"""``SelfModifyingTitans``: the HOPE sequence-mixing layer around the ``self_modifying_titans`` core
(SPEC §5; Nested Learning Eq. 83–93).

Layer (the paper fixes the core; these module-level choices are ours):

    h   = RMSNorm(x)                                         (pre-norm, learnable gain)
    u   = [W_x h ; W_q h]                                    (static projections, no bias)
    u   = SiLU(causal depthwise conv_4(u))                   (width-4 short convolution per channel,
                                                              as in Mamba / Gated DeltaNet)
    x_c = l2norm(x part of u, per head)  [B, T, H, Dh]       (‖x_c‖ = 1; with ``bias_channel`` the
                                                              last channel is the constant c, below)
    q_c = q part of u  [B, T, H, Dh]                         (the core normalises q itself)
    o   = self_modifying_titans(x_c, q_c, params, ...)       (the core: five self-modifying memories)
    y   = W_o (RMSNorm_head(o) ⊙ SiLU(W_g h))                (per-head RMSNorm, SiLU output gate)
    out = x + y                                              (residual)

* Meta-learned initial memory weights (``nn.Parameter``, shared by every sequence, per head):
  memory="mlp": M(x) = W_skip x + W1 φ(W2 x) with W2 ~ N(0, 1/Dh) (like nn.Linear), W1 ~ N(0,
  ``w1_std``²) (small: every memory starts close to its skip path — the identity for M_k, M_v, M_mem,
  so k ≈ l2norm(x), v ≈ x, o ≈ q̂), W_skip of M_η, M_α zero apart from the bias channel.
  memory="linear": W = I + N(0, ``w1_std``²) for M_k, M_v, M_mem; zero rows (apart from the bias
  channel) for M_η, M_α.
* Unit-norm x_c: the self-generated targets make the in-context rule unstable for large inputs.
  With β = η the input-side update of a memory is W ← W(α I − η(2k − v)kᵀ) + …, which grows
  when v·k > 2 (v = M_v(x) ≈ x is not normalised, k is); keeping ‖x_c‖ = 1 keeps v·k ≈ 1 at the
  start (without it, python/hope_lm.py with eta_scale = 0.05 diverged within ~70 steps).
* ``bias_channel`` (default True): the core op has no biases, and without one M_α(x) ≈ 0 at
  initialisation, i.e. a retention sigmoid(0) = 0.5 per token, which erases every memory within a
  few tokens. So the last channel of each head's x_c is a constant c = ``bias_value`` (0.5; the
  other Dh − 1 channels are l2-normalised and scaled by √(1 − c²), so ‖x_c‖ = 1); the weights of
  M_η, M_α on it act as learned biases, initialised so that c·w = ``eta_bias_init`` (η ≈
  eta_scale·softplus(0) at start) and ``alpha_bias_init`` (retention sigmoid(6) ≈ 0.9975 per
  token). The memories adapt these like any other weight in context.
* Stability of the inner rule: with self-generated targets a memory chases M(v) with M(k)
  (both moving), and a systematic error (e.g. M_α's large bias weight meets k and v whose bias
  components differ once M_k, M_v have been trained) drives a bilinear growth of W1 and W2 in the
  MLP form. In python/hope_lm.py, memory="mlp" diverged (M_α first, then everything) after ~175
  steps with eta_scale = 1e-2 and was stable over 300 steps with the SPEC default 1e-3;
  memory="linear" was stable with 5e-2. Keep eta_scale small for the MLP form.
* Streaming: ``forward(x, state)`` returns a :class:`TitansLayerState` (the conv's last
  ``conv_width − 1`` inputs per sequence and the core's :class:`SelfModifyingTitansState`);
  processing a stream in pieces equals one call. ``cu_seqlens`` packs sequences (B == 1); the
  convolution restarts at each sequence start.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core import checks
from ..ops.self_modifying_titans import SelfModifyingTitansState, self_modifying_titans
from ..ops.self_modifying_titans.memories import MEMORIES, SCALAR_MEMORIES, SLOTS, l2norm


@dataclasses.dataclass
class TitansLayerState:
    """Streaming state of :class:`SelfModifyingTitans`.

    conv  [N, conv_width − 1, C] the last inputs of the short convolution per sequence (zeros
          before the start), C = channels of the projected x and q.
    core  the core's :class:`SelfModifyingTitansState`.
    """
    conv: torch.Tensor
    core: SelfModifyingTitansState

    def detach(self) -> "TitansLayerState":
        return TitansLayerState(self.conv.detach(), self.core.detach())

    def clone(self) -> "TitansLayerState":
        return TitansLayerState(self.conv.clone(), self.core.clone())

    def to(self, device) -> "TitansLayerState":
        return TitansLayerState(self.conv.to(device), self.core.to(device))


def causal_conv(u: torch.Tensor, weight: torch.Tensor, cache: Optional[torch.Tensor],
                cu_seqlens: Optional[torch.Tensor]):
    """Depthwise causal convolution y_t = Σ_j weight[:, W−1−j] ⊙ u_{t−j} within each sequence.

    u [B, T, C]; weight [C, W]; cache [N, W−1, C] (the inputs before each sequence, oldest first;
    zeros when None). Returns (y [B, T, C], new cache [N, W−1, C])."""
    B, T, C = u.shape
    W = weight.shape[1]
    dev = u.device
    if cu_seqlens is None:
        starts = torch.arange(B, device=dev) * T
        lengths = torch.full((B,), T, device=dev)
    else:
        cu = cu_seqlens.to(device=dev, dtype=torch.int64)
        starts, lengths = cu[:-1], cu[1:] - cu[:-1]
    N = starts.shape[0]
    if cache is None:
        cache = u.new_zeros(N, W - 1, C)
    flat = torch.cat([u.reshape(B * T, C), cache.to(u.dtype).reshape(N * (W - 1), C)])
    # sequence and offset of every token
    tok = torch.arange(B * T, device=dev)
    seq = torch.searchsorted(starts + lengths, tok, right=True).clamp(max=N - 1) if N > 0 else tok * 0
    off = tok - starts[seq]
    y = u.new_zeros(B * T, C)
    for j in range(W):                                   # tap j reads u_{t−j}
        src = off - j
        idx = torch.where(src >= 0, tok - j, B * T + seq * (W - 1) + (W - 1) + src)
        y = y + flat[idx] * weight[:, W - 1 - j]
    # new cache: the last W−1 inputs of (old cache ++ sequence)
    k = torch.arange(W - 1, device=dev)
    e = lengths[:, None] + k[None, :]                    # positions in (cache ++ sequence)
    idx = torch.where(e >= W - 1, starts[:, None] + e - (W - 1),
                      B * T + torch.arange(N, device=dev)[:, None] * (W - 1) + e.clamp(max=W - 2))
    return y.view(B, T, C), flat[idx]


class SelfModifyingTitans(nn.Module):
    """HOPE's self-modifying Titans layer (see the module docstring for the exact layer).

    Args:
        dim: model width. heads: H. head_dim: Dh (default dim // heads).
        memory, chunk_size_other, chunk_size_memory, eta_scale, use_alpha, mu, read, activation:
            options of the core op (SPEC §5).
        conv_width: width of the causal depthwise convolution (4).
        bias_channel: reserve a constant-1 channel per head in the core's x (learned biases of the
            memories); eta_bias_init, alpha_bias_init: initial weights of M_η, M_α on it.
        w1_std: std of the initial W1 (MLP form) or of the perturbation of the identity (linear).
        backend: passed to the core op.
    forward(x [B,T,dim], state=None, cu_seqlens=None) -> (y [B,T,dim], TitansLayerState).
    """

    def __init__(self, dim: int, heads: int, head_dim: Optional[int] = None, memory: str = "mlp",
                 chunk_size_other: int = 16, chunk_size_memory: int = 64, eta_scale: float = 1e-3,
                 use_alpha: bool = True, mu: Optional[float] = None, read: str = "chunk",
                 activation: str = "gelu", conv_width: int = 4, bias_channel: bool = True,
                 bias_value: float = 0.5, eta_bias_init: float = 0.0, alpha_bias_init: float = 6.0,
                 w1_std: float = 0.02,
                 norm_eps: float = 1e-6, backend: str = "auto", device=None, dtype=None):
        super().__init__()
        checks.check_positive_int("dim", dim)
        checks.check_positive_int("heads", heads)
        head_dim = dim // heads if head_dim is None else head_dim
        checks.check_positive_int("head_dim", head_dim)
        checks.check_positive_int("conv_width", conv_width)
        checks.check_option("memory", memory, tuple(SLOTS))
        if bias_channel and head_dim < 2:
            raise ValueError(f"head_dim must be >= 2 with bias_channel=True, got {head_dim}")
        self.dim, self.heads, self.head_dim = dim, heads, head_dim
        self.core_options = dict(memory=memory, chunk_size_other=chunk_size_other,
                                 chunk_size_memory=chunk_size_memory, eta_scale=eta_scale,
                                 use_alpha=use_alpha, mu=mu, read=read, activation=activation)
        self.memory, self.bias_channel, self.backend = memory, bool(bias_channel), backend
        checks.check_scalar("bias_value", bias_value, low=0.0, high=1.0)
        if bias_channel and not 0.0 < bias_value < 1.0:
            raise ValueError(f"bias_value must lie in (0, 1) with bias_channel=True, got {bias_value}")
        self.bias_value = float(bias_value)
        fk = dict(device=device, dtype=dtype)
        H, Dh = heads, head_dim
        self.x_channels = H * (Dh - 1 if bias_channel else Dh)
        self.norm = nn.RMSNorm(dim, eps=norm_eps, **fk)
        self.proj_x = nn.Linear(dim, self.x_channels, bias=False, **fk)
        self.proj_q = nn.Linear(dim, H * Dh, bias=False, **fk)
        channels = self.x_channels + H * Dh
        self.conv_weight = nn.Parameter(torch.empty(channels, conv_width, **fk))
        nn.init.uniform_(self.conv_weight, -1 / math.sqrt(conv_width), 1 / math.sqrt(conv_width))
        self.gate = nn.Linear(dim, H * Dh, bias=False, **fk)
        self.out_norm = nn.RMSNorm(Dh, eps=norm_eps, **fk)
        self.out = nn.Linear(H * Dh, dim, bias=False, **fk)
        # meta-learned initial memory weights
        self.memory_slots = []
        for m in MEMORIES:
            O = 1 if m in SCALAR_MEMORIES else Dh
            shapes = {"mlp": [(H, O, Dh), (H, Dh, Dh), (H, 1, Dh) if O == 1 else None],
                      "linear": [(H, O, Dh)]}[memory]
            names = []
            for slot, shape in zip(SLOTS[memory], shapes):
                if shape is None:
                    names.append(None)
                    continue
                name = f"mem_{m}_{slot}"
                self.register_parameter(name, nn.Parameter(torch.empty(shape, **fk)))
                names.append(name)
            self.memory_slots.append((m, names))
        self.w1_std, self.eta_bias_init, self.alpha_bias_init = w1_std, eta_bias_init, alpha_bias_init
        self.reset_memory_parameters()

    @torch.no_grad()
    def reset_memory_parameters(self) -> None:
        Dh = self.head_dim
        for m, names in self.memory_slots:
            for slot, name in zip(SLOTS[self.memory], names):
                if name is None:
                    continue
                p = getattr(self, name)
                if slot == "w2":
                    nn.init.normal_(p, 0.0, 1.0 / math.sqrt(Dh))
                elif m in SCALAR_MEMORIES and slot in ("w_skip", "w"):
                    p.zero_()
                    if self.bias_channel:
                        bias = self.alpha_bias_init if m == "alpha" else self.eta_bias_init
                        p[..., -1] = bias / self.bias_value
                else:
                    nn.init.normal_(p, 0.0, self.w1_std)
                    if self.memory == "linear" and m not in SCALAR_MEMORIES:
                        p += torch.eye(Dh, dtype=p.dtype, device=p.device)

    def memory_params(self) -> dict:
        """The core's ``params`` dict (the initial memory weights)."""
        return {m: tuple(None if n is None else getattr(self, n) for n in names)
                for m, names in self.memory_slots}

    def forward(self, x: torch.Tensor, state: Optional[TitansLayerState] = None,
                cu_seqlens: Optional[torch.Tensor] = None):
        checks.check_tensor("x", x, (None, None, self.dim), names="B, T, dim")
        if state is not None and not isinstance(state, TitansLayerState):
            raise ValueError(f"state must be None or a TitansLayerState, got {type(state).__name__}")
        B, T, _ = x.shape
        H, Dh = self.heads, self.head_dim
        h = self.norm(x)
        u = torch.cat([self.proj_x(h), self.proj_q(h)], dim=-1)
        u, conv_cache = causal_conv(u, self.conv_weight, None if state is None else state.conv, cu_seqlens)
        u = F.silu(u)
        xc = l2norm(u[..., :self.x_channels].reshape(B, T, H, -1))
        if self.bias_channel:                            # ‖x_c‖ = 1 with a constant last channel c
            c = self.bias_value
            xc = torch.cat([math.sqrt(1.0 - c * c) * xc, xc.new_full((B, T, H, 1), c)], dim=-1)
        qc = u[..., self.x_channels:].reshape(B, T, H, Dh)
        o, core_state = self_modifying_titans(
            xc, qc, self.memory_params(), initial_state=None if state is None else state.core,
            output_final_state=True, cu_seqlens=cu_seqlens, backend=self.backend, **self.core_options)
        y = self.out_norm(o).reshape(B, T, H * Dh) * F.silu(self.gate(h))
        return x + self.out(y), TitansLayerState(conv_cache, core_state)

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.core_options.items())
        return f"dim={self.dim}, heads={self.heads}, head_dim={self.head_dim}, {opts}, bias_channel={self.bias_channel}"
