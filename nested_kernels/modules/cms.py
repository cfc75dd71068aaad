"""Continuum Memory System (SPEC §4; Nested Learning Eq. 70–71): a chain of fast-weight MLP levels.

Level ℓ is one :func:`~nested_kernels.ops.fast_mlp.fast_mlp` with its own chunk size C^(ℓ): its
weights stay fixed for C^(ℓ) tokens and then take the learning-rate-weighted sum of that chunk's
inner gradients. y = level_k(… level_1(x)).

Decisions (the paper leaves these open):

* Meta-learned initial weights: each level owns ``nn.Parameter`` weights in nn.Linear
  orientation — (w_in [F,D], w_out [D,F]) for gelu/silu, (w_gate, w_up [F,D], w_down [D,F]) for
  swiglu — initialised like ``nn.Linear`` (uniform ±1/√fan_in). They are the weights of every
  sequence at its start; the per-sequence fast copies live in the state.
* Learning rate per level: η^(ℓ) = eta_init · softplus(ρ) / softplus(0) with a learnable scalar ρ
  (initialised 0, so η starts at eta_init and stays positive); ``learn_eta=False`` keeps the
  fixed float eta_init. The same η is used for every token.
* Inner objective. With ``teach`` (the paper's setting, where the update uses the outer loss'
  gradient, e.g. ∂L/∂y from a previous pass): g_t = teach_t, treated as data. ``teach`` is either
  one tensor [B,T,D], used by every level (for a residual chain ∂L/∂y_ℓ ≈ ∂L/∂y, the residual
  path's identity term), or a list with one tensor per level in execution order. Without
  ``teach`` (a standalone CMS) each level uses the local target "its own input": target_t = x_t of
  that level, inner loss ½‖y_t − x_t‖² — a reconstruction objective (for residual levels,
  y = x + MLP(x), this pulls the level's MLP branch towards contributing only what the outer loss,
  through the meta-learned W_0 and η, makes worthwhile).
* Fast-weight storage: ``weight_dtype`` (None: float32, or torch.bfloat16 to halve the state's
  weight memory) is passed to every level's ``fast_mlp`` (see its docstring for the rounding).
* Level order: ``order="fast_first"`` sorts levels by increasing chunk size (stable), "given"
  keeps the list order. ``CMSState.levels`` follows the execution order (``self.levels``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..core import checks
from ..ops.fast_mlp import FastMLPState, fast_mlp
from ..ops.fast_mlp.inputs import weight_dtype_name
from ..ops.fast_mlp.mlp import MLPS, weight_names, weight_shapes

ORDERS = ("fast_first", "given")
_SOFTPLUS0 = math.log(2.0)


@dataclasses.dataclass
class CMSState:
    """Streaming state of a :class:`CMS`: one :class:`FastMLPState` per level, in execution order."""
    levels: list

    def detach(self) -> "CMSState":
        return CMSState([s.detach() for s in self.levels])

    def clone(self) -> "CMSState":
        return CMSState([s.clone() for s in self.levels])

    def to(self, device) -> "CMSState":
        return CMSState([s.to(device) for s in self.levels])


class CMSLevel(nn.Module):
    """One level: a fast-weight MLP with meta-learned initial weights and learning rate."""

    def __init__(self, dim: int, hidden: int, chunk_size: int, eta_init: float, *, mlp: str = "gelu",
                 residual: bool = True, retention: float = 1.0, learn_eta: bool = True,
                 weight_dtype: Optional[torch.dtype] = None, backend: str = "auto", device=None, dtype=None):
        super().__init__()
        weight_dtype_name(weight_dtype)
        checks.check_positive_int("dim", dim)
        checks.check_positive_int("hidden", hidden)
        checks.check_positive_int("chunk_size", chunk_size)
        checks.check_option("mlp", mlp, MLPS)
        checks.check_scalar("eta_init", eta_init, low=0.0)
        checks.check_scalar("retention", retention)
        self.dim, self.hidden, self.chunk_size, self.eta_init = dim, hidden, chunk_size, float(eta_init)
        self.mlp, self.residual, self.retention, self.backend = mlp, bool(residual), float(retention), backend
        self.weight_dtype = weight_dtype
        self.weight_names = weight_names(mlp)
        for name, shape in zip(self.weight_names, weight_shapes(mlp, dim, hidden)):
            w = torch.empty(shape, device=device, dtype=dtype)
            bound = 1.0 / math.sqrt(shape[1])
            nn.init.uniform_(w, -bound, bound)
            self.register_parameter(name, nn.Parameter(w))
        self.learn_eta = bool(learn_eta)
        if self.learn_eta:
            self.eta_logit = nn.Parameter(torch.zeros((), device=device, dtype=dtype))

    @property
    def weights(self) -> tuple:
        return tuple(getattr(self, n) for n in self.weight_names)

    def eta(self) -> Union[torch.Tensor, float]:
        """η of this level: a 0-dim tensor (learnable) or the fixed float."""
        if not self.learn_eta:
            return self.eta_init
        return self.eta_init * F.softplus(self.eta_logit) / _SOFTPLUS0

    def forward(self, x: torch.Tensor, state: Optional[FastMLPState] = None,
                cu_seqlens: Optional[torch.Tensor] = None, teach: Optional[torch.Tensor] = None,
                output_final_state: bool = True):
        """(y [B,T,D], the level's FastMLPState, or None with ``output_final_state=False``: then
        the last complete chunk's update, which only the state would hold, is not computed)."""
        eta = self.eta()
        if isinstance(eta, torch.Tensor):
            eta = eta.expand(x.shape[0], x.shape[1])
        signal = dict(teach=teach) if teach is not None else dict(target=x)
        return fast_mlp(x, self.weights, eta, chunk_size=self.chunk_size, mlp=self.mlp,
                        residual=self.residual, retention=self.retention, initial_state=state,
                        output_final_state=output_final_state, cu_seqlens=cu_seqlens,
                        weight_dtype=self.weight_dtype,
                        backend=self.backend, **signal)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, hidden={self.hidden}, chunk_size={self.chunk_size}, "
                f"eta_init={self.eta_init}, mlp={self.mlp!r}, residual={self.residual}, "
                f"retention={self.retention}, learn_eta={self.learn_eta}"
                + (f", weight_dtype={self.weight_dtype}" if self.weight_dtype is not None else ""))


