"""Realistic random inputs and the verification cases of every op (shared by ``verify`` and ``bench/``).

A :class:`Case` names an op, its dimensions, the input dtype, the op's keyword options and how the
inputs are drawn (which optional gates exist, an initial state, variable lengths). From a case,
:func:`make_inputs` draws fresh random tensors on a device and :func:`call_op` calls the op's public
function (SPEC signature plus ``backend=``) and flattens what it returns into named tensors.

Inputs are never zeros and stay inside the range where SPEC §7 promises finite results:
‖k‖ = 1 (normalised), η = 0.1·U(0, 1) (fast_mlp: divided by D, so that a chunk's update moves the
MLP by O(η)), α = exp(log_alpha) ∈ (0.9, 1], β = 0.1·U(0, 1) ≤ α (or β = η for HOPE's DGD),
μ ∈ [0, 0.9). Initial states are float32 (float64 when the case is upcast), everything else has
the case's dtype unless the case says ``gate_dtype``.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math
from typing import Any, Callable, Optional

import torch

OPS = ("linear_memory", "mlp_memory", "fast_mlp", "self_modifying_titans")
STEP_OPS = ("linear_memory_step", "mlp_memory_step", "fast_mlp_step")   # decode steps (SPEC §6)

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}


@dataclasses.dataclass
class Case:
    """One input configuration of an op.

    dims:    sizes, e.g. dict(B=2, T=37, H=2, K=16, V=16) (linear_memory); for varlen B == 1 and T
             is the sum of ``inputs["lengths"]``.
    kwargs:  keyword options of the op (chunk_size, target, read, ...), passed as given.
    inputs:  how to draw the inputs: ``gates`` (tuple of optional gates present), ``beta``
             ("eta": pass η as β, HOPE's DGD), ``initial_state`` (bool), ``lengths`` (varlen: one
             length per packed sequence), ``gate_dtype``, op-specific extras.
    label:   short name of what the case exercises.
    """
    op: str
    dims: dict
    dtype: torch.dtype
    kwargs: dict = dataclasses.field(default_factory=dict)
    inputs: dict = dataclasses.field(default_factory=dict)
    label: str = ""

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, str(self.dtype).replace("torch.", ""))

    def shape_str(self) -> str:
        """Compact dimensions, e.g. ``B2 T37 H2 K16 V16`` or ``N3[5,0,32] H2 K16 V16``."""
        lengths = self.inputs.get("lengths")
        parts = []
        for name, size in self.dims.items():
            if lengths is not None and name == "B":
                continue
            if lengths is not None and name == "T":
                parts.append(f"N{len(lengths)}[{','.join(map(str, lengths))}]")
            else:
                parts.append(f"{name}{size}")
        return " ".join(parts)

    def options_str(self) -> str:
        """Compact options, e.g. ``C16 self chunk +a+b=eta+mu init``."""
        kw = self.kwargs
        parts = []
        for key, short in (("chunk_size", "C"), ("chunk_size_other", "Co"), ("chunk_size_memory", "Cm")):
            if key in kw:
                parts.append(f"{short}{kw[key]}")
        for key in ("target", "read", "activation", "mlp", "memory"):
            if key in kw and kw[key] is not None and not isinstance(kw[key], torch.Tensor):
                parts.append(str(kw[key]))
        if kw.get("residual") is False:
            parts.append("nores")
        if kw.get("scale", 1.0) != 1.0:
            parts.append(f"scale{kw['scale']:g}")
        if "retention" in kw and kw["retention"] != 1.0:
            parts.append(f"ret{kw['retention']:g}")
        if kw.get("weight_dtype") is not None:
            parts.append("w" + str(kw["weight_dtype"]).replace("torch.", "").replace("bfloat16", "bf16"))
        if "mu" in kw and kw["mu"] is not None:
            parts.append(f"mu{kw['mu']:g}")
        if kw.get("use_alpha") is False:
            parts.append("noalpha")
        if "eta_scale" in kw:
            parts.append(f"es{kw['eta_scale']:.3g}")
        gates = self.inputs.get("gates")
        if gates:
            names = {"log_alpha": "a", "beta": "b=eta" if self.inputs.get("beta") == "eta" else "b", "mu": "mu"}
            parts.append("+" + "+".join(names.get(g, g) for g in gates))
        for key in ("signal", "eta_kind"):
            if key in self.inputs:
                parts.append(str(self.inputs[key]))
        if self.inputs.get("initial_state"):
            parts.append("init")
        if self.inputs.get("gate_dtype") is not None:
            parts.append(f"gates:{DTYPE_NAMES.get(self.inputs['gate_dtype'])}")
        return " ".join(parts)

    def __str__(self) -> str:
        return f"{self.shape_str()} {self.options_str()}".strip()


# ---------------------------------------------------------------------------------------------
# Discovery of the ops
# ---------------------------------------------------------------------------------------------
def load_op(op: str) -> tuple[Callable, dict]:
    """(public function, BACKENDS dict) of ``op``; ImportError/AttributeError when it is missing."""
    api = importlib.import_module(f"nested_kernels.ops.{op}.api")
    return getattr(api, op), getattr(api, "BACKENDS")


def load_step(op: str) -> tuple[Callable, dict]:
    """(public step function, STEP_BACKENDS dict) of a decode step ``op`` = "<full op>_step"."""
    api = importlib.import_module(f"nested_kernels.ops.{step_base(op)}.api")
    return getattr(api, op), getattr(api, "STEP_BACKENDS")


def step_base(op: str) -> str:
    """The full op whose decode step ``op`` is (``linear_memory_step`` → ``linear_memory``)."""
    return op[:-len("_step")]


def op_status(op: str) -> Optional[str]:
    """None when ``op`` (an op or a decode step) can be imported, else why not (one line)."""
    try:
        load_step(op) if op in STEP_OPS else load_op(op)
    except ModuleNotFoundError as exc:
        base = step_base(op) if op in STEP_OPS else op
        if exc.name and exc.name.startswith(f"nested_kernels.ops.{base}"):
            return "not available (module missing)"
        return f"not available (import failed: {exc})"
    except Exception as exc:  # noqa: BLE001 - report any import error as "not available"
        return f"not available ({type(exc).__name__}: {exc})"
    return None


# ---------------------------------------------------------------------------------------------
# Random draws
# ---------------------------------------------------------------------------------------------
class _Draw:
    """Seeded random tensors on a device (a generator per device, so results repeat per seed)."""

    def __init__(self, device, seed: int):
        self.device = torch.device(device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)

    def randn(self, *shape, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
        t = torch.randn(*shape, generator=self.gen, device=self.device, dtype=torch.float32)
        return (t * scale).to(dtype)

    def rand(self, *shape, low: float = 0.0, high: float = 1.0, dtype=torch.float32) -> torch.Tensor:
        t = torch.rand(*shape, generator=self.gen, device=self.device, dtype=torch.float32)
        return (low + (high - low) * t).to(dtype)

    def unit(self, *shape, dtype=torch.float32) -> torch.Tensor:
        """Random directions: ‖x‖₂ = 1 along the last dimension."""
        t = torch.randn(*shape, generator=self.gen, device=self.device, dtype=torch.float32)
        return torch.nn.functional.normalize(t, dim=-1).to(dtype)


def _cu_seqlens(lengths, device) -> torch.Tensor:
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    return torch.tensor(offsets, dtype=torch.int32, device=device)


def _batch_time(case: Case) -> tuple[int, int, int]:
    """(B, T, N): batch rows, length and number of sequences (varlen: B = 1, T = Σ lengths)."""
    lengths = case.inputs.get("lengths")
    if lengths is not None:
        return 1, sum(lengths), len(lengths)
    return case.dims["B"], case.dims["T"], case.dims["B"]


def _gates(d: _Draw, case: Case, shape, out: dict) -> None:
    """η, and the optional log_alpha, β, μ of ``case.inputs['gates']``, shape [B,T,H] or [B,T]."""
    gdt = case.inputs.get("gate_dtype") or case.dtype
    gates = case.inputs.get("gates", ())
    out["eta"] = d.rand(*shape, high=0.1, dtype=gdt)
    out["log_alpha"] = d.rand(*shape, low=0.9, high=1.0).log().to(gdt) if "log_alpha" in gates else None
    if "beta" in gates and case.inputs.get("beta") != "eta":
        out["beta"] = d.rand(*shape, high=0.1, dtype=gdt)
    else:
        out["beta"] = None
    out["mu"] = d.rand(*shape, high=0.9, dtype=gdt) if "mu" in gates else None


def _beta(case: Case, t: dict):
    """β as the op receives it: η itself for HOPE's DGD (β = η), else the drawn tensor or None."""
    if case.inputs.get("beta") == "eta" and "beta" in case.inputs.get("gates", ()):
        return t["eta"]
    return t.get("beta")


