"""HOPE (Nested Learning Eq. 94–97): self-modifying Titans followed by a Continuum Memory System.

``HopeBlock`` = :class:`SelfModifyingTitans` (its own pre-norm and residual) then a pre-norm CMS
chain with a residual:

    h = SelfModifyingTitans(x)                      (x + titans branch)
    n = RMSNorm(h)
    y = h + (CMS(n) − n)

The CMS levels are residual (level ℓ computes x_ℓ = x_{ℓ−1} + MLP_ℓ(x_{ℓ−1}), x_0 = n), so
CMS(n) − n is the sum of what the levels add: at initialisation a small MLP branch, as in a
pre-norm transformer block, and the residual stream never receives a second copy of n. Without
``teach`` each CMS level learns in context with the local target "its own input" (see
``nested_kernels.modules.cms``). ``HopeLM`` stacks blocks between a token embedding and a tied
output head. Every forward takes and returns a state, so a stream processed in pieces equals one
call (and generation can feed one token at a time).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import torch
from torch import nn

from ..core import checks
from .titans import SelfModifyingTitans, TitansLayerState


def default_cms_levels(dim: int, chunk_sizes: Sequence[int] = (16, 256), scale: float = 1.0) -> list:
    """CMS levels [(C, scale/(C·dim)), ...]. A level's update sums C inner gradients of size
    ~‖x‖² = dim (its input is RMS-normalised), so η·C·dim ≲ 1 keeps the step stable; measured:
    η = 1e-2 with C = 64, dim = 256 turns the CMS output into NaN within one sequence of 512 tokens."""
    return [(int(c), scale / (c * dim)) for c in chunk_sizes]


@dataclasses.dataclass
class HopeBlockState:
    """Streaming state of a :class:`HopeBlock`: the Titans layer's and the CMS's."""
    titans: TitansLayerState
    cms: object                                        # nested_kernels.modules.cms.CMSState

    def detach(self) -> "HopeBlockState":
        return HopeBlockState(self.titans.detach(), self.cms.detach())

    def clone(self) -> "HopeBlockState":
        return HopeBlockState(self.titans.clone(), self.cms.clone())

    def to(self, device) -> "HopeBlockState":
        return HopeBlockState(self.titans.to(device), self.cms.to(device))


@dataclasses.dataclass
class HopeLMState:
    """Streaming state of a :class:`HopeLM`: one :class:`HopeBlockState` per block."""
    blocks: list

    def detach(self) -> "HopeLMState":
        return HopeLMState([b.detach() for b in self.blocks])

    def clone(self) -> "HopeLMState":
        return HopeLMState([b.clone() for b in self.blocks])

    def to(self, device) -> "HopeLMState":
        return HopeLMState([b.to(device) for b in self.blocks])


class HopeBlock(nn.Module):
    """SelfModifyingTitans, then a pre-norm CMS chain with residual (see the module docstring).

    Args:
        dim, heads: model width and heads of the Titans layer.
        cms_levels: [(chunk_size, eta_init), ...] of the CMS (``CMS(levels=...)``); default
            :func:`default_cms_levels` (chunks 16 and 256 with η = 1/(C·dim)).
        cms_hidden: hidden size of every CMS level (default 4·dim). cms_mlp: "gelu", "silu",
            "swiglu". cms_backend: backend of the CMS levels. cms_weight_dtype: storage of the CMS
            fast weights (None: float32; torch.bfloat16 halves them, ``CMS(weight_dtype=...)``).
        **titans_kwargs: passed to :class:`SelfModifyingTitans` (head_dim, memory, chunk sizes,
            eta_scale, use_alpha, mu, read, activation, backend, ...).
    forward(x [B,T,dim], state=None, cu_seqlens=None) -> (y, HopeBlockState).
    """

    def __init__(self, dim: int, heads: int, cms_levels: Optional[Sequence] = None, *,
                 cms_hidden: Optional[int] = None, cms_mlp: str = "gelu", cms_backend: str = "auto",
                 cms_weight_dtype: Optional[torch.dtype] = None, norm_eps: float = 1e-6, device=None, dtype=None, **titans_kwargs):
        super().__init__()
        from .cms import CMS                            # imported on use: the CMS module is optional here
        self.titans = SelfModifyingTitans(dim, heads, norm_eps=norm_eps, device=device, dtype=dtype,
                                          **titans_kwargs)
        self.norm = nn.RMSNorm(dim, eps=norm_eps, device=device, dtype=dtype)
        levels = default_cms_levels(dim) if cms_levels is None else list(cms_levels)
        self.cms = CMS(dim, 4 * dim if cms_hidden is None else cms_hidden, levels=levels,
                       mlp=cms_mlp, residual=True, weight_dtype=cms_weight_dtype, backend=cms_backend,
                       device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, state: Optional[HopeBlockState] = None,
                cu_seqlens: Optional[torch.Tensor] = None):
        if state is not None and not isinstance(state, HopeBlockState):
            raise ValueError(f"state must be None or a HopeBlockState, got {type(state).__name__}")
        h, titans_state = self.titans(x, None if state is None else state.titans, cu_seqlens)
        n = self.norm(h)
        c, cms_state = self.cms(n, None if state is None else state.cms, cu_seqlens)
        return h + (c - n), HopeBlockState(titans_state, cms_state)


class HopeLM(nn.Module):
    """A small HOPE language model: embedding → ``depth`` HopeBlocks → RMSNorm → tied output head.

    Args:
        vocab, dim, depth, heads: sizes. cms_levels, and every other keyword: passed to
        :class:`HopeBlock` (and through it to :class:`SelfModifyingTitans`).
    forward(tokens [B,T] int, state=None, cu_seqlens=None) -> (logits [B,T,vocab], HopeLMState).
    """

    def __init__(self, vocab: int, dim: int, depth: int, heads: int,
                 cms_levels: Optional[Sequence] = None, *, norm_eps: float = 1e-6,
                 device=None, dtype=None, **block_kwargs):
        super().__init__()
        for name, value in (("vocab", vocab), ("dim", dim), ("depth", depth), ("heads", heads)):
            checks.check_positive_int(name, value)
        self.vocab, self.dim = vocab, dim
        self.embed = nn.Embedding(vocab, dim, device=device, dtype=dtype)
        nn.init.normal_(self.embed.weight, 0.0, dim ** -0.5)
        self.blocks = nn.ModuleList(HopeBlock(dim, heads, cms_levels, norm_eps=norm_eps, device=device,
                                              dtype=dtype, **block_kwargs) for _ in range(depth))
        self.norm = nn.RMSNorm(dim, eps=norm_eps, device=device, dtype=dtype)

    def forward(self, tokens: torch.Tensor, state: Optional[HopeLMState] = None,
                cu_seqlens: Optional[torch.Tensor] = None):
        checks.check_tensor("tokens", tokens, (None, None), names="B, T", dtypes=checks.INDEX_DTYPES)
        if state is not None and (not isinstance(state, HopeLMState) or len(state.blocks) != len(self.blocks)):
            raise ValueError(f"state must be None or a HopeLMState with {len(self.blocks)} block states")
        x = self.embed(tokens)
        states = []
        for i, block in enumerate(self.blocks):
            x, st = block(x, None if state is None else state.blocks[i], cu_seqlens)
            states.append(st)
        logits = self.norm(x) @ self.embed.weight.t()
        return logits, HopeLMState(states)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, steps: int, *, temperature: float = 1.0,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Sample ``steps`` tokens after ``prompt`` [B, T0], feeding one token at a time through the
        streaming state. Returns [B, T0 + steps]."""
        logits, state = self(prompt)
        out = [prompt]
        for _ in range(steps):
            last = logits[:, -1] / max(temperature, 1e-6)
            nxt = torch.multinomial(torch.softmax(last.float(), -1), 1, generator=generator)
            out.append(nxt)
            logits, state = self(nxt, state)
        return torch.cat(out, dim=1)
