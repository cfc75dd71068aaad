"""Backends of an op and how one is chosen.

Every op has backends among ``reference`` (token loop, float64-capable), ``torch`` (chunked
PyTorch), ``triton`` and ``cuda``. ``backend="auto"`` takes the first of ``cuda``, ``triton``,
``torch``, ``reference`` that the op has and that can run the inputs (device, extension, shape);
an op whose kernels rank differently passes its own ``order`` (fast_mlp: triton first, its
``cuda`` backend being the torch chunk loop with one CUDA kernel). Any other name forces that
backend, and an error says why when it cannot run. The environment
variables ``NESTED_KERNELS_BACKEND_<OP>`` (e.g. ``NESTED_KERNELS_BACKEND_LINEAR_MEMORY``) and
``NESTED_KERNELS_BACKEND`` force a backend wherever the keyword is left at ``"auto"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch

from .checks import check_option
from .env import getenv
from .extension import cuda_extension_unavailable_reason

BACKEND_NAMES = ("reference", "torch", "triton", "cuda")
AUTO_ORDER = ("cuda", "triton", "torch", "reference")
TRITON_FIRST = ("triton", "cuda", "torch", "reference")   # for ops whose Triton backend times faster
ENV_VAR = "NESTED_KERNELS_BACKEND"

Inputs = Mapping[str, Optional[torch.Tensor]]


class BackendFallbackWarning(UserWarning):
    """A kernel backend could not launch on these inputs (e.g. Triton's OutOfResources) and ran
    another backend's implementation instead; ``python -m nested_kernels.verify`` counts such a
    case as an error of the backend it asked for, never as its pass."""


def _never(inputs: Inputs, cfg: dict) -> Optional[str]:
    return None


@dataclass(frozen=True)
class Backend:
    """One implementation of an op.

    forward(inputs, cfg) -> tuple of output tensors, in the op's output order.
    backward(inputs, outputs, grads, cfg) -> dict input name -> gradient; None means the
      gradients come from autograd through ``forward`` (pure-PyTorch backends).
    unsupported(inputs, cfg) -> None when this backend can run these inputs, else the reason.
    residuals(inputs, cfg) -> empty tensors shaped like the residual outputs ``forward`` returns
      after the op's public ones (tensors its ``backward`` reuses instead of recomputing them;
      see custom_op.OpSpec); None: the backend returns none (they travel as empty tensors).
    experimental: why the backend is not offered by default yet (e.g. its kernels have not run on a
      GPU), None when it is: ``"auto"`` and ``available_backends`` (the verify command's and the
      bench's default lists) skip it; naming it (keyword, environment variable, ``--backends``)
      runs it.
    """
    forward: Callable
    backward: Optional[Callable] = None
    unsupported: Callable[[Inputs, dict], Optional[str]] = _never
    residuals: Optional[Callable] = None
    experimental: Optional[str] = None


def triton_unavailable_reason(device: torch.device) -> Optional[str]:
    interpret = getenv("TRITON_INTERPRET") == "1"
    if device.type != "cuda" and not interpret:
        return f"Triton kernels need CUDA tensors (got {device}); set TRITON_INTERPRET=1 to run them on the CPU"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed (pip install triton)"
    return None


def _platform_reason(name: str, device: torch.device) -> Optional[str]:
    if name == "triton":
        return triton_unavailable_reason(device)
    if name == "cuda":
        if device.type != "cuda":
            return f"the CUDA backend needs CUDA tensors, got {device}"
        return cuda_extension_unavailable_reason()
    return None


def _requested(op_name: str, backend: Optional[str]) -> tuple[str, str]:
    """(name, where it came from): the keyword, else the per-op then the global variable."""
    if backend not in (None, "auto"):
        return backend, "backend"
    for var in (f"{ENV_VAR}_{op_name.upper()}", ENV_VAR):
        value = getenv(var, "").strip()
        if value and value != "auto":
            return value, var
    return "auto", "backend"


def select_backend(op_name: str, backend: Optional[str], backends: Mapping[str, Backend],
                   device: torch.device, inputs: Inputs, cfg: dict, order: tuple = AUTO_ORDER) -> str:
    """The name of the backend that runs ``op_name`` on these inputs (see module docstring);
    ``order``: the candidates of ``"auto"``, fastest first."""
    name, source = _requested(op_name, backend)
    check_option(source, name, ("auto",) + BACKEND_NAMES)
    if name != "auto":
        if name not in backends:
            raise RuntimeError(f"{op_name} has no {name!r} backend yet; it has {', '.join(backends)}")
        why = _platform_reason(name, device) or backends[name].unsupported(inputs, cfg)
        if why:
            raise RuntimeError(f"{op_name}: backend {name!r} (from {source}) cannot run these inputs: {why}")
        return name
    for candidate in order:
        if candidate not in backends or backends[candidate].experimental or \
                (candidate == "triton" and device.type != "cuda"):
            continue
        if _platform_reason(candidate, device) is None and backends[candidate].unsupported(inputs, cfg) is None:
            return candidate
    raise RuntimeError(f"{op_name}: no backend can run these inputs")  # reference supports everything


def available_backends(backends: Mapping[str, Backend], device: torch.device,
                       experimental: bool = False) -> list[str]:
    """Names of the backends whose platform is present for ``device`` (shape support aside);
    experimental ones (``Backend.experimental``) only when ``experimental``."""
    return [n for n in BACKEND_NAMES if n in backends and _platform_reason(n, device) is None
            and (experimental or not backends[n].experimental)]


def will_differentiate(inputs: Inputs) -> bool:
    """Whether autograd will record a call on ``inputs``: grad mode on and some input requires a
    gradient (the API decides this before dispatch, so that a backend's fake and real forwards
    agree on which residuals they return)."""
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs.values())