# ---------------------------------------------------------------------------------------------
# linear_memory (SPEC §2)
# ---------------------------------------------------------------------------------------------
def _make_linear(case: Case, d: _Draw) -> dict:
    B, T, N = _batch_time(case)
    H, K = case.dims["H"], case.dims["K"]
    V = case.dims.get("V", K)
    dt = case.dtype
    out = {"q": d.randn(B, T, H, K, dtype=dt), "k": d.unit(B, T, H, K, dtype=dt),
           "v": d.randn(B, T, H, K if case.kwargs.get("target") == "self" else V, dtype=dt)}
    _gates(d, case, (B, T, H), out)
    if case.inputs.get("initial_state"):
        out["M0"] = d.randn(N, H, K, V, scale=K ** -0.5)
        out["S0"] = d.randn(N, H, K, V, scale=0.1 * K ** -0.5) if out["mu"] is not None else None
    return out


def _call_linear(fn, case: Case, t: dict, backend: str):
    init = (t["M0"], t.get("S0")) if t.get("M0") is not None else None
    kw = dict(case.kwargs)
    kw.setdefault("output_final_state", True)
    return fn(t["q"], t["k"], t["v"], t["eta"], t.get("log_alpha"), _beta(case, t), t.get("mu"),
              initial_state=init, cu_seqlens=t.get("cu_seqlens"), backend=backend, **kw)