def _check_levels(levels) -> list:
    form = "a non-empty list of (chunk_size, eta_init) pairs"
    if not isinstance(levels, (list, tuple)) or not levels:
        raise ValueError(f"levels must be {form}, got {levels!r}")
    out = []
    for i, lv in enumerate(levels):
        if not isinstance(lv, (list, tuple)) or len(lv) != 2:
            raise ValueError(f"levels[{i}] must be a (chunk_size, eta_init) pair, got {lv!r}")
        checks.check_positive_int(f"levels[{i}] chunk_size", lv[0])
        checks.check_scalar(f"levels[{i}] eta_init", lv[1], low=0.0)
        out.append((int(lv[0]), float(lv[1])))
    return out


class CMS(nn.Module):
    """Chain of fast-weight MLP levels with different update frequencies (see module docstring).

    Args:
        dim: model width D. hidden: MLP hidden size F (the same for every level).
        levels: [(chunk_size, eta_init), ...], one fast_mlp level each.
        mlp: "gelu", "silu" or "swiglu". order: "fast_first" (sort by chunk size) or "given".
        residual: y_ℓ = x_ℓ + MLP(x_ℓ) per level. retention: the weights' retention factor.
        learn_eta: learnable per-level learning rate (else the fixed eta_init).
        weight_dtype: dtype of the per-sequence fast weights (None: float32; torch.bfloat16),
            passed to fast_mlp. backend: passed to fast_mlp.
    forward(x [B,T,D], state=None, cu_seqlens=None, teach=None, output_final_state=True)
        -> (y [B,T,D], CMSState, or None with output_final_state=False: training without
        streaming then skips each level's last update, which only the state holds).
    """

    def __init__(self, dim: int, hidden: int, levels: Sequence = ((16, 1e-2),), mlp: str = "gelu",
                 order: str = "fast_first", residual: bool = True, retention: float = 1.0,
                 learn_eta: bool = True, weight_dtype: Optional[torch.dtype] = None, backend: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        checks.check_option("order", order, ORDERS)
        config = _check_levels(levels)
        if order == "fast_first":
            config = sorted(config, key=lambda lv: lv[0])
        self.dim, self.hidden, self.mlp, self.order = dim, hidden, mlp, order
        self.level_config = config
        self.levels = nn.ModuleList(
            CMSLevel(dim, hidden, c, e, mlp=mlp, residual=residual, retention=retention,
                     learn_eta=learn_eta, weight_dtype=weight_dtype, backend=backend, device=device,
                     dtype=dtype)
            for c, e in config)

    def forward(self, x: torch.Tensor, state: Optional[CMSState] = None,
                cu_seqlens: Optional[torch.Tensor] = None,
                teach: Union[torch.Tensor, Sequence[torch.Tensor], None] = None,
                output_final_state: bool = True):
        n = len(self.levels)
        if state is not None and (not isinstance(state, CMSState) or len(state.levels) != n):
            raise ValueError(f"state must be None or a CMSState with {n} level states, got "
                             + (f"{len(state.levels)} level states" if isinstance(state, CMSState)
                                else type(state).__name__))
        if teach is None or isinstance(teach, torch.Tensor):
            teaches = [teach] * n
        elif isinstance(teach, (list, tuple)) and len(teach) == n:
            teaches = list(teach)
        else:
            raise ValueError(f"teach must be None, a tensor [B, T, D] or a list of {n} such tensors "
                             "(one per level, in execution order)")
        states = []
        for i, level in enumerate(self.levels):
            x, st = level(x, None if state is None else state.levels[i], cu_seqlens, teaches[i],
                          output_final_state)
            states.append(st)
        return x, (CMSState(states) if output_final_state else None)

    @classmethod
    def from_mlp(cls, module: nn.Module, chunk_size: int, eta: float, *, residual: bool = False,
                 retention: float = 1.0, learn_eta: bool = True, weight_dtype: Optional[torch.dtype] = None,
                 backend: str = "auto") -> "CMS":
        """A one-level CMS whose initial weights are copied from an existing MLP module.

        Accepted forms: a module whose children are Linear → GELU/SiLU → Linear (e.g.
        ``nn.Sequential``; Dropout/Identity children are skipped), or a Llama-style MLP with
        ``gate_proj``, ``up_proj``, ``down_proj`` Linear attributes (down(silu(gate x) ⊙ up x)).
        Linear layers must be bias-free. ``residual`` defaults to False so the level computes
        exactly the module's function until its first update (y = x + MLP(x) with True).
        """
        if all(hasattr(module, n) for n in ("gate_proj", "up_proj", "down_proj")):
            act = getattr(module, "act_fn", None)
            if act is not None and not (isinstance(act, nn.SiLU) or "silu" in type(act).__name__.lower()
                                        or "swish" in type(act).__name__.lower()):
                raise ValueError(f"module.act_fn must be SiLU for a swiglu level, got {type(act).__name__}")
            linears, mlp = [module.gate_proj, module.up_proj, module.down_proj], "swiglu"
        else:
            kids = [m for m in module.children() if not isinstance(m, (nn.Dropout, nn.Identity))]
            if len(kids) != 3 or not isinstance(kids[0], nn.Linear) or not isinstance(kids[2], nn.Linear):
                raise ValueError("module must be Linear → GELU/SiLU → Linear (its children) or have "
                                 f"gate_proj/up_proj/down_proj, got children {[type(k).__name__ for k in kids]}")
            act = kids[1]
            if isinstance(act, nn.GELU):
                if act.approximate != "none":
                    raise ValueError("module's GELU must be exact (approximate='none'); fast_mlp's gelu "
                                     f"is the erf form, got approximate={act.approximate!r}")
                mlp = "gelu"
            elif isinstance(act, nn.SiLU):
                mlp = "silu"
            else:
                raise ValueError(f"module's activation must be nn.GELU or nn.SiLU, got {type(act).__name__}")
            linears = [kids[0], kids[2]]
        for i, lin in enumerate(linears):
            if not isinstance(lin, nn.Linear):
                raise ValueError(f"module's layer {i} must be nn.Linear, got {type(lin).__name__}")
            if lin.bias is not None:
                raise ValueError(f"module's Linear layers must be bias-free (bias=False); layer {i} "
                                 f"({lin}) has a bias")
        dim, hidden = linears[0].in_features, linears[0].out_features
        w = linears[0].weight
        cms = cls(dim, hidden, [(chunk_size, eta)], mlp=mlp, order="given", residual=residual,
                  retention=retention, learn_eta=learn_eta, weight_dtype=weight_dtype, backend=backend,
                  device=w.device, dtype=w.dtype)
        level = cms.levels[0]
        with torch.no_grad():
            for name, lin in zip(level.weight_names, linears):
                param = getattr(level, name)
                if param.shape != lin.weight.shape:
                    raise ValueError(f"module's {name} has shape {tuple(lin.weight.shape)}, expected "
                                     f"{tuple(param.shape)}")
                param.copy_(lin.weight)
        return cms