def _linear_cases(device_type: str, quick: bool) -> list[Case]:
    f32, bf16, f16 = torch.float32, torch.bfloat16, torch.float16
    allg = ("log_alpha", "beta", "mu")
    L = lambda dims, dtype=f32, label="", inputs=None, **kw: Case(  # noqa: E731
        "linear_memory", dims, dtype, kw, inputs or {}, label)
    if device_type != "cuda":
        d = dict(B=2, T=37, H=2, K=16, V=16)
        cases = [
            L(d, chunk_size=16, label="titans: retention + momentum, initial state",
              inputs=dict(gates=("log_alpha", "mu"), initial_state=True)),
            L(d, chunk_size=16, target="self", read="chunk", label="HOPE DGD: beta = eta, self target",
              inputs=dict(gates=("log_alpha", "beta"), beta="eta", initial_state=True)),
            L(dict(B=2, T=20, H=2, K=16, V=16), chunk_size=1, label="momentum delta rule (C = 1)",
              inputs=dict(gates=("mu",))),
            L(dict(B=2, T=20, H=2, K=16, V=32), chunk_size=1, read="before",
              label="delta rule with decay, K != V", inputs=dict(gates=("log_alpha",))),
            L(dict(B=1, T=38, H=2, K=16, V=16), chunk_size=16, label="varlen with an empty sequence",
              inputs=dict(gates=allg, lengths=(5, 0, 17, 16), initial_state=True)),
            L(dict(B=2, T=1, H=2, K=16, V=16), chunk_size=16, label="T = 1", inputs=dict(gates=allg)),
            L(dict(B=2, T=20, H=2, K=16, V=16), chunk_size=32, label="one mini-batch GD step (C >= L)"),
            L(d, bf16, chunk_size=16, label="all gates, bf16", inputs=dict(gates=allg, initial_state=True)),
        ]
        if not quick:
            cases += [
                L(dict(B=2, T=65, H=2, K=32, V=32), chunk_size=64, read="before", scale=0.5,
                  label="T = C + 1", inputs=dict(gates=allg)),
                L(dict(B=2, T=37, H=2, K=16, V=16), chunk_size=16, target="self", read="after",
                  label="self target, momentum", inputs=dict(gates=("mu",), initial_state=True)),
                L(d, f16, chunk_size=16, label="all gates, fp16", inputs=dict(gates=allg)),
                L(d, bf16, chunk_size=1, label="C = 1 all gates, bf16 inputs with fp32 gates",
                  inputs=dict(gates=allg, gate_dtype=torch.float32)),
                L(dict(B=2, T=20, H=2, K=16, V=16), chunk_size=1, target="self", read="after",
                  label="C = 1 self target (2n×2n system), all gates", inputs=dict(gates=allg, initial_state=True)),
            ]
        return cases
    H = 4
    lengths = (1, 63, 65, 300, 0, 571)
    cases = [
        L(dict(B=2, T=1000, H=H, K=128, V=128), bf16, chunk_size=64, label="all gates (issue config)",
          inputs=dict(gates=allg, initial_state=True)),
        L(dict(B=2, T=1000, H=H, K=128, V=128), bf16, chunk_size=1, label="momentum delta rule (C = 1)",
          inputs=dict(gates=("mu",))),
        L(dict(B=2, T=1000, H=H, K=64, V=64), f32, chunk_size=16, target="self", read="chunk",
          label="HOPE DGD: beta = eta, self target",
          inputs=dict(gates=("log_alpha", "beta"), beta="eta", initial_state=True)),
        L(dict(B=1, T=1000, H=H, K=64, V=64), bf16, chunk_size=64, label="varlen",
          inputs=dict(gates=allg, lengths=lengths, initial_state=True)),
        L(dict(B=2, T=65, H=H, K=128, V=128), f32, chunk_size=64, read="before", label="T = C + 1",
          inputs=dict(gates=allg)),
        L(dict(B=2, T=1000, H=H, K=128, V=128), bf16, chunk_size=64, label="eta only (plain tiles)",
          inputs=dict(initial_state=True)),
        L(dict(B=1, T=1000, H=H, K=64, V=64), f16, chunk_size=32, target="self", read="before",
          label="decay, self target, varlen (plain tiles)",
          inputs=dict(gates=("log_alpha",), lengths=lengths, initial_state=True)),
    ]
    if not quick:
        cases += [
            L(dict(B=2, T=1, H=H, K=64, V=64), bf16, chunk_size=64, label="T = 1", inputs=dict(gates=allg)),
            L(dict(B=2, T=63, H=H, K=64, V=64), f32, chunk_size=64, label="T = C - 1", inputs=dict(gates=allg)),
            L(dict(B=2, T=1000, H=H, K=128, V=128), f32, chunk_size=64, label="all gates, fp32",
              inputs=dict(gates=allg, initial_state=True)),
            L(dict(B=2, T=1000, H=H, K=64, V=128), bf16, chunk_size=1, read="before",
              label="delta rule with decay, K != V", inputs=dict(gates=("log_alpha",))),
            L(dict(B=2, T=1000, H=H, K=128, V=128), f16, chunk_size=16, target="self",
              label="self target, all gates, fp16", inputs=dict(gates=allg, initial_state=True)),
            L(dict(B=2, T=1000, H=H, K=128, V=128), bf16, chunk_size=16, target="self",
              label="self target, all gates, bf16", inputs=dict(gates=allg, initial_state=True)),
            L(dict(B=1, T=1000, H=H, K=64, V=64), bf16, chunk_size=1, label="varlen, C = 1",
              inputs=dict(gates=allg, lengths=lengths, gate_dtype=torch.float32)),
            # self targets at C = 1: the memory decays under α (max |M| ≈ 2e-10 after 500 tokens), so
            # short sequences keep the final state meaningful
            L(dict(B=2, T=100, H=H, K=128, V=128), bf16, chunk_size=1, target="self", read="before",
              label="C = 1 self target (2n×2n system), all gates", inputs=dict(gates=allg, initial_state=True)),
            L(dict(B=1, T=200, H=H, K=64, V=64), f32, chunk_size=1, target="self", label="C = 1 self target, varlen",
              inputs=dict(gates=("log_alpha", "beta"), lengths=(1, 63, 0, 136), initial_state=True)),
            L(dict(B=2, T=500, H=H, K=64, V=64), f32, chunk_size=16, scale=0.125,
              label="titans (no beta), scale", inputs=dict(gates=("log_alpha", "mu"), initial_state=True)),
            L(dict(B=2, T=1000, H=H, K=64, V=128), f32, chunk_size=64, read="chunk",
              label="decay, K != V, chunk read (plain tiles)", inputs=dict(gates=("log_alpha",), initial_state=True)),
        ]
    return cases


# ---------------------------------------------------------------------------------------------
# mlp_memory (SPEC §3)
# ---------------------------------------------------------------------------------------------
def _make_mlp(case: Case, d: _Draw) -> dict:
    B, T, N = _batch_time(case)
    H, K, F = case.dims["H"], case.dims["K"], case.dims["F"]
    V = case.dims.get("V", K)
    dt = case.dtype
    # with target="self" v is an input of the MLP, like k: unit-norm (random-size inputs make the
    # self-generated targets M_s(v) grow chunk after chunk and overflow at T = 1000)
    self_target = case.kwargs.get("target") == "self"
    out = {"q": d.randn(B, T, H, K, dtype=dt), "k": d.unit(B, T, H, K, dtype=dt),
           "v": d.unit(B, T, H, K, dtype=dt) if self_target else d.randn(B, T, H, V, dtype=dt),
           "w1": d.randn(H, V, F, scale=F ** -0.5, dtype=dt), "w2": d.randn(H, F, K, scale=K ** -0.5 * 4, dtype=dt)}
    _gates(d, case, (B, T, H), out)
    if case.inputs.get("initial_state"):
        out["W1_0"] = d.randn(N, H, V, F, scale=F ** -0.5)
        out["W2_0"] = d.randn(N, H, F, K, scale=K ** -0.5 * 4)
        if out["mu"] is not None:
            out["S1_0"] = d.randn(N, H, V, F, scale=0.1 * F ** -0.5)
            out["S2_0"] = d.randn(N, H, F, K, scale=0.1 * K ** -0.5)
    return out


def _call_mlp(fn, case: Case, t: dict, backend: str):
    init = None
    if t.get("W1_0") is not None:
        init = (t["W1_0"], t["W2_0"], t.get("S1_0"), t.get("S2_0"))
    kw = dict(case.kwargs)
    kw.setdefault("output_final_state", True)
    return fn(t["q"], t["k"], t["v"], t["eta"], t["w1"], t["w2"], t.get("log_alpha"), _beta(case, t),
              t.get("mu"), initial_state=init, cu_seqlens=t.get("cu_seqlens"), backend=backend, **kw)


def _mlp_cases(device_type: str, quick: bool) -> list[Case]:
    f32, bf16 = torch.float32, torch.bfloat16
    allg = ("log_alpha", "beta", "mu")
    M = lambda dims, dtype=f32, label="", inputs=None, **kw: Case(  # noqa: E731
        "mlp_memory", dims, dtype, kw, inputs or {}, label)
    if device_type != "cuda":
        d = dict(B=2, T=37, H=2, K=32, V=32, F=64)
        cases = [
            M(d, chunk_size=16, label="gelu, residual, all gates, initial state",
              inputs=dict(gates=allg, initial_state=True)),
            M(d, chunk_size=16, target="self", read="chunk", activation="silu",
              label="HOPE: silu, self target, beta = eta", inputs=dict(gates=("log_alpha", "beta"), beta="eta")),
            M(dict(B=2, T=37, H=2, K=32, V=16, F=32), chunk_size=16, residual=False, read="before",
              label="no residual, K != V", inputs=dict(gates=("mu",))),
            M(dict(B=1, T=38, H=2, K=32, V=32, F=64), chunk_size=16, label="varlen with an empty sequence",
              inputs=dict(gates=allg, lengths=(5, 0, 17, 16))),
            M(dict(B=2, T=1, H=2, K=32, V=32, F=64), chunk_size=16, label="T = 1", inputs=dict(gates=allg)),
            M(d, bf16, chunk_size=16, label="all gates, bf16", inputs=dict(gates=allg)),
        ]
        if not quick:
            cases += [
                M(dict(B=2, T=20, H=2, K=32, V=32, F=32), chunk_size=32, label="one mini-batch GD step (C >= L)"),
                M(dict(B=2, T=33, H=2, K=32, V=32, F=128), chunk_size=32, read="before", scale=0.5,
                  label="F = 4K, T = C + 1", inputs=dict(gates=allg)),
            ]
        return cases
    H = 4
    cases = [
        M(dict(B=2, T=1000, H=H, K=64, V=64, F=256), bf16, chunk_size=64, label="issue config: all gates",
          inputs=dict(gates=allg, initial_state=True)),
        M(dict(B=2, T=1000, H=H, K=128, V=128, F=256), f32, chunk_size=16, target="self", read="chunk",
          activation="silu", label="HOPE: silu, self target, beta = eta",
          inputs=dict(gates=("log_alpha", "beta"), beta="eta")),
        M(dict(B=1, T=1000, H=H, K=64, V=64, F=128), bf16, chunk_size=64, label="varlen",
          inputs=dict(gates=allg, lengths=(1, 63, 65, 300, 0, 571))),
        M(dict(B=2, T=65, H=H, K=64, V=64, F=64), f32, chunk_size=64, read="before", label="T = C + 1",
          inputs=dict(gates=allg)),
    ]
    if not quick:
        cases += [
            M(dict(B=2, T=63, H=H, K=32, V=32, F=128), bf16, chunk_size=32, label="T = 63", inputs=dict(gates=allg)),
            M(dict(B=2, T=1, H=H, K=64, V=64, F=256), bf16, chunk_size=64, label="T = 1", inputs=dict(gates=allg)),
            M(dict(B=2, T=1000, H=H, K=128, V=64, F=512), bf16, chunk_size=128, residual=False,
              label="no residual, K != V, F = 4K", inputs=dict(gates=("log_alpha", "mu"), initial_state=True)),
        ]
    return cases


# ---------------------------------------------------------------------------------------------
# fast_mlp (SPEC §4)
# ---------------------------------------------------------------------------------------------
def fast_mlp_hidden(D: int, mlp: str) -> int:
    """SPEC §4's F for swiglu (8D/3 rounded up to a multiple of 64), else 4D."""
    return 64 * math.ceil(8 * D / 3 / 64) if mlp == "swiglu" else 4 * D


def _make_fast(case: Case, d: _Draw) -> dict:
    B, T, N = _batch_time(case)
    D, F = case.dims["D"], case.dims["F"]
    dt = case.dtype
    mlp = case.kwargs.get("mlp", "gelu")
    out = {"x": d.randn(B, T, D, dtype=dt)}
    if mlp == "swiglu":
        out["w_gate"] = d.randn(F, D, scale=D ** -0.5, dtype=dt)
        out["w_up"] = d.randn(F, D, scale=D ** -0.5, dtype=dt)
        out["w_down"] = d.randn(D, F, scale=F ** -0.5, dtype=dt)
    else:
        out["w_in"] = d.randn(F, D, scale=D ** -0.5, dtype=dt)
        out["w_out"] = d.randn(D, F, scale=F ** -0.5, dtype=dt)
    eta_kind = case.inputs.get("eta_kind", "tensor")
    eta_max = 0.1 / D
    out["eta"] = d.rand(B, T, high=eta_max, dtype=case.inputs.get("gate_dtype") or dt) if eta_kind == "tensor" else None
    signal = case.inputs.get("signal", "target")
    out["target"] = d.randn(B, T, D, dtype=dt) if signal == "target" else None
    out["teach"] = d.randn(B, T, D, scale=0.1, dtype=dt) if signal == "teach" else None
    return out


def _call_fast(fn, case: Case, t: dict, backend: str):
    mlp = case.kwargs.get("mlp", "gelu")
    weights = (t["w_gate"], t["w_up"], t["w_down"]) if mlp == "swiglu" else (t["w_in"], t["w_out"])
    eta = t["eta"] if t.get("eta") is not None else 0.05 / case.dims["D"]
    kw = dict(case.kwargs)
    kw.setdefault("output_final_state", True)
    return fn(t["x"], weights, eta, target=t.get("target"), teach=t.get("teach"),
              cu_seqlens=t.get("cu_seqlens"), backend=backend, **kw)


def _fast_cases(device_type: str, quick: bool) -> list[Case]:
    f32, bf16 = torch.float32, torch.bfloat16
    Fm = lambda dims, dtype=f32, label="", inputs=None, **kw: Case(  # noqa: E731
        "fast_mlp", dims, dtype, kw, inputs or {}, label)
    if device_type != "cuda":
        cases = [
            Fm(dict(B=2, T=37, D=64, F=128), chunk_size=16, mlp="gelu", label="gelu, target, residual",
               inputs=dict(signal="target")),
            Fm(dict(B=2, T=40, D=64, F=128), chunk_size=16, mlp="silu", residual=False, retention=0.99,
               label="silu, teach, no residual, retention", inputs=dict(signal="teach")),
            Fm(dict(B=2, T=37, D=64, F=192), chunk_size=16, mlp="swiglu", label="swiglu, target",
               inputs=dict(signal="target")),
            Fm(dict(B=1, T=70, D=64, F=128), chunk_size=16, mlp="gelu", label="varlen with an empty sequence",
               inputs=dict(signal="target", lengths=(16, 0, 21, 33))),
            Fm(dict(B=2, T=37, D=64, F=128), bf16, chunk_size=16, mlp="gelu", label="bf16",
               inputs=dict(signal="target")),
            Fm(dict(B=2, T=37, D=64, F=128), bf16, chunk_size=16, mlp="swiglu", weight_dtype=bf16,
               label="bf16 fast weights", inputs=dict(signal="target")),
        ]
        if not quick:
            cases += [
                Fm(dict(B=2, T=1, D=64, F=128), chunk_size=16, label="T = 1", inputs=dict(signal="target")),
                Fm(dict(B=2, T=48, D=64, F=128), chunk_size=16, mlp="swiglu", label="float eta, teach",
                   inputs=dict(signal="teach", eta_kind="float")),
            ]
        return cases
    cases = [
        Fm(dict(B=2, T=1000, D=512, F=2048), bf16, chunk_size=64, mlp="gelu", label="gelu F = 4D",
           inputs=dict(signal="target")),
        Fm(dict(B=2, T=1000, D=512, F=fast_mlp_hidden(512, "swiglu")), bf16, chunk_size=512, mlp="swiglu",
           label="swiglu F = 8D/3", inputs=dict(signal="teach")),
        Fm(dict(B=1, T=1000, D=512, F=1024), bf16, chunk_size=64, mlp="silu", retention=0.99,
           label="varlen, silu, retention", inputs=dict(signal="target", lengths=(1, 63, 65, 300, 0, 571))),
        Fm(dict(B=2, T=65, D=512, F=1024), f32, chunk_size=16, mlp="gelu", label="fp32, T = 65",
           inputs=dict(signal="target")),
        Fm(dict(B=2, T=1000, D=512, F=2048), bf16, chunk_size=64, mlp="gelu", weight_dtype=bf16,
           label="bf16 fast weights", inputs=dict(signal="target")),
    ]
    if not quick:
        cases += [
            Fm(dict(B=2, T=1000, D=1024, F=4096), bf16, chunk_size=256, mlp="gelu", residual=False,
               label="D 1024, no residual", inputs=dict(signal="teach")),
            Fm(dict(B=2, T=63, D=512, F=1024), bf16, chunk_size=16, mlp="gelu", label="float eta",
               inputs=dict(signal="target", eta_kind="float")),
        ]
    return cases


# ---------------------------------------------------------------------------------------------
# self_modifying_titans (SPEC §5)
# ---------------------------------------------------------------------------------------------
SMT_MEMORIES = ("k", "v", "eta", "alpha", "mem")


def _make_smt(case: Case, d: _Draw) -> dict:
    """x has unit-size rows (‖x‖ ≈ 1, like the normalised input of a head), q is any size (the op
    normalises it); weights keep every memory's output O(1): W2 ~ N(0, 1) (pre-activations ~ N(0, 1)),
    W1 ~ N(0, 1/D²) for the D→D memories, so M(x) − x is about as large as x."""
    B, T, N = _batch_time(case)
    H, D = case.dims["H"], case.dims["D"]
    dt = case.dtype
    out = {"x": d.randn(B, T, H, D, scale=D ** -0.5, dtype=dt), "q": d.randn(B, T, H, D, dtype=dt)}
    memory = case.kwargs.get("memory", "mlp")
    for name in SMT_MEMORIES:
        scalar = name in ("eta", "alpha")
        dout = 1 if scalar else D
        if memory == "linear":
            # M_k is l2-normalised; M_v, M_mem keep the size of x; M_η, M_α give logits ~ N(0, 1)
            out[f"{name}.w"] = d.randn(H, dout, D, scale=1.0 if name in ("k", "eta", "alpha") else D ** -0.5,
                                       dtype=dt)
        elif name == "alpha":
            # M_α has no bias; a positive W1 turns the (positive-mean) activations into logits ≈ 7,
            # so α = sigmoid(M_α(x)) ≈ 0.999 as in a trained model (zero-mean weights give α ≈ 0.5,
            # which wipes the memories within a chunk and hides their updates from the comparison)
            out["alpha.w1"] = (d.rand(H, 1, D, low=0.5, high=1.5) * (28.0 / D)).to(dt)
            out["alpha.w2"] = d.randn(H, D, D, dtype=dt)
            out["alpha.w_skip"] = d.randn(H, 1, D, scale=0.5, dtype=dt)
        else:
            out[f"{name}.w1"] = d.randn(H, dout, D, scale=D ** -0.5 if scalar else 1.0 / D, dtype=dt)
            out[f"{name}.w2"] = d.randn(H, D, D, dtype=dt)
            out[f"{name}.w_skip"] = d.randn(H, 1, D, dtype=dt) if scalar else None
    return out


def smt_params(t: dict, memory: str) -> dict:
    """The ``params`` dict of SPEC §5 from flat tensors named ``<memory>.<w|w1|w2|w_skip>``."""
    if memory == "linear":
        return {n: (t[f"{n}.w"],) for n in SMT_MEMORIES}
    return {n: (t[f"{n}.w1"], t[f"{n}.w2"], t.get(f"{n}.w_skip")) for n in SMT_MEMORIES}


def _call_smt(fn, case: Case, t: dict, backend: str):
    kw = dict(case.kwargs)
    kw.setdefault("output_final_state", True)
    return fn(t["x"], t["q"], smt_params(t, kw.get("memory", "mlp")), cu_seqlens=t.get("cu_seqlens"),
              backend=backend, **kw)


def smt_eta_scale(D: int, chunk_other: int, chunk_memory: int) -> float:
    """An eta_scale that keeps the MLP memories' chunked updates stable with :func:`_make_smt`'s
    weights: a chunk of C frozen gradient steps moves W1 by about η·‖a‖²·C with ‖a‖² ≈ 0.36·D, and
    η ≈ 0.7·eta_scale; this makes that product ≈ 0.5 (larger values diverge within a few chunks)."""
    return 2.0 / (D * max(chunk_other, chunk_memory))


def _smt_cases(device_type: str, quick: bool) -> list[Case]:
    f32, bf16 = torch.float32, torch.bfloat16
    S = lambda dims, dtype=f32, label="", inputs=None, **kw: Case(  # noqa: E731
        "self_modifying_titans", dims, dtype, kw, inputs or {}, label)
    if device_type != "cuda":
        d = dict(B=2, T=37, H=2, D=16)
        es = smt_eta_scale(16, 4, 8)
        cases = [
            S(d, memory="mlp", chunk_size_other=4, chunk_size_memory=8, eta_scale=es,
              label="mlp memories, read chunk"),
            S(d, memory="linear", chunk_size_other=8, chunk_size_memory=4, eta_scale=0.1, read="before",
              label="linear memories, read before"),
            S(d, memory="mlp", chunk_size_other=4, chunk_size_memory=8, eta_scale=es, mu=0.5, use_alpha=False,
              activation="silu", label="momentum, no alpha, silu"),
            S(dict(B=1, T=30, H=2, D=16), memory="mlp", chunk_size_other=4, chunk_size_memory=8, eta_scale=es,
              label="varlen with an empty sequence", inputs=dict(lengths=(7, 0, 23))),
            S(d, bf16, memory="mlp", chunk_size_other=4, chunk_size_memory=8, eta_scale=es, label="bf16"),
        ]
        if not quick:
            cases += [
                S(dict(B=2, T=1, H=2, D=16), memory="mlp", chunk_size_other=4, chunk_size_memory=8,
                  eta_scale=es, label="T = 1"),
                S(d, memory="mlp", mu=0.5, label="SPEC defaults (C 16/64, eta_scale 1e-3), momentum"),
            ]
        return cases
    # Long sequences use use_alpha=False: M_α has no bias and its own retention applies to its
    # weights, so with random weights its logits shrink chunk after chunk, α drops towards 0.5 and
    # every memory decays to ~1e-50 by T = 256 (float32 states underflow: a degenerate comparison).
    es = smt_eta_scale(64, 16, 64)
    cases = [
        S(dict(B=2, T=256, H=4, D=64), bf16, memory="mlp", chunk_size_other=16, chunk_size_memory=64,
          eta_scale=es, use_alpha=False, label="mlp memories (HOPE chunk sizes), no alpha"),
        S(dict(B=2, T=130, H=4, D=64), f32, memory="linear", chunk_size_other=16, chunk_size_memory=64,
          eta_scale=0.1, read="before", use_alpha=False, label="linear memories, read before"),
        S(dict(B=1, T=300, H=4, D=64), bf16, memory="mlp", chunk_size_other=8, chunk_size_memory=64,
          eta_scale=es, mu=0.5, label="varlen, momentum, alpha", inputs=dict(lengths=(1, 63, 65, 0, 171))),
    ]
    if not quick:
        cases += [
            S(dict(B=2, T=200, H=4, D=128), bf16, memory="mlp", chunk_size_other=64, chunk_size_memory=16,
              eta_scale=smt_eta_scale(128, 64, 16), use_alpha=False, activation="silu",
              label="D 128, memory grid finer than the others, no alpha"),
            S(dict(B=2, T=1, H=4, D=64), bf16, memory="mlp", eta_scale=es, label="T = 1"),
            S(dict(B=2, T=96, H=4, D=64), f32, memory="mlp", chunk_size_other=16, chunk_size_memory=32,
              eta_scale=smt_eta_scale(64, 16, 32), read="before", mu=0.5, label="read before, momentum, fp32"),
        ]
    return cases


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------
_MAKE = {"linear_memory": _make_linear, "mlp_memory": _make_mlp, "fast_mlp": _make_fast,
         "self_modifying_titans": _make_smt}
_CALL = {"linear_memory": _call_linear, "mlp_memory": _call_mlp, "fast_mlp": _call_fast,
         "self_modifying_titans": _call_smt}
_CASES = {"linear_memory": _linear_cases, "mlp_memory": _mlp_cases, "fast_mlp": _fast_cases,
          "self_modifying_titans": _smt_cases}


# ---------------------------------------------------------------------------------------------
# Decode-step cases: (case of the full op, prefix); the stream's first ``prefix`` tokens by the
# full op, the rest (crossing a chunk boundary) one step at a time (``step_check.stream_errors``)
# ---------------------------------------------------------------------------------------------
STEP_GATES = ("log_alpha", "beta", "mu")


def step_case_lm(dtype, C, gates=STEP_GATES, N=64, H=16, K=128, V=128, **kw) -> Case:
    """A linear_memory stream of C + 8 tokens (N sequences) with initial states."""
    return Case("linear_memory", dict(B=N, T=C + 8, H=H, K=K, V=V), dtype, dict(chunk_size=C, **kw),
                dict(gates=gates, initial_state=True))


def step_case_mm(dtype, C, gates=STEP_GATES, N=64, H=8, K=64, F=256, **kw) -> Case:
    """An mlp_memory stream of C + 8 tokens (N sequences, V = K) with initial states."""
    return Case("mlp_memory", dict(B=N, T=C + 8, H=H, K=K, V=K, F=F), dtype, dict(chunk_size=C, **kw),
                dict(gates=gates, initial_state=True))


def step_case_fm(dtype, C, mlp="gelu", N=4, D=2048, F=8192, signal="target", eta_kind="tensor", **kw) -> Case:
    """A fast_mlp stream of C + 8 tokens (N sequences)."""
    return Case("fast_mlp", dict(B=N, T=C + 8, D=D, F=F), dtype, dict(mlp=mlp, chunk_size=C, **kw),
                dict(signal=signal, eta_kind=eta_kind))


def _step_cases_cuda(op: str, quick: bool) -> list[tuple[Case, int]]:
    bf16, f16, f32 = torch.bfloat16, torch.float16, torch.float32
    lm, mm, fm = step_case_lm, step_case_mm, step_case_fm
    cases = {"linear_memory": [(lm(bf16, 64), 60), (lm(f32, 16, target="self", read="chunk", K=64, V=64), 12)],
             "mlp_memory": [(mm(bf16, 64, target="self", read="chunk"), 60),
                            (mm(f32, 16, (), activation="silu", residual=False, read="before"), 12)],
             "fast_mlp": [(fm(bf16, 64), 60), (fm(bf16, 16, "swiglu", F=5504, signal="teach", retention=0.99), 12)]}
    if not quick:
        cases["linear_memory"] += [(lm(f16, 1, ("mu",), read="before"), 2),
                                   (lm(f32, 64, ("log_alpha", "beta"), K=64, V=128, scale=0.5), 60),
                                   (lm(bf16, 32, STEP_GATES, K=32, V=32, target="self", read="after"), 28)]
        cases["mlp_memory"] += [(mm(f16, 32, STEP_GATES, K=128, F=512, read="after"), 28),
                                (mm(bf16, 16, ("log_alpha", "mu"), K=32, F=32, target="self", read="before",
                                    activation="silu"), 12)]
        cases["fast_mlp"] += [(fm(f32, 16, "silu", D=512, F=2048, residual=False), 12),
                              (fm(f16, 32, "swiglu", D=1024, F=2752, eta_kind="float"), 28)]
    return cases[op]


def _step_cases_cpu(op: str, quick: bool) -> list[tuple[Case, int]]:
    f32, bf16 = torch.float32, torch.bfloat16
    lm = functools.partial(step_case_lm, N=2, H=2, K=8, V=8)
    mm = functools.partial(step_case_mm, N=2, H=2, K=8, F=24)
    fm = functools.partial(step_case_fm, N=2, D=24, F=40)
    cases = {"linear_memory": [(lm(f32, 4, read="before"), 6), (lm(bf16, 3, target="self", read="chunk"), 5)],
             "mlp_memory": [(mm(f32, 4, target="self", read="chunk"), 6),
                            (mm(bf16, 3, ("log_alpha",), activation="silu", read="after"), 5)],
             "fast_mlp": [(fm(f32, 4, retention=0.9), 6), (fm(bf16, 3, "swiglu", F=48, signal="teach"), 5)]}
    return cases[op][:1] if quick else cases[op]


def step_cases(op: str, device_type: str = "cpu", quick: bool = False) -> list[tuple[Case, int]]:
    """The verification cases of the decode step ``op``: (case of the full op, prefix) pairs, the
    shapes of ``python/check_steps_triton.py`` on CUDA, tiny ones off it."""
    base = step_base(op)
    return _step_cases_cuda(base, quick) if device_type == "cuda" else _step_cases_cpu(base, quick)


def make_inputs(case: Case, device="cpu", seed: int = 0) -> dict[str, Optional[torch.Tensor]]:
    """Fresh random inputs of ``case`` on ``device``: a flat dict name -> tensor (or None).

    ``cu_seqlens`` is included for varlen cases. Pass the dict to :func:`call_op`.
    """
    t = _MAKE[case.op](case, _Draw(device, seed))
    if case.inputs.get("lengths") is not None:
        t["cu_seqlens"] = _cu_seqlens(case.inputs["lengths"], torch.device(device))
    return t


def call_op(fn: Callable, case: Case, tensors: dict, backend: str = "auto"):
    """Call the op's public function ``fn`` on ``tensors`` (from :func:`make_inputs`); returns what
    it returns (``(output, final_state)``)."""
    return _CALL[case.op](fn, case, tensors, backend)


def verification_cases(op: str, device_type: str = "cpu", quick: bool = False) -> list[Case]:
    """The verification cases of ``op``: tiny shapes off CUDA, realistic ones on CUDA."""
    return _CASES[op](device_type, quick)


def upcast(tensors: dict, dtype=torch.float64) -> dict:
    """The same inputs with every floating tensor converted to ``dtype`` (integers unchanged)."""
    return {n: (t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t)
            for n, t in tensors.items()}


def flatten(obj: Any, prefix: str) -> dict[str, torch.Tensor]:
    """Named tensors of an op's result: tensors, state objects (their ``tensors()`` or dataclass
    fields), dicts, tuples and lists, recursively; names are dotted paths (``final.M``)."""
    if obj is None:
        return {}
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if hasattr(obj, "tensors") and callable(obj.tensors):
        items = obj.tensors().items()
    elif dataclasses.is_dataclass(obj):
        items = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    elif isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (tuple, list)):
        items = enumerate(obj)
    elif hasattr(obj, "__dict__"):
        items = vars(obj).items()
    else:
        return {}
    out = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}"))
    return out


def flatten_result(case: Case, result) -> dict[str, torch.Tensor]:
    """``(output, final_state)`` -> {"o" or "y": output, "final.<field>": state tensors}."""
    main = "y" if case.op == "fast_mlp" else "o"
    if isinstance(result, torch.Tensor):
        return {main: result}
    out, state = result[0], result[1] if len(result) > 1 else None
    return {main: out, **flatten(state, "final")}
